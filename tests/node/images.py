#!/usr/bin/env python3
"""The images of tests/node, assembled from host files as single-layer OCI archives.

No registry and no Docker engine: each image is a tar of the files below (deterministic: sorted,
owned by root unless said otherwise, mtime 0), a config and a manifest, written as an OCI image
layout in one archive whose index names the image (io.containerd.image.name), for
`ctr -n k8s.io images import`. Archives are cached under the hash of everything that goes in
them, so a rerun with the same inputs writes nothing.

  registry.k8s.io/pause:3.10          the static sandbox binary (tests/node/pause)
  ghcr.io/jvm-guard/jvm-guard:node    the static musl jvm-guard, laid out as the repo's Dockerfile
  jvm-guard.test/jdk17-shell:node     busybox + the host's JDK 17 + its glibc libs + the test app
  jvm-guard.test/jdk17-distroless:node  the same without busybox: no /bin/sh at all
  jvm-guard.test/jdk8-standin:node    jdk17-shell with a JDK 8u151 stand-in as its java (below)

The jvm-guard image as published is multi-platform (SPEC §10): `index` writes it, from the static
musl binaries of both architectures, as an OCI image layout directory (an index of a
linux/amd64 and a linux/arm64 manifest) for a registry client to push, e.g. `skopeo copy --all
oci:DIR:node docker://ghcr.io/jvm-guard/jvm-guard:0.1.0`. tests/node imports only the local
platform's archive.

usage: images.py build --cache DIR --pause BIN --jvm-guard BIN   (prints NAME<TAB>ARCHIVE lines)
       images.py config NAME                                      (prints an image's OCI config)
       images.py index --out DIR --amd64 BIN --arm64 BIN          (the two-platform jvm-guard)
"""

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
JDK = "/usr/lib/jvm/java-17-openjdk-amd64"
JDK_SKIP = {"jmods", "include", "docs", "legal", "man", "lib/src.zip", "lib/ct.sym"}
# The JDK libraries whose system dependencies the headless JVM needs (AWT and sound left out).
JDK_HEADLESS = [
    "bin/java", "lib/server/libjvm.so", "lib/libjli.so", "lib/libjava.so", "lib/libnet.so",
    "lib/libnio.so", "lib/libzip.so", "lib/libjimage.so", "lib/libmanagement.so",
    "lib/libmanagement_ext.so", "lib/libextnet.so", "lib/libverify.so",
]
JVM_GUARD = "/usr/local/bin/jvm-guard"
NONROOT = 65532
STANDIN_IMAGE = "jvm-guard.test/jdk8-standin:node"
APP_IMAGES = {
    "jvm-guard.test/jdk17-shell:node": True,
    "jvm-guard.test/jdk17-distroless:node": False,
    STANDIN_IMAGE: True,
}
# No JDK 8 can be installed here. The stand-in is a JDK 8u151 home whose java is a script that
# handles the options jvm-guard may pass as HotSpot 8u151 does, then runs the real JDK 17 as
# 8u151 would size its heap: the RAM percentages and UseContainerSupport came to 8 in 8u191
# (JDK-8146115), so 8u151 stops on them ("Unrecognized VM option", exit 1), and without them it
# sizes the heap from the host's memory, not the container's.
STANDIN_HOME = "/usr/lib/jvm/java-8-standin"
STANDIN_JAVA = f"""#!/bin/sh
for option in $JAVA_TOOL_OPTIONS "$@"; do
  case "$option" in
    -XX:*RAMPercentage*|-XX:[+-]UseContainerSupport)
      name=${{option#-XX:}}; name=${{name#[+-]}}
      echo "Unrecognized VM option '$name'" >&2
      echo "Error: Could not create the Java Virtual Machine." >&2
      echo "Error: A fatal exception has occurred. Program will exit." >&2
      exit 1 ;;
  esac
done
exec {JDK}/bin/java -XX:-UseContainerSupport "$@"
"""
# The release file of OpenJDK 8u151 as Debian built it for the official openjdk:8u151 images.
STANDIN_RELEASE = ('JAVA_VERSION="1.8.0_151"\nOS_NAME="Linux"\nOS_VERSION="2.6"\n'
                   'OS_ARCH="amd64"\nSOURCE=""\n')
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
JVM_GUARD_IMAGE = "ghcr.io/jvm-guard/jvm-guard:node"
JDK_PATH = f"{JDK}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def config(name):
    """The OCI image config (without rootfs) of each image."""
    if name == PAUSE_IMAGE:
        return {"Entrypoint": ["/pause"], "User": "65535:65535"}
    if name == JVM_GUARD_IMAGE:
        # As the Dockerfile: USER, EXPOSE, ENTRYPOINT, CMD (tests/node checks the two agree).
        return {
            "User": f"{NONROOT}:{NONROOT}",
            "ExposedPorts": {"8443/tcp": {}, "8080/tcp": {}},
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],
            "Entrypoint": [JVM_GUARD],
            "Cmd": ["serve"],
        }
    if name == STANDIN_IMAGE:
        # As the official openjdk:8u151-jre image sets them.
        return {
            "Env": [f"PATH={STANDIN_HOME}/jre/bin:{JDK_PATH}", f"JAVA_HOME={STANDIN_HOME}",
                    "JAVA_VERSION=8u151"],
            "Cmd": ["java", "-cp", "/app", "App"],
            "WorkingDir": "/",
        }
    if name in APP_IMAGES:
        env = [f"PATH={JDK_PATH}", f"JAVA_HOME={JDK}"]
        if not APP_IMAGES[name]:
            # As distroless Java images and their users do: options in the image ENV, which
            # admission never sees; the agent merges ours into it at start.
            env.append("JAVA_TOOL_OPTIONS=-Dimage.env=kept")
        return {
            "Env": env,
            "Cmd": ["java", "-cp", "/app", "App"],
            "WorkingDir": "/",
        }
    raise SystemExit(f"unknown image {name}")


