//go:build linux

package integration

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// TestNodePlaintext: a plain tcp:// node (no TLS) would receive the build's registry
// credentials, secrets and ssh agents in clear text, so a build refuses it, in one line that
// says what to do, with exit 2 and before anything is sent to it; the nodes file's
// insecure-plaintext key accepts it, and kiln node ls says which nodes are unencrypted.
func TestNodePlaintext(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	needArm64Emulation(t, e)
	n := startNode(t, nodeOptions{})
	dir := nodeContext(t, nodeDockerfile)
	build := []string{"build", "--progress", "plain", "--platform", "linux/amd64,linux/arm64", "-t", "app", dir}

	r := e.kiln(append(build, "--node", "linux/arm64="+n.Addr)...).fails(t, 2, "node "+n.Addr+" is plain tcp:// without TLS")
	for _, want := range []string{"credentials, secrets and ssh agents", "tls-ca=FILE", ",insecure-plaintext=true"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, r.Stderr)
		}
	}
	if lines := strings.Split(strings.TrimSpace(r.Stderr), "\n"); len(lines) != 1 {
		t.Errorf("the refusal is %d lines, want one:\n%s", len(lines), r.Stderr)
	}

	lab := func(extra string) string {
		return nodesConfig(t, fmt.Sprintf("[node.lab]\naddress = %q\nplatforms = [\"linux/arm64\"]\n%s", n.Addr, extra))
	}
	refused := lab("")
	r = e.kilnEnv([]string{refused}, build...).fails(t, 2, "node lab ("+n.Addr+") is plain tcp:// without TLS")
	if !strings.Contains(r.Stderr, "insecure-plaintext = true") {
		t.Errorf("the refusal does not name the nodes file's key:\n%s", r.Stderr)
	}
	// Nothing of either build reached the node: no build context in its cache.
	if du := n.buildctl(t, "du", "-v").ok(t).Stdout; strings.Contains(du, "local source") || strings.Contains(du, "arm64-step") {
		t.Errorf("a refused build reached the node:\n%s", du)
	}
	if out := e.ctr("images", "ls", "-q").ok(t).Stdout; strings.TrimSpace(out) != "" {
		t.Errorf("a refused build stored images:\n%s", out)
	}

	ls := e.kilnEnv([]string{refused}, "node", "ls").ok(t).Stdout
	if !regexp.MustCompile(`(?m)^NAME\s+ADDRESS\s+TRANSPORT\s+STATUS`).MatchString(ls) ||
		!regexp.MustCompile(`lab\s+`+regexp.QuoteMeta(n.Addr)+`\s+plaintext \(refused\)\s+reachable\s+v0\.34\.2`).MatchString(ls) ||
		!strings.Contains(ls, "node lab ("+n.Addr+") is plain tcp:// without TLS") {
		t.Errorf("kiln node ls does not show the node as unencrypted and refused:\n%s", ls)
	}
	if js := e.kilnEnv([]string{refused}, "node", "ls", "--format", "json").ok(t).Stdout; !strings.Contains(js, `"transport":"plaintext"`) {
		t.Errorf("kiln node ls --format json has no transport:\n%s", js)
	}

	// Accepted by the key named for the risk, the node builds arm64.
	accepted := lab("insecure-plaintext = true\n")
	r = e.kilnEnv([]string{accepted}, build...).ok(t)
	if lines := stepLines(r.Stderr, "build-arm64"); len(lines) == 0 || !strings.Contains(lines[0], "[lab] [build-arm64") {
		t.Errorf("the accepted node did not build arm64:\n%s", r.Stderr)
	}
	checkRuns(t, e, "docker.io/library/app:latest")
	ls = e.kilnEnv([]string{accepted}, "node", "ls").ok(t).Stdout
	if !regexp.MustCompile(`lab\s+` + regexp.QuoteMeta(n.Addr) + `\s+plaintext \(accepted\)\s+reachable`).MatchString(ls) {
		t.Errorf("kiln node ls does not show the accepted node:\n%s", ls)
	}
}

