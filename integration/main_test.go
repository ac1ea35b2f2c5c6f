//go:build linux

// Package integration holds kiln's end-to-end tests: they run the real kiln binary against a
// private containerd (built by hack/build-containerd.sh), runc, QEMU and a local registry.
// Run them with `make test`, which builds everything they need first.
package integration

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
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Set by TestMain; read-only afterwards.
var (
	kilnBinary  string // KILN_BINARY: the kiln binary under test
	toolsDir    string // KILN_TOOLS: containerd, containerd-shim-runc-v2, ctr
	fixturesDir string // KILN_FIXTURES: output of hack/fixtures.sh

	daemon *containerd // the one private containerd shared by the package
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if err := resolvePaths(); err != nil {
		fmt.Fprintf(os.Stderr, "integration: %v\n"+
			"integration: these tests need the kiln binary, a containerd build and the busybox fixtures;\n"+
			"integration: run `make test` from the repository root (as root), which prepares all of them,\n"+
			"integration: or set KILN_BINARY, KILN_TOOLS and KILN_FIXTURES.\n", err)
		return 1
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "integration: these tests start containerd and runc and must run as root; run `sudo make test`")
		return 1
	}

	var err error
	daemon, err = startContainerd(nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: starting containerd: %v\n", err)
		return 1
	}
	code := m.Run()
	if code != 0 && !daemon.dead() { // a dead one has printed its log already
		daemon.printLogTail(os.Stderr, 60)
	}
	if err := daemon.stop(); err != nil {
		fmt.Fprintf(os.Stderr, "integration: stopping containerd: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// resolvePaths reads KILN_BINARY, KILN_TOOLS and KILN_FIXTURES (defaults relative to the
// repository) and checks that what the tests need is there.
func resolvePaths() error {
	get := func(key, def string) (string, error) {
		v := os.Getenv(key)
		if v == "" {
			v = def
		}
		abs, err := filepath.Abs(v)
		if err != nil {
			return "", fmt.Errorf("resolving %s=%q: %w", key, v, err)
		}
		return abs, nil
	}
	var err error
	if kilnBinary, err = get("KILN_BINARY", "../bin/kiln"); err != nil {
		return err
	}
	if toolsDir, err = get("KILN_TOOLS", "../_output/bin"); err != nil {
		return err
	}
	if fixturesDir, err = get("KILN_FIXTURES", "../_output/fixtures"); err != nil {
		return err
	}
	need := map[string]string{
		kilnBinary:                            "KILN_BINARY (build it with `make build`)",
		filepath.Join(toolsDir, "containerd"): "KILN_TOOLS (build it with hack/build-containerd.sh)",
		filepath.Join(toolsDir, "containerd-shim-runc-v2"):              "KILN_TOOLS (build it with hack/build-containerd.sh)",
		filepath.Join(toolsDir, "ctr"):                                  "KILN_TOOLS (build it with hack/build-containerd.sh)",
		filepath.Join(fixturesDir, "rootfs", "amd64", "bin", "busybox"): "KILN_FIXTURES (make it with hack/fixtures.sh)",
	}
	var missing []string
	for p, what := range need {
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			missing = append(missing, fmt.Sprintf("%s: %s is missing", what, p))
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("missing test prerequisites:\n  %s", strings.Join(missing, "\n  "))
	}
	return nil
}

// containerd is a private containerd process with its own root, state and socket.
type containerd struct {
	dir     string // /tmp/kiln-it-XXXX: root, state, socket, log, per-test kiln roots
	address string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	stopped atomic.Bool
}

// disabledPlugins: the CRI plugins (kiln needs none; the binary is also built with no_cri) and NRI.
var disabledPlugins = []string{
	"io.containerd.grpc.v1.cri",
	"io.containerd.cri.v1.images",
	"io.containerd.cri.v1.runtime",
	"io.containerd.podsandbox.controller.v1.podsandbox",
	"io.containerd.nri.v1.nri", // would listen on the host-wide /var/run/nri/nri.sock
}

// startContainerd starts a private containerd; prepare, when set, runs on its
// directory first (a test mounts a small filesystem for the root there).
func startContainerd(prepare func(dir string) error) (*containerd, error) {
	// Unix socket paths are limited to 108 bytes: keep the directory short, not under $TMPDIR.
	dir, err := os.MkdirTemp("/tmp", "kiln-it-")
	if err != nil {
		return nil, err
	}
	if prepare != nil {
		if err := prepare(dir); err != nil {
			unmountUnder(dir)
			os.RemoveAll(dir)
			return nil, err
		}
	}
	d := &containerd{
		dir:     dir,
		address: filepath.Join(dir, "containerd.sock"),
		logPath: filepath.Join(dir, "containerd.log"),
		exited:  make(chan struct{}),
	}
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
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), strings.Join(quoted, ", "),
		d.address, d.address+".ttrpc", filepath.Join(dir, "opt"))
	configPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		return nil, err
	}
	logFile, err := os.Create(d.logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()

	d.cmd = exec.Command(filepath.Join(toolsDir, "containerd"), "--config", configPath, "--log-level", "info")
	d.cmd.Env = append(os.Environ(), "PATH="+toolsDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	d.cmd.Stdout = logFile
	d.cmd.Stderr = logFile
	// Pdeathsig kills containerd if the test binary dies (e.g. on a test timeout panic). It is
	// tied to the starting OS thread, so start and wait on one locked goroutine that lives as
	// long as containerd does.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := d.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		d.waitErr = d.cmd.Wait()
		close(d.exited)
		if !d.stopped.Load() {
			fmt.Fprintf(os.Stderr, "integration: containerd exited unexpectedly: %v\n", d.waitErr)
			d.printLogTail(os.Stderr, 60)
		}
	}()
	if err := <-started; err != nil {
		os.RemoveAll(dir)
		return nil, err
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		if d.dead() { // the waiting goroutine has printed the log
			d.cleanupDir()
			return nil, fmt.Errorf("containerd exited during start-up: %v", d.waitErr)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := exec.CommandContext(ctx, filepath.Join(toolsDir, "ctr"), "-a", d.address, "version").Run()
		cancel()
		if err == nil {
			return d, nil
		}
		if time.Now().After(deadline) {
			d.printLogTail(os.Stderr, 60)
			d.stop()
			return nil, fmt.Errorf("containerd did not answer `ctr version` within 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (d *containerd) dead() bool {
	select {
	case <-d.exited:
		return true
	default:
		return false
	}
}

// stop removes what is left in every namespace, terminates containerd (SIGTERM, then SIGKILL
// after 15s), kills leftover shims of this containerd, unmounts everything under its directory
// and removes it.
func (d *containerd) stop() error {
	if !d.dead() {
		for _, ns := range d.namespaces() {
			sweepNamespace(d.address, ns, func(format string, args ...any) {
				fmt.Fprintf(os.Stderr, "integration: "+format+"\n", args...)
			})
		}
	}
	d.stopped.Store(true)
	if !d.dead() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(15 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
	}
	killShims(d.address)
	return d.cleanupDir()
}

func (d *containerd) cleanupDir() error {
	unmountUnder(d.dir)
	if err := os.RemoveAll(d.dir); err != nil {
		return fmt.Errorf("removing %s: %w", d.dir, err)
	}
	return nil
}

func (d *containerd) namespaces() []string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(toolsDir, "ctr"), "-a", d.address, "namespaces", "ls", "-q").Output()
	if err != nil {
		return nil
	}
	return strings.Fields(string(out))
}

func (d *containerd) printLogTail(w *os.File, lines int) {
	data, err := os.ReadFile(d.logPath)
	if err != nil {
		fmt.Fprintf(w, "integration: reading containerd log: %v\n", err)
		return
	}
	var all []string
	for _, l := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		if !strings.Contains(l, "loading plugin") { // start-up noise
			all = append(all, l)
		}
	}
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	fmt.Fprintf(w, "---- last %d lines of %s ----\n%s\n---- end of containerd log ----\n", len(all), d.logPath, strings.Join(all, "\n"))
}

// killShims kills containerd-shim-runc-v2 processes serving the given containerd address.
func killShims(address string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(data), "\x00")
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
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, mp := range points {
		_ = syscall.Unmount(mp, syscall.MNT_DETACH)
	}
}

// unescapeMountinfo undoes the octal escapes (\040 for space, ...) of /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