class Layer:
    """The files of one layer: path in the image -> (kind, source or data, mode, uid)."""

    def __init__(self):
        self.entries = {}

    def dir(self, path, mode=0o755, uid=0):
        path = path.strip("/")
        parts = path.split("/")
        for i in range(1, len(parts)):
            self.entries.setdefault("/".join(parts[:i]), ("dir", None, 0o755, 0))
        self.entries[path] = ("dir", None, mode, uid)

    def _parent(self, path):
        parent = os.path.dirname(path.strip("/"))
        if parent and parent not in self.entries:
            self.dir(parent)

    def file(self, path, source, mode=None, uid=0):
        self._parent(path)
        if mode is None:
            mode = os.stat(source).st_mode & 0o7777
        self.entries[path.strip("/")] = ("file", source, mode, uid)

    def data(self, path, text, mode=0o644):
        self._parent(path)
        self.entries[path.strip("/")] = ("data", text.encode(), mode, 0)

    def symlink(self, path, target):
        self._parent(path)
        self.entries[path.strip("/")] = ("link", target, 0o777, 0)

    def key(self):
        """A hash of everything in the layer: file contents, not only their names."""
        h = hashlib.sha256()
        for path in sorted(self.entries):
            kind, src, mode, uid = self.entries[path]
            h.update(f"{path}\0{kind}\0{mode}\0{uid}\0".encode())
            if kind == "file":
                with open(src, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
            elif kind == "data":
                h.update(src)
            elif kind == "link":
                h.update(src.encode())
            h.update(b"\1")
        return h.hexdigest()

    def write(self, out):
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(self.entries):
                kind, src, mode, uid = self.entries[path]
                info = tarfile.TarInfo(path)
                info.mtime = 0
                info.mode = mode
                info.uid = info.gid = uid
                if kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif kind == "link":
                    info.type = tarfile.SYMTYPE
                    info.linkname = src
                    tar.addfile(info)
                elif kind == "data":
                    info.size = len(src)
                    tar.addfile(info, io.BytesIO(src))
                else:
                    info.size = os.path.getsize(src)
                    with open(src, "rb") as f:
                        tar.addfile(info, f)


def base(layer):
    """What every image but pause has: /etc/passwd and group, /tmp, the CA bundle."""
    layer.data("etc/passwd", "root:x:0:0:root:/root:/sbin/nologin\n"
               f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n"
               "app:x:1000:1000:app:/home/app:/sbin/nologin\n")
    layer.data("etc/group", f"root:x:0:\nnonroot:x:{NONROOT}:\napp:x:1000:\n")
    layer.dir("tmp", 0o1777)
    layer.dir("root", 0o700)
    layer.dir("home/nonroot", 0o700, NONROOT)
    layer.dir("home/app", 0o755, 1000)
    for d in ("proc", "sys", "dev", "etc/ssl/certs"):
        layer.dir(d)
    layer.file("etc/ssl/certs/ca-certificates.crt", "/etc/ssl/certs/ca-certificates.crt", 0o644)


def system_libs():
    """The glibc libraries (and the loader) the headless JVM links, by ldd."""
    out = subprocess.run(["ldd"] + [f"{JDK}/{p}" for p in JDK_HEADLESS], check=True,
                         capture_output=True, text=True).stdout
    libs = set()
    for line in out.splitlines():
        for word in line.split():
            if word.startswith("/") and not word.startswith(JDK) and ".so" in word:
                libs.add(word)
    return sorted(libs)


def jdk(layer):
    for root, dirs, files in os.walk(JDK):
        rel_root = os.path.relpath(root, JDK)
        dirs[:] = sorted(d for d in dirs
                         if os.path.normpath(os.path.join(rel_root, d)) not in JDK_SKIP)
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(root, d))]):
            rel = os.path.normpath(os.path.join(rel_root, name))
            if rel in JDK_SKIP:
                continue
            src = os.path.join(root, name)
            real = os.path.realpath(src)
            if not os.path.exists(real) or os.path.isdir(real):
                continue
            # Debian's JDK links into /etc and /usr/share: the image gets the files themselves.
            layer.file(f"{JDK}/{rel}", real, os.stat(real).st_mode & 0o7777)
    layer.symlink("usr/bin/java", f"{JDK}/bin/java")
    for lib in system_libs():
        layer.file(lib, os.path.realpath(lib), 0o755)
    # The loader at the path the binaries name, and the multiarch dirs it searches.
    layer.file("lib64/ld-linux-x86-64.so.2", os.path.realpath("/lib64/ld-linux-x86-64.so.2"), 0o755)


