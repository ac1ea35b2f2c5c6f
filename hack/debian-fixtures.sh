#!/usr/bin/env bash
# Makes Debian bookworm root filesystems (mmdebstrap --variant=minbase) for the real-world tests
# (integration/realworld_test.go), which import them as a two-platform debian:bookworm.
# Usage: hack/debian-fixtures.sh [OUTDIR]   (default _output/fixtures)
#
# OUTDIR/debian/rootfs-amd64.tar   Debian bookworm minbase, amd64
# OUTDIR/debian/rootfs-arm64.tar   the same for arm64 (its maintainer scripts run under QEMU)
# OUTDIR/debian/sources.list       the apt sources both use (also /etc/apt/sources.list inside)
# OUTDIR/debian/.stamp             written last: with it the tarballs are complete and reused
#
# The tarballs are made once per machine (about 2 and 5 minutes); later runs reuse them.
#
# Mirror: the Debian mirror the host's apt uses (/etc/apt/sources.list and sources.list.d, one-line
# or deb822), so RUN apt-get in builds from these images reaches Debian as the host does. Set
# DEBIAN_MIRROR (and DEBIAN_SECURITY_MIRROR, or "none") to use others.
#
# arm64: the aarch64 binfmt_misc handler must stay registered for the whole run. When the host has
# none, this script registers the one of /usr/lib/binfmt.d/qemu-aarch64.conf (qemu-user-static)
# and removes it at exit; a handler the host had is never touched. Tests that remove handlers must
# not run meanwhile (`make test` runs this script before them; by hand, take the same lock as the
# integration tests: flock /tmp/kiln-integration.lock hack/debian-fixtures.sh).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$repo/_output/fixtures}"
mkdir -p "$out/debian"
out="$(cd "$out" && pwd)/debian"

suite=bookworm
arches=(amd64 arm64)
# Fixed, so two runs against the same mirror content give the same tarballs (mmdebstrap clamps
# file times to it and sorts the tar); 2024-01-01.
export SOURCE_DATE_EPOCH=1704067200

# mirror_uris KIND prints the URIs of the host's apt sources of type deb whose suites include a
# name ending in -security (KIND=security) or not (KIND=archive), first ones first.
mirror_uris() {
	local kind="$1" f
	{
		for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
			[ -f "$f" ] || continue
			# deb [options] URI SUITE COMPONENT...
			sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk '$1 == "deb" && NF >= 3 { print $2, $3 }'
		done
		for f in /etc/apt/sources.list.d/*.sources; do
			[ -f "$f" ] || continue
			# deb822 paragraphs: Types, URIs and Suites fields; "Enabled: no" turns one off.
			awk '
				function flush() {
					if (types ~ /(^| )deb( |$)/ && enabled != "no")
						for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) print u[i], s[j]
					types = ""; enabled = ""; nu = 0; ns = 0
				}
				/^[ \t]*#/ { next }
				/^[ \t]*$/ { flush(); next }
				tolower($1) == "types:" { $1 = ""; types = $0 }
				tolower($1) == "enabled:" { enabled = tolower($2) }
				tolower($1) == "uris:" { nu = split(substr($0, index($0, ":") + 1), u, " ") }
				tolower($1) == "suites:" { ns = split(substr($0, index($0, ":") + 1), s, " ") }
				END { flush() }
			' "$f"
		done
	} | awk -v kind="$kind" '
		# Only Debian archives: a URI whose path ends in /debian or /debian-security
		# (deb.debian.org, mirrors, snapshot.debian.org/archive/debian/DATE, proxies).
		{ sec = ($2 ~ /-security$/) }
		kind == "security" && sec && $1 ~ /\/debian-security\/?$|\/debian-security\/[0-9TZ]+\/?$/ { print $1 }
		kind == "archive" && !sec && $1 ~ /\/debian\/?$|\/debian\/[0-9TZ]+\/?$/ { print $1 }
	' | awk '!seen[$0]++'
}

mirror="${DEBIAN_MIRROR:-$(mirror_uris archive | head -n1)}"
security="${DEBIAN_SECURITY_MIRROR:-$(mirror_uris security | head -n1)}"
if [ -z "$mirror" ]; then
	echo "debian-fixtures: no Debian mirror in /etc/apt/sources.list{,.d}; set DEBIAN_MIRROR to one (and DEBIAN_SECURITY_MIRROR)" >&2
	exit 1
fi
sources="deb ${mirror%/} $suite main
deb ${mirror%/} $suite-updates main"
if [ -n "$security" ] && [ "$security" != none ]; then
	sources+="
deb ${security%/} $suite-security main"
fi

# One stamp per tarball (a run that fails for arm64 keeps amd64's), and .stamp once both are done.
stamp="$out/.stamp"
want="v1 $suite minbase epoch=$SOURCE_DATE_EPOCH"
uptodate() { [ "$(cat "$out/.stamp-$1" 2>/dev/null)" = "$want" ] && [ -s "$out/rootfs-$1.tar" ]; }
todo=()
for a in "${arches[@]}"; do uptodate "$a" || todo+=("$a"); done
if [ "${#todo[@]}" -eq 0 ]; then
	echo "$want ${arches[*]}" >"$stamp"
	echo "debian-fixtures: up to date in $out"
	exit 0
fi
rm -f "$stamp"

for tool in mmdebstrap arch-test; do
	if ! command -v "$tool" >/dev/null; then
		echo "debian-fixtures: $tool is missing: run hack/install-deps.sh (Debian package $tool)" >&2
		exit 1
	fi
done
if [ "$(id -u)" -ne 0 ]; then
	echo "debian-fixtures: run as root (mmdebstrap's root mode; the aarch64 binfmt_misc handler)" >&2
	exit 1
fi

# The aarch64 handler for arm64's maintainer scripts, for the whole run. Another process may
# remove handlers meanwhile (kiln's emulation tests do): a
# watchdog puts Debian's back within half a second, and a failed arm64 run is tried again.
binfmt=/proc/sys/fs/binfmt_misc
conf=/usr/lib/binfmt.d/qemu-aarch64.conf
# The handler name this script (or its watchdog) registered, removed at exit if still Debian's.
registered="$(mktemp)"
watchdog=""
cleanup() {
	[ -z "$watchdog" ] || kill "$watchdog" 2>/dev/null || true
	local name
	name="$(cat "$registered")"
	rm -f "$registered"
	if [ -n "$name" ] && grep -qsx "interpreter $(cut -d: -f7 "$conf")" "$binfmt/$name"; then
		echo -1 >"$binfmt/$name" 2>/dev/null || true
		echo "debian-fixtures: removed the $name handler it registered"
	fi
}
trap cleanup EXIT
# has_aarch64_handler: an enabled handler whose magic is an aarch64 ELF header's (whatever its name:
# qemu-aarch64 from Debian or kiln, or another tool's).
has_aarch64_handler() {
	local f
	for f in "$binfmt"/*; do
		case "${f##*/}" in register | status) continue ;; esac
		[ "$(head -n1 "$f" 2>/dev/null)" = enabled ] || continue
		grep -q '^magic 7f454c460201010000000000000000000200b700' "$f" 2>/dev/null && return 0
	done
	return 1
}
# ensure_aarch64_handler registers Debian's handler when no enabled one exists.
ensure_aarch64_handler() {
	has_aarch64_handler && return 0
	local name
	name="$(cut -d: -f2 "$conf")"
	if [ -e "$binfmt/$name" ]; then
		echo "debian-fixtures: a disabled $name handler is registered; enable it (echo 1 >$binfmt/$name)" >&2
		return 1
	fi
	cat "$conf" >"$binfmt/register" || return 1
	echo "$name" >"$registered"
	echo "debian-fixtures: registered the $name handler from $conf"
}
if [ "$(uname -m)" != aarch64 ]; then
	mountpoint -q "$binfmt" || mount -t binfmt_misc binfmt_misc "$binfmt"
	if [ ! -f "$conf" ] && ! has_aarch64_handler; then
		echo "debian-fixtures: no aarch64 binfmt_misc handler and no $conf: install qemu-user-static" >&2
		exit 1
	fi
	ensure_aarch64_handler
	if [ -f "$conf" ]; then
		(while sleep 0.5; do ensure_aarch64_handler >/dev/null 2>&1 || true; done) &
		watchdog=$!
	fi
