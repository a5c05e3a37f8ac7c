#!/usr/bin/env python3
"""The training run of the profile-guided build (scripts/pgo.sh): sends an instrumented `serve`
the pods of the golden cases (tests/golden/*.yaml, not the load benchmark's bodies, which
measure the result) as AdmissionReviews over HTTPS, each once as written and once with the
`managedFields` the apiserver records before admission, so that the build is tuned for the
reviews a cluster sends rather than for the benchmark.

    python3 scripts/pgo_train.py --port PORT [--rounds N] [--cases tests/golden]

Exits non-zero if the server answers anything but 200 with the review's uid, or if the cases
hold too few pods to train on.
"""
import argparse
import copy
import http.client
import json
import pathlib
import ssl
import sys
import threading

import yaml

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benches" / "reviews"))
from generate import admission_review, managed  # noqa: E402

# Fewer pods than this means the cases were not found, not a small corpus.
MIN_PODS = 50


def pods(doc):
    """The pods a document creates: a Pod, or the template of a workload or a CronJob."""
    if not isinstance(doc, dict):
        return
    if doc.get("kind") == "Pod":
        yield doc
        return
    spec = doc.get("spec") or {}
    template = (spec.get("jobTemplate") or {}).get("spec", spec).get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        metadata = dict(template.get("metadata") or {})
        metadata.setdefault("namespace", (doc.get("metadata") or {}).get("namespace", "default"))
        metadata.setdefault("generateName", (doc.get("metadata") or {}).get("name", "app") + "-")
        yield {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}


def reviews(cases):
    out = []
    for path in sorted(cases.glob("*.yaml")):
        if path.name.endswith(".mutated.yaml"):
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            for pod in pods(doc):
                pod = copy.deepcopy(pod)
                pod.setdefault("metadata", {}).setdefault("namespace", "default")
                plain = admission_review(pod)
                out.append(plain)
                out.append(managed(copy.deepcopy(plain)))
    for i, review in enumerate(out):
        review["request"]["uid"] = f"00000000-0000-4000-8000-{i:012d}"
    return out


def send(port, bodies, rounds, failures):
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    for _ in range(rounds):
        for uid, body in bodies:
            conn.request("POST", "/mutate", body, {"content-type": "application/json"})
            response = conn.getresponse()
            answer = response.read()
            if response.status != 200 or json.loads(answer)["response"]["uid"] != uid:
                failures.append(f"{uid}: {response.status} {answer[:200]!r}")
                return


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--cases", type=pathlib.Path, default=REPO / "tests" / "golden")
    args = parser.parse_args()

    all_reviews = reviews(args.cases)
    if len(all_reviews) < 2 * MIN_PODS:
        sys.exit(f"error: {len(all_reviews) // 2} pods in {args.cases}/*.yaml; "
                 f"at least {MIN_PODS} expected")
    bodies = [(r["request"]["uid"], json.dumps(r, separators=(",", ":")).encode())
              for r in all_reviews]
    failures = []
    threads = [threading.Thread(target=send, args=(args.port, bodies[i::args.connections],
                                                   args.rounds, failures))
               for i in range(args.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        sys.exit("error: the server failed a training review: " + "; ".join(failures))
    print(f"trained on {len(bodies)} reviews ({len(bodies) // 2} pods) x {args.rounds} rounds",
          file=sys.stderr)


if __name__ == "__main__":
    main()
