//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Namespaces of the shared containerd: one per builder, so neither sees the
// other's leases, cache or images.
const (
	kilnNamespace     = "kiln-bench"
	buildkitNamespace = "buildkit-bench"
)

// baseImage is the busybox base every benchmark builds FROM; it is built
// from the fixtures into both namespaces before anything is measured.
const baseImage = "docker.io/library/busybox:latest"

// env is the private containerd and buildkitd the benchmarks run against.
type env struct {
	paths
	dir      string // /tmp/kiln-bench-XXXX: both daemons' state, the kiln root, contexts
	address  string // containerd's socket
	kilnRoot string // kiln --root
	// baselineRoot is the --root of the baseline kiln, when one is measured.
	baselineRoot string
	bkAddress    string // buildkitd's unix:// address
	daemons      []*daemon
	buildkitd    *daemon
	logf         func(format string, args ...any)
}

// paths are the binaries and fixtures the harness needs.
type paths struct {
	kiln     string // bin/kiln
	baseline string // another kiln binary to measure alongside (optional)
	tools    string // containerd, containerd-shim-runc-v2, ctr, buildkitd, buildctl
	fixtures string // hack/fixtures.sh output
	qemu     string // the aarch64 QEMU the binfmt handler uses; set by setup
}

func (p paths) tool(name string) string { return filepath.Join(p.tools, name) }

// daemon is a background process the harness started and stops at the end.
type daemon struct {
	name    string
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

func (d *daemon) dead() bool {
	select {
	case <-d.exited:
		return true
	default:
		return false
	}
}

// disabledPlugins are containerd plugins neither builder needs; NRI would
// listen on a host-wide socket.
var disabledPlugins = []string{
	"io.containerd.grpc.v1.cri",
	"io.containerd.cri.v1.images",
	"io.containerd.cri.v1.runtime",
	"io.containerd.podsandbox.controller.v1.podsandbox",
	"io.containerd.nri.v1.nri",
}

// setup starts a private containerd, builds the busybox base into both
// namespaces with kiln (which also registers the QEMU handler for arm64 if
// the host lacks one), and starts buildkitd with its containerd worker on the
// same containerd and snapshotter.
func setup(p paths, logf func(string, ...any)) (*env, error) {
	for _, f := range []string{p.kiln, p.tool("containerd"), p.tool("containerd-shim-runc-v2"), p.tool("ctr"),
		p.tool("buildkitd"), p.tool("buildctl"), filepath.Join(p.fixtures, "busybox-arm64"),
		filepath.Join(p.fixtures, "rootfs", "amd64", "bin", "busybox")} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("%s is missing: run `make bench`, which builds it first", f)
		}
	}
	// Unix socket paths are limited to 108 bytes: keep the directory short.
	dir, err := os.MkdirTemp("/tmp", "kiln-bench-")
	if err != nil {
		return nil, err
	}
	e := &env{paths: p, dir: dir, address: filepath.Join(dir, "containerd.sock"),
		kilnRoot: filepath.Join(dir, "kiln"), baselineRoot: filepath.Join(dir, "kiln-baseline"), logf: logf}
	if err := e.startContainerd(); err != nil {
		e.close()
		return nil, err
	}
	if err := e.buildBase(); err != nil {
		e.close()
		return nil, err
	}
	if e.qemu, err = qemuInterpreter(); err != nil {
		e.close()
		return nil, err
	}
	if err := e.startBuildkitd(); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *env) startContainerd() error {
	quoted := make([]string, len(disabledPlugins))
	for i, p := range disabledPlugins {
		quoted[i] = strconv.Quote(p)
	}
	config := fmt.Sprintf(`version = 3
root = %q
state = %q
imports = []
disabled_plugins = [%s]

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins.'io.containerd.internal.v1.opt']
  path = %q
`, filepath.Join(e.dir, "containerd", "root"), filepath.Join(e.dir, "containerd", "state"),
		strings.Join(quoted, ", "), e.address, e.address+".ttrpc", filepath.Join(e.dir, "containerd", "opt"))
	path := filepath.Join(e.dir, "containerd.toml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		return err
	}
	d, err := e.start("containerd", e.tool("containerd"), "--config", path, "--log-level", "warn")
	if err != nil {
		return err
	}
	return e.waitFor(d, func() bool {
		return exec.Command(e.tool("ctr"), "-a", e.address, "version").Run() == nil
	})
}

func (e *env) startBuildkitd() error {
	// A config file of its own, so /etc/buildkit/buildkitd.toml is never read.
	// Everything else is buildkitd's default, as users run it.
	config := fmt.Sprintf(`root = %q

[grpc]
  address = [%q]

[worker.oci]
  enabled = false

[worker.containerd]
  enabled = true
  address = %q
  namespace = %q
  snapshotter = "overlayfs"
  networkMode = "host"
`, filepath.Join(e.dir, "buildkitd"), "unix://"+filepath.Join(e.dir, "buildkitd.sock"), e.address, buildkitNamespace)
	path := filepath.Join(e.dir, "buildkitd.toml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		return err
	}
	e.bkAddress = "unix://" + filepath.Join(e.dir, "buildkitd.sock")
	d, err := e.start("buildkitd", e.tool("buildkitd"), "--config", path)
	if err != nil {
		return err
	}
	e.buildkitd = d
	return e.waitFor(d, func() bool {
		return exec.Command(e.tool("buildctl"), "--addr", e.bkAddress, "debug", "workers").Run() == nil
	})
}

