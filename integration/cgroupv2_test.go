//go:build linux

package integration

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestBudgetOnCgroupV2 boots Debian's kernel under QEMU (hack/vm-kernel.sh fetches it) with cgroup
// v2 alone, which this kind of host does not run, and builds there with the embedded store: as root
// and as an unprivileged user in cgroups delegated to her, as systemd-run --user --scope -p
// Delegate=yes delegates one (kiln alone in it) and as a session below a delegated cgroup (kiln
// beside another process). A step within the budget builds; one over it is killed with the
// out-of-memory line; no build cgroup is left, and a cgroup kiln ran in alone is handed back as it
// was, so it can be entered again; without delegation, or in a delegated cgroup shared with
// another process, the budget is refused.
func TestBudgetOnCgroupV2(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skipf("the VM is amd64 and this host is %s", runtime.GOARCH)
	}
	t.Parallel()
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatal("qemu-system-x86_64 is missing: run hack/install-deps.sh (package qemu-system-x86)")
	}
	vm := filepath.Join(fixturesDir, "vm")
	if _, err := os.Stat(filepath.Join(vm, ".stamp")); err != nil {
		t.Fatalf("no kernel for the VM in %s: run hack/vm-kernel.sh", vm)
	}
	initrd := filepath.Join(t.TempDir(), "initrd.gz")
	writeVMInitrd(t, initrd, filepath.Join(vm, "overlay.ko"))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// TCG, not KVM: a /dev/kvm of a nested virtual machine can hang the guest's boot for good.
	accel := []string{"-accel", "tcg"}
	cmd := exec.CommandContext(ctx, qemu, append(accel, "-m", "3072", "-smp", "2", "-nic", "none", "-nographic", "-no-reboot", "-kernel", filepath.Join(vm, "vmlinuz"), "-initrd", initrd,
		"-append", "console=ttyS0 quiet panic=-1")...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("$ qemu-system-x86_64 ... (%.0fs)", time.Since(start).Seconds())
	if err != nil || !bytes.Contains(out, []byte("KILN-VM-DONE")) {
		t.Fatalf("the VM did not finish (%v):\n%s", err, out)
	}
	got := vmScenarios(string(out))
	if !strings.Contains(string(out), "KILN-VM-CONTROLLERS") || !regexp.MustCompile(`KILN-VM-CONTROLLERS .*\bmemory\b`).Match(out) {
		t.Fatalf("the VM's cgroup v2 has no memory controller:\n%s", out)
	}

	expect := func(name string, rc int, wants ...string) {
		t.Helper()
		s, ok := got[name]
		switch {
		case !ok:
			t.Errorf("%s: no output on the console:\n%s", name, out)
		case s.rc != rc:
			t.Errorf("%s: exit %d, want %d:\n%s", name, s.rc, rc, s.out)
		default:
			for _, want := range wants {
				if !strings.Contains(s.out, want) {
					t.Errorf("%s: the output lacks %q:\n%s", name, want, s.out)
				}
			}
		}
	}
	oom := []string{"Dockerfile:3", "RUN echo allocating", "ran out of memory", "--memory 256MiB"}
	expect("root-within", 0)
	expect("root-over", 1, oom...)
	expect("alice-refused", 1, "cannot be enforced (memory 256MiB)", "no cgroup is delegated", "runs in the root cgroup")
	expect("alice-alone-over", 1, oom...)
	expect("alice-alone-again", 0)
	expect("alice-scope-after", 0)
	if s := got["alice-scope-after"]; strings.TrimSpace(s.out) != "" {
		t.Errorf("kiln left controllers enabled or cgroups in the delegated cgroup it ran in alone:\n%s", s.out)
	}
	expect("alice-scope-shared", 1, "is shared with other processes", "(sleep)", "exec kiln")
	expect("alice-session-within", 0)
	expect("alice-session-over", 1, oom...)
	for _, name := range []string{"root-left", "alice-left"} {
		if s := got[name]; strings.Contains(s.out, "build-") {
			t.Errorf("%s: build cgroups are left:\n%s", name, s.out)
		}
	}
}

