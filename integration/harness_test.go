//go:build linux

package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/privatecontainerd"
)

// commandTimeout bounds every kiln and ctr invocation of a test.
const commandTimeout = 10 * time.Minute

// env is one test's view of the shared containerd: its own namespace and its own kiln root.
type env struct {
	t         *testing.T
	Namespace string // containerd namespace, unique to the test
	Root      string // kiln --root, unique to the test
	Address   string // containerd socket
}

var envCounter atomic.Int64

// newEnv gives t its own containerd namespace and kiln root; at cleanup the namespace's tasks,
// containers, images, leases and content are removed, then the namespace itself and the root.
func newEnv(t *testing.T) *env {
	t.Helper()
	if daemon == nil || daemon.Dead() {
		t.Fatalf("the private containerd is not running (log: %s)", logPathOrNone())
	}
	// The pid keeps namespaces of concurrent test runs apart: runc's state directory
	// (/run/containerd/runc/<namespace>) is shared by every containerd on the host.
	ns := fmt.Sprintf("%s-%d-%d", sanitizeNamespace(t.Name()), envCounter.Add(1), os.Getpid())
	// A short path under the package's directory rather than t.TempDir(): kiln may put unix
	// sockets in its root (108-byte limit), and mounts left there must be detached before removal.
	root, err := os.MkdirTemp(daemon.dir, "k")
	if err != nil {
		t.Fatalf("creating kiln root: %v", err)
	}
	e := &env{t: t, Namespace: ns, Root: root, Address: daemon.address}
	t.Cleanup(func() {
		if !daemon.Dead() {
			for _, n := range []string{ns, ns + "_history"} {
				sweepNamespace(e.Address, n, t.Logf)
			}
		}
		privatecontainerd.UnmountUnder(root)
		if err := os.RemoveAll(root); err != nil {
			t.Logf("removing kiln root: %v", err)
		}
	})
	return e
}

func logPathOrNone() string {
	if daemon == nil {
		return "none"
	}
	return daemon.logPath
}

// sanitizeNamespace turns a test name into a valid containerd namespace prefix:
// lower-case alphanumerics separated by single dashes, at most 50 bytes.
func sanitizeNamespace(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
		} else {
			dash = true
		}
	}
	s := b.String()
	if len(s) > 50 {
		s = strings.TrimRight(s[:50], "-")
	}
	if s == "" {
		s = "t"
	}
	return s
}

// result is what a command did.
type result struct {
	Stdout, Stderr string
	Code           int    // exit code; -1 if it did not run or was killed
	cmd            string // the command line, for messages
}

// ok fails the test, printing both streams, unless the command exited 0.
func (r result) ok(t *testing.T) result {
	t.Helper()
	if r.Code != 0 {
		t.Fatalf("%s: exit code %d\n--- stdout:\n%s\n--- stderr:\n%s", r.cmd, r.Code, r.Stdout, r.Stderr)
	}
	return r
}

// fails asserts that the command failed (with exactly code when code > 0), that stderr contains
// substr, and that stderr shows no Go panic, goroutine dump or raw gRPC error.
func (r result) fails(t *testing.T, code int, substr string) result {
	t.Helper()
	dump := fmt.Sprintf("\n--- stdout:\n%s\n--- stderr:\n%s", r.Stdout, r.Stderr)
	switch {
	case r.Code == 0:
		t.Fatalf("%s: succeeded, want a failure%s", r.cmd, dump)
	case code > 0 && r.Code != code:
		t.Fatalf("%s: exit code %d, want %d%s", r.cmd, r.Code, code, dump)
	case !strings.Contains(r.Stderr, substr):
		t.Fatalf("%s: stderr does not contain %q%s", r.cmd, substr, dump)
	}
	for _, bad := range []string{"goroutine ", "panic:", "rpc error:"} {
		if strings.Contains(r.Stderr, bad) {
			t.Fatalf("%s: stderr contains %q, want a plain error message%s", r.cmd, bad, dump)
		}
	}
	return r
}

