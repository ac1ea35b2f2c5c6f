#!/bin/sh
# The second stage of the cgroup v2 VM's init (integration/cgroupv2_test.go): mounts what kiln and
# runc need, then builds within and over a --memory budget as root and as the unprivileged alice
# (uid 1000) in cgroups delegated to her, and powers off. Each scenario's output is framed by
# "KILN-VM-BEGIN name" and "KILN-VM-END name rc=N" lines on the console.
# busybox prefers its own applets to programs in PATH: the real ones are named by path.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs shm /dev/shm
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs -o mode=1777 tmp /tmp
mount -t tmpfs run /run
insmod /overlay.ko
echo 1 >/proc/sys/kernel/unprivileged_userns_clone 2>/dev/null
echo "+memory +cpu" >/sys/fs/cgroup/cgroup.subtree_control
chown -R 1000:1000 /home/alice

scenario() {
	name=$1
	shift
	echo "KILN-VM-BEGIN $name"
	"$@" 2>&1
	echo "KILN-VM-END $name rc=$?"
}
# as_alice CGROUP ARGS: kiln as alice, started in CGROUP (as an administrator's session would be);
# with "+sleep", beside another process of hers.
as_alice() {
	cg=$1
	shift
	/bin/sh -c 'echo $$ >"$0"/cgroup.procs && exec /usr/bin/setpriv --reuid 1000 --regid 1000 --clear-groups /bin/env HOME=/home/alice USER=alice /usr/bin/kiln "$@"' "$cg" "$@"
}
as_alice_beside() {
	cg=$1
	shift
	# The sleep starts after the shell joined CG, from a subshell that ends: in CG, not kiln's child.
	/bin/sh -c 'echo $$ >"$0"/cgroup.procs && (/usr/bin/setpriv --reuid 1000 --regid 1000 --clear-groups /bin/sleep 600 &) && exec /usr/bin/setpriv --reuid 1000 --regid 1000 --clear-groups /bin/env HOME=/home/alice USER=alice /usr/bin/kiln "$@"' "$cg" "$@"
}

echo "KILN-VM-CONTROLLERS $(cat /sys/fs/cgroup/cgroup.controllers)"
kiln="/usr/bin/kiln --store embedded --root /var/lib/kiln"
scenario root-within $kiln build --memory 256m --cpus 0.5 --progress plain -t within /work/within
scenario root-over $kiln build --memory 256m --progress plain -t over /work/over
scenario root-left /bin/find /sys/fs/cgroup/kiln -name 'build-*'

# Not delegated: alice runs in the root cgroup.
scenario alice-refused /usr/bin/setpriv --reuid 1000 --regid 1000 --clear-groups /bin/env HOME=/home/alice /usr/bin/kiln build --memory 256m /home/alice/within
# Delegated as systemd-run --user --scope -p Delegate=yes does: kiln alone in a cgroup she owns.
mkdir /sys/fs/cgroup/alice-scope
chown -R 1000:1000 /sys/fs/cgroup/alice-scope
scenario alice-alone-over as_alice /sys/fs/cgroup/alice-scope build --memory 256m --progress plain -t over /home/alice/over
# Again, into the same cgroup (kiln handed it back as it found it), with --no-cache: kiln's probes
# of the platforms start before it moves out of the delegated cgroup, and move with it.
scenario alice-alone-again as_alice /sys/fs/cgroup/alice-scope build --no-cache --memory 256m --cpus 0.5 --progress plain -t within /home/alice/within
scenario alice-scope-after /bin/sh -c 'cat /sys/fs/cgroup/alice-scope/cgroup.subtree_control; cd /sys/fs/cgroup/alice-scope && /bin/find . -mindepth 1 -type d'
# Beside another of her processes in that cgroup, kiln cannot move out: refused, saying so.
scenario alice-scope-shared as_alice_beside /sys/fs/cgroup/alice-scope build --memory 256m /home/alice/within
# Delegated with her session in a cgroup below: kiln beside another of her processes.
mkdir -p /sys/fs/cgroup/alice/session
chown -R 1000:1000 /sys/fs/cgroup/alice
scenario alice-session-within as_alice_beside /sys/fs/cgroup/alice/session build --memory 256m --cpus 0.5 --progress plain -t within /home/alice/within
scenario alice-session-over as_alice_beside /sys/fs/cgroup/alice/session build --memory 256m --progress plain -t over /home/alice/over
scenario alice-left /bin/find /sys/fs/cgroup/alice /sys/fs/cgroup/alice-scope -name 'build-*'
echo "KILN-VM-DONE"
poweroff -f
