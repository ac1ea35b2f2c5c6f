//go:build linux

package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/internal/privatecontainerd"
)

// rootlessUserName is the unprivileged user TestRootless creates, gives subordinate ids and
// deletes again.
const rootlessUserName = "kiln-rootless-it"

// rootlessUser is an unprivileged user with a home, subordinate id ranges and a runtime directory,
// for whom the test starts a rootless containerd with hack/rootless-containerd.sh.
type rootlessUser struct {
	name       string
	uid, gid   int
	home       string
	runtimeDir string
	bin        string // copies of kiln and the script the user can execute
	sock       string // their containerd socket
	stateDir   string // RootlessKit's state
}

// newRootlessUser creates the user (removing what an earlier, killed run left) with subordinate
// uid and gid ranges as useradd gives them (uidmap's newuidmap and newgidmap map them), a runtime
// directory as a login manager would make it, and copies of the programs under test.
func newRootlessUser(t *testing.T) *rootlessUser {
	t.Helper()
	for _, p := range []string{"/usr/bin/rootlesskit", "/usr/bin/newuidmap", "/usr/bin/newgidmap", "/usr/bin/nsenter"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s is missing: run hack/install-deps.sh (packages rootlesskit, uidmap, util-linux)", p)
		}
	}
	if exec.Command("id", rootlessUserName).Run() == nil {
		removeRootlessUser(t, rootlessUserName)
	}
	if out, err := exec.Command("useradd", "--create-home", "--shell", "/bin/sh", rootlessUserName).CombinedOutput(); err != nil {
		t.Fatalf("creating user %s: %v: %s", rootlessUserName, err, out)
	}
	t.Cleanup(func() { removeRootlessUser(t, rootlessUserName) })
	u := &rootlessUser{name: rootlessUserName, uid: idOf(t, "-u"), gid: idOf(t, "-g")}
	u.home = "/home/" + u.name
	if out, err := exec.Command("getent", "passwd", u.name).Output(); err == nil {
		if f := strings.Split(strings.TrimSpace(string(out)), ":"); len(f) >= 6 {
			u.home = f[5]
		}
	}
	// useradd assigns subordinate ids on Debian; make sure, as usermod would on other systems.
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		data, _ := os.ReadFile(f)
		if !strings.Contains(string(data), "\n"+u.name+":") && !strings.HasPrefix(string(data), u.name+":") {
			flag := "--add-subuids"
			if strings.HasSuffix(f, "gid") {
				flag = "--add-subgids"
			}
			if out, err := exec.Command("usermod", flag, "3000000000-3000065535", u.name).CombinedOutput(); err != nil {
				t.Fatalf("giving %s subordinate ids: %v: %s", u.name, err, out)
			}
		}
	}
	u.runtimeDir = filepath.Join("/run/user", strconv.Itoa(u.uid))
	if err := os.MkdirAll("/run/user", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(u.runtimeDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		t.Fatal(err)
	}
	if err := os.Chown(u.runtimeDir, u.uid, u.gid); err != nil {
		t.Fatal(err)
	}
	u.sock = filepath.Join(u.runtimeDir, "containerd", "containerd.sock")
	u.stateDir = filepath.Join(u.runtimeDir, "containerd-rootless")

	// The programs under test may live where the user cannot read them (e.g. under /root).
	u.bin = filepath.Join(u.home, "kiln-bin")
	if err := os.MkdirAll(u.bin, 0o755); err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs("../hack/rootless-containerd.sh")
	if err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{
		kilnBinary: "kiln", script: "rootless-containerd.sh",
		filepath.Join(toolsDir, "containerd"): "containerd", filepath.Join(toolsDir, "containerd-shim-runc-v2"): "containerd-shim-runc-v2",
		filepath.Join(toolsDir, "ctr"): "ctr",
	} {
		if out, err := exec.Command("cp", src, filepath.Join(u.bin, dst)).CombinedOutput(); err != nil {
			t.Fatalf("copying %s for the user: %v: %s", src, err, out)
		}
	}
	return u
}