// start runs a daemon with containerd's tools first in PATH (the shim is
// found there), in its own process group, killed if the harness dies.
func (e *env) start(name, bin string, args ...string) (*daemon, error) {
	d := &daemon{name: name, exited: make(chan struct{}), logPath: filepath.Join(e.dir, name+".log")}
	log, err := os.Create(d.logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	d.cmd = exec.Command(bin, args...)
	d.cmd.Env = append(os.Environ(), "PATH="+e.tools+string(os.PathListSeparator)+os.Getenv("PATH"))
	d.cmd.Stdout, d.cmd.Stderr = log, log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Pdeathsig is tied to the starting thread: start and wait on one locked goroutine.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := d.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		d.cmd.Wait()
		close(d.exited)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	e.daemons = append(e.daemons, d)
	return d, nil
}

func (e *env) waitFor(d *daemon, ready func() bool) error {
	deadline := time.Now().Add(60 * time.Second)
	for !ready() {
		if d.dead() || time.Now().After(deadline) {
			return fmt.Errorf("%s did not come up; its log:\n%s", d.name, tail(d.logPath, 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// buildBase builds the multi-platform busybox base into both namespaces,
// with a kiln root of its own per namespace (a root shared by two namespaces
// finds blobs in its cache that the other namespace lacks), so that the
// measured kiln cache starts empty.
func (e *env) buildBase() error {
	ctxDir := filepath.Join(e.dir, "ctx-base")
	if err := os.MkdirAll(ctxDir, 0o755); err != nil {
		return err
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(e.fixtures, "rootfs"), ctxDir).CombinedOutput(); err != nil {
		return fmt.Errorf("copying the fixtures' rootfs: %v: %s", err, out)
	}
	df := "FROM scratch\nARG TARGETARCH\nCOPY rootfs/${TARGETARCH}/ /\nCMD [\"sh\"]\n"
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(df), 0o644); err != nil {
		return err
	}
	for _, ns := range []string{kilnNamespace, buildkitNamespace} {
		cmd := exec.Command(e.kiln, "--address", e.address, "--namespace", ns, "--root", filepath.Join(e.dir, "kiln-setup-"+ns),
			"build", "--progress", "plain", "--platform", "linux/amd64,linux/arm64", "-t", baseImage, ctxDir)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building the busybox base into namespace %s: %v:\n%s", ns, err, out)
		}
	}
	return nil
}

// qemuInterpreter is the interpreter of the binfmt_misc handler that runs
// arm64 programs: the emulated RUN step and the direct run use the same QEMU.
func qemuInterpreter() (string, error) {
	dt, err := os.ReadFile("/proc/sys/fs/binfmt_misc/qemu-aarch64")
	if err != nil {
		return "", fmt.Errorf("no qemu-aarch64 binfmt_misc handler after kiln's build for linux/arm64: %w", err)
	}
	for _, l := range strings.Split(string(dt), "\n") {
		if v, ok := strings.CutPrefix(l, "interpreter "); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("the qemu-aarch64 binfmt_misc handler names no interpreter")
}

// close stops buildkitd, then containerd (SIGTERM, SIGKILL after 15 s),
// kills their shims, unmounts what is left under the directory and removes it.
func (e *env) close() {
	for i := len(e.daemons) - 1; i >= 0; i-- {
		d := e.daemons[i]
		if d.dead() {
			continue
		}
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(15 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
	}
	killShims(e.address)
	unmountUnder(e.dir)
	if err := os.RemoveAll(e.dir); err != nil {
		e.logf("removing %s: %v", e.dir, err)
	}
	for _, ns := range []string{kilnNamespace, buildkitNamespace} {
		_ = os.Remove(filepath.Join("/run/containerd/runc", ns)) // runc leaves it, empty
	}
}

// rss returns a process's resident set size in bytes (0 when it is gone).
func rss(pid int) int64 {
	total, _ := memory(pid)
	return total
}

// memory returns a process's resident set size and the anonymous (private,
// not file-backed) part of it, in bytes; zeros when it is gone.
func memory(pid int) (total, anon int64) {
	dt, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	kb := func(v string) int64 {
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		return n << 10
	}
	for _, l := range strings.Split(string(dt), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			total = kb(v)
		} else if v, ok := strings.CutPrefix(l, "RssAnon:"); ok {
			anon = kb(v)
		}
	}
	return total, anon
}

// cpuTime returns the user and system time a process has used so far.
func cpuTime(pid int) time.Duration {
	dt, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces; the fields after it do not.
	f := strings.Fields(string(dt[strings.LastIndexByte(string(dt), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// peaks are the highest resident sizes sampled.
type peaks struct{ total, anon int64 }

// sampleRSS records the peak resident size of pid, and of its anonymous
// part, every 10 ms until stop is called, which returns them.
func sampleRSS(pid int) (stop func() peaks) {
	ctx, cancel := context.WithCancel(context.Background())
	peak := make(chan peaks, 1)
	go func() {
		var max peaks
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			total, anon := memory(pid)
			max.total, max.anon = maxInt(max.total, total), maxInt(max.anon, anon)
			select {
			case <-ctx.Done():
				peak <- max
				return
			case <-t.C:
			}
		}
	}()
	return func() peaks { cancel(); return <-peak }
}

func maxInt(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// killShims kills the containerd-shim-runc-v2 processes serving address.
func killShims(address string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		dt, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(dt), "\x00")
		if len(args) == 0 || filepath.Base(args[0]) != "containerd-shim-runc-v2" {
			continue
		}
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-address" && args[i+1] == address {
				if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
				break
			}
		}
	}
}

// unmountUnder detaches every mount at or below dir, deepest first.
func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := fields[4]
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, mp := range points {
		_ = syscall.Unmount(mp, syscall.MNT_DETACH)
	}
}

func tail(path string, lines int) string {
	dt, _ := os.ReadFile(path)
	all := strings.Split(strings.TrimRight(string(dt), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