// vmScenario is what one scenario printed, and its exit status.
type vmScenario struct {
	out string
	rc  int
}

// vmScenarios reads the scenarios framed by KILN-VM-BEGIN and KILN-VM-END lines.
func vmScenarios(console string) map[string]vmScenario {
	got := map[string]vmScenario{}
	var name string
	var b strings.Builder
	s := bufio.NewScanner(strings.NewReader(console))
	s.Buffer(make([]byte, 1<<20), 16<<20)
	for s.Scan() {
		line := strings.TrimRight(s.Text(), "\r")
		switch {
		case strings.HasPrefix(line, "KILN-VM-BEGIN "):
			name = strings.TrimPrefix(line, "KILN-VM-BEGIN ")
			b.Reset()
		case strings.HasPrefix(line, "KILN-VM-END "):
			var n string
			var rc int
			fmt.Sscanf(strings.TrimPrefix(line, "KILN-VM-END "), "%s rc=%d", &n, &rc)
			got[n] = vmScenario{out: b.String(), rc: rc}
			name = ""
		case name != "":
			b.WriteString(line + "\n")
		}
	}
	return got
}

// writeVMInitrd writes the VM's initramfs: busybox (the fixtures' static one), kiln, runc,
// setpriv, newuidmap and newgidmap with their libraries, the overlayfs module, a user alice with
// subordinate ids, the build contexts, and the init scripts (testdata/cgroupv2).
func writeVMInitrd(t *testing.T, dst, overlay string) {
	t.Helper()
	w := newCpio()
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "run", "etc", "work", "home/alice", "var/lib", "newroot"} {
		w.dir(d)
	}
	busybox := filepath.Join(fixturesDir, "rootfs", "amd64", "bin", "busybox")
	w.file(t, "bin/busybox", busybox, 0o755)
	list, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet != "busybox" {
			w.symlink("bin/"+applet, "busybox")
		}
	}
	w.file(t, "usr/bin/kiln", kilnBinary, 0o755)
	for _, prog := range []string{"runc", "setpriv", "newuidmap", "newgidmap"} {
		p, err := exec.LookPath(prog)
		if err != nil {
			t.Fatalf("%s is missing: run hack/install-deps.sh", prog)
		}
		mode := fs.FileMode(0o755)
		if strings.HasPrefix(prog, "new") {
			mode |= fs.ModeSetuid
		}
		w.withLibraries(t, p, mode)
	}
	w.file(t, "overlay.ko", overlay, 0o644)
	w.data("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:alice:/home/alice:/bin/sh\n", 0o644)
	w.data("etc/group", "root:x:0:\nalice:x:1000:\n", 0o644)
	w.data("etc/subuid", "alice:100000:65536\n", 0o644)
	w.data("etc/subgid", "alice:100000:65536\n", 0o644)
	w.data("etc/resolv.conf", "nameserver 127.0.0.1\n", 0o644)
	w.data("etc/hosts", "127.0.0.1 localhost\n", 0o644)
	rootfs := filepath.Join(fixturesDir, "rootfs", "amd64")
	for name, dockerfile := range map[string]string{"within": withinBudgetDockerfile, "over": overBudgetDockerfile} {
		df := strings.Replace(dockerfile, "FROM busybox\n", "FROM scratch\nCOPY rootfs/ /\n", 1)
		for _, top := range []string{"work", "home/alice"} {
			w.dir(top + "/" + name)
			w.data(top+"/"+name+"/Dockerfile", df, 0o644)
			w.tree(t, top+"/"+name+"/rootfs", rootfs)
		}
	}
	script, err := os.ReadFile("testdata/cgroupv2/init.sh")
	if err != nil {
		t.Fatal(err)
	}
	w.data("init2", string(script), 0o755)
	// runc cannot pivot_root out of the initramfs: the first stage moves everything to a tmpfs.
	w.data("init", `#!/bin/sh
/bin/mount -t tmpfs -o size=2g root /newroot
for d in /*; do
	case "$d" in /newroot|/proc|/sys|/dev) ;; *) /bin/cp -a "$d" /newroot/ ;; esac
done
/bin/mkdir -p /newroot/proc /newroot/sys /newroot/dev
exec /bin/switch_root /newroot /init2
`, 0o755)
	if err := w.writeTo(dst); err != nil {
		t.Fatal(err)
	}
}

