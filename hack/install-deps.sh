#!/usr/bin/env bash
# Installs the Debian packages that kiln's tests and demo need, and mounts binfmt_misc.
# Idempotent: apt is skipped when every package is already installed.
set -euo pipefail

packages=(
	runc qemu-user-static binfmt-support docker-registry uidmap rootlesskit slirp4netns
	fuse-overlayfs skopeo ca-certificates make git openssh-client openssh-server
	mmdebstrap arch-test # hack/debian-fixtures.sh: the Debian bookworm base of the real-world tests
	qemu-system-x86      # integration/cgroupv2_test.go boots a cgroup v2 kernel (hack/vm-kernel.sh)
)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed; then
		missing+=("$p")
	fi
done

if [ "$(id -u)" -ne 0 ]; then
	if [ "${#missing[@]}" -gt 0 ]; then
		echo "install-deps: missing packages: ${missing[*]}" >&2
		echo "install-deps: run as root: apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
		exit 1
	fi
	if ! mountpoint -q /proc/sys/fs/binfmt_misc; then
		echo "install-deps: binfmt_misc is not mounted; as root run: mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc" >&2
	fi
	exit 0
fi

if [ "${#missing[@]}" -gt 0 ]; then
	echo "install-deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# A failing extra repository must not stop us; the install says if a package is really missing.
	apt-get update || echo "install-deps: apt-get update reported errors; trying the install anyway" >&2
	apt-get install -y --no-install-recommends "${missing[@]}"
else
	echo "install-deps: all packages present"
fi

if ! mountpoint -q /proc/sys/fs/binfmt_misc; then
	mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
	echo "install-deps: mounted binfmt_misc"
fi
