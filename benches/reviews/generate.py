#!/usr/bin/env python3
"""Writes the AdmissionReview bodies of the load benchmark: realistic pod CREATEs of about
2, 10 and 20 KB (several containers with env, ports, probes, resources and mounts; volumes;
a controller's metadata). Deterministic: run it again and the files do not change.
2kb-managed.json is the 2 KB review with the `managedFields` the apiserver adds to every pod
before admission, as the ReplicaSet controller's create writes them.

    python3 benches/reviews/generate.py   # rewrites benches/reviews/{2,10,20}kb.json, 2kb-managed.json

scripts/pgo_train.py imports `admission_review` and `managed` to give its reviews the same envelope
and fields.
"""
import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent

ENV_NAMES = [
    "SPRING_PROFILES_ACTIVE", "SPRING_DATASOURCE_URL", "SPRING_DATASOURCE_USERNAME",
    "SERVER_PORT", "MANAGEMENT_SERVER_PORT", "LOGGING_LEVEL_ROOT", "OTEL_SERVICE_NAME",
    "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_RESOURCE_ATTRIBUTES", "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_CONSUMER_GROUP", "REDIS_HOST", "REDIS_PORT", "FEATURE_FLAGS_URL", "TZ",
    "HTTP_PROXY", "NO_PROXY", "CACHE_TTL_SECONDS", "TRACING_SAMPLE_RATE", "REGION",
]


def env(container, count):
    out = []
    for i in range(count):
        name = ENV_NAMES[i % len(ENV_NAMES)]
        if i >= len(ENV_NAMES):
            name = f"{name}_{i // len(ENV_NAMES)}"
        if i % 7 == 3:
            out.append({"name": name, "valueFrom": {"secretKeyRef": {
                "name": f"{container}-secrets", "key": name.lower().replace("_", "-")}}})
        elif i % 11 == 5:
            out.append({"name": name, "valueFrom": {"fieldRef": {
                "apiVersion": "v1", "fieldPath": "metadata.namespace"}}})
        else:
            out.append({"name": name, "value": f"{container}.payments.svc.cluster.local:{8000 + i}"})
    return out


def app(name, env_count):
    return {
        "name": name,
        "image": f"registry.example.com/payments/{name}:2.14.3",
        "command": ["java", "-jar", "/app/app.jar"],
        "args": ["--spring.config.additional-location=/config/"],
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                  {"name": "management", "containerPort": 8081, "protocol": "TCP"}],
        "env": [{"name": "JAVA_TOOL_OPTIONS", "value": "-Dfile.encoding=UTF-8 -XX:+UseG1GC"}]
               + env(name, env_count),
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                      "limits": {"memory": "1536Mi"}},
        "volumeMounts": [{"name": "config", "mountPath": "/config", "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"},
                         {"name": "kube-api-access-x7k2p", "readOnly": True,
                          "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True,
                            "capabilities": {"drop": ["ALL"]}},
    }