// TestNodeCredentials: a node gets the user's registry credentials only for the registries
// the build names. The node's buildkitd mirrors docker.io to a registry with password
// authentication (as a node's administrator, or an attacker, may set up); the user's docker
// config holds the password for that registry. A build FROM the registry by its own name
// gets the password; a build FROM docker.io, which the node takes to the mirror and asks the
// password for, gets none: the registry sees no authenticated request, the build fails
// saying which credentials kiln held back, and --debug logs the refusal.
func TestNodeCredentials(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	needArm64Emulation(t, e)
	port := strconv.Itoa(freePort(t))
	n := startNode(t, nodeOptions{config: func(hostIP string) string {
		reg := net.JoinHostPort(hostIP, port)
		return fmt.Sprintf("[registry.%q]\n  http = true\n\n[registry.\"docker.io\"]\n  mirrors = [%q]\n", reg, reg)
	}})
	reg, regLog := startAuthRegistry(t, net.JoinHostPort(n.HostIP, port), "kiln", "s3cret-pass")
	cfgDir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("kiln:s3cret-pass"))
	if err := os.WriteFile(filepath.Join(cfgDir, "config.json"), []byte(fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, reg, auth)), 0o600); err != nil {
		t.Fatal(err)
	}
	dockerConfig := "DOCKER_CONFIG=" + cfgDir

	// The base, in the registry under its own name and as the mirror of docker.io/library/base.
	e.busyboxBase(t, reg+"/kiln/base:1")
	e.kiln("tag", reg+"/kiln/base:1", reg+"/library/base:1").ok(t)
	for _, name := range []string{reg + "/kiln/base:1", reg + "/library/base:1"} {
		e.kilnEnv([]string{dockerConfig}, "push", "--insecure-registry", name).ok(t)
	}
	node := "linux/arm64=" + n.Addr + ",insecure-plaintext=true"

	// The registry the build names: the node gets the password and pulls.
	dir := contextDir(t, map[string]string{"Dockerfile": "FROM " + reg + "/kiln/base:1\nRUN uname -m > /arch\nCMD [\"cat\", \"/arch\"]\n"})
	e.kilnEnv([]string{dockerConfig}, "build", "--platform", "linux/arm64", "--node", node, "-t", "named", dir).ok(t)
	if out := e.ctr("run", "--rm", "--platform", "linux/arm64", "docker.io/library/named:latest", "named-run").ok(t).Stdout; strings.TrimSpace(out) != "aarch64" {
		t.Errorf("the image built from the authenticated registry printed %q", out)
	}
	authorized := strings.Count(regLog(), `msg="authorized request"`)
	if authorized == 0 {
		t.Fatalf("the registry saw no authenticated request: the test cannot tell a refusal apart:\n%s", regLog())
	}

	// A registry the build does not name: the node asks for its password and gets none.
	dir = contextDir(t, map[string]string{"Dockerfile": "FROM docker.io/library/base:1\nRUN uname -m > /arch\n"})
	r := e.kilnEnv([]string{dockerConfig}, "--debug", "build", "--platform", "linux/arm64", "--node", node, "-t", "mirrored", dir).
		fails(t, 1, "kiln gave the node no credentials for "+reg+", a registry the build names no image of")
	t.Logf("kiln: %s", lastLine(r.Stderr))
	if !strings.Contains(r.Stderr, "not giving node "+n.Addr+" credentials for "+reg+": the build names no image of that registry (it uses docker.io)") {
		t.Errorf("no debug line for the refused credentials:\n%s", lastLines(r.Stderr, 40))
	}
	if strings.Contains(r.Stderr, "s3cret-pass") || strings.Contains(r.Stderr, auth) {
		t.Errorf("the password reached kiln's output")
	}
	log := regLog()
	if !strings.Contains(log, "/v2/library/base/manifests/1") {
		t.Errorf("the node did not ask the mirror, so the test proves nothing:\n%s", log)
	}
	if got := strings.Count(log, `msg="authorized request"`); got != authorized {
		t.Errorf("the registry authorized %d requests during the build FROM docker.io: the node had the password", got-authorized)
	}
	if out := e.ctr("images", "ls", "-q").ok(t).Stdout; strings.Contains(out, "mirrored") {
		t.Errorf("the failed build named an image:\n%s", out)
	}
}

