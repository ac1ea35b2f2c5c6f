//go:build linux

package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// The conformance suite: every directory under testdata/conformance is a
// small build context whose Dockerfile exercises Dockerfile features or
// kiln build options. Each is built for conformancePlatforms into both
// containerd (-o type=image) and an OCI archive (-o type=oci), and its check
// reads the result back from the archive: files with contents, modes and
// owners, and the image config. Run one case with
// go test -run 'TestConformance/secret' ./integration/.

// conformancePlatforms are the platforms every case is built for.
var conformancePlatforms = []string{"linux/amd64", "linux/arm64"}

// conformanceCase is one directory of testdata/conformance and what its
// build must produce.
type conformanceCase struct {
	name string   // subtest name; also the directory unless dir is set
	dir  string   // directory under testdata/conformance
	file string   // Dockerfile path inside the directory (default Dockerfile)
	args []string // extra kiln build options
	// platforms replaces conformancePlatforms.
	platforms []string
	// ownEnv gives the case a fresh containerd namespace and kiln root
	// (and no busybox base): for cases about what a fresh root sees.
	ownEnv bool
	// setup prepares what the case needs beyond its directory and returns
	// more build options.
	setup func(t *testing.T, c *caseRun) []string
	// check builds (c.build) and asserts.
	check func(t *testing.T, c *caseRun)
}

// caseRun is one running case.
type caseRun struct {
	e         *env
	ctx       string   // a copy of the case directory: the build context
	name      string   // image name
	file      string   // -f, absolute, or empty
	platforms []string // --platform values
	args      []string // case and setup options
	environ   []string // extra environment of kiln
	// data carries what setup made (paths, values) to check.
	data map[string]string
}