fi

echo "debian-fixtures: apt sources:"
sed 's/^/  /' <<<"$sources"
printf '%s\n' "$sources" >"$out/sources.list"
readarray -t mirrors <<<"$sources"

# bootstrap ARCH: one tarball, its log in $out/mmdebstrap-ARCH.log. The mirror lines are
# arguments: they become the chroot's /etc/apt/sources.list. The host's resolv.conf and hostname,
# which mmdebstrap copies in, are removed: they belong to this host, not to the image.
bootstrap() {
	local a="$1" start=$SECONDS try
	for try in 1 2; do
		rm -f "$out/rootfs-$a.tar.tmp"
		if mmdebstrap --variant=minbase --architectures="$a" --format=tar \
			--customize-hook='rm -f "$1/etc/resolv.conf" "$1/etc/hostname"' \
			"$suite" "$out/rootfs-$a.tar.tmp" "${mirrors[@]}" >"$out/mmdebstrap-$a.log" 2>&1; then
			break
		fi
		echo "debian-fixtures: mmdebstrap for $a failed (try $try); the end of $out/mmdebstrap-$a.log:" >&2
		grep -v '^ ' "$out/mmdebstrap-$a.log" | tail -n 20 >&2
		[ "$try" -lt 2 ] || return 1
	done
	mv "$out/rootfs-$a.tar.tmp" "$out/rootfs-$a.tar"
	echo "$want" >"$out/.stamp-$a"
	echo "debian-fixtures: rootfs-$a.tar ($(du -m "$out/rootfs-$a.tar" | cut -f1) MB) in $((SECONDS - start))s"
}

# Both at once: amd64 waits on the network and dpkg's disk writes, arm64 mostly on QEMU's CPU.
start=$SECONDS
pids=()
for a in "${todo[@]}"; do
	echo "debian-fixtures: mmdebstrap --variant=minbase --architectures=$a $suite"
	bootstrap "$a" &
	pids+=($!)
done
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=1; done
[ "$failed" -eq 0 ] || exit 1
echo "debian-fixtures: ${todo[*]} in $((SECONDS - start))s"

echo "$want ${arches[*]}" >"$stamp"
echo "debian-fixtures: ready in $out"