// TestNodeEmbeddedStore: a build on a node with kiln's embedded store (no containerd) stores
// the joined index, with the local and the node's platforms, and it runs. The node's export
// arrives through the session with the node's own containerd lease in its headers; before
// the fix the embedded store refused every blob ("lease does not exist").
func TestNodeEmbeddedStore(t *testing.T) {
	t.Parallel()
	e := newEmbeddedEnv(t)
	needArm64Emulation(t, e.env)
	n := startNode(t, nodeOptions{})
	dir := nodeContext(t, nodeDockerfile)
	node := "linux/arm64=" + n.Addr + ",insecure-plaintext=true"

	r := e.kiln("build", "--progress", "plain", "--platform", "linux/amd64,linux/arm64", "--node", node, "-t", "app", dir).ok(t)
	if lines := stepLines(r.Stderr, "build-arm64"); len(lines) == 0 || !strings.Contains(lines[0], "["+n.Addr+"] [build-arm64") {
		t.Errorf("the arm64 step did not run on the node:\n%s", r.Stderr)
	}
	// Only the node builds: no local engine, the store opened alone.
	e.kiln("build", "--platform", "linux/arm64", "--node", node, "-t", "app:arm64", dir).ok(t)
	for name, want := range map[string]string{"app:latest": "linux/amd64 complete\nlinux/arm64 complete", "app:arm64": "linux/arm64 complete"} {
		got := strings.TrimSpace(e.kiln("images", "--platforms", "--format", "{{.Platform}} {{.Content}}", name).ok(t).Stdout)
		if got != want {
			t.Errorf("kiln images --platforms %s:\n%s\nwant\n%s", name, got, want)
		}
	}
	if out := e.kiln("images", "--platforms", "--format", "{{.Platform}} {{.Unpacked}}", "app").ok(t).Stdout; !strings.Contains(out, "linux/amd64 true") {
		t.Errorf("the host's platform was not unpacked:\n%s", out)
	}

	// It runs: saved from the embedded store, imported into the test's containerd.
	archive := filepath.Join(t.TempDir(), "app.tar")
	e.kiln("save", "app", "-o", archive).ok(t)
	e.ctr("images", "import", "--all-platforms", archive).ok(t)
	checkRuns(t, e.env, "docker.io/library/app:latest")
}

// startAuthRegistry starts Debian's docker-registry on addr with htpasswd authentication for
// one user, and returns its address and a function that reads its log.
func startAuthRegistry(t *testing.T, addr, user, password string) (string, func() string) {
	t.Helper()
	const bin = "/usr/bin/docker-registry"
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: run hack/install-deps.sh (Debian package docker-registry)", bin)
	}
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "config.yml")
	yml := fmt.Sprintf("version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\nauth:\n  htpasswd:\n    realm: kiln-test\n    path: %s\n",
		filepath.Join(dir, "storage"), addr, htpasswd)
	if err := os.WriteFile(config, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "registry.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "serve", config)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	readLog := func() string { data, _ := os.ReadFile(logPath); return string(data) }
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("authenticating registry log tail:\n%s", lastLines(readLog(), 30))
		}
	})
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("docker-registry on %s exited:\n%s", addr, readLog())
		default:
		}
		// Without credentials a ready registry answers 401.
		if resp, err := client.Get("http://" + addr + "/v2/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				return addr, readLog
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker-registry on %s did not answer:\n%s", addr, readLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lastLines is the end of s, at most n lines.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