def sidecar(name, env_count):
    return {
        "name": name,
        "image": f"registry.example.com/platform/{name}:1.29.0",
        "args": ["--config", f"/etc/{name}/config.yaml", "--log-level", "info"],
        "ports": [{"name": f"{name[:6]}-admin", "containerPort": 9901, "protocol": "TCP"}],
        "env": env(name, env_count),
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                      "limits": {"cpu": "200m", "memory": "128Mi"}},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 9901, "scheme": "HTTP"},
                           "periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1,
                           "failureThreshold": 3},
        "volumeMounts": [{"name": f"{name}-config", "mountPath": f"/etc/{name}", "readOnly": True},
                         {"name": "kube-api-access-x7k2p", "readOnly": True,
                          "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }


def review(apps, sidecars, env_count, with_init):
    containers = [app(n, env_count) for n in apps] + [sidecar(n, env_count // 2) for n in sidecars]
    volumes = [{"name": "config", "configMap": {"name": "payments-config", "defaultMode": 420}},
               {"name": "tmp", "emptyDir": {}}]
    volumes += [{"name": f"{n}-config", "configMap": {"name": f"{n}-config", "defaultMode": 420}}
                for n in sidecars]
    volumes.append({"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
            "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}})
    spec = {
        "containers": containers,
        "volumes": volumes,
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "payments",
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "schedulerName": "default-scheduler",
        "enableServiceLinks": True,
        "preemptionPolicy": "PreemptLowerPriority",
        "priority": 0,
        "tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
             "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
             "effect": "NoExecute", "tolerationSeconds": 300}],
    }
    if with_init:
        spec["initContainers"] = [{
            "name": "migrate", "image": "registry.example.com/payments/migrate:2.14.3",
            "command": ["/bin/migrate", "--to", "latest"], "env": env("migrate", 6),
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "payments-api-7d9c8b6f5-",
            "namespace": "payments",
            "labels": {"app.kubernetes.io/name": "payments-api",
                       "app.kubernetes.io/part-of": "payments",
                       "app.kubernetes.io/version": "2.14.3",
                       "pod-template-hash": "7d9c8b6f5"},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8081",
                            "prometheus.io/path": "/actuator/prometheus"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                 "name": "payments-api-7d9c8b6f5",
                                 "uid": "0b7a6c5d-4e3f-4a2b-9c1d-8e7f6a5b4c3d",
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": spec,
        "status": {},
    }
    return admission_review(pod)


def admission_review(pod):
    """A pod's CREATE as the ReplicaSet controller's request brings it to the webhook."""
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "3f6c2b1e-8d4a-4c2f-9b7e-5a1d0e9c4b21",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": pod["metadata"].get("namespace", "default"),
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller",
                         "uid": "6a9e4b9c-2f1d-4a7b-8c3e-1d2f3a4b5c6d",
                         "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system",
                                    "system:authenticated"]},
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def lean(review):
    """A pod as a person writes it: no service-account volume, no defaulted fields."""
    spec = review["request"]["object"]["spec"]
    for key in ["tolerations", "schedulerName", "enableServiceLinks", "preemptionPolicy",
                "priority", "dnsPolicy", "terminationGracePeriodSeconds", "restartPolicy"]:
        spec.pop(key, None)
    spec["volumes"] = [v for v in spec["volumes"] if "projected" not in v]
    for c in spec["containers"]:
        for key in ["terminationMessagePath", "terminationMessagePolicy", "imagePullPolicy"]:
            c.pop(key, None)
        c["volumeMounts"] = [m for m in c["volumeMounts"] if "serviceaccount" not in m["mountPath"]]
    return review


def sized(target, apps, sidecars, with_init):
    """The smallest env count that brings the body to the target size."""
    for env_count in range(0, 400):
        r = review(apps, sidecars, env_count, with_init)
        if not sidecars:
            r = lean(r)
        body = json.dumps(r, indent=None, separators=(",", ":"))
        if len(body) >= target:
            return body
    raise SystemExit(f"cannot reach {target} bytes")


def managed(review):
    """`metadata.managedFields` as the apiserver records a controller's create (FieldsV1)."""
    pod = review["request"]["object"]

    def container(c):
        fields = {".": {}, "f:image": {}, "f:name": {}, "f:resources": {
            ".": {}, "f:limits": {".": {}, "f:memory": {}},
            "f:requests": {".": {}, "f:cpu": {}, "f:memory": {}}}}
        if c.get("env"):
            fields["f:env"] = {".": {}, **{f'k:{{"name":"{e["name"]}"}}': {
                ".": {}, "f:name": {}, "f:value": {}} for e in c["env"]}}
        if c.get("ports"):
            fields["f:ports"] = {".": {}, **{
                f'k:{{"containerPort":{p["containerPort"]},"protocol":"TCP"}}': {
                    ".": {}, "f:containerPort": {}, "f:name": {}, "f:protocol": {}}
                for p in c["ports"]}}
        return fields

    pod["metadata"]["managedFields"] = [{
        "manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
        "time": "2026-12-01T09:30:00Z", "fieldsType": "FieldsV1",
        "fieldsV1": {
            "f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}},
                           "f:ownerReferences": {".": {}, 'k:{"uid":"1"}': {}}},
            "f:spec": {"f:containers": {f'k:{{"name":"{c["name"]}"}}': container(c)
                                        for c in pod["spec"]["containers"]}}}}]
    return review


CASES = {
    "2kb": (2 * 1024, ["payments-api"], [], False),
    "10kb": (10 * 1024, ["payments-api"], ["envoy", "fluent-bit"], False),
    "20kb": (20 * 1024, ["payments-api", "payments-worker"], ["envoy", "fluent-bit"], True),
}

def main():
    for name, (target, apps, sidecars, with_init) in CASES.items():
        (HERE / f"{name}.json").write_text(sized(target, apps, sidecars, with_init) + "\n")
        print(f"{name}.json: {len((HERE / f'{name}.json').read_text())} bytes")

    two = json.loads((HERE / "2kb.json").read_text())
    (HERE / "2kb-managed.json").write_text(json.dumps(managed(two), separators=(",", ":")) + "\n")
    print(f"2kb-managed.json: {len((HERE / '2kb-managed.json').read_text())} bytes")


if __name__ == "__main__":
    main()