// kiln runs the kiln binary with --address, --namespace and --root of e prepended and stdin
// from /dev/null.
func (e *env) kiln(args ...string) result {
	e.t.Helper()
	return e.kilnStdin("", args...)
}

// kilnStdin is kiln with the given standard input.
func (e *env) kilnStdin(stdin string, args ...string) result {
	e.t.Helper()
	full := append([]string{"--address", e.Address, "--namespace", e.Namespace, "--root", e.Root}, args...)
	return runShown(e.t, stdin, "kiln "+strings.Join(args, " "), kilnBinary, full...)
}

// ctr runs containerd's ctr against e's containerd and namespace.
func (e *env) ctr(args ...string) result {
	e.t.Helper()
	full := append([]string{"-a", e.Address, "-n", e.Namespace}, args...)
	return runShown(e.t, "", "ctr "+strings.Join(args, " "), filepath.Join(toolsDir, "ctr"), full...)
}

// runCommand runs name with args and stdin (none: /dev/null), within commandTimeout.
func runCommand(t *testing.T, stdin, name string, args ...string) result {
	t.Helper()
	return runShown(t, stdin, filepath.Base(name)+" "+strings.Join(args, " "), name, args...)
}

// runShown is runCommand with the command line shown in logs and messages as line.
func runShown(t *testing.T, stdin, line, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	} // a nil Stdin is /dev/null
	return execute(t, ctx, cmd, "$ ", line)
}

// execute runs cmd, made with ctx (which bounds it), capturing both streams,
// and logs prompt+line with the exit code and duration. A command killed or
// not started gets Code -1 and the reason appended to Stderr.
func execute(t *testing.T, ctx context.Context, cmd *exec.Cmd, prompt, line string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	err := cmd.Run()
	r := result{Stdout: stdout.String(), Stderr: stderr.String(), cmd: line}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr) && exitErr.ExitCode() >= 0:
		r.Code = exitErr.ExitCode()
	default:
		r.Code = -1
		if ctx.Err() != nil {
			err = fmt.Errorf("killed after %v: %w", commandTimeout, err)
		}
		r.Stderr += "\n[harness] " + err.Error()
	}
	t.Logf("%s%s  # exit %d in %.1fs", prompt, line, r.Code, time.Since(start).Seconds())
	return r
}