func TestConformance(t *testing.T) {
	// KILN_CONFORMANCE_MEMORY=256MiB runs every build of the suite under
	// that budget (kiln reads KILN_MEMORY): the suite must pass within it.
	if budget := os.Getenv("KILN_CONFORMANCE_MEMORY"); budget != "" {
		t.Logf("every build runs with KILN_MEMORY=%s", budget)
		t.Setenv("KILN_MEMORY", budget)
	}
	shared := newEnv(t)
	shared.busyboxBase(t, "busybox", "linux/amd64", "linux/arm64", "linux/arm/v7")
	covered := map[string]bool{}
	for _, tc := range conformanceCases() {
		dir := tc.dir
		if dir == "" {
			dir = tc.name
		}
		covered[dir] = true
		t.Run(tc.name, func(t *testing.T) {
			var e *env
			if tc.ownEnv {
				e = newEnv(t)
			} else {
				sub := *shared
				sub.t = t
				e = &sub
			}
			c := &caseRun{e: e, ctx: copyCase(t, dir), name: "conformance-" + tc.name, platforms: tc.platforms, args: tc.args, data: map[string]string{}}
			if c.platforms == nil {
				c.platforms = conformancePlatforms
			}
			if tc.file != "" {
				c.file = filepath.Join(c.ctx, tc.file)
			}
			if tc.setup != nil {
				c.args = append(c.args, tc.setup(t, c)...)
			}
			tc.check(t, c)
		})
	}
	entries, err := os.ReadDir(filepath.Join("testdata", "conformance"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range entries {
		if d.IsDir() && !covered[d.Name()] {
			t.Errorf("testdata/conformance/%s has no case in conformanceCases", d.Name())
		}
	}
}

func conformanceCases() []conformanceCase {
	return []conformanceCase{
		{name: "multistage", args: []string{"--target", "release"}, check: checkMultistage},
		{name: "args", args: []string{"--build-arg", "GLOBAL=from-cli", "--build-arg", "OVERRIDE=from-cli"},
			platforms: []string{"linux/amd64", "linux/arm64", "linux/arm/v7"}, check: checkArgs},
		{name: "cross", check: checkCross},
		{name: "heredoc", check: checkHeredoc},
		{name: "mounts", check: checkMounts},
		{name: "cachemount", check: checkCacheMount},
		{name: "secret", setup: secretSetup, check: checkSecret},
		{name: "ssh", setup: sshSetup, check: checkSSH},
		{name: "network", args: []string{"--allow", "network.host"}, setup: serveOnHost, check: checkNetwork},
		{name: "network-option", dir: "network", file: "option.Dockerfile", setup: serveOnHost, check: checkNetworkOption},
		{name: "run-options", args: []string{"--add-host", "kiln.test:10.11.12.13", "--add-host", "other.test=192.0.2.1",
			"--shm-size", "64m", "--ulimit", "nofile=1024:2048"}, check: checkRunOptions},
		{name: "insecure", args: []string{"--allow", "security.insecure"}, check: checkInsecure},
		{name: "copy", check: checkCopy},
		{name: "add-tar", setup: addTarSetup, check: checkAddTar},
		{name: "config", check: checkConfig},
		{name: "shell", check: checkShell},
		{name: "dockerignore", check: checkDockerignore},
		{name: "dockerignore-per-file", file: "build/app.Dockerfile", check: checkDockerignorePerFile},
		{name: "build-contexts", setup: buildContextsSetup, check: checkBuildContexts},
		{name: "cache-export", ownEnv: true, check: checkCacheExport},
		{name: "reproducible", ownEnv: true, check: checkReproducible},
		{name: "provenance", args: []string{"--build-arg", "GREETING=conformance"}, check: checkProvenance},
		{name: "annotation", check: checkAnnotation},
		{name: "compression", check: checkCompression},
		{name: "no-cache-filter", check: checkNoCacheFilter},
	}
}

// copyCase copies testdata/conformance/dir into a temporary directory, so
// setups can add files and builds cannot change the repository.
func copyCase(t *testing.T, dir string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "ctx")
	if out, err := exec.Command("cp", "-a", filepath.Join("testdata", "conformance", dir), dst).CombinedOutput(); err != nil {
		t.Fatalf("copying the case: %v: %s", err, out)
	}
	return dst
}

// kiln runs kiln against the case's namespace and root, with the case's
// extra environment.
func (c *caseRun) kiln(t *testing.T, args ...string) result {
	t.Helper()
	full := append([]string{"--address", c.e.Address, "--namespace", c.e.Namespace, "--root", c.e.Root}, args...)
	if len(c.environ) == 0 {
		return runShown(t, "", "kiln "+strings.Join(args, " "), kilnBinary, full...)
	}
	full = append(append(append([]string{}, c.environ...), kilnBinary), full...)
	return runShown(t, "", strings.Join(c.environ, " ")+" kiln "+strings.Join(args, " "), "env", full...)
}

// build builds the case into containerd and an OCI archive, checks that
// both hold the same image, and reads it back.
func (c *caseRun) build(t *testing.T, extra ...string) *ociImage {
	t.Helper()
	img, _ := c.buildResult(t, extra...)
	return img
}

func (c *caseRun) buildResult(t *testing.T, extra ...string) (*ociImage, result) {
	t.Helper()
	dest := filepath.Join(t.TempDir(), "image.tar")
	args := []string{"build", "--progress", "plain", "--platform", strings.Join(c.platforms, ","),
		"-t", c.name, "-o", "type=image", "-o", "type=oci,dest=" + dest}
	if c.file != "" {
		args = append(args, "-f", c.file)
	}
	args = append(append(append(args, c.args...), extra...), c.ctx)
	r := c.kiln(t, args...).ok(t)
	img := readOCI(t, dest)
	img.Stderr = r.Stderr
	if stored := c.e.image(t, "docker.io/library/"+c.name+":latest"); stored.Digest != img.Digest {
		t.Errorf("containerd stores %s as %s, the OCI archive holds %s", c.name, stored.Digest, img.Digest)
	}
	var got []string
	for _, p := range img.each() {
		got = append(got, p.Platform)
	}
	if want := slices.Sorted(slices.Values(c.platforms)); !slices.Equal(got, want) {
		t.Fatalf("built platforms %v, want %v", got, want)
	}
	return img, r
}

// machine is `uname -m` for a platform.
func machine(platform string) string {
	switch platform {
	case "linux/amd64":
		return "x86_64"
	case "linux/arm64":
		return "aarch64"
	case "linux/arm/v7":
		return "armv7l"
	}
	return platform
}

func hostPlatform() string { return "linux/" + runtime.GOARCH }

func checkMultistage(t *testing.T, c *caseRun) {
	for _, p := range c.build(t).each() {
		p.want(t, "/app/artifact.txt", "built\n")
		p.want(t, "/app/base.txt", "base\n")
		p.absent(t, "/debug.txt", "/artifact.txt", "/base.txt")
		if got := p.Config.Config.Labels["stage"]; got != "release" {
			t.Errorf("%s: label stage=%q, want release (--target release)", p.Platform, got)
		}
	}
}

func checkArgs(t *testing.T, c *caseRun) {
	for _, p := range c.build(t).each() {
		p.want(t, "/first.txt", "global=from-cli local=local-default env=local-default-env\n")
		p.want(t, "/scope.txt", "global=unset local=unset env=unset\n")
		parts := strings.Split(p.Platform, "/")
		variant := ""
		if len(parts) == 3 {
			variant = parts[2]
		}
		host := hostPlatform()
		p.want(t, "/platform.txt", fmt.Sprintf("%s|linux|%s|%s|%s|linux|%s\n", p.Platform, p.Arch, variant, host, runtime.GOARCH))
		p.want(t, "/shadow.txt", "from-env\n")
		for k, want := range map[string]string{"OVERRIDE": "from-cli", "STATIC": "two words", "SHADOW": "from-env"} {
			if got, ok := p.env(k); !ok || got != want {
				t.Errorf("%s: env %s=%q (set %v), want %q", p.Platform, k, got, ok, want)
			}
		}
		for _, k := range []string{"FIRST_ENV", "GLOBAL", "LOCAL", "TARGETARCH"} {
			if v, ok := p.env(k); ok {
				t.Errorf("%s: env has %s=%s, which belongs to another stage or is an ARG", p.Platform, k, v)
			}
		}
	}
}

func checkCross(t *testing.T, c *caseRun) {
	host := hostPlatform()
	for _, p := range c.build(t).each() {
		p.want(t, "/opt/build-machine.txt", machine(host)+"\n")
		p.want(t, "/opt/target-arch.txt", p.Arch+"\n")
		p.want(t, "/opt/summary.txt", "built on "+host+" for "+p.Platform+"\n")
		p.want(t, "/opt/run-machine.txt", machine(p.Platform)+"\n")
		if p.Config.Architecture != p.Arch {
			t.Errorf("%s: config architecture %s", p.Platform, p.Config.Architecture)
		}
	}
}

func checkHeredoc(t *testing.T, c *caseRun) {
	for _, p := range c.build(t).each() {
		p.want(t, "/heredoc-run.txt", "one\ntwo\n")
		p.want(t, "/heredoc-dash.txt", "tabs stripped\n")
		p.want(t, "/heredoc-quoted.txt", "literal $NAME\n")
		p.want(t, "/heredoc-expanded.txt", "expanded kiln\n")
		p.want(t, "/heredoc-copy.txt", "copied kiln\n")
		p.want(t, "/heredoc-copy-dash.txt", "kept $NAME\nindented\n")
		p.want(t, "/heredoc-shebang.txt", "script with shebang\n")
		p.want(t, "/multi/one.txt", "first\n")
		p.want(t, "/multi/two.txt", "second\n")
	}
}

func checkMounts(t *testing.T, c *caseRun) {
	for _, p := range c.build(t).each() {
		p.want(t, "/bind-context.txt", "from the context\n")
		p.want(t, "/bind-readonly.txt", "read-only\n")
		p.want(t, "/bind-stage.txt", "from-stage\n")
		p.want(t, "/bind-rw.txt", "input.txt\nwritten.txt\n")
		p.want(t, "/tmpfs.txt", "tmpfs\n")
		p.absent(t, "/mnt/data/input.txt", "/mnt/rw/written.txt", "/mnt/rw/input.txt", "/scratch/temp.txt", "/helper.txt", "/mnt/helper.txt")
	}
	if _, err := os.Stat(filepath.Join(c.ctx, "data", "written.txt")); err == nil {
		t.Error("a rw bind mount wrote back into the build context")
	}
}

func checkCacheMount(t *testing.T, c *caseRun) {
	first := c.build(t, "--build-arg", "RUN_ID=1")
	second := c.build(t, "--build-arg", "RUN_ID=2") // another kiln process
	for _, p := range first.each() {
		p.want(t, "/how.txt", "computed\n")
		p.want(t, "/runs.txt", "1\n")
		q := second.Platforms[p.Platform]
		q.want(t, "/how.txt", "reused\n")
		q.want(t, "/runs.txt", "1\n2\n")
		q.want(t, "/result.txt", p.file(t, "/result.txt"))
		q.absent(t, "/var/cache/work/"+p.Arch)
	}
}

// randomToken returns a value that cannot appear anywhere by chance.
func randomToken(t *testing.T, prefix string) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

func secretSetup(t *testing.T, c *caseRun) []string {
	token, apiKey := randomToken(t, "token-"), randomToken(t, "apikey-")
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	metadata := filepath.Join(t.TempDir(), "metadata.json")
	c.data["token"], c.data["apikey"], c.data["metadata"] = token, apiKey, metadata
	c.environ = []string{"KILN_CONFORMANCE_API_KEY=" + apiKey}
	return []string{"--secret", "id=token,src=" + file, "--secret", "id=apikey,env=KILN_CONFORMANCE_API_KEY",
		"--attest", "type=provenance,mode=max", "--metadata-file", metadata}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func checkSecret(t *testing.T, c *caseRun) {
	token, apiKey := c.data["token"], c.data["apikey"]
	img, r := c.buildResult(t)
	for _, p := range img.each() {
		p.want(t, "/token.sha256", sha256Hex(token)+"\n")
		p.want(t, "/token-mode.txt", "400\n")
		p.want(t, "/apikey.sha256", sha256Hex(apiKey)+"\n")
		p.want(t, "/custom-target.txt", "400 1000\n")
		p.want(t, "/custom-target.sha256", sha256Hex(token)+"\n")
		p.want(t, "/optional.txt", "absent\n")
		p.want(t, "/after.txt", "")
		p.absent(t, "/run/secrets/token", "/etc/custom/token")
		if _, ok := p.env("API_KEY"); ok {
			t.Errorf("%s: the secret's environment variable is in the image config", p.Platform)
		}
	}
	if len(img.Attestations) != len(img.Platforms) {
		t.Errorf("%d attestation manifests for %d platforms: the scan must include provenance", len(img.Attestations), len(img.Platforms))
	}
	// Every blob (layers decompressed, configs, manifests, index,
	// attestations), kiln's output and the metadata file.
	meta, err := os.ReadFile(c.data["metadata"])
	if err != nil {
		t.Fatal(err)
	}
	places := map[string][]byte{"kiln's standard output": []byte(r.Stdout), "kiln's progress output": []byte(r.Stderr), "the metadata file": meta}
	for dgst, b := range img.Blobs {
		plain, err := decompress(b)
		if err != nil {
			t.Fatalf("blob %s: %v", dgst, err)
		}
		places["blob "+dgst] = plain
		places["compressed blob "+dgst] = b
	}
	for where, b := range places {
		for name, v := range map[string]string{"--secret id=token": token, "--secret id=apikey": apiKey} {
			if bytes.Contains(b, []byte(v)) {
				t.Errorf("the value of %s is in %s", name, where)
			}
		}
	}
	t.Logf("scanned %d blobs of %s for the secrets", len(img.Blobs), img.Digest)
}

// sshSetup starts an ssh-agent holding one key, makes a second key file,
// and builds the agentlist helper for each platform into the context.
func sshSetup(t *testing.T, c *caseRun) []string {
	for _, tool := range []string{"ssh-agent", "ssh-add", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: run hack/install-deps.sh (Debian package openssh-client)", tool)
		}
	}
	dir := t.TempDir()
	for _, k := range []string{"agent-key", "deploy-key"} {
		runCommand(t, "", "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kiln-"+k, "-f", filepath.Join(dir, k)).ok(t)
	}
	sock := filepath.Join(dir, "agent.sock")
	agent := exec.Command("ssh-agent", "-D", "-a", sock)
	agent.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := agent.Start(); err != nil {
		t.Fatalf("starting ssh-agent: %v", err)
	}
	t.Cleanup(func() { _ = agent.Process.Kill(); _ = agent.Wait() })
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i == 100 {
			t.Fatal("ssh-agent did not create its socket")
		}
		time.Sleep(50 * time.Millisecond)
	}
	runCommand(t, "", "env", "SSH_AUTH_SOCK="+sock, "ssh-add", filepath.Join(dir, "agent-key")).ok(t)
	for _, arch := range []string{"amd64", "arm64"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(c.ctx, "agentlist-"+arch), "./testdata/agentlist")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building agentlist for %s: %v\n%s", arch, err, out)
		}
	}
	c.environ = []string{"SSH_AUTH_SOCK=" + sock}
	c.data["keys"] = dir
	return []string{"--ssh", "default", "--ssh", "deploy=" + filepath.Join(dir, "deploy-key")}
}

