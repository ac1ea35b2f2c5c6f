#!/usr/bin/env bash
# Builds containerd, containerd-shim-runc-v2 and ctr at the version kiln's go.mod requires, and
# containerd-cri, the same containerd with its CRI plugin, for the Kubernetes tests
# (integration/k8s_test.go).
# Usage: hack/build-containerd.sh [OUTDIR]   (default _output/bin)
#
# The project's go.sum does not hold containerd's daemon-side dependencies, so the build runs
# in a throwaway module that requires exactly that containerd version; the project's go.mod
# and go.sum are never touched. CGO is off; the CRI (but in containerd-cri), btrfs, devmapper
# and zfs plugins are left out.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$repo/_output/bin}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$repo"

module=github.com/containerd/containerd/v2
version="$(go list -m -f '{{.Version}}' "$module")"
tags=no_cri,no_btrfs,no_devmapper,no_zfs
stamp="$out/.containerd-version"
want="$version tags=$tags"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# install_bins NAME...: moves the binaries built in $tmp/bin into $out, each first copied beside
# its target under a temporary name and then renamed over it, so a test running the old binary
# from a shared $out keeps it and nobody sees half a file.
install_bins() {
	for b in "$@"; do
		cp "$tmp/bin/$b" "$out/.$b.tmp.$$"
		mv -f "$out/.$b.tmp.$$" "$out/$b"
	done
}
printf 'module kiln.local/containerd-build\n\ngo %s\n\nrequire %s %s\n' \
	"$(go env GOVERSION | sed 's/^go//')" "$module" "$version" >"$tmp/go.mod"

if [ -x "$out/containerd" ] && [ -x "$out/containerd-shim-runc-v2" ] && [ -x "$out/ctr" ] &&
	[ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
	echo "build-containerd: containerd $version already in $out"
else
	echo "build-containerd: building containerd $version into $out"
	(
		cd "$tmp"
		GOFLAGS="${GOFLAGS:-} -mod=mod" CGO_ENABLED=0 go build -trimpath -tags "$tags" \
			-ldflags "-X $module/version.Version=$version" -o "$tmp/bin/" \
			"$module/cmd/containerd" "$module/cmd/containerd-shim-runc-v2" "$module/cmd/ctr"
	)
	install_bins containerd containerd-shim-runc-v2 ctr
	echo "$want" >"$stamp"
	"$out/containerd" --version
fi

cri_tags=no_btrfs,no_devmapper,no_zfs
cri_stamp="$out/.containerd-cri-version"
cri_want="$version tags=$cri_tags"
if [ -x "$out/containerd-cri" ] && [ "$(cat "$cri_stamp" 2>/dev/null)" = "$cri_want" ]; then
	echo "build-containerd: containerd-cri $version already in $out"
	exit 0
fi
echo "build-containerd: building containerd-cri $version (with the CRI plugin) into $out"
(
	cd "$tmp"
	GOFLAGS="${GOFLAGS:-} -mod=mod" CGO_ENABLED=0 go build -trimpath -tags "$cri_tags" \
		-ldflags "-X $module/version.Version=$version" -o "$tmp/bin/containerd-cri" \
		"$module/cmd/containerd"
)
install_bins containerd-cri
echo "$cri_want" >"$cri_stamp"
