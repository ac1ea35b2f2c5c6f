#!/usr/bin/env bash
# Starts a rootless containerd for the current, unprivileged user with RootlessKit from the
# distribution's packages (Debian/Ubuntu: rootlesskit, slirp4netns, uidmap), laid out as nerdctl's
# containerd-rootless.sh lays it out, so that kiln, nerdctl and ctr find it:
#   - RootlessKit creates a user namespace (you are root in it, your subordinate ids are the rest),
#     a mount namespace and, with slirp4netns, a network namespace; its state (child_pid, api.sock)
#     is in $XDG_RUNTIME_DIR/containerd-rootless;
#   - inside, /etc, /run and /var/lib are copied up (tmpfs with links to the originals) and
#     $XDG_RUNTIME_DIR/containerd, $XDG_DATA_HOME/containerd and $XDG_CONFIG_HOME/containerd are
#     bind-mounted over /run/containerd, /var/lib/containerd and /etc/containerd;
#   - containerd runs there with its default configuration (or $XDG_CONFIG_HOME/containerd/config.toml),
#     so its socket is $XDG_RUNTIME_DIR/containerd/containerd.sock outside the namespaces.
#
# Usage (as the unprivileged user, never as root):
#   hack/rootless-containerd.sh check    check the prerequisites and say what to fix
#   hack/rootless-containerd.sh start    start it in the background and wait until it answers
#   hack/rootless-containerd.sh run      run it in the foreground (e.g. from a systemd user unit)
#   hack/rootless-containerd.sh status   say whether it runs
#   hack/rootless-containerd.sh stop     stop it, with the shims of its containers
# `make rootless-containerd` runs "start".
#
# Environment:
#   CONTAINERD_BIN_DIR   directory with containerd and containerd-shim-runc-v2 (default: PATH, then
#                        this repository's _output/bin from hack/build-containerd.sh)
#   KILN_ROOTLESS_NET    slirp4netns or host (default: slirp4netns when you can open /dev/net/tun,
#                        otherwise the host's network)
#   XDG_RUNTIME_DIR      default /run/user/$UID; XDG_DATA_HOME, XDG_CONFIG_HOME as usual
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
self="$here/$(basename "$0")"
repo="$(dirname "$here")"

die() {
	echo "rootless-containerd: $*" >&2
	exit 1
}
say() { echo "rootless-containerd: $*"; }

# --- inside RootlessKit: set up the mounts and become containerd -------------------------------
if [ "${_KILN_ROOTLESS_CONTAINERD_CHILD:-}" = 1 ]; then
	unset _KILN_ROOTLESS_CONTAINERD_CHILD
	# The copied-up directories hold links to the host's files; replace ours by directories.
	rm -f /run/containerd /var/lib/containerd /etc/containerd
	for pair in "$XDG_RUNTIME_DIR/containerd:/run/containerd" \
		"$XDG_DATA_HOME/containerd:/var/lib/containerd" \
		"$XDG_CONFIG_HOME/containerd:/etc/containerd"; do
		src="${pair%%:*}" dst="${pair#*:}"
		mkdir -p "$src" "$dst"
		mount --bind "$src" "$dst"
	done
	exec containerd "$@"
fi

# --- outside: checks, then RootlessKit --------------------------------------------------------
[ "$(id -u)" != 0 ] || die "run this as the unprivileged user who will use the rootless containerd, not as root"

user="$(id -un)"
uid="$(id -u)"
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
	XDG_RUNTIME_DIR="/run/user/$uid"
fi
export XDG_RUNTIME_DIR
export XDG_DATA_HOME="${XDG_DATA_HOME:-$HOME/.local/share}"
export XDG_CONFIG_HOME="${XDG_CONFIG_HOME:-$HOME/.config}"
state="$XDG_RUNTIME_DIR/containerd-rootless"
log="$XDG_RUNTIME_DIR/containerd-rootless.log"
pidfile="$XDG_RUNTIME_DIR/containerd-rootless.pid"
sock="$XDG_RUNTIME_DIR/containerd/containerd.sock"

# runc lives in /usr/sbin, which is not in an ordinary user's PATH on Debian.
PATH="${CONTAINERD_BIN_DIR:+$CONTAINERD_BIN_DIR:}$PATH:/usr/local/sbin:/usr/sbin:/sbin"
if ! command -v containerd >/dev/null && [ -x "$repo/_output/bin/containerd" ]; then
	PATH="$repo/_output/bin:$PATH"