def app_classes(tmp):
    classes = os.path.join(tmp, "classes")
    if os.path.isdir(classes):
        return classes
    subprocess.run(["javac", "--release", "17", "-d", classes, os.path.join(HERE, "app", "App.java")],
                   check=True)
    return classes


def layer_of(name, pause, jvm_guard, tmp):
    layer = Layer()
    if name == PAUSE_IMAGE:
        layer.file("pause", pause, 0o755)
        return layer
    base(layer)
    if name == JVM_GUARD_IMAGE:
        layer.file(JVM_GUARD, jvm_guard, 0o755)
        return layer
    jdk(layer)
    classes = app_classes(tmp)
    for entry in sorted(os.listdir(classes)):
        layer.file(f"app/{entry}", os.path.join(classes, entry), 0o644)
    if name == STANDIN_IMAGE:
        layer.data(f"{STANDIN_HOME}/jre/bin/java", STANDIN_JAVA, 0o755)
        layer.data(f"{STANDIN_HOME}/release", STANDIN_RELEASE)
    if APP_IMAGES[name]:
        layer.file("bin/busybox", os.path.realpath("/bin/busybox"), 0o755)
        applets = subprocess.run(["/bin/busybox", "--list-full"], check=True, capture_output=True,
                                 text=True).stdout.split()
        for applet in applets:
            if applet.strip("/") not in layer.entries:
                layer.symlink(applet, "/bin/busybox")
    return layer