// fingerprint is "SHA256:... COMMENT" of a public key file, as ssh-keygen -l prints it.
func fingerprint(t *testing.T, pub string) string {
	f := strings.Fields(runCommand(t, "", "ssh-keygen", "-l", "-f", pub).ok(t).Stdout)
	if len(f) < 3 {
		t.Fatalf("ssh-keygen -l printed %q", f)
	}
	return f[1] + " " + f[2]
}

func checkSSH(t *testing.T, c *caseRun) {
	keys := c.data["keys"]
	agentKey := fingerprint(t, filepath.Join(keys, "agent-key.pub"))
	deployKey := fingerprint(t, filepath.Join(keys, "deploy-key.pub"))
	for _, p := range c.build(t).each() {
		p.want(t, "/default-keys.txt", agentKey+" (ssh-ed25519)\n")
		// A key file is loaded without its comment.
		p.want(t, "/deploy-keys.txt", strings.Fields(deployKey)[0]+"  (ssh-ed25519)\n")
		p.absent(t, "/usr/bin/agentlist", "/run/deploy.sock")
	}
}

// serveOnHost serves "hello from the host" on the host's loopback and
// passes its port as the build argument PORT.
func serveOnHost(t *testing.T, c *caseRun) []string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "hello from the host\n")
	})}
	go srv.Serve(l) //nolint:errcheck // ends at Close
	t.Cleanup(func() { srv.Close() })
	return []string{"--build-arg", "PORT=" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)}
}

func checkNetwork(t *testing.T, c *caseRun) {
	for _, p := range c.build(t).each() {
		p.want(t, "/none-interfaces.txt", "lo\n")
		p.want(t, "/none-wget.txt", "unreachable\n")
		p.want(t, "/host-wget.txt", "hello from the host\n")
	}
}