func idOf(t *testing.T, flag string) int {
	t.Helper()
	out, err := exec.Command("id", flag, rootlessUserName).Output()
	if err != nil {
		t.Fatalf("id %s %s: %v", flag, rootlessUserName, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// removeRootlessUser stops everything the user runs (their rootless containerd, its shims), then
// deletes the user with their home, subordinate ids and runtime directory.
func removeRootlessUser(t *testing.T, name string) {
	out, err := exec.Command("id", "-u", name).Output()
	if err != nil {
		return
	}
	uid, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	for attempt := 0; attempt < 50; attempt++ {
		pids := pidsOfUser(uid)
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	runtimeDir := filepath.Join("/run/user", strconv.Itoa(uid))
	privatecontainerd.UnmountUnder(runtimeDir)
	_ = os.RemoveAll(runtimeDir)
	if out, err := exec.Command("userdel", "--remove", name).CombinedOutput(); err != nil {
		t.Logf("userdel %s: %v: %s", name, err, out)
	}
	// userdel keeps the subordinate id lines on some versions.
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var keep []string
		for _, l := range strings.SplitAfter(string(data), "\n") {
			if !strings.HasPrefix(l, name+":") {
				keep = append(keep, l)
			}
		}
		_ = os.WriteFile(f, []byte(strings.Join(keep, "")), 0o644)
	}
}

// pidsOfUser lists the processes whose real uid is uid.
func pidsOfUser(uid int) []int {
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		var st syscall.Stat_t
		if syscall.Stat(p, &st) != nil || int(st.Uid) != uid {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(p)); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// run runs name as the user, in dir (their home when empty), with a login-like environment plus
// env, within commandTimeout.
func (u *rootlessUser) run(t *testing.T, dir, stdin string, env []string, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if dir == "" {
		cmd.Dir = u.home
	}
	cmd.Env = append([]string{
		"HOME=" + u.home, "USER=" + u.name, "LOGNAME=" + u.name,
		"PATH=/usr/local/bin:/usr/bin:/bin", "XDG_RUNTIME_DIR=" + u.runtimeDir,
	}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid), Groups: []uint32{}}}
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	line := u.name + "$ " + filepath.Base(name) + " " + strings.Join(args, " ")
	return execute(t, ctx, cmd, "", line)
}

// kiln runs the user's copy of kiln with its per-user defaults (no --address, --root).
func (u *rootlessUser) kiln(t *testing.T, dir string, args ...string) result {
	t.Helper()
	return u.run(t, dir, "", nil, filepath.Join(u.bin, "kiln"), args...)
}

// script runs hack/rootless-containerd.sh as the user with the containerd under test.
func (u *rootlessUser) script(t *testing.T, args ...string) result {
	t.Helper()
	return u.run(t, "", "", []string{"CONTAINERD_BIN_DIR=" + u.bin}, filepath.Join(u.bin, "rootless-containerd.sh"), args...)
}

// ctr runs ctr as the user against their containerd, outside its namespaces.
func (u *rootlessUser) ctr(t *testing.T, args ...string) result {
	t.Helper()
	return u.run(t, "", "", nil, filepath.Join(u.bin, "ctr"), append([]string{"-a", u.sock}, args...)...)
}

// childPID is RootlessKit's child, whose namespaces containerd runs in.
func (u *rootlessUser) childPID(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(u.stateDir, "child_pid"))
	if err != nil {
		t.Fatalf("reading RootlessKit's child pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// nsenter runs a command as the user inside RootlessKit's user and mount namespaces (and its
// network namespace when it has one), as kiln itself enters them.
func (u *rootlessUser) nsenter(t *testing.T, args ...string) result {
	t.Helper()
	pid := strconv.Itoa(u.childPID(t))
	full := []string{"-t", pid, "-U", "--preserve-credentials", "-m"}
	if nsInode(t, "/proc/"+pid+"/ns/net") != nsInode(t, "/proc/self/ns/net") {
		full = append(full, "-n")
	}
	return u.run(t, "", "", nil, "/usr/bin/nsenter", append(append(full, "--"), args...)...)
}

func nsInode(t *testing.T, path string) string {
	t.Helper()
	link, err := os.Readlink(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return link
}

// processesInNamespace lists the processes in the user namespace of pid (containerd, its shims,
// anything kiln left), with their command lines.
func processesInNamespace(t *testing.T, pid int) map[int]string {
	t.Helper()
	userns := nsInode(t, fmt.Sprintf("/proc/%d/ns/user", pid))
	out := map[int]string{}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		if link, err := os.Readlink(p + "/ns/user"); err != nil || link != userns {
			continue
		}
		cmdline, _ := os.ReadFile(p + "/cmdline")
		stat, _ := os.ReadFile(p + "/stat")
		if strings.Contains(string(stat), ") Z ") { // a zombie about to be reaped
			continue
		}
		n, _ := strconv.Atoi(filepath.Base(p))
		out[n] = strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " ")
	}
	return out
}

// mountsOf lists the mount points and sources in pid's mount namespace.
func mountsOf(t *testing.T, pid int) []string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(l)
		if len(f) > 9 {
			out = append(out, f[4]+" "+f[len(f)-2]+" "+f[3])
		}
	}
	sort.Strings(out)
	return out
}

// rootlessDockerfile builds on the busybox fixture for the target platform, records `uname -m`
// and writes files owned by root and by others.
const rootlessDockerfile = `FROM scratch
ARG TARGETARCH
COPY rootfs/${TARGETARCH}/ /
RUN uname -m > /arch && echo root > /root-owned
COPY --chown=1000:1000 Dockerfile /owned-by-1000
RUN echo other > /other-owned && chown 2000:3000 /other-owned
CMD ["cat", "/arch"]
`

// contextForUser writes a build context with the fixtures' busybox trees into the user's home.
func (u *rootlessUser) contextForUser(t *testing.T, name, dockerfile string) string {
	t.Helper()
	dir := filepath.Join(u.home, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(fixturesDir, "rootfs"), dir).CombinedOutput(); err != nil {
		t.Fatalf("copying fixtures: %v: %s", err, out)
	}
	if out, err := exec.Command("chown", "-R", fmt.Sprintf("%d:%d", u.uid, u.gid), dir).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v: %s", err, out)
	}
	return dir
}

