#!/usr/bin/env bash
# Builds crictl (sigs.k8s.io/cri-tools) for the CRI integration tests (integration/k8s_test.go):
# they list kiln-built images and run pods through containerd's CRI plugin with it.
# Usage: hack/build-crictl.sh [OUTDIR]   (default _output/bin)
#
# `go install MODULE@VERSION` builds in a module of its own, so the project's go.mod and go.sum
# are never touched. CGO is off.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$repo/_output/bin}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

version=v1.37.0
stamp="$out/.crictl-version"
if [ -x "$out/crictl" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$version" ]; then
	echo "build-crictl: crictl $version already in $out"
	exit 0
fi
echo "build-crictl: building crictl $version into $out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
GOFLAGS="${GOFLAGS:-} -mod=mod" CGO_ENABLED=0 GOBIN="$tmp" \
	go install -trimpath -ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$version" "sigs.k8s.io/cri-tools/cmd/crictl@$version"
# Beside its target under a temporary name, then renamed: a shared $out never holds half a file.
cp "$tmp/crictl" "$out/.crictl.tmp.$$"
mv -f "$out/.crictl.tmp.$$" "$out/crictl"
echo "$version" >"$stamp"
"$out/crictl" --version
