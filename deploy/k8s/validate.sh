#!/usr/bin/env bash
# Validates every Kubernetes manifest in deploy/k8s with a real schema validator
# (kubernetes-validate from PyPI, installed into the project venv by
# scripts/install-python-deps.sh; it bundles the API schemas, so it works offline), strict
# (unknown fields are errors), against Kubernetes 1.30 (the oldest these manifests support: the
# preStop sleep action) and the newest the validator knows. With kubectl installed, the kustomize
# layouts (cluster/, mixed-arch/) are rendered and their output validated as well.
# The same checks, plus the properties natrix relies on, run in the test suite:
# tests/clients/python/test_k8s_manifests.py.
#
#   deploy/k8s/validate.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
py="$("$root/scripts/install-python-deps.sh")"
validator="$(dirname "$py")/kubernetes-validate"
latest="$("$validator" --version)"
versions=(1.30.0 "$latest")

mapfile -t files < <(find "$here" -name '*.yaml' ! -name kustomization.yaml | sort)
((${#files[@]})) || { echo "validate.sh: no manifests under $here" >&2; exit 1; }

rendered="$(mktemp -d /tmp/natrix-k8s.XXXXXX)"
trap 'rm -rf "$rendered"' EXIT
if command -v kubectl >/dev/null; then
    for layout in cluster mixed-arch; do
        kubectl kustomize "$here/$layout" >"$rendered/$layout.yaml"
        files+=("$rendered/$layout.yaml")
    done
else
    echo "validate.sh: kubectl not installed: the kustomize layouts are not rendered (files only)" >&2
fi

for version in "${versions[@]}"; do
    "$validator" --strict --quiet -k "$version" "${files[@]}"
    echo "validate.sh: ${#files[@]} files valid for Kubernetes $version"
done