// layerFile is a regular file read from an image's layers.
type layerFile struct {
	uid, gid int
	content  string
}

// imageFiles saves the image as the user with kiln save and returns, for each platform
// ("linux/arm64"), the regular files of its layers (later layers win).
func (u *rootlessUser) imageFiles(t *testing.T, name string) map[string]map[string]layerFile {
	t.Helper()
	archive := filepath.Join(u.home, "saved.tar")
	u.kiln(t, "", "save", name, "-o", archive).ok(t)
	defer os.Remove(archive)
	blobs := readTar(t, archive)
	blob := func(d string) []byte {
		b, ok := blobs["blobs/sha256/"+strings.TrimPrefix(d, "sha256:")]
		if !ok {
			t.Fatalf("blob %s is not in the saved archive", d)
		}
		return b
	}
	var top ocispecs.Index
	mustJSON(t, string(blobs["index.json"]), &top)
	if len(top.Manifests) != 1 {
		t.Fatalf("saved index.json has %d entries, want 1", len(top.Manifests))
	}
	var idx ocispecs.Index
	mustJSON(t, string(blob(top.Manifests[0].Digest.String())), &idx)
	out := map[string]map[string]layerFile{}
	for _, m := range idx.Manifests {
		if m.Platform == nil || m.Platform.OS != "linux" {
			continue // attestations
		}
		var man ocispecs.Manifest
		mustJSON(t, string(blob(m.Digest.String())), &man)
		files := map[string]layerFile{}
		for _, l := range man.Layers {
			zr, err := gzip.NewReader(bytes.NewReader(blob(l.Digest.String())))
			if err != nil {
				t.Fatalf("layer %s: %v", l.Digest, err)
			}
			lr := tar.NewReader(zr)
			for {
				h, err := lr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("layer %s: %v", l.Digest, err)
				}
				if h.Typeflag == tar.TypeReg {
					data, _ := io.ReadAll(lr)
					files["/"+strings.TrimPrefix(h.Name, "./")] = layerFile{uid: h.Uid, gid: h.Gid, content: string(data)}
				}
			}
		}
		out[m.Platform.OS+"/"+m.Platform.Architecture] = files
	}
	return out
}

