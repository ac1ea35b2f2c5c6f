#!/usr/bin/env bash
# Fetches Debian's amd64 kernel for integration/cgroupv2_test.go, which boots it under QEMU to test
# build budgets on cgroup v2 (this kind of host runs cgroup v1). Only the package is downloaded and
# unpacked here: nothing is installed on the host.
# Usage: hack/vm-kernel.sh [OUTDIR]   (default _output/fixtures)
#
# OUTDIR/vm/vmlinuz      the kernel
# OUTDIR/vm/overlay.ko   its overlayfs module
# OUTDIR/vm/.stamp       written last, naming the package: with it the files are complete and reused
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$repo/_output/fixtures}/vm"

if [ "$(uname -m)" != x86_64 ]; then
	echo "vm-kernel: skipped on $(uname -m): the cgroup v2 test boots an amd64 kernel"
	exit 0
fi
if [ -f "$out/.stamp" ] && [ -f "$out/vmlinuz" ] && [ -f "$out/overlay.ko" ]; then
	echo "vm-kernel: $(cat "$out/.stamp") already in $out"
	exit 0
fi

# linux-image-amd64 depends on the current kernel package, e.g. linux-image-6.1.0-57-amd64.
pkg="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
if [ -z "$pkg" ]; then
	echo "vm-kernel: apt knows no linux-image-amd64: run apt-get update first" >&2
	exit 1
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp" # apt downloads as _apt
(cd "$tmp" && apt-get download "$pkg" >/dev/null)
dpkg-deb -x "$tmp"/"$pkg"_*.deb "$tmp/x"
mkdir -p "$out"
rm -f "$out/.stamp"
cp "$tmp"/x/boot/vmlinuz-* "$out/vmlinuz"
module="$(find "$tmp/x/lib/modules" -name 'overlay.ko*' | head -n1)"
case "$module" in
*.xz) xz -dc "$module" >"$out/overlay.ko" ;;
*.zst) zstd -dc "$module" >"$out/overlay.ko" ;;
*) cp "$module" "$out/overlay.ko" ;;
esac
echo "$pkg" >"$out/.stamp"
echo "vm-kernel: $pkg in $out"