fi
export PATH

# check prints one line per missing prerequisite and returns non-zero if there was any.
check() {
	local bad=0 p f kind total next sysctl_val rk profile
	if [ ! -d "$XDG_RUNTIME_DIR" ] || [ ! -w "$XDG_RUNTIME_DIR" ]; then
		echo "- $XDG_RUNTIME_DIR does not exist or is not writable: log in through a login manager (systemd-logind creates it), or as root run \"install -d -m 700 -o $user -g $(id -gn) $XDG_RUNTIME_DIR\" and export XDG_RUNTIME_DIR=$XDG_RUNTIME_DIR"
		bad=1
	fi
	for p in rootlesskit:rootlesskit newuidmap:uidmap newgidmap:uidmap nsenter:util-linux runc:runc; do
		if ! command -v "${p%%:*}" >/dev/null; then
			echo "- ${p%%:*} is missing: install the ${p#*:} package"
			bad=1
		fi
	done
	for p in containerd containerd-shim-runc-v2; do
		if ! command -v "$p" >/dev/null; then
			echo "- $p is missing: install containerd, build it with hack/build-containerd.sh, or set CONTAINERD_BIN_DIR"
			bad=1
		fi
	done
	# Subordinate ids: RootlessKit maps them through newuidmap/newgidmap; images need 65536.
	next=100000
	for f in /etc/subuid /etc/subgid; do
		[ -r "$f" ] || continue
		while IFS=: read -r _ start count; do
			case "$start$count" in '' | *[!0-9]*) continue ;; esac
			[ $((start + count)) -le "$next" ] || next=$((start + count))
		done <"$f"
	done
	for kind in uid gid; do
		f="/etc/sub$kind"
		total=0
		if [ -r "$f" ]; then
			total=$(awk -F: -v u="$user" -v n="$uid" '$1 == u || $1 == n { s += $3 } END { print s + 0 }' "$f")
		fi
		if [ "$total" -lt 65536 ]; then
			echo "- $f gives $user $total subordinate ${kind}s, and images need 65536: as root, run \"usermod --add-subuids $next-$((next + 65535)) --add-subgids $next-$((next + 65535)) $user\""
			bad=1
		fi
	done
	if [ "$(cat /proc/sys/user/max_user_namespaces 2>/dev/null)" = 0 ]; then
		echo "- user namespaces are disabled (sysctl user.max_user_namespaces = 0): as root, run \"sysctl -w user.max_user_namespaces=28633\" and set it in /etc/sysctl.d/"
		bad=1
	fi
	if [ "$(cat /proc/sys/kernel/unprivileged_userns_clone 2>/dev/null)" = 0 ]; then
		echo "- unprivileged user namespaces are disabled (sysctl kernel.unprivileged_userns_clone = 0): as root, run \"sysctl -w kernel.unprivileged_userns_clone=1\" and set it in /etc/sysctl.d/"
		bad=1
	fi
	if [ "$(cat /proc/sys/kernel/apparmor_restrict_unprivileged_userns 2>/dev/null)" = 1 ]; then
		rk="$(command -v rootlesskit || echo /usr/bin/rootlesskit)"
		profile="/etc/apparmor.d/$(echo "${rk#/}" | tr / .)"
		if [ ! -e "$profile" ] && [ ! -e /etc/apparmor.d/rootlesskit ]; then
			echo "- AppArmor restricts unprivileged user namespaces (sysctl kernel.apparmor_restrict_unprivileged_userns = 1) and has no profile for $rk: as root, write $profile containing"
			echo "    abi <abi/4.0>, include <tunables/global> \"$rk\" flags=(unconfined) { userns, }"
			echo "  and load it with \"apparmor_parser -r $profile\""
			bad=1
		fi
	fi
	return $bad
}

# child_pid prints RootlessKit's child pid when it runs, for this user.
child_pid() {
	local pid
	pid="$(cat "$state/child_pid" 2>/dev/null)" || return 1
	[ -n "$pid" ] && [ -r "/proc/$pid/ns/user" ] &&
		[ "$(readlink "/proc/$pid/ns/user")" != "$(readlink /proc/self/ns/user)" ] && echo "$pid"
}

