//go:build linux

// Package integration holds kiln's end-to-end tests: they run the real kiln binary against a
// private containerd (built by hack/build-containerd.sh), runc, QEMU and a local registry.
// Run them with `make test`, which builds everything they need first.
package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/privatecontainerd"
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
	// Daemons the tests share (buildkitd) stop before containerd.
	runAtExit()
	if code != 0 && !daemon.Dead() { // a dead one has printed its log already
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
	*privatecontainerd.Containerd
	dir     string // /tmp/kiln-it-XXXX: root, state, socket, log, per-test kiln roots
	address string
	logPath string
	stopped atomic.Bool
}

// startContainerd starts a private containerd; prepare, when set, runs on its
// directory first (a test mounts a small filesystem for the root there).
func startContainerd(prepare func(dir string) error) (*containerd, error) {
	return startContainerdWith(prepare, nil)
}

// startContainerdWith is startContainerd with containerd's CRI plugin
// enabled when cri is set.
func startContainerdWith(prepare func(dir string) error, cri *privatecontainerd.CRI) (*containerd, error) {
	// Unix socket paths are limited to 108 bytes: keep the directory short, not under $TMPDIR.
	dir, err := os.MkdirTemp("/tmp", "kiln-it-")
	if err != nil {
		return nil, err
	}
	d := &containerd{
		dir:     dir,
		address: filepath.Join(dir, "containerd.sock"),
		logPath: filepath.Join(dir, "containerd.log"),
	}
	if prepare != nil {
		if err := prepare(dir); err != nil {
			d.cleanupDir()
			return nil, err
		}
	}
	d.Containerd, err = privatecontainerd.Start(privatecontainerd.Config{
		Tools:      toolsDir,
		Dir:        dir,
		ConfigPath: filepath.Join(dir, "config.toml"),
		Address:    d.address,
		LogPath:    d.logPath,
		LogLevel:   "info",
		Timeout:    30 * time.Second,
		CRI:        cri,
	})
	if err != nil {
		d.printLogTail(os.Stderr, 60)
		d.cleanupDir()
		return nil, err
	}
	go func() {
		<-d.Exited()
		if !d.stopped.Load() {
			fmt.Fprintf(os.Stderr, "integration: containerd exited unexpectedly: %v\n", d.Err())
			d.printLogTail(os.Stderr, 60)
		}
	}()
	return d, nil
}

// stop removes what is left in every namespace, terminates containerd (SIGTERM, then SIGKILL
// after 15s), kills leftover shims of this containerd, unmounts everything under its directory
// and removes it.
func (d *containerd) stop() error {
	if !d.Dead() {
		for _, ns := range d.namespaces() {
			sweepNamespace(d.address, ns, func(format string, args ...any) {
				fmt.Fprintf(os.Stderr, "integration: "+format+"\n", args...)
			})
		}
	}
	d.stopped.Store(true)
	d.Containerd.Stop()
	return d.cleanupDir()
}

func (d *containerd) cleanupDir() error {
	privatecontainerd.UnmountUnder(d.dir)
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