def write_archive(name, layer, path):
    tmp = path + ".tmp"
    with open(tmp + ".layer", "wb") as f:
        layer.write(f)
    layer_digest, layer_size = digest_file(tmp + ".layer")
    cfg = {
        "architecture": "amd64",
        "os": "linux",
        "config": config(name),
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        "history": [{"created_by": "tests/node/images.py"}],
    }
    cfg_bytes = json.dumps(cfg, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "sha256:" + hashlib.sha256(cfg_bytes).hexdigest(),
                   "size": len(cfg_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": f"sha256:{layer_digest}", "size": layer_size}],
    }
    man_bytes = json.dumps(manifest, sort_keys=True).encode()
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": "sha256:" + hashlib.sha256(man_bytes).hexdigest(),
                       "size": len(man_bytes),
                       "annotations": {"io.containerd.image.name": name,
                                       "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]}}],
    }
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        def add(arcname, data=None, file=None):
            info = tarfile.TarInfo(arcname)
            info.mtime = 0
            info.mode = 0o644
            if file:
                info.size = os.path.getsize(file)
                with open(file, "rb") as f:
                    tar.addfile(info, f)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", json.dumps(index, sort_keys=True).encode())
        add(f"blobs/sha256/{layer_digest}", file=tmp + ".layer")
        add("blobs/sha256/" + hashlib.sha256(cfg_bytes).hexdigest(), cfg_bytes)
        add("blobs/sha256/" + hashlib.sha256(man_bytes).hexdigest(), man_bytes)
    os.unlink(tmp + ".layer")
    os.rename(tmp, path)


# ELF e_machine of the binary each platform's image must hold.
ELF_MACHINES = {"amd64": 62, "arm64": 183}


def write_layout(name, binaries, out):
    """An OCI image layout in OUT: index.json names one image index, whose manifests are one per
    platform (architecture -> static jvm-guard binary), as `docker buildx` pushes them."""
    blobs = os.path.join(out, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)

    def blob(data):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, digest), "wb") as f:
            f.write(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    manifests = []
    for arch, binary in sorted(binaries.items()):
        with open(binary, "rb") as f:
            head = f.read(20)
        if head[:4] != b"\x7fELF" or int.from_bytes(head[18:20], "little") != ELF_MACHINES[arch]:
            raise SystemExit(f"{binary} is not a {arch} ELF binary")
        layer = Layer()
        base(layer)
        layer.file(JVM_GUARD, binary, 0o755)
        buf = io.BytesIO()
        layer.write(buf)
        layer_bytes = buf.getvalue()
        cfg = {
            "architecture": arch,
            "os": "linux",
            "config": config(name),
            "rootfs": {"type": "layers",
                       "diff_ids": ["sha256:" + hashlib.sha256(layer_bytes).hexdigest()]},
            "history": [{"created_by": "tests/node/images.py"}],
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       **blob(json.dumps(cfg, sort_keys=True).encode())},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **blob(layer_bytes)}],
        }
        manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                          **blob(json.dumps(manifest, sort_keys=True).encode()),
                          "platform": {"architecture": arch, "os": "linux"}})
    image_index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                   "manifests": manifests}
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
                       **blob(json.dumps(image_index, sort_keys=True).encode()),
                       "annotations": {"io.containerd.image.name": name,
                                       "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]}}],
    }
    with open(os.path.join(out, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f, sort_keys=True)


def digest_file(path):
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def build(cache, pause, jvm_guard):
    os.makedirs(cache, exist_ok=True)
    names = [PAUSE_IMAGE, JVM_GUARD_IMAGE] + list(APP_IMAGES)
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            layer = layer_of(name, pause, jvm_guard, tmp)
            h = hashlib.sha256(layer.key().encode())
            h.update(json.dumps(config(name), sort_keys=True).encode())
            h.update(open(__file__, "rb").read())
            slug = name.split("/")[-1].replace(":", "-")
            path = os.path.join(cache, f"{slug}-{h.hexdigest()[:16]}.tar")
            if not os.path.exists(path):
                write_archive(name, layer, path)
            print(f"{name}\t{path}")


def main(argv):
    if len(argv) >= 2 and argv[1] == "config":
        print(json.dumps(config(argv[2]), sort_keys=True))
        return
    if len(argv) == 8 and argv[1] == "build" and argv[2] == "--cache" and argv[4] == "--pause" \
            and argv[6] == "--jvm-guard":
        build(argv[3], argv[5], argv[7])
        return
    if len(argv) == 8 and argv[1] == "index" and argv[2] == "--out" and argv[4] == "--amd64" \
            and argv[6] == "--arm64":
        write_layout(JVM_GUARD_IMAGE, {"amd64": argv[5], "arm64": argv[7]}, argv[3])
        return
    raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
