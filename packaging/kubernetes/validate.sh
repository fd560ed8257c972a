#!/bin/sh
# Validates the Kubernetes manifests of this directory and of csi/ (or the files given)
# against the API schemas of pinned Kubernetes versions, strictly: a misspelled or unknown
# field is an error, and so is a kind without a schema. A SecretProviderClass is checked
# against its CRD's schema and what the secretsfs provider reads; a pod in a namespace that
# enforces a Pod Security level, against that level; a file named *values.yaml, as values of
# the Secrets Store CSI Driver chart (check-manifests.py says what each check covers).
# kubernetes-validate (pinned) is installed into a venv under target/ on first use (about 40 s;
# needs python3 and PyPI), and only checked afterwards. Exits non-zero when any manifest fails,
# with one line per problem.
#
#   packaging/kubernetes/validate.sh [MANIFEST.yaml...]
#
# K8S_VERSIONS overrides the Kubernetes versions (space-separated; 1.25.0 to 1.37.0 are known
# to kubernetes-validate 1.37.0).
set -eu

kv_version=1.37.0
# The oldest and the newest release the manifests are meant for.
k8s_versions=${K8S_VERSIONS:-1.30.0 1.37.0}

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv=$root/target/kubernetes-validate-venv
kv=$venv/bin/kubernetes-validate

say() { printf 'validate.sh: %s\n' "$*" >&2; }

# Asks the installed tool rather than trusting a marker file, so a half-finished install
# (an interrupted pip) is repaired on the next run.
installed() {
    [ -x "$kv" ] && [ "$("$kv" --version 2>/dev/null)" = "$kv_version" ]
}

install() {
    installed && return 0
    say "installing kubernetes-validate==$kv_version into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "kubernetes-validate==$kv_version"
    installed || {
        say "kubernetes-validate $kv_version did not install"
        exit 1
    }
}

mkdir -p "$root/target"
if command -v flock >/dev/null 2>&1; then
    # Concurrent runs (parallel tests) must not install into the same venv at once.
    (
        flock 9
        install
    ) 9>"$root/target/kubernetes-validate.lock"
else
    install
fi

if [ $# -eq 0 ]; then
    set -- "$here"/*.yaml "$here"/csi/*.yaml
fi

# One python for every file and version: kubernetes-validate's own CLI only warns about a
# kind it has no schema for, which would pass a SecretProviderClass (or a misspelled kind)
# unchecked.
status=0
"$venv/bin/python" "$here/check-manifests.py" --kubernetes-versions "$k8s_versions" "$@" ||
    status=1
if [ "$status" -eq 0 ]; then
    say "$# files valid against Kubernetes $k8s_versions (strict)"
else
    say "invalid manifests (above)"
fi
exit "$status"