func checkNetworkOption(t *testing.T, c *caseRun) {
	for _, p := range c.build(t, "--network", "none").each() {
		p.want(t, "/interfaces.txt", "lo\n")
		p.want(t, "/wget.txt", "unreachable\n")
	}
	// Without the option, or with --network host (which grants
	// network.host by itself), the same steps reach the host.
	for _, opts := range [][]string{nil, {"--network", "host"}} {
		for _, p := range c.build(t, opts...).each() {
			p.want(t, "/wget.txt", "hello from the host\n")
		}
	}
}

func checkRunOptions(t *testing.T, c *caseRun) {
	for _, p := range c.build(t).each() {
		hosts := p.file(t, "/hosts.txt")
		for _, want := range []string{"10.11.12.13\tkiln.test", "192.0.2.1\tother.test"} {
			if !strings.Contains(hosts, want) {
				t.Errorf("%s: /etc/hosts lacks %q:\n%s", p.Platform, want, hosts)
			}
		}
		p.want(t, "/shm-kb.txt", "65536\n")
		p.want(t, "/nofile-soft.txt", "1024\n")
		p.want(t, "/nofile-hard.txt", "2048\n")
	}
}

func checkInsecure(t *testing.T, c *caseRun) {
	const capSysAdmin = 21
	for _, p := range c.build(t).each() {
		sandbox, err1 := strconv.ParseUint(strings.TrimSpace(p.file(t, "/caps-sandbox.txt")), 16, 64)
		insecure, err2 := strconv.ParseUint(strings.TrimSpace(p.file(t, "/caps-insecure.txt")), 16, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: capability sets: %v %v", p.Platform, err1, err2)
		}
		if sandbox&(1<<capSysAdmin) != 0 || insecure&(1<<capSysAdmin) == 0 || sandbox&^insecure != 0 {
			t.Errorf("%s: CapEff %x in the sandbox and %x with --security=insecure: want CAP_SYS_ADMIN only in the latter", p.Platform, sandbox, insecure)
		}
	}
}

func checkCopy(t *testing.T, c *caseRun) {
	for _, p := range c.build(t).each() {
		p.want(t, "/from-stage.txt", "from-stage\n")
		p.want(t, "/from-image-group", "root:x:0:\nnogroup:x:65534:\n")
		p.want(t, "/chmod.txt", "plain\n")
		p.wantMeta(t, "/chmod.txt", 0o640, 0, 0)
		p.want(t, "/usr/local/bin/script", "#!/bin/sh\necho script\n")
		p.wantMeta(t, "/usr/local/bin/script", 0o755, 0, 0)
		p.wantMeta(t, "/chown-ids.txt", 0o644, 1000, 1001)
		p.wantMeta(t, "/chown-names.txt", 0o644, 1234, 2345)
		p.wantMeta(t, "/chown-chmod.txt", 0o600, 1234, 2345)
		p.want(t, "/linked/plain.txt", "plain\n")
		p.wantMeta(t, "/linked-dir/plain.txt", 0o644, 42, 43)
		p.wantMeta(t, "/linked-dir/script.sh", 0o644, 42, 43)
		p.want(t, "/parents/src/a/main.txt", "a\n")
		p.want(t, "/parents/src/b/main.txt", "b\n")
		p.absent(t, "/parents/src/c", "/parents/main.txt", "/parents/a")
		p.want(t, "/excluded/keep.txt", "keep\n")
		p.absent(t, "/excluded/drop.log", "/excluded/tmp")
		p.wantMeta(t, "/add-chmod.txt", 0o444, 0, 0)
		p.wantMeta(t, "/add-excluded/keep.txt", 0o644, 7, 8)
		p.absent(t, "/add-excluded/drop.log")
		p.wantMeta(t, "/add-excluded/tmp/t.txt", 0o644, 7, 8)
	}
}