// TestRootless runs kiln as an unprivileged user against their rootless containerd, started by
// hack/rootless-containerd.sh under RootlessKit: no step of the builds runs as root.
func TestRootless(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skipf("the two-platform fixtures assume an amd64 host, this is %s", runtime.GOARCH)
	}
	u := newRootlessUser(t)

	t.Run("no-containerd", func(t *testing.T) {
		// Without --store containerd kiln would use its embedded store
		// (see embedded_test.go).
		r := u.kiln(t, "", "--store", "containerd", "images").fails(t, 1, "no rootless containerd is running for "+u.name)
		for _, want := range []string{"no RootlessKit state in " + u.stateDir, `"make rootless-containerd"`, "containerd-rootless-setuptool.sh install"} {
			if !strings.Contains(r.Stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, r.Stderr)
			}
		}
		dir := u.contextForUser(t, "nobuild", "FROM scratch\n")
		u.kiln(t, dir, "--store", "containerd", "build", ".").fails(t, 1, "building as an unprivileged user needs a rootless containerd: no rootless containerd is running for "+u.name)
		// version and help need no containerd.
		u.kiln(t, "", "version").ok(t)
	})

	u.script(t, "check").ok(t)
	out := u.script(t, "start").ok(t)
	t.Cleanup(func() {
		if r := u.script(t, "stop"); r.Code != 0 {
			t.Logf("stopping the rootless containerd: %s%s", r.Stdout, r.Stderr)
		}
	})
	t.Logf("%s", out.Stdout)
	child := u.childPID(t)

	t.Run("user-errors", func(t *testing.T) {
		// A working directory made after RootlessKit copied /var/lib up is not visible inside.
		wd, err := os.MkdirTemp("/var/lib", "kiln-rootless-it-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(wd)
		os.Chmod(wd, 0o755)
		u.kiln(t, wd, "images").fails(t, 1, "the working directory "+wd+" is not visible inside the rootless containerd's mount namespace: run kiln from a directory under your home directory")
		// Another user's containerd.
		u.kiln(t, "", "--address", daemon.address, "images").fails(t, 1, "cannot reach containerd at "+daemon.address+": permission denied: use your own rootless containerd (the default --address, "+u.sock+"), or run kiln as root")
		// A snapshotter containerd does not have.
		u.kiln(t, u.contextForUser(t, "snap", "FROM scratch\n"), "--snapshotter", "zfs", "build", ".").fails(t, 2, `containerd has no snapshotter "zfs" (it has `)
	})

	t.Run("info", func(t *testing.T) {
		var info struct {
			Address, Root, Snapshotter, SnapshotterReason, Cgroups string
			Rootless                                               *struct {
				StateDir string
				ChildPID int
				Network  string
			}
			Snapshots struct {
				Dir  string
				Size uint64
			}
		}
		mustJSON(t, u.kiln(t, "", "info", "--format", "json").ok(t).Stdout, &info)
		// The rootless containerd's snapshots are where it sees them, /var/lib/containerd in
		// RootlessKit's mount namespace, and measured there: on the file system of the user's
		// ~/.local/share/containerd, bind-mounted over it.
		var home syscall.Statfs_t
		if err := syscall.Statfs(filepath.Join(u.home, ".local/share/containerd"), &home); err != nil {
			t.Fatal(err)
		}
		if s := info.Snapshots; s.Dir != "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs" || s.Size != home.Blocks*uint64(home.Bsize) {
			t.Errorf("info.snapshots = %+v, want containerd's overlayfs directory on the file system of ~/.local/share/containerd (%d bytes)", s, home.Blocks*uint64(home.Bsize))
		}
		if info.Address != u.sock || info.Root != filepath.Join(u.home, ".local/share/kiln") {
			t.Errorf("per-user defaults: address %s, root %s; want %s and ~/.local/share/kiln", info.Address, info.Root, u.sock)
		}
		if info.Rootless == nil || info.Rootless.ChildPID != child || info.Rootless.StateDir != u.stateDir {
			t.Errorf("info.rootless = %+v, want RootlessKit child %d in %s", info.Rootless, child, u.stateDir)
		}
		if info.Snapshotter != "overlayfs" || !strings.Contains(info.SnapshotterReason, "mounts overlayfs inside RootlessKit's user namespace") {
			t.Errorf("snapshotter %s (%s), want overlayfs on this kernel", info.Snapshotter, info.SnapshotterReason)
		}
		if !strings.Contains(info.Cgroups, "without cgroup paths or limits") {
			t.Errorf("cgroups: %q", info.Cgroups)
		}
		t.Logf("snapshotter: %s (%s); cgroups: %s; network: %s", info.Snapshotter, info.SnapshotterReason, info.Cgroups, info.Rootless.Network)
	})

	t.Run("budget", func(t *testing.T) {
		// Without a cgroup delegated to the user a budget is refused, not
		// ignored.
		base := u.contextForUser(t, "budget-base", "FROM scratch\nARG TARGETARCH\nCOPY rootfs/${TARGETARCH}/ /\n")
		u.kiln(t, base, "build", "-t", "busybox", ".").ok(t)
		within := u.contextForUser(t, "budget-within", withinBudgetDockerfile)
		over := u.contextForUser(t, "budget-over", overBudgetDockerfile)
		u.kiln(t, within, "build", "--memory", "256m", ".").fails(t, 1, "cannot be enforced (memory 256MiB): as an unprivileged user")

		// In a cgroup delegated to the user it holds: containerd's shim
		// joins the build's cgroup, and runc nests each step's below it.
		join, delegated := delegatedCgroup(t, u.uid, u.gid)
		inCgroup := func(dir string, args ...string) result {
			t.Helper()
			return u.run(t, dir, "", nil, "/bin/sh", append([]string{"-c", join, filepath.Join(u.bin, "kiln")}, args...)...)
		}
		inCgroup(within, "build", "--memory", "256m", "--cpus", "0.5", "-t", "within", ".").ok(t)
		checkOutOfMemory(t, inCgroup(over, "build", "--memory", "256m", "--progress", "plain", "-t", "over", ".").fails(t, 1, "out of memory"))
		if left := buildCgroupsBelow(delegated); len(left) > 0 {
			t.Errorf("the build's cgroups are still there: %v", left)
		}
	})

	t.Run("two-platform-build", func(t *testing.T) {
		dir := u.contextForUser(t, "app", rootlessDockerfile)
		procsBefore := processesInNamespace(t, child)
		mountsBefore := mountsOf(t, child)

		u.kiln(t, dir, "build", "--platform", "linux/amd64,linux/arm64", "-t", "app", ".").ok(t)

		// Each platform's RUN ran on that platform; files are owned as the Dockerfile says, in
		// the image's terms, not by the user's uid or their subordinate ids.
		files := u.imageFiles(t, "app")
		for platform, machine := range map[string]string{"linux/amd64": "x86_64", "linux/arm64": "aarch64"} {
			pf, ok := files[platform]
			if !ok {
				t.Fatalf("image app has no %s manifest (has %v)", platform, slices.Collect(maps.Keys(files)))
			}
			if got := strings.TrimSpace(pf["/arch"].content); got != machine {
				t.Errorf("%s: RUN uname -m recorded %q, want %q", platform, got, machine)
			}
			for path, want := range map[string][2]int{"/arch": {0, 0}, "/root-owned": {0, 0}, "/bin/busybox": {0, 0}, "/owned-by-1000": {1000, 1000}, "/other-owned": {2000, 3000}} {
				if f, ok := pf[path]; !ok || f.uid != want[0] || f.gid != want[1] {
					t.Errorf("%s: %s is owned by %d:%d (present %v), want %d:%d", platform, path, f.uid, f.gid, ok, want[0], want[1])
				}
			}
		}

		// kiln's state belongs to the user.
		root := filepath.Join(u.home, ".local/share/kiln")
		for _, dir := range []string{root, filepath.Join(u.runtimeDir, "kiln")} {
			err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				var st syscall.Stat_t
				if err := syscall.Lstat(p, &st); err != nil {
					return err
				}
				if int(st.Uid) != u.uid {
					t.Errorf("%s is owned by uid %d, want the user's %d", p, st.Uid, u.uid)
				}
				return nil
			})
			if err != nil {
				t.Errorf("walking %s: %v", dir, err)
			}
		}

		// Nothing is left running or mounted once kiln exits.
		var leftProcs []string
		var leftMounts []string
		deadline := time.Now().Add(10 * time.Second)
		for {
			leftProcs, leftMounts = nil, nil
			for pid, cmd := range processesInNamespace(t, child) {
				if _, ok := procsBefore[pid]; !ok {
					leftProcs = append(leftProcs, fmt.Sprintf("%d %s", pid, cmd))
				}
			}
			for _, m := range mountsOf(t, child) {
				if !slices.Contains(mountsBefore, m) {
					leftMounts = append(leftMounts, m)
				}
			}
			if len(leftProcs)+len(leftMounts) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if len(leftProcs) > 0 {
			t.Errorf("processes left in RootlessKit's namespace after kiln exited:\n%s", strings.Join(leftProcs, "\n"))
		}
		if len(leftMounts) > 0 {
			t.Errorf("mounts left in RootlessKit's mount namespace after kiln exited:\n%s", strings.Join(leftMounts, "\n"))
		}
		for _, kind := range []string{"containers", "tasks"} {
			if out := u.ctr(t, kind, "ls", "-q").ok(t).Stdout; strings.TrimSpace(out) != "" {
				t.Errorf("%s left in the user's containerd: %s", kind, out)
			}
		}

		// The user's own ctr runs the image where rootless runc can: on cgroup v1 it cannot start
		// a container ctr specifies (a cgroup configuration and device rules), so the platforms'
		// `uname -m` above, read from the image, is the evidence there.
		for platform, machine := range map[string]string{"linux/amd64": "x86_64", "linux/arm64": "aarch64"} {
			r := u.nsenter(t, filepath.Join(u.bin, "ctr"), "-a", u.sock, "run", "--rm", "--cgroup", "", "--platform", platform, "docker.io/library/app:latest", "rootless-run-"+filepath.Base(platform), "uname", "-m")
			switch {
			case r.Code == 0:
				if got := strings.TrimSpace(r.Stdout); got != machine {
					t.Errorf("ctr run --platform %s printed %q, want %q", platform, got, machine)
				}
			case cgroupV1() && strings.Contains(r.Stderr, "cgroup"):
				t.Logf("ctr run --platform %s is not possible rootless on cgroup v1 here: %s", platform, lastLine(r.Stderr))
			default:
				t.Errorf("ctr run --platform %s as the user failed:\n%s%s", platform, r.Stdout, r.Stderr)
			}
		}
	})

	t.Run("killed-build-is-swept", func(t *testing.T) {
		dir := u.contextForUser(t, "sleeper", "FROM app\nRUN sleep 300\n")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(u.bin, "kiln"), "build", "--no-cache", "--progress", "plain", ".")
		cmd.Dir = dir
		cmd.Env = []string{"HOME=" + u.home, "PATH=/usr/local/bin:/usr/bin:/bin", "XDG_RUNTIME_DIR=" + u.runtimeDir}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid), Groups: []uint32{}}}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait for the step's task, then kill kiln as a crash would.
		deadline := time.Now().Add(2 * time.Minute)
		for strings.TrimSpace(u.ctr(t, "tasks", "ls", "-q").Stdout) == "" {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatal("the RUN sleep step never started")
			}
			time.Sleep(300 * time.Millisecond)
		}
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		left := strings.TrimSpace(u.ctr(t, "containers", "ls", "-q").Stdout)
		if left == "" {
			t.Fatal("the killed kiln left no container: nothing to sweep")
		}
		info := u.ctr(t, "containers", "info", strings.Fields(left)[0]).ok(t).Stdout
		if !strings.Contains(info, `"kiln.root"`) {
			t.Errorf("the step container carries no kiln.root label:\n%s", info)
		}
		r := u.kiln(t, u.contextForUser(t, "after", "FROM app\nRUN true\n"), "build", ".").ok(t)
		if !strings.Contains(r.Stderr, "removed 1 build step container(s) left by an interrupted kiln") {
			t.Errorf("the next build did not say it removed the container:\n%s", r.Stderr)
		}
		for _, kind := range []string{"containers", "tasks"} {
			if out := strings.TrimSpace(u.ctr(t, kind, "ls", "-q").ok(t).Stdout); out != "" {
				t.Errorf("%s left after the sweep: %s", kind, out)
			}
		}
	})

	t.Run("emulation-in-user-namespace", func(t *testing.T) {
		if !kernelAtLeast(6, 7) {
			t.Skip("binfmt_misc per user namespace needs Linux 6.7")
		}
		if _, err := os.Stat("/usr/bin/qemu-aarch64-static"); err != nil {
			t.Skip("qemu-user-static is not installed")
		}
		hostBefore := hostAarch64Handler(t)
		// A fresh binfmt_misc instance in RootlessKit's user namespace: the host's handlers no
		// longer serve it, so arm64 steps run only if kiln registers QEMU there, as the user. When
		// the host has no arm64 handler, an earlier subtest's kiln already mounted the instance
		// (mount says EBUSY: the same one is there) and registered QEMU in it: remove that.
		u.nsenter(t, "sh", "-c", `out=$(mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>&1) || case $out in
			*"already mounted"*) if [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then echo -1 > /proc/sys/fs/binfmt_misc/qemu-aarch64; fi ;;
			*) echo "$out" >&2; exit 1 ;;
			esac`).ok(t)
		dir := u.contextForUser(t, "emu", "FROM app\nRUN uname -m > /emulated\n")
		r := u.kiln(t, dir, "build", "--platform", "linux/amd64,linux/arm64", "-t", "emu", ".").ok(t)
		if !strings.Contains(r.Stderr, "registered a QEMU binfmt_misc handler for linux/arm64") {
			t.Errorf("kiln did not register a handler in the user namespace:\n%s", r.Stderr)
		}
		files := u.imageFiles(t, "emu")
		for platform, machine := range map[string]string{"linux/amd64": "x86_64", "linux/arm64": "aarch64"} {
			if got := strings.TrimSpace(files[platform]["/emulated"].content); got != machine {
				t.Errorf("the %s step recorded %q, want %q", platform, got, machine)
			}
		}
		if after := hostAarch64Handler(t); after != hostBefore {
			t.Errorf("the host's qemu-aarch64 handler changed from %q to %q", hostBefore, after)
		}
	})
}

// cgroupV1 reports whether the host runs cgroup v1 (or hybrid).
func cgroupV1() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err != nil
}

// kernelAtLeast reports whether the running kernel is major.minor or newer.
func kernelAtLeast(major, minor int) bool {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return false
	}
	var b strings.Builder
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	var maj, mn int
	fmt.Sscanf(b.String(), "%d.%d", &maj, &mn)
	return maj > major || maj == major && mn >= minor
}

// hostAarch64Handler describes the host's qemu-aarch64 binfmt_misc handler ("" when none).
func hostAarch64Handler(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("/proc/sys/fs/binfmt_misc/qemu-aarch64")
	if err != nil {
		return ""
	}
	return string(data)
}
