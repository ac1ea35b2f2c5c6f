#!/usr/bin/env bash
# Builds buildkitd and buildctl at the BuildKit version kiln's go.mod requires, for the benchmarks.
# Usage: hack/build-buildkit.sh [OUTDIR]   (default _output/bin)
#
# BuildKit's go.mod has exclude lines, so `go install github.com/moby/buildkit/cmd/...@VERSION`
# is refused. As hack/build-containerd.sh does for containerd, the build runs in a throwaway
# module that requires exactly that BuildKit version; the project's go.mod and go.sum are never
# touched. CGO is off.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$repo/_output/bin}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$repo"

module=github.com/moby/buildkit
version="$(go list -m -f '{{.Version}}' "$module")"
stamp="$out/.buildkit-version"
want="$version"

if [ -x "$out/buildkitd" ] && [ -x "$out/buildctl" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
	echo "build-buildkit: buildkitd $version already in $out"
	exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
printf 'module kiln.local/buildkit-build\n\ngo %s\n\nrequire %s %s\n' \
	"$(go env GOVERSION | sed 's/^go//')" "$module" "$version" >"$tmp/go.mod"

echo "build-buildkit: building buildkitd and buildctl $version into $out"
(
	cd "$tmp"
	GOFLAGS="${GOFLAGS:-} -mod=mod" CGO_ENABLED=0 go build -trimpath \
		-ldflags "-X $module/version.Version=$version -X $module/version.Revision=kiln-bench" -o "$out/" \
		"$module/cmd/buildkitd" "$module/cmd/buildctl"
)
echo "$want" >"$stamp"
"$out/buildkitd" --version
