//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-build/kiln/internal/privatecontainerd"
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
	containerd   *privatecontainerd.Containerd
	buildkitd    *privatecontainerd.Daemon
	logf         func(format string, args ...any)
	// debianImported: the real-world Debian base is in both namespaces.
	debianImported bool
}

// paths are the binaries and fixtures the harness needs.
type paths struct {
	kiln     string // bin/kiln
	baseline string // another kiln binary to measure alongside (optional)
	tools    string // containerd, containerd-shim-runc-v2, ctr, buildkitd, buildctl
	fixtures string // hack/fixtures.sh output (and hack/debian-fixtures.sh's under debian/)
	corpus   string // the real-world corpus: integration/testdata/realworld
	qemu     string // the aarch64 QEMU the binfmt handler uses; set by setup
}

func (p paths) tool(name string) string { return filepath.Join(p.tools, name) }

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
	logPath := filepath.Join(e.dir, "containerd.log")
	var err error
	e.containerd, err = privatecontainerd.Start(privatecontainerd.Config{
		Tools:      e.tools,
		Dir:        filepath.Join(e.dir, "containerd"),
		ConfigPath: filepath.Join(e.dir, "containerd.toml"),
		Address:    e.address,
		LogPath:    logPath,
		LogLevel:   "warn",
		Timeout:    startTimeout,
	})
	if err != nil {
		return fmt.Errorf("%w; its log:\n%s", err, tail(logPath, 30))
	}
	return nil
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
	cmd := exec.Command(e.tool("buildkitd"), "--config", path)
	cmd.Env = privatecontainerd.ToolsFirst(e.tools)
	d, err := privatecontainerd.StartDaemon("buildkitd", filepath.Join(e.dir, "buildkitd.log"), cmd)
	if err != nil {
		return err
	}
	e.buildkitd = d
	err = d.WaitFor(startTimeout, "`buildctl debug workers`", func() error {
		return exec.Command(e.tool("buildctl"), "--addr", e.bkAddress, "debug", "workers").Run()
	})
	if err != nil {
		return fmt.Errorf("%w; its log:\n%s", err, tail(d.LogPath, 30))
	}
	return nil
}

// startTimeout bounds each daemon's start-up.
const startTimeout = 60 * time.Second

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
	if e.buildkitd != nil {
		e.buildkitd.Stop()
	}
	if e.containerd != nil {
		e.containerd.Stop()
	}
	privatecontainerd.UnmountUnder(e.dir)
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
	return sampleMax(10*time.Millisecond, func(highest peaks) peaks {
		total, anon := memory(pid)
		return peaks{max(highest.total, total), max(highest.anon, anon)}
	})
}

// sampleMax calls raise now and then every interval until stop is called,
// which returns what raise last returned: raise takes the highest value so
// far and returns it raised to a new reading where that is higher.
func sampleMax[T any](every time.Duration, raise func(highest T) T) (stop func() T) {
	ctx, cancel := context.WithCancel(context.Background())
	result := make(chan T, 1)
	go func() {
		var highest T
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			highest = raise(highest)
			select {
			case <-ctx.Done():
				result <- highest
				return
			case <-t.C:
			}
		}
	}()
	return func() T { cancel(); return <-result }
}

func tail(path string, lines int) string {
	dt, _ := os.ReadFile(path)
	all := strings.Split(strings.TrimRight(string(dt), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