choose_net() {
	case "${KILN_ROOTLESS_NET:-}" in
	host) echo host ;;
	slirp4netns)
		command -v slirp4netns >/dev/null || die "KILN_ROOTLESS_NET=slirp4netns but slirp4netns is missing: install the slirp4netns package"
		{ : <>/dev/net/tun; } 2>/dev/null || die "KILN_ROOTLESS_NET=slirp4netns but you cannot open /dev/net/tun ($(stat -c %a /dev/net/tun 2>/dev/null || echo missing)): as root, \"chmod 666 /dev/net/tun\", or use KILN_ROOTLESS_NET=host"
		echo slirp4netns
		;;
	'')
		if command -v slirp4netns >/dev/null && { : <>/dev/net/tun; } 2>/dev/null; then
			echo slirp4netns
		else
			echo host
		fi
		;;
	*) die "KILN_ROOTLESS_NET=$KILN_ROOTLESS_NET: use slirp4netns or host" ;;
	esac
}

# rootlesskit_cmd sets the array cmd to the RootlessKit command line.
rootlesskit_cmd() {
	local net
	net="$(choose_net)"
	cmd=(rootlesskit --state-dir="$state" --net="$net" --copy-up=/etc --copy-up=/run --copy-up=/var/lib --propagation=rslave)
	if [ "$net" = slirp4netns ]; then
		cmd+=(--mtu=65520 --disable-host-loopback --port-driver=builtin)
	else
		say "network: the host's (no slirp4netns, or /dev/net/tun is not usable by $user)"
	fi
	cmd+=(env _KILN_ROOTLESS_CONTAINERD_CHILD=1 "$self" "$@")
}

start() {
	local pid i
	if pid="$(child_pid)"; then
		say "already running (RootlessKit child pid $pid); socket $sock"
		return 0
	fi
	check >&2 || die "fix the above first"
	rm -rf "$state"
	rootlesskit_cmd "$@"
	say "starting: ${cmd[*]}"
	setsid "${cmd[@]}" >"$log" 2>&1 </dev/null &
	echo $! >"$pidfile"
	for i in $(seq 1 300); do
		if [ -S "$sock" ] && child_pid >/dev/null; then
			if ! command -v ctr >/dev/null || ctr -a "$sock" version >/dev/null 2>&1; then
				say "running: RootlessKit pid $(cat "$pidfile"), child pid $(child_pid), socket $sock, log $log"
				say "kiln, nerdctl and ctr use it as $user: kiln build -t app .  /  ctr -a $sock images ls"
				return 0
			fi
		fi
		if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
			tail -n 30 "$log" >&2 || true
			die "RootlessKit exited during start-up (log above, in $log)"
		fi
		sleep 0.1
	done
	tail -n 30 "$log" >&2 || true
	die "containerd did not answer at $sock within 30s (log above, in $log)"
}

stop() {
	local pid child userns p
	pid="$(cat "$pidfile" 2>/dev/null)" || true
	child="$(child_pid)" || true
	if [ -z "$pid" ] && [ -z "$child" ]; then
		say "not running"
		return 0
	fi
	userns=""
	[ -z "$child" ] || userns="$(readlink "/proc/$child/ns/user")"
	[ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 150); do
		{ [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; } || break
		sleep 0.1
	done
	[ -z "$pid" ] || kill -KILL "$pid" 2>/dev/null || true
	# Shims outlive containerd; those of its containers are in RootlessKit's user namespace.
	if [ -n "$userns" ]; then
		for p in /proc/[0-9]*; do
			[ "$(readlink "$p/ns/user" 2>/dev/null)" = "$userns" ] && kill -KILL "${p#/proc/}" 2>/dev/null || true
		done
	fi
	rm -f "$pidfile"
	say "stopped"
}

case "${1:-}" in
check)
	if check; then say "all prerequisites are there"; else exit 1; fi
	;;
start)
	shift
	start "$@"
	;;
run)
	shift
	check >&2 || die "fix the above first"
	rootlesskit_cmd "$@"
	exec "${cmd[@]}"
	;;
status)
	if pid="$(child_pid)"; then
		say "running: RootlessKit child pid $pid, socket $sock"
	else
		say "not running"
		exit 1
	fi
	;;
stop) stop ;;
*)
	sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
	exit 2
	;;
esac
