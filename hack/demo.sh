#!/usr/bin/env bash
# The newcomer's tour: build a two-platform image with kiln into containerd and run both halves.
# Uses the containerd at /run/containerd/containerd.sock when it answers; otherwise starts a
# private one (from hack/build-containerd.sh) under /tmp/kiln-demo and stops it at the end.
# Run it through `make demo`, which builds kiln, containerd and the busybox fixtures first.
set -euo pipefail

cd "$(dirname "$0")/.."
kiln="$PWD/bin/kiln"
tools="$PWD/_output/bin"
fixtures="$PWD/_output/fixtures"
ctr="$tools/ctr"
command -v "$ctr" >/dev/null || ctr=ctr
base=/tmp/kiln-demo
sock=/run/containerd/containerd.sock
kiln_args=()
pid=

stop() {
	[ -n "$pid" ] || return 0
	echo "demo: stopping the private containerd"
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	# Detach anything containerd left mounted under its directory, deepest first.
	awk -v b="$base/" 'index($5, b) == 1 {print $5}' /proc/self/mountinfo | sort -r |
		while read -r m; do umount -l "$m" || true; done
}

if [ -S "$sock" ] && "$ctr" -a "$sock" version >/dev/null 2>&1; then
	echo "demo: using the containerd at $sock"
else
	sock="$base/containerd.sock"
	echo "demo: no containerd at /run/containerd/containerd.sock; starting a private one at $sock"
	mkdir -p "$base"
	cat >"$base/config.toml" <<-TOML
		version = 3
		root = "$base/root"
		state = "$base/state"
		disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.podsandbox.controller.v1.podsandbox", "io.containerd.nri.v1.nri"]
		[grpc]
		  address = "$sock"
		[ttrpc]
		  address = "$sock.ttrpc"
		[plugins.'io.containerd.internal.v1.opt']
		  path = "$base/opt"
	TOML
	PATH="$tools:$PATH" "$tools/containerd" --config "$base/config.toml" >"$base/containerd.log" 2>&1 &
	pid=$!
	trap stop EXIT
	for _ in $(seq 100); do
		"$ctr" -a "$sock" version >/dev/null 2>&1 && break
		kill -0 "$pid" 2>/dev/null || { tail -20 "$base/containerd.log"; exit 1; }
		sleep 0.1
	done
	"$ctr" -a "$sock" version >/dev/null || { tail -20 "$base/containerd.log"; exit 1; }
	kiln_args=(--root "$base/kiln")
fi

run() { echo "+ ${*/#quiet_ctr/ctr -a $sock}"; "$@"; }
# ctr repeats containerd's deprecation warnings (cgroup v1, ...) on every call: hide them.
quiet_ctr() { "$ctr" -a "$sock" "$@" 2> >(grep -v 'msg="DEPRECATION' >&2); }

# The base image: busybox from Debian's packages, one rootfs per architecture.
if ! quiet_ctr images ls -q | grep -qx docker.io/library/busybox:latest; then
	ctx="$base/busybox-context"
	rm -rf "$ctx" && mkdir -p "$ctx"
	cp -a "$fixtures/rootfs" "$ctx/"
	# shellcheck disable=SC2016 # ${TARGETARCH} is for the Dockerfile
	printf '%s\n' 'FROM scratch' 'ARG TARGETARCH' 'COPY rootfs/${TARGETARCH}/ /' 'CMD ["sh"]' >"$ctx/Dockerfile"
	run "$kiln" --address "$sock" "${kiln_args[@]}" build --platform linux/amd64,linux/arm64 -t busybox:latest "$ctx"
fi

run "$kiln" --address "$sock" "${kiln_args[@]}" build --platform linux/amd64,linux/arm64 -t hello examples/hello

# ctr run needs a host binfmt_misc handler for arm64 (kiln registers one when it builds as root).
if ! grep -qs aarch64 /proc/sys/fs/binfmt_misc/*; then
	run "$kiln" emulation install linux/arm64 || true
fi
for arch in amd64 arm64; do
	"$ctr" -a "$sock" containers rm "demo-$arch" >/dev/null 2>&1 || true
	run quiet_ctr run --rm --platform "linux/$arch" docker.io/library/hello:latest "demo-$arch"
done
echo "demo: done"