// sweepNamespace removes everything in one namespace of the containerd at address, then the
// namespace. Problems are reported through logf, never fatal.
func sweepNamespace(address, ns string, logf func(format string, args ...any)) {
	ctr := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		full := append([]string{"-a", address, "-n", ns}, args...)
		cmd := exec.CommandContext(ctx, filepath.Join(toolsDir, "ctr"), full...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return stdout.String(), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, lastLine(stderr.String()))
		}
		return stdout.String(), nil
	}
	out, err := ctr("namespaces", "ls", "-q")
	if err != nil || !contains(strings.Fields(out), ns) {
		return
	}
	list := func(kind string) []string {
		out, err := ctr(kind, "ls", "-q")
		if err != nil {
			logf("cleanup of namespace %s: %v", ns, err)
			return nil
		}
		return strings.Fields(out)
	}
	for _, id := range list("tasks") {
		_, _ = ctr("tasks", "kill", "-s", "SIGKILL", id)
		if _, err := ctr("tasks", "delete", "-f", id); err != nil {
			logf("cleanup of namespace %s: %v", ns, err)
		}
	}
	for _, kind := range []string{"containers", "images", "leases", "content"} {
		if ids := list(kind); len(ids) > 0 {
			if _, err := ctr(append([]string{kind, "rm"}, ids...)...); err != nil {
				logf("cleanup of namespace %s: %v", ns, err)
			}
		}
	}
	// Snapshots go with the garbage collector, shortly after their last reference.
	var lastErr error
	for i := 0; i < 50; i++ {
		if _, lastErr = ctr("namespaces", "rm", ns); lastErr == nil {
			_ = os.Remove(filepath.Join("/run/containerd/runc", ns)) // runc leaves it, empty
			// ctr run's tasks get the cgroup /NS/ID in every hierarchy; runc
			// removes ID and leaves NS, empty (rmdir refuses one in use).
			dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/*", ns))
			for _, d := range append(dirs, filepath.Join("/sys/fs/cgroup", ns)) {
				_ = os.Remove(d)
			}
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	logf("cleanup of namespace %s: %v", ns, lastErr)
}

// lastLine returns the last non-empty line of s (ctr puts warnings before its error).
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// fixtures returns KILN_FIXTURES (busybox-<debarch> binaries and rootfs/<TARGETARCH>/ trees).
func fixtures(t *testing.T) string {
	t.Helper()
	return fixturesDir
}

// contextDir writes files (relative path -> content) into a new temporary directory and
// returns it, for use as a build context.
func contextDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// busyboxDockerfile builds a multi-platform busybox base from a context holding the fixtures'
// rootfs/ directory (rootfs/amd64, rootfs/arm64, rootfs/arm).
const busyboxDockerfile = `FROM scratch
ARG TARGETARCH
COPY rootfs/${TARGETARCH}/ /
CMD ["sh"]
`

// busyboxBase builds the busybox base image from the fixtures into e's namespace as name,
// for the given platforms (default linux/amd64 and linux/arm64), so tests can `FROM name`.
func (e *env) busyboxBase(t *testing.T, name string, platforms ...string) {
	t.Helper()
	if len(platforms) == 0 {
		platforms = []string{"linux/amd64", "linux/arm64"}
	}
	dir := contextDir(t, map[string]string{"Dockerfile": busyboxDockerfile})
	// A copy, not a symlink: the build context must contain the files themselves.
	if out, err := exec.Command("cp", "-a", filepath.Join(fixturesDir, "rootfs"), dir).CombinedOutput(); err != nil {
		t.Fatalf("copying fixtures rootfs: %v: %s", err, out)
	}
	e.kiln("build", "--platform", strings.Join(platforms, ","), "-t", name, dir).ok(t)
}

// startRegistry starts Debian's docker-registry on a free loopback port with storage in a
// temporary directory, waits until GET /v2/ answers and stops it at cleanup. It returns
// "127.0.0.1:PORT".
func startRegistry(t *testing.T) (addr string) {
	t.Helper()
	return startRegistryWith(t, registryConfig{})
}

// registryConfig adds to a test registry's configuration.
type registryConfig struct {
	// CertFile and KeyFile serve HTTPS with this certificate.
	CertFile, KeyFile string
	// Htpasswd is a file of bcrypt htpasswd lines the registry asks
	// basic auth credentials from.
	Htpasswd string
}

// startRegistryWith is startRegistry with TLS or basic auth.
func startRegistryWith(t *testing.T, rc registryConfig) (addr string) {
	t.Helper()
	const bin = "/usr/bin/docker-registry"
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: run hack/install-deps.sh (Debian package docker-registry)", bin)
	}
	dir := t.TempDir()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // another process may take the port first
		addr, lastErr = tryStartRegistry(t, bin, dir, attempt, rc)
		if lastErr == nil {
			return addr
		}
	}
	t.Fatalf("starting docker-registry: %v", lastErr)
	return ""
}

func tryStartRegistry(t *testing.T, bin, dir string, attempt int, rc registryConfig) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	l.Close()

	config := filepath.Join(dir, fmt.Sprintf("config-%d.yml", attempt))
	logPath := filepath.Join(dir, fmt.Sprintf("registry-%d.log", attempt))
	yml := fmt.Sprintf(`version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "storage"), addr)
	scheme := "http"
	if rc.CertFile != "" {
		scheme = "https"
		yml += fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", rc.CertFile, rc.KeyFile)
	}
	if rc.Htpasswd != "" {
		yml += fmt.Sprintf("auth:\n  htpasswd:\n    realm: kiln-test\n    path: %s\n", rc.Htpasswd)
	}
	if err := os.WriteFile(config, []byte(yml), 0o644); err != nil {
		return "", err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return "", err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "serve", config)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	logTail := func() string {
		data, _ := os.ReadFile(logPath)
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		return string(data)
	}

	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // only asks whether it answers
	}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			return "", fmt.Errorf("docker-registry on %s exited:\n%s", addr, logTail())
		default:
		}
		resp, err := client.Get(scheme + "://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || (rc.Htpasswd != "" && resp.StatusCode == http.StatusUnauthorized) {
				break
			}
			err = fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		if time.Now().After(deadline) {
			stop()
			return "", fmt.Errorf("docker-registry on %s did not answer: %v\n%s", addr, err, logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("docker-registry log tail:\n%s", logTail())
		}
	})
	return addr, nil
}

// hostFixtureArch maps the host's GOARCH to its fixtures rootfs directory and `uname -m`.
func hostFixtureArch(t *testing.T) (dir, machine string) {
	switch runtime.GOARCH {
	case "amd64":
		return "amd64", "x86_64"
	case "arm64":
		return "arm64", "aarch64"
	case "arm":
		return "arm", "armv7l"
	}
	t.Skipf("no busybox fixture for host architecture %s", runtime.GOARCH)
	return "", ""
}

// copyRootfs copies the host architecture's fixture rootfs into a temporary directory.
func copyRootfs(t *testing.T) (rootfs, machine string) {
	t.Helper()
	arch, machine := hostFixtureArch(t)
	rootfs = filepath.Join(t.TempDir(), "rootfs")
	if out, err := exec.Command("cp", "-a", filepath.Join(fixtures(t), "rootfs", arch), rootfs).CombinedOutput(); err != nil {
		t.Fatalf("copying rootfs: %v: %s", err, out)
	}
	return rootfs, machine
}

func TestHarnessCommands(t *testing.T) {
	t.Parallel()
	r := runCommand(t, "", "/bin/sh", "-c", "echo out; echo err >&2; exit 3")
	if r.Code != 3 || r.Stdout != "out\n" || r.Stderr != "err\n" {
		t.Fatalf("got %+v", r)
	}
	r.fails(t, 3, "err")
	runCommand(t, "piped\n", "/bin/cat").ok(t)
	if got := runCommand(t, "piped\n", "/bin/cat").Stdout; got != "piped\n" {
		t.Fatalf("stdin not passed: %q", got)
	}
	if got := runCommand(t, "", "/bin/cat").ok(t).Stdout; got != "" {
		t.Fatalf("stdin should be /dev/null, read %q", got)
	}
	if r := runCommand(t, "", "/nonexistent/binary"); r.Code != -1 {
		t.Fatalf("missing binary: got %+v", r)
	}
	for in, want := range map[string]string{
		"TestFoo/sub_test#01":   "testfoo-sub-test-01",
		"///":                   "t",
		strings.Repeat("A", 80): strings.Repeat("a", 50),
	} {
		if got := sanitizeNamespace(in); got != want {
			t.Errorf("sanitizeNamespace(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHarnessContainerd(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if out := e.ctr("version").ok(t).Stdout; !strings.Contains(out, "Server:") {
		t.Fatalf("ctr version shows no server:\n%s", out)
	}
	// The shim is found through PATH and runc runs a container.
	rootfs, machine := copyRootfs(t)
	out := e.ctr("run", "--rm", "--rootfs", rootfs, "harness-uname", "/bin/uname", "-m").ok(t).Stdout
	if strings.TrimSpace(out) != machine {
		t.Fatalf("uname -m in a container printed %q, want %q", out, machine)
	}
}

func TestHarnessCleanup(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var ns string
	t.Run("leave-things-behind", func(t *testing.T) {
		c := newEnv(t)
		ns = c.Namespace
		rootfs, _ := copyRootfs(t)
		c.ctr("run", "-d", "--rootfs", rootfs, "sleeper", "/bin/sleep", "600").ok(t)
		c.ctr("leases", "create").ok(t)
	})
	if out := e.ctr("namespaces", "ls", "-q").ok(t).Stdout; contains(strings.Fields(out), ns) {
		t.Fatalf("namespace %s survived its test's cleanup:\n%s", ns, out)
	}
}

func TestHarnessRegistry(t *testing.T) {
	t.Parallel()
	addr := startRegistry(t)
	resp, err := http.Get("http://" + addr + "/v2/_catalog")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/_catalog: %s", resp.Status)
	}
}