// addTarSetup writes the archives the add-tar case ADDs: archive.tar.gz
// and plain.tar, with modes, owners and a symlink that extraction keeps.
func addTarSetup(t *testing.T, c *caseRun) []string {
	write := func(name string, gz bool, files []tar.Header, contents []string) {
		f, err := os.Create(filepath.Join(c.ctx, name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var w io.Writer = f
		if gz {
			zw := gzip.NewWriter(f)
			defer zw.Close()
			w = zw
		}
		tw := tar.NewWriter(w)
		defer tw.Close()
		for i, h := range files {
			h.ModTime = time.Unix(1600000000, 0)
			h.Size = int64(len(contents[i]))
			if err := tw.WriteHeader(&h); err != nil {
				t.Fatal(err)
			}
			io.WriteString(tw, contents[i])
		}
	}
	write("archive.tar.gz", true, []tar.Header{
		{Name: "tarred/", Typeflag: tar.TypeDir, Mode: 0o750, Uid: 1234, Gid: 2345},
		{Name: "tarred/hello.txt", Typeflag: tar.TypeReg, Mode: 0o600, Uid: 1234, Gid: 2345},
		{Name: "tarred/run.sh", Typeflag: tar.TypeReg, Mode: 0o755},
		{Name: "tarred/link", Typeflag: tar.TypeSymlink, Linkname: "hello.txt", Mode: 0o777},
	}, []string{"", "hello from a tarball\n", "#!/bin/sh\n", ""})
	write("plain.tar", false, []tar.Header{
		{Name: "readme.txt", Typeflag: tar.TypeReg, Mode: 0o644, Uid: 1, Gid: 1},
	}, []string{"not compressed\n"})
	return nil
}

func checkAddTar(t *testing.T, c *caseRun) {
	archive, err := os.ReadFile(filepath.Join(c.ctx, "archive.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range c.build(t).each() {
		p.want(t, "/extracted/tarred/hello.txt", "hello from a tarball\n")
		p.wantMeta(t, "/extracted/tarred/hello.txt", 0o600, 1234, 2345)
		p.wantMeta(t, "/extracted/tarred", 0o750, 1234, 2345)
		p.wantMeta(t, "/extracted/tarred/run.sh", 0o755, 0, 0)
		if l := p.Files["/extracted/tarred/link"]; l == nil || l.Type != tar.TypeSymlink || l.Linkname != "hello.txt" {
			t.Errorf("%s: /extracted/tarred/link is %+v, want a symlink to hello.txt", p.Platform, l)
		}
		p.want(t, "/plain-extracted/readme.txt", "not compressed\n")
		p.wantMeta(t, "/plain-extracted/readme.txt", 0o644, 1, 1)
		p.wantMeta(t, "/chowned/tarred/hello.txt", 0o600, 5, 6)
		p.want(t, "/copied/archive.tar.gz", string(archive))
		p.absent(t, "/extracted/archive.tar.gz", "/copied/tarred")
	}
}

func checkConfig(t *testing.T, c *caseRun) {
	for _, p := range c.build(t).each() {
		cfg := p.Config.Config
		p.want(t, "/onbuild.txt", "triggered\n")
		p.want(t, "/workdir.txt", "/srv/app\n")
		p.want(t, "/tmp/id.txt", "uid=1234(app) gid=2345(app) groups=2345(app)\n")
		if cfg.User != "app:app" || cfg.WorkingDir != "/srv/app" {
			t.Errorf("%s: user %q, working dir %q", p.Platform, cfg.User, cfg.WorkingDir)
		}
		if got := keys(cfg.ExposedPorts); !slices.Equal(got, []string{"443/tcp", "80/tcp", "8080/udp"}) {
			t.Errorf("%s: exposed ports %v", p.Platform, got)
		}
		if got := keys(cfg.Volumes); !slices.Equal(got, []string{"/cache", "/data", "/logs"}) {
			t.Errorf("%s: volumes %v", p.Platform, got)
		}
		for k, v := range map[string]string{"org.example.one": "one", "org.example.two": "two words", "org.example.multi": "a", "org.example.other": "b"} {
			if cfg.Labels[k] != v {
				t.Errorf("%s: label %s=%q, want %q", p.Platform, k, cfg.Labels[k], v)
			}
		}
		if cfg.StopSignal != "SIGQUIT" {
			t.Errorf("%s: stop signal %q", p.Platform, cfg.StopSignal)
		}
		hc := cfg.Healthcheck
		if hc == nil || !slices.Equal(hc.Test, []string{"CMD", "wget", "-q", "-O", "-", "http://localhost/"}) ||
			hc.Interval != 30*time.Second || hc.Timeout != 5*time.Second || hc.StartPeriod != 10*time.Second ||
			hc.StartInterval != 2*time.Second || hc.Retries != 4 {
			t.Errorf("%s: healthcheck %+v", p.Platform, hc)
		}
		if !slices.Equal(cfg.Entrypoint, []string{"/bin/sh", "-c"}) || !slices.Equal(cfg.Cmd, []string{"/bin/sh", "-c", "echo hello from $HOSTNAME"}) {
			t.Errorf("%s: entrypoint %q cmd %q", p.Platform, cfg.Entrypoint, cfg.Cmd)
		}
		if !slices.Equal(cfg.OnBuild, []string{"RUN echo child"}) {
			t.Errorf("%s: onbuild %q, want only the final stage's trigger", p.Platform, cfg.OnBuild)
		}
	}
}

func keys[V any](m map[string]V) []string {
	return slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	})
}

func checkShell(t *testing.T, c *caseRun) {
	shell := []string{"/bin/env", "KILN_SHELL=custom", "/bin/sh", "-c"}
	for _, p := range c.build(t).each() {
		cfg := p.Config.Config
		p.want(t, "/shell.txt", "shell=custom\n")
		if !slices.Equal(cfg.Shell, shell) {
			t.Errorf("%s: shell %q", p.Platform, cfg.Shell)
		}
		if !slices.Equal(cfg.Entrypoint, append(slices.Clone(shell), "exec echo entry")) || !slices.Equal(cfg.Cmd, []string{"arg1", "arg2"}) {
			t.Errorf("%s: entrypoint %q cmd %q", p.Platform, cfg.Entrypoint, cfg.Cmd)
		}
		if hc := cfg.Healthcheck; hc == nil || !slices.Equal(hc.Test, []string{"CMD-SHELL", "wget -q -O - http://localhost/ || exit 1"}) || hc.Retries != 2 {
			t.Errorf("%s: healthcheck %+v", p.Platform, hc)
		}
	}
}

func checkDockerignore(t *testing.T, c *caseRun) {
	for _, p := range c.build(t).each() {
		p.want(t, "/ctx/app.txt", "app\n")
		p.want(t, "/ctx/keep.log", "keep\n")
		p.want(t, "/ctx/sub/y.txt", "y\n")
		p.absent(t, "/ctx/debug.log", "/ctx/secret", "/ctx/secret/key", "/ctx/sub/x.tmp")
	}
}

func checkDockerignorePerFile(t *testing.T, c *caseRun) {
	for _, p := range c.build(t).each() {
		p.want(t, "/ctx/a.txt", "a\n")
		p.absent(t, "/ctx/b.txt")
	}
}

// buildContextsSetup builds the image behind the docker-image:// context
// and the OCI layout behind the oci-layout:// one.
func buildContextsSetup(t *testing.T, c *caseRun) []string {
	plat := strings.Join(c.platforms, ",")
	c.kiln(t, "build", "--platform", plat, "-t", "conformance-context-image", "-f", filepath.Join(c.ctx, "image.Dockerfile"), c.ctx).ok(t)
	archive := filepath.Join(t.TempDir(), "layout.tar")
	c.kiln(t, "build", "--platform", plat, "-t", "conformance-layout", "-o", "type=oci,dest="+archive, "-f", filepath.Join(c.ctx, "layout.Dockerfile"), c.ctx).ok(t)
	layout := filepath.Join(t.TempDir(), "layout")
	os.MkdirAll(layout, 0o755)
	runCommand(t, "", "tar", "-xf", archive, "-C", layout).ok(t)
	c.data["layout"] = layout
	return []string{
		"--build-context", "app-base=docker-image://conformance-context-image",
		"--build-context", "extra=" + filepath.Join(c.ctx, "extra-context"),
	}
}

func checkBuildContexts(t *testing.T, c *caseRun) {
	layout := c.data["layout"]
	for _, p := range c.build(t, "--build-context", "layout=oci-layout://"+layout).each() {
		p.want(t, "/from-image.txt", "image for "+p.Arch+"\n")
		p.want(t, "/extra/greeting.txt", "hello from a named context\n")
		p.absent(t, "/extra/ignored.txt")
		p.want(t, "/from-oci-layout.txt", "layout for "+p.Arch+"\n")
	}
	// The layout's image also by tag and by digest.
	var top ocispecs.Index
	dt, err := os.ReadFile(filepath.Join(layout, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	decodeJSON(t, dt, &top)
	for _, ref := range []string{layout + ":latest", layout + "@" + top.Manifests[0].Digest.String()} {
		img := c.build(t, "--build-context", "layout=oci-layout://"+ref)
		for _, p := range img.each() {
			p.want(t, "/from-oci-layout.txt", "layout for "+p.Arch+"\n")
		}
	}
}

// reproducibleBase builds the busybox base with timestamps pinned, so that
// fresh namespaces hold the same base image (and cache keys match).
func reproducibleBase(t *testing.T, e *env) {
	t.Helper()
	dir := contextDir(t, map[string]string{"Dockerfile": busyboxDockerfile})
	if out, err := exec.Command("cp", "-a", filepath.Join(fixturesDir, "rootfs"), dir).CombinedOutput(); err != nil {
		t.Fatalf("copying fixtures rootfs: %v: %s", err, out)
	}
	e.kiln("build", "--platform", strings.Join(conformancePlatforms, ","), "--source-date-epoch", "0", "-t", "busybox", dir).ok(t)
}

// freshRun is c in a new namespace and kiln root, with the base built.
func (c *caseRun) freshRun(t *testing.T) *caseRun {
	e := newEnv(t)
	reproducibleBase(t, e)
	fresh := *c
	fresh.e = e
	return &fresh
}

func checkCacheExport(t *testing.T, c *caseRun) {
	reg := startRegistry(t)
	reproducibleBase(t, c.e)
	local := filepath.Join(t.TempDir(), "cache")
	// Every cache comes from a cold build. A cache exported by a second, fully cached build of
	// both platforms can miss one platform's later steps when the machine is loaded (BuildKit's
	// exporter, moby/buildkit#2279; the README says so). The inline cache goes with a push, in a
	// root of its own.
	both := c.build(t, "--cache-to", "type=local,dest="+local+",mode=max",
		"--cache-to", "type=registry,ref="+reg+"/conformance/cache:1,mode=max")
	dest := filepath.Join(t.TempDir(), "image.tar")
	c.freshRun(t).kiln(t, "build", "--platform", strings.Join(c.platforms, ","), "-o", "type=oci,dest="+dest,
		"--cache-to", "type=inline", "-o", "type=image,push=true", "-t", reg+"/conformance/inline:1", c.ctx).ok(t)
	origs := map[string]*ociImage{
		"type=local,src=" + local:                           both,
		"type=registry,ref=" + reg + "/conformance/cache:1": both,
		reg + "/conformance/inline:1":                       readOCI(t, dest),
	}

	for _, from := range []string{"type=local,src=" + local, "type=registry,ref=" + reg + "/conformance/cache:1", reg + "/conformance/inline:1"} {
		t.Run(strings.SplitN(from, ",", 2)[0], func(t *testing.T) {
			img := c.freshRun(t).build(t, "--cache-from", from)
			for _, p := range img.each() {
				o := origs[from].Platforms[p.Platform]
				p.want(t, "/stamp.txt", o.file(t, "/stamp.txt"))
				p.want(t, "/second-stamp.txt", o.file(t, "/second-stamp.txt"))
			}
			if n := strings.Count(img.Stderr, "CACHED"); n < 4 {
				t.Errorf("a fresh root with --cache-from %s reported %d cached steps, want the RUN steps of both platforms:\n%s", from, n, img.Stderr)
			}
		})
	}
	// Without the import a fresh root runs the steps again.
	img := c.freshRun(t).build(t)
	for _, p := range img.each() {
		if p.file(t, "/stamp.txt") == both.Platforms[p.Platform].file(t, "/stamp.txt") {
			t.Errorf("%s: a fresh root without --cache-from reproduced the random stamp", p.Platform)
		}
	}
}

func checkReproducible(t *testing.T, c *caseRun) {
	const epoch = 1700000000
	reproducibleBase(t, c.e)
	first := c.build(t, "--source-date-epoch", strconv.Itoa(epoch))
	time.Sleep(1100 * time.Millisecond) // the second build is at another second
	second := c.freshRun(t)
	second.environ = []string{"SOURCE_DATE_EPOCH=" + strconv.Itoa(epoch)}
	again := second.build(t)
	if first.Digest != again.Digest {
		t.Errorf("two builds with SOURCE_DATE_EPOCH=%d gave %s and %s", epoch, first.Digest, again.Digest)
	}
	for _, p := range first.each() {
		if p.Config.Created == nil || p.Config.Created.Unix() != epoch {
			t.Errorf("%s: created %v, want the epoch", p.Platform, p.Config.Created)
		}
		for _, h := range p.Config.History {
			if h.Created == nil || h.Created.Unix() > epoch {
				t.Errorf("%s: history entry %q created %v, after the epoch", p.Platform, h.CreatedBy, h.Created)
			}
		}
		for _, name := range []string{"/built.txt", "/data/now", "/input.txt"} {
			if f := p.Files[name]; f == nil || f.ModTime.Unix() != epoch {
				t.Errorf("%s: %s has time %v, want the epoch", p.Platform, name, f)
			}
		}
	}
	// Without it, the same inputs get today's timestamps.
	second.environ = nil
	if img := second.build(t); img.Digest == first.Digest {
		t.Error("a build without SOURCE_DATE_EPOCH gave the same digest: the check above proves nothing")
	}
}

// provenancePredicate is the part of SLSA provenance the case checks.
type provenanceStatement struct {
	PredicateType string `json:"predicateType"`
	Subject       []struct {
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
	Predicate struct {
		BuildDefinition struct {
			ExternalParameters struct {
				Request struct {
					Frontend string            `json:"frontend"`
					Args     map[string]string `json:"args"`
				} `json:"request"`
			} `json:"externalParameters"`
		} `json:"buildDefinition"`
	} `json:"predicate"`
}

func checkProvenance(t *testing.T, c *caseRun) {
	check := func(img *ociImage, mode string) {
		t.Helper()
		for _, p := range img.each() {
			p.want(t, "/greeting.txt", "conformance\n")
			att, ok := img.Attestations[p.Descriptor.Digest.String()]
			if !ok {
				t.Errorf("%s: no attestation manifest refers to the image manifest %s", p.Platform, p.Descriptor.Digest)
				continue
			}
			if len(att.Layers) != 1 || att.Layers[0].MediaType != "application/vnd.in-toto+json" {
				t.Fatalf("%s: attestation layers %+v", p.Platform, att.Layers)
			}
			var st provenanceStatement
			decodeJSON(t, img.blob(t, att.Layers[0].Digest.String()), &st)
			if st.PredicateType != "https://slsa.dev/provenance/v1" {
				t.Errorf("%s: predicate type %q", p.Platform, st.PredicateType)
			}
			if len(st.Subject) == 0 || "sha256:"+st.Subject[0].Digest["sha256"] != p.Descriptor.Digest.String() {
				t.Errorf("%s: provenance subject %+v, want the manifest %s", p.Platform, st.Subject, p.Descriptor.Digest)
			}
			req := st.Predicate.BuildDefinition.ExternalParameters.Request
			if req.Frontend != "dockerfile.v0" {
				t.Errorf("%s: provenance names frontend %q", p.Platform, req.Frontend)
			}
			if got, ok := req.Args["build-arg:GREETING"]; (mode == "max") != (ok && got == "conformance") {
				t.Errorf("%s: mode=%s provenance records build-arg GREETING=%q (%v)", p.Platform, mode, got, ok)
			}
		}
	}
	check(c.build(t, "--attest", "type=provenance,mode=max"), "max")
	check(c.build(t, "--provenance", "true"), "min")
	if img := c.build(t, "--attest", "type=provenance,mode=max", "--provenance", "false"); len(img.Attestations) != 0 {
		t.Errorf("--provenance false still attached %d attestations", len(img.Attestations))
	}
}

func checkAnnotation(t *testing.T, c *caseRun) {
	img := c.build(t,
		"--annotation", "org.opencontainers.image.title=conformance",
		"--annotation", "index:org.example.index=on-index",
		"--annotation", "manifest-descriptor:org.example.descriptor=on-descriptor",
		"--annotation", "manifest[linux/arm64]:org.example.arm=only-arm",
		"--annotation", "index-descriptor:org.example.top=on-top")
	for _, p := range img.each() {
		if got := p.Manifest.Annotations["org.opencontainers.image.title"]; got != "conformance" {
			t.Errorf("%s: manifest annotation title=%q", p.Platform, got)
		}
		if got := p.Descriptor.Annotations["org.example.descriptor"]; got != "on-descriptor" {
			t.Errorf("%s: index descriptor annotation %q", p.Platform, got)
		}
		_, arm := p.Manifest.Annotations["org.example.arm"]
		if arm != (p.Platform == "linux/arm64") {
			t.Errorf("%s: manifest has the arm64-only annotation: %v", p.Platform, arm)
		}
	}
	if got := img.Index.Annotations["org.example.index"]; got != "on-index" {
		t.Errorf("index annotation %q (annotations %v)", got, img.Index.Annotations)
	}
	if got := img.Top.Annotations["org.example.top"]; got != "on-top" {
		t.Errorf("index.json descriptor annotation %q (annotations %v)", got, img.Top.Annotations)
	}
}

func checkCompression(t *testing.T, c *caseRun) {
	layers := func(img *ociImage) []ocispecs.Descriptor {
		var out []ocispecs.Descriptor
		for _, p := range img.each() {
			p.want(t, "/numbers.txt", numbers(20000))
			out = append(out, p.Manifest.Layers...)
		}
		return out
	}
	for _, l := range layers(c.build(t, "--compression", "zstd", "--compression-level", "19", "--build-arg", "LEVEL=zstd")) {
		if l.MediaType != ocispecs.MediaTypeImageLayerZstd {
			t.Errorf("zstd: layer %s is %s", l.Digest, l.MediaType)
		}
	}
	for _, l := range layers(c.build(t, "--compression", "estargz", "--build-arg", "LEVEL=estargz")) {
		if l.MediaType != ocispecs.MediaTypeImageLayerGzip || l.Annotations["containerd.io/snapshot/stargz/toc.digest"] == "" {
			t.Errorf("estargz: layer %s is %s with annotations %v", l.Digest, l.MediaType, l.Annotations)
		}
	}
	// A gzip header's XFL byte says 4 for the fastest level, 2 for the best.
	for level, xfl := range map[string]byte{"1": 4, "9": 2} {
		img := c.build(t, "--compression", "gzip", "--compression-level", level, "--build-arg", "LEVEL="+level)
		for _, p := range img.each() {
			l := p.Manifest.Layers[len(p.Manifest.Layers)-1]
			if b := img.blob(t, l.Digest.String()); l.MediaType != ocispecs.MediaTypeImageLayerGzip || len(b) < 10 || b[8] != xfl {
				t.Errorf("%s: gzip level %s: layer %s is %s with XFL %d, want %d", p.Platform, level, l.Digest, l.MediaType, b[8], xfl)
			}
		}
	}
}

func numbers(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		b.WriteString(strconv.Itoa(i))
		b.WriteByte('\n')
	}
	return b.String()
}

func checkNoCacheFilter(t *testing.T, c *caseRun) {
	first := c.build(t)
	second := c.build(t) // another kiln process: the cache persisted
	third := c.build(t, "--no-cache-filter", "a")
	for _, p := range first.each() {
		a, b := p.file(t, "/a.txt"), p.file(t, "/b.txt")
		second.Platforms[p.Platform].want(t, "/a.txt", a)
		second.Platforms[p.Platform].want(t, "/b.txt", b)
		if third.Platforms[p.Platform].file(t, "/a.txt") == a {
			t.Errorf("%s: --no-cache-filter a reused stage a", p.Platform)
		}
		third.Platforms[p.Platform].want(t, "/b.txt", b)
	}
	// The progress says the same: stage a ran, stage b came from the cache.
	for stage, cached := range map[string]bool{"a": false, "b": true} {
		steps := map[string]bool{}
		for _, m := range regexp.MustCompile(`(?m)^(#\d+) \[linux/\w+ `+stage+` 2/2\] RUN`).FindAllStringSubmatch(third.Stderr, -1) {
			steps[m[1]] = true
		}
		if len(steps) != len(c.platforms) {
			t.Fatalf("found %d RUN steps of stage %s in the progress output:\n%s", len(steps), stage, third.Stderr)
		}
		for id := range steps {
			if got := strings.Contains(third.Stderr, id+" CACHED"); got != cached {
				t.Errorf("stage %s: step %s cached %v, want %v", stage, id, got, cached)
			}
		}
	}
}

// TestConformanceOptionErrors checks that each mistake in a build option
// gets one line that says what to do, and exit code 2, before anything runs.
func TestConformanceOptionErrors(t *testing.T) {
	t.Parallel()
	ctx := contextDir(t, map[string]string{"Dockerfile": "FROM scratch\n"})
	file := filepath.Join(ctx, "Dockerfile")
	cases := []struct {
		args   []string
		stderr string
	}{
		{[]string{"--secret", "id=token,src=/nonexistent/token"}, `secret "token": file /nonexistent/token does not exist`},
		{[]string{"--secret", "src=" + file}, "missing id="},
		{[]string{"--secret", "id=x,file=" + file}, `unknown key "file"`},
		{[]string{"--secret", "id=x,env=KILN_CONFORMANCE_UNSET"}, "environment variable KILN_CONFORMANCE_UNSET is not set"},
		{[]string{"--secret", "id=x,src=" + ctx}, "is a directory"},
		{[]string{"--secret", "id=x,src=" + file, "--secret", "id=x,src=" + file}, `secret "x" is given twice`},
		{[]string{"--ssh", "default"}, "SSH_AUTH_SOCK is not set"},
		{[]string{"--ssh", "deploy=/nonexistent/key"}, "--ssh deploy: /nonexistent/key: no such file or directory"},
		{[]string{"--ssh", "deploy=" + file}, "is neither an ssh-agent socket nor a private key"},
		{[]string{"--build-context", "extra"}, "use NAME=DIR, NAME=docker-image://REF or NAME=oci-layout://PATH"},
		{[]string{"--build-context", "extra=/nonexistent/dir"}, "--build-context extra: directory /nonexistent/dir does not exist"},
		{[]string{"--build-context", "extra=" + file}, "is not a directory"},
		{[]string{"--build-context", "src=git://example.com/repo.git"}, "unsupported --build-context"},
		{[]string{"--build-context", "base=docker-image://Not:A:Ref"}, "invalid --build-context base"},
		{[]string{"--build-context", "layout=oci-layout://" + ctx}, "is not an OCI layout"},
		{[]string{"--cache-from", "type=s3,bucket=b"}, `unsupported --cache-from type "s3"`},
		{[]string{"--cache-from", "type=local"}, "needs src=DIR"},
		{[]string{"--cache-to", "type=local"}, "needs dest=DIR"},
		{[]string{"--cache-to", "type=local,dest=/tmp/c", "--cache-to", "type=local,dest=/tmp/d"}, "--cache-to type=local is given 2 times"},
		{[]string{"--cache-to", "type=registry,ref=localhost:5000/cache,mode=all"}, "mode must be min or max"},
		{[]string{"--cache-to", "mode=max"}, "missing type="},
		{[]string{"--network", "bridge"}, `invalid --network "bridge": use default, none or host`},
		{[]string{"--add-host", "nohost"}, "use HOST:IP"},
		{[]string{"--add-host", "db:not-an-ip"}, `"not-an-ip" is not an IP address`},
		{[]string{"--shm-size", "lots"}, `invalid --shm-size "lots"`},
		{[]string{"--ulimit", "nofile"}, `invalid --ulimit "nofile"`},
		{[]string{"--ulimit", "nofile=2048:1024"}, `invalid --ulimit "nofile=2048:1024"`},
		{[]string{"--ulimit", "bogus=1"}, `invalid --ulimit "bogus=1"`},
		{[]string{"--allow", "device"}, `invalid --allow "device"`},
		{[]string{"--source-date-epoch", "yesterday"}, `invalid SOURCE_DATE_EPOCH "yesterday"`},
		{[]string{"--attest", "type=sbom"}, "--attest type=sbom is not supported"},
		{[]string{"--attest", "mode=max"}, "missing type="},
		{[]string{"--provenance", "mode=full"}, "mode must be min or max"},
		{[]string{"--annotation", "novalue"}, `invalid --annotation "novalue"`},
		{[]string{"--annotation", "bogus:key=v"}, `unknown type "bogus"`},
		{[]string{"--annotation", "index[linux/arm64]:key=v"}, "only manifest and manifest-descriptor annotations can name a platform"},
		{[]string{"--compression", "lz4"}, `invalid --compression "lz4"`},
		{[]string{"--compression", "zstd", "--compression-level", "30"}, "use 1 to 22"},
		{[]string{"--compression-level", "fast"}, `invalid --compression-level "fast"`},
		{[]string{"--no-cache-filter", ""}, "invalid --no-cache-filter"},
	}
	for _, c := range cases {
		args := append(append([]string{"-u", "SSH_AUTH_SOCK", kilnBinary, "--address", "/nonexistent.sock", "build"}, c.args...), ctx)
		r := runShown(t, "", "kiln build "+strings.Join(c.args, " "), "env", args...)
		r.fails(t, 2, c.stderr)
		if lines := strings.Count(strings.TrimSpace(r.Stderr), "\n") + 1; lines > 1 {
			t.Errorf("kiln build %s: want a one-line error, got %d lines:\n%s", strings.Join(c.args, " "), lines, r.Stderr)
		}
	}
	// SOURCE_DATE_EPOCH from the environment is checked the same way.
	r := runShown(t, "", "SOURCE_DATE_EPOCH=abc kiln build", "env", "SOURCE_DATE_EPOCH=abc", kilnBinary, "--address", "/nonexistent.sock", "build", ctx)
	r.fails(t, 2, `invalid SOURCE_DATE_EPOCH "abc"`)
}

// TestConformanceBuildErrors checks the errors a Dockerfile meets when an
// option it needs was not given.
func TestConformanceBuildErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.busyboxBase(t, "busybox", "linux/amd64")
	cases := []struct {
		name, dockerfile, stderr string
	}{
		{"network host not allowed", "FROM busybox\nRUN --network=host true\n",
			"network.host is not allowed: RUN --network=host needs it granted: pass --allow network.host"},
		{"insecure not allowed", "FROM busybox\nRUN --security=insecure true\n",
			"security.insecure is not allowed: RUN --security=insecure needs it granted: pass --allow security.insecure"},
		{"required secret missing", "FROM busybox\nRUN --mount=type=secret,id=token,required=true cat /run/secrets/token\n",
			"secret token: not found: pass the secret with --secret id=token,src=FILE"},
		{"ssh missing", "FROM busybox\nRUN --mount=type=ssh,required=true true\n", "forward an ssh-agent with --ssh default"},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			dir := contextDir(t, map[string]string{"Dockerfile": c.dockerfile})
			sub := *e
			sub.t = t
			sub.kiln("build", dir).fails(t, 1, c.stderr)
		})
	}
}