// cpioWriter collects an initramfs in the kernel's "newc" cpio format.
type cpioWriter struct {
	entries map[string]cpioEntry
}

type cpioEntry struct {
	mode uint32 // type and permission bits, as in stat
	data []byte // contents, or a symbolic link's target
}

func newCpio() *cpioWriter { return &cpioWriter{entries: map[string]cpioEntry{}} }

const (
	cpioDir     = 0o040000
	cpioFile    = 0o100000
	cpioSymlink = 0o120000
	cpioSetuid  = 0o4000
)

func (w *cpioWriter) dir(name string) {
	for p := name; p != "." && p != "/"; p = path.Dir(p) {
		if _, ok := w.entries[p]; !ok {
			w.entries[p] = cpioEntry{mode: cpioDir | 0o755}
		}
	}
}

func (w *cpioWriter) data(name, content string, perm fs.FileMode) {
	w.dir(path.Dir(name))
	mode := cpioFile | uint32(perm.Perm())
	if perm&fs.ModeSetuid != 0 {
		mode |= cpioSetuid
	}
	w.entries[name] = cpioEntry{mode: mode, data: []byte(content)}
}

func (w *cpioWriter) file(t *testing.T, name, src string, perm fs.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	w.data(name, string(b), perm)
}

func (w *cpioWriter) symlink(name, target string) {
	w.dir(path.Dir(name))
	w.entries[name] = cpioEntry{mode: cpioSymlink | 0o777, data: []byte(target)}
}

// tree adds the regular files, directories and symbolic links below src as name.
func (w *cpioWriter) tree(t *testing.T, name, src string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		dst := path.Join(name, filepath.ToSlash(rel))
		switch {
		case d.IsDir():
			w.dir(dst)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			w.symlink(dst, target)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			w.file(t, dst, p, info.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// withLibraries adds the program at p and the shared libraries ldd lists for it, at their paths.
func (w *cpioWriter) withLibraries(t *testing.T, p string, perm fs.FileMode) {
	t.Helper()
	w.file(t, strings.TrimPrefix(p, "/"), p, perm)
	out, err := exec.Command("ldd", p).Output()
	if err != nil {
		return // a static program
	}
	for _, lib := range regexp.MustCompile(`(?m)(/\S+) \(0x`).FindAllStringSubmatch(string(out), -1) {
		real, err := filepath.EvalSymlinks(lib[1])
		if err != nil {
			t.Fatal(err)
		}
		w.file(t, strings.TrimPrefix(lib[1], "/"), real, 0o755)
	}
}

// writeTo writes the archive, gzip-compressed, parents before children.
func (w *cpioWriter) writeTo(dst string) error {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	names := make([]string, 0, len(w.entries))
	for n := range w.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	ino := 1
	for _, n := range names {
		e := w.entries[n]
		if err := writeCpioEntry(gz, ino, n, e.mode, e.data); err != nil {
			return err
		}
		ino++
	}
	if err := writeCpioEntry(gz, ino, "TRAILER!!!", 0, nil); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	return f.Close()
}

// writeCpioEntry writes one newc header, name and data, each padded to four bytes.
func writeCpioEntry(out io.Writer, ino int, name string, mode uint32, data []byte) error {
	nlink := 1
	if mode&0o170000 == cpioDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	pad := func(n int) []byte { return make([]byte, (4-n%4)%4) }
	var b bytes.Buffer
	b.WriteString(hdr)
	b.WriteString(name)
	b.WriteByte(0)
	b.Write(pad(len(hdr) + len(name) + 1))
	b.Write(data)
	b.Write(pad(len(data)))
	_, err := out.Write(b.Bytes())
	return err
}
