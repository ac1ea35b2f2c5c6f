#!/usr/bin/env bash
# Builds the busybox test fixtures from Debian's busybox-static packages, without touching
# the host's apt state.  Usage: hack/fixtures.sh [OUTDIR]   (default _output/fixtures)
#
# OUTDIR/busybox-<debarch>            the static binaries (amd64, arm64, armhf, armel)
# OUTDIR/rootfs/<TARGETARCH>/         a minimal rootfs per platform: bin/busybox, applet
#                                     symlinks, etc/passwd, etc/group, tmp, root, proc, sys, dev
# The rootfs dirs are named after BuildKit's TARGETARCH (amd64, arm64, arm; armhf is arm with
# TARGETVARIANT v7), so a context holding rootfs/ builds a multi-platform base with:
#   FROM scratch
#   ARG TARGETARCH
#   COPY rootfs/${TARGETARCH}/ /
# rootfs/armel/ is linux/arm/v6 (Raspberry Pi Zero and 1): Debian's armel runs on ARMv5TE and
# newer, armhf needs ARMv7. A Dockerfile for linux/arm/v6 copies rootfs/armel/.
# A busybox binary already in OUTDIR is not fetched again, and a rootfs dir already as it should
# be is left alone; what is new or changed is made under a temporary name and renamed into place,
# so tests reading a shared OUTDIR never see half a fixture.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$repo/_output/fixtures}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$repo"

# debarch:TARGETARCH
arches=(amd64:amd64 arm64:arm64 armhf:arm armel:armel)
applets=(sh uname cat echo ls sleep true false env id stat sha256sum md5sum dd head tail wc mkdir
	rm touch chmod chown grep sed printf test '[' cp mv ln find tar gzip seq yes whoami hostname
	date sort uniq tr cut xargs wget nc vi awk expr basename dirname readlink realpath du df
	mount ps kill pwd which tee)
stamp="$out/.stamp"
want="v1 ${arches[*]} ${applets[*]}"
uptodate() {
	[ "$(cat "$stamp" 2>/dev/null)" = "$want" ] || return 1
	for pair in "${arches[@]}"; do
		[ -x "$out/busybox-${pair%%:*}" ] && [ -x "$out/rootfs/${pair##*:}/bin/busybox" ] || return 1
	done
}
if uptodate; then
	echo "fixtures: up to date in $out"
	exit 0
fi
rm -f "$stamp"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# make_rootfs DEBARCH DIR: the minimal rootfs of busybox-DEBARCH in rootfs/DIR, made beside it
# and renamed into place unless rootfs/DIR already holds the same.
make_rootfs() {
	local deb="$1" final="$out/rootfs/$2" root="$out/rootfs/.$2.tmp.$$"
	rm -rf "$root"
	mkdir -p "$root/bin" "$root/etc" "$root/root" "$root/proc" "$root/sys" "$root/dev" "$root/tmp"
	chmod 1777 "$root/tmp"
	chmod 0700 "$root/root"
	install -m 0755 "$out/busybox-$deb" "$root/bin/busybox"
	for a in "${applets[@]}"; do ln -s busybox "$root/bin/$a"; done
	printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$root/etc/passwd"
	printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$root/etc/group"
	if [ -d "$final" ] && diff -r --no-dereference "$final" "$root" >/dev/null 2>&1; then
		rm -rf "$root"
		return
	fi
	if [ -e "$final" ]; then
		mv -T "$final" "$final.old.$$"
	fi
	mv -T "$root" "$final"
	rm -rf "$final.old.$$"
}

for pair in "${arches[@]}"; do
	deb="${pair%%:*}" dir="${pair##*:}"
	if [ -x "$out/busybox-$deb" ]; then
		echo "fixtures: busybox-static:$deb already in $out"
		make_rootfs "$deb" "$dir"
		continue
	fi
	state="/tmp/kiln-apt-$deb"
	opts=(-q -oAPT::Architecture="$deb" -oAPT::Architectures="$deb"
		-oDir::State::Lists="$state/lists" -oDir::Cache="$state/cache"
		-oDir::State::Status=/dev/null -oDebug::NoLocking=1)
	[ "$(id -u)" -ne 0 ] || opts+=(-oAPT::Sandbox::User=root)
	mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$tmp/$deb"
	echo "fixtures: fetching busybox-static:$deb"
	# A failing extra repository (mirror sync, security suite) must not stop us: retry the
	# update, then let the download decide whether busybox-static is known.
	for try in 1 2 3; do
		if apt-get "${opts[@]}" update >"$tmp/apt-$deb.log" 2>&1; then break; fi
		echo "fixtures: apt-get update for $deb failed (try $try):" >&2
		grep -E '^(E|W):' "$tmp/apt-$deb.log" >&2 || true
		sleep "$try"
	done
	(cd "$tmp/$deb" && apt-get "${opts[@]}" download busybox-static:"$deb")
	dpkg -x "$tmp/$deb"/busybox-static_*.deb "$tmp/$deb/x"
	install -m 0755 "$tmp/$deb/x/bin/busybox" "$out/.busybox-$deb.tmp.$$"
	mv -f "$out/.busybox-$deb.tmp.$$" "$out/busybox-$deb"
	make_rootfs "$deb" "$dir"
done

echo "$want" >"$stamp"
echo "fixtures: ready in $out"

