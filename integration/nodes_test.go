//go:build linux

package integration

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// nodeDockerfile builds from the fixtures' rootfs (a node has no access to the local
// containerd, so its base comes through the build context) and runs one step per platform,
// whose command says which platform it is: the build caches show who did which step.
const nodeDockerfile = `FROM scratch AS base
ARG TARGETARCH
COPY rootfs/${TARGETARCH}/ /

FROM base AS build-amd64
RUN echo amd64-step > /step && uname -m > /arch

FROM base AS build-arm64
RUN echo arm64-step > /step && uname -m > /arch

FROM build-${TARGETARCH}
CMD ["uname", "-m"]
`

// nodeContext is a build context with the fixtures' rootfs and dockerfile.
func nodeContext(t *testing.T, dockerfile string) string {
	t.Helper()
	dir := contextDir(t, map[string]string{"Dockerfile": dockerfile})
	if out, err := exec.Command("cp", "-a", filepath.Join(fixturesDir, "rootfs"), dir).CombinedOutput(); err != nil {
		t.Fatalf("copying fixtures rootfs: %v: %s", err, out)
	}
	return dir
}

// needArm64Emulation makes sure the host runs arm64 binaries: the simulated arm64 node uses
// the host's binfmt_misc handler.
func needArm64Emulation(t *testing.T, e *env) {
	t.Helper()
	e.kiln("emulation", "install", "linux/arm64").ok(t)
}

// checkRuns runs each platform of name and checks what uname -m prints.
func checkRuns(t *testing.T, e *env, name string) {
	t.Helper()
	for platform, machine := range map[string]string{"linux/amd64": "x86_64", "linux/arm64": "aarch64"} {
		id := fmt.Sprintf("run-%s-%s", strings.ReplaceAll(platform, "/", "-"), strings.NewReplacer(":", "-", "/", "-", ".", "-").Replace(name))
		got := e.ctr("run", "--rm", "--platform", platform, name, id).ok(t).Stdout
		if strings.TrimSpace(got) != machine {
			t.Errorf("%s of %s printed %q, want %s", platform, name, got, machine)
		}
	}
}

// stepLines returns the progress lines that name a step of the given stage.
func stepLines(stderr, stage string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, "["+stage+" 1/1] RUN") {
			out = append(out, l)
		}
	}
	return out
}

// TestNodeBuild is the done criterion: a two-platform build with linux/arm64 sent to
// a node ends with one two-platform index in the local containerd, whose arm64 half the node
// built and this process did not.
func TestNodeBuild(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	needArm64Emulation(t, e)
	n := startNode(t, nodeOptions{})
	dir := nodeContext(t, nodeDockerfile)
	// The test's nodes listen on plain TCP: each build accepts that explicitly.
	node := "linux/arm64=" + n.Addr + ",insecure-plaintext=true"
	// A socket in the context is left out with the warning a build here
	// gives, printed once the progress display is done.
	l, err := net.Listen("unix", filepath.Join(dir, "rootfs", "amd64", "app.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	r := e.kiln("build", "--progress", "plain", "--platform", "linux/amd64,linux/arm64", "--node", node, "-t", "app", dir).ok(t)
	if !strings.Contains(r.Stderr, "building linux/amd64 here, linux/arm64 on node "+n.Addr) {
		t.Errorf("the build did not say where each platform builds:\n%s", r.Stderr)
	}
	if w := "warning: skipping socket rootfs/amd64/app.sock in the build context"; strings.Count(r.Stderr, w) != 1 {
		t.Errorf("want the socket's warning once:\n%s", r.Stderr)
	}
	img := e.image(t, "docker.io/library/app:latest")
	if len(img.Index.Manifests) != 2 {
		t.Fatalf("index has %d entries, want 2: %+v", len(img.Index.Manifests), img.Index.Manifests)
	}
	checkRuns(t, e, "docker.io/library/app:latest")
	rows := e.platformRows(t, "app")
	if rows["linux/amd64"].Content != "complete" || rows["linux/arm64"].Content != "complete" || !rows["linux/amd64"].Unpacked {
		t.Errorf("platforms: %+v", rows)
	}

	// The progress display shows who builds what.
	arm, amd := stepLines(r.Stderr, "build-arm64"), stepLines(r.Stderr, "build-amd64")
	if len(arm) == 0 || len(amd) == 0 {
		t.Fatalf("no step lines in the progress:\n%s", r.Stderr)
	}
	for _, l := range arm {
		if !strings.Contains(l, "["+n.Addr+"] [build-arm64") {
			t.Errorf("arm64 step not shown on the node: %q", l)
		}
	}
	for _, l := range amd {
		if !strings.Contains(l, "[local] [build-amd64") {
			t.Errorf("amd64 step not shown here: %q", l)
		}
	}
	// The node's cache has the arm64 step and not the amd64 one; kiln's the other way round.
	nodeDU := n.buildctl(t, "du", "-v").ok(t).Stdout
	if !strings.Contains(nodeDU, "arm64-step") || strings.Contains(nodeDU, "amd64-step") {
		t.Errorf("node cache:\n%s", nodeDU)
	}
	localDU := e.kiln("du", "-v").ok(t).Stdout
	if !strings.Contains(localDU, "amd64-step") || strings.Contains(localDU, "arm64-step") {
		t.Errorf("kiln's cache:\n%s", localDU)
	}
	if out := e.ctr("leases", "ls").ok(t).Stdout; strings.Contains(out, "kiln/purpose") {
		t.Errorf("the build's lease was left:\n%s", out)
	}

	// --push pushes the joined index with every platform.
	reg := startRegistry(t)
	e.kiln("build", "--platform", "linux/amd64,linux/arm64", "--node", node, "--push", "-t", reg+"/app:1", dir).ok(t)
	f := newEnv(t)
	f.kiln("pull", "--all-platforms", reg+"/app:1").ok(t)
	checkRuns(t, f, reg+"/app:1")

	// Configured in a nodes file without platforms, the node takes the platform it reports
	// first (its native one) with no --node flag, and kiln node ls/inspect describe it.
	cfg := nodesConfig(t, fmt.Sprintf("[node.arm-board]\naddress = %q\ninsecure-plaintext = true\n", n.Addr))
	r = e.kilnEnv([]string{cfg}, "build", "--progress", "plain", "--platform", "linux/amd64,linux/arm64", "-t", "app:2", dir).ok(t)
	if lines := stepLines(r.Stderr, "build-arm64"); len(lines) == 0 || !strings.Contains(lines[0], "[arm-board] [build-arm64") {
		t.Errorf("the configured node did not build arm64:\n%s", r.Stderr)
	}
	checkRuns(t, e, "docker.io/library/app:2")
	ls := e.kilnEnv([]string{cfg}, "node", "ls").ok(t).Stdout
	if !regexp.MustCompile(`arm-board\s+` + regexp.QuoteMeta(n.Addr) + `\s+plaintext \(accepted\)\s+reachable\s+v0\.34\.2\s+linux/arm64`).MatchString(ls) {
		t.Errorf("kiln node ls:\n%s", ls)
	}
	var st struct {
		Reachable bool   `json:"reachable"`
		BuildKit  string `json:"buildkit"`
		Native    string `json:"native"`
		Workers   []struct {
			Platforms []string `json:"platforms"`
		} `json:"workers"`
	}
	mustJSON(t, e.kilnEnv([]string{cfg}, "node", "inspect", "arm-board").ok(t).Stdout, &st)
	if !st.Reachable || st.BuildKit != "v0.34.2" || st.Native != "linux/arm64" || len(st.Workers) != 1 {
		t.Errorf("kiln node inspect: %+v", st)
	}
	e.kilnEnv([]string{cfg}, "node", "inspect", "nope").fails(t, 2, `no node "nope": the configured nodes are arm-board`)
	e.kilnEnv([]string{cfg}, "node", "ls", "--format", "yaml").fails(t, 2, "invalid --format")
}

// TestNodeFallback: a node that does not answer fails the build before any work, naming it;
// --node-fallback=emulate builds its platform here instead.
func TestNodeFallback(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	needArm64Emulation(t, e)
	dir := nodeContext(t, nodeDockerfile)
	dead := fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t))
	deadNode := "linux/arm64=" + dead + ",insecure-plaintext=true"

	r := e.kiln("build", "--progress", "plain", "--platform", "linux/amd64,linux/arm64", "--node", deadNode, "-t", "app", dir)
	r.fails(t, 1, "node "+dead+" does not answer")
	if !strings.Contains(r.Stderr, "--node-fallback=emulate") || strings.Contains(r.Stderr, "#1 ") {
		t.Errorf("the failure should come before any step and name the fallback:\n%s", r.Stderr)
	}
	if out := e.ctr("images", "ls", "-q").ok(t).Stdout; strings.TrimSpace(out) != "" {
		t.Errorf("a failed build stored images:\n%s", out)
	}

	r = e.kiln("build", "--progress", "plain", "--platform", "linux/amd64,linux/arm64", "--node", deadNode, "--node-fallback", "emulate", "-t", "app", dir).ok(t)
	if !strings.Contains(r.Stderr, "node "+dead+" does not answer") || !strings.Contains(r.Stderr, "building linux/arm64 here instead (--node-fallback=emulate)") {
		t.Errorf("no fallback notice:\n%s", r.Stderr)
	}
	checkRuns(t, e, "docker.io/library/app:latest")

	// A configured node without platforms that does not answer is skipped with a notice.
	cfg := nodesConfig(t, fmt.Sprintf("[node.gone]\naddress = %q\n", dead))
	r = e.kilnEnv([]string{cfg}, "build", "--platform", "linux/amd64,linux/arm64", "-t", "app:3", dir).ok(t)
	if !strings.Contains(r.Stderr, "node gone ("+dead+") does not answer") {
		t.Errorf("no notice for the configured node:\n%s", r.Stderr)
	}
	// One restricted to arm64 is needed, so it fails the build.
	cfg = nodesConfig(t, fmt.Sprintf("[node.gone]\naddress = %q\nplatforms = [\"linux/arm64\"]\ninsecure-plaintext = true\n", dead))
	e.kilnEnv([]string{cfg}, "build", "--platform", "linux/amd64,linux/arm64", "-t", "app:4", dir).fails(t, 1, "node gone ("+dead+") does not answer")
	e.kilnEnv([]string{cfg}, "node", "ls").ok(t)
	e.kilnEnv([]string{cfg}, "node", "inspect", "gone").fails(t, 1, "does not answer")
	bad := nodesConfig(t, "[node.gone]\naddres = \"tcp://h:1\"\n")
	e.kilnEnv([]string{bad}, "build", "-t", "app:5", dir).fails(t, 1, "unknown setting node.gone.addres")

	// Usage errors exit 2 before anything is contacted.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--node", "linux/arm64"}, "use PLATFORM=ADDRESS"},
		{[]string{"--node", "linux/arm64=http://h:1"}, `unknown scheme "http"`},
		{[]string{"--node", "linux/arm64=somewhere"}, "neither an address"},
		{[]string{"--platform", "linux/amd64", "--node", "linux/arm64=" + dead}, "which this build does not target"},
		{[]string{"--platform", "linux/arm64", "--node", "linux/arm64=" + dead, "--node", "arm64=local"}, "names linux/arm64 twice"},
		{[]string{"--platform", "linux/arm64", "--node", "linux/arm64=" + dead, "--node-fallback", "maybe"}, "invalid --node-fallback"},
		{[]string{"--platform", "linux/arm64", "--node", "linux/arm64=" + dead, "-o", "type=oci,dest=x.tar"}, "--output type=oci is not supported when platforms build on nodes"},
		{[]string{"--platform", "linux/arm64", "--node", "linux/arm64=" + dead}, "is plain tcp:// without TLS"},
		{[]string{"--platform", "linux/arm64", "--node", "linux/arm64=" + dead + ",insecure-plaintext=maybe"}, "insecure-plaintext must be true or false"},
	} {
		e.kiln(append(append([]string{"build"}, c.args...), dir)...).fails(t, 2, c.want)
	}
}

// TestNodeKilled: a node that dies mid-build fails the build, naming it, and no name moves.
func TestNodeKilled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	needArm64Emulation(t, e)
	n := startNode(t, nodeOptions{})
	slow := strings.Replace(nodeDockerfile, "RUN echo arm64-step > /step", "RUN echo arm64-sleeping && sleep 30 && echo arm64-step > /step", 1)
	dir := nodeContext(t, slow)
	// The name exists before: the failed build must leave it as it was.
	e.kiln("build", "--platform", "linux/amd64", "-t", "app", dir).ok(t)
	before := e.image(t, "docker.io/library/app:latest").Digest

	k := e.startKiln("build", "--progress", "plain", "--platform", "linux/amd64,linux/arm64", "--node", "linux/arm64="+n.Addr+",insecure-plaintext=true", "-t", "app", dir)
	k.waitFor(t, "arm64-sleeping")
	n.kill()
	code, stderr := k.wait(t)
	if code != 1 {
		t.Fatalf("exit code %d, want 1:\n%s", code, stderr)
	}
	t.Logf("kiln: %s", lastLine(stderr))
	for _, want := range []string{"node " + n.Addr + " stopped answering while it built linux/arm64", "no name was changed"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "rpc error") || strings.Contains(stderr, "panic") {
		t.Errorf("raw error:\n%s", stderr)
	}
	if after := e.image(t, "docker.io/library/app:latest").Digest; after != before {
		t.Errorf("app moved from %s to %s after a failed build", before, after)
	}
	if out := e.ctr("images", "ls", "-q").ok(t).Stdout; len(strings.Fields(out)) != 1 {
		t.Errorf("images after the failed build:\n%s", out)
	}
	e.assertNothingLeft(t)
	if out := e.ctr("leases", "ls").ok(t).Stdout; strings.Contains(out, "kiln/purpose") {
		t.Errorf("the build's lease was left:\n%s", out)
	}
}

// TestNodeTLS: a node that requires TLS client certificates, configured in a nodes file with
// its CA, certificate and key, builds the platform the file gives it, with a secret sent
// through the session; without the client certificate it is refused clearly.
func TestNodeTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	needArm64Emulation(t, e)
	n := startNode(t, nodeOptions{tls: true})
	cfg := nodesConfig(t, fmt.Sprintf(`[node.secure]
address = %q
platforms = ["linux/arm64"]

[node.secure.tls]
ca = %q
cert = %q
key = %q
`, n.Addr, n.tls.CA, n.tls.ClientCert, n.tls.ClientKey))

	// The secret reaches the node's step through the session and stays out of the image.
	dir := nodeContext(t, strings.Replace(nodeDockerfile, "RUN echo arm64-step > /step",
		"RUN --mount=type=secret,id=tok test \"$(cat /run/secrets/tok)\" = s3cret-value && echo arm64-step > /step", 1))
	r := e.kilnEnv([]string{cfg, "TOK=s3cret-value"}, "build", "--progress", "plain", "--secret", "id=tok,env=TOK", "--platform", "linux/amd64,linux/arm64", "-t", "tlsapp", dir).ok(t)
	if !strings.Contains(r.Stderr, "linux/arm64 on node secure ("+n.Addr+")") {
		t.Errorf("the build did not use the configured node:\n%s", r.Stderr)
	}
	if lines := stepLines(r.Stderr, "build-arm64"); len(lines) == 0 || !strings.Contains(lines[0], "[secure] [build-arm64") {
		t.Errorf("the arm64 step did not run on the node:\n%s", r.Stderr)
	}
	checkRuns(t, e, "docker.io/library/tlsapp:latest")
	if du := n.buildctl(t, "du", "-v").ok(t).Stdout; !strings.Contains(du, "arm64-step") {
		t.Errorf("node cache:\n%s", du)
	}
	var st struct {
		Reachable  bool     `json:"reachable"`
		Restricted bool     `json:"restricted"`
		Platforms  []string `json:"platforms"`
	}
	mustJSON(t, e.kilnEnv([]string{cfg}, "node", "inspect", "secure").ok(t).Stdout, &st)
	if !st.Reachable || !st.Restricted || strings.Join(st.Platforms, ",") != "linux/arm64" {
		t.Errorf("node inspect: %+v", st)
	}
	if ls := e.kilnEnv([]string{cfg}, "node", "ls").ok(t).Stdout; !regexp.MustCompile(`secure\s+` + regexp.QuoteMeta(n.Addr) + `\s+tls\s+reachable`).MatchString(ls) {
		t.Errorf("kiln node ls does not show the TLS node as tls:\n%s", ls)
	}

	// The node does not build a platform it does not report.
	e.kilnEnv([]string{cfg}, "build", "--platform", "linux/arm64,linux/ppc64le", "--node", "linux/ppc64le=secure", dir).
		fails(t, 1, "node secure ("+n.Addr+") does not build linux/ppc64le")
	// Without a client certificate, or without TLS, the node refuses kiln before any work.
	for target, hint := range map[string]string{
		n.Addr + ",tls-ca=" + n.tls.CA:      "if the node requires client certificates, give tls-cert and tls-key",
		n.Addr + ",insecure-plaintext=true": "if the node requires TLS, give its CA and a client certificate",
	} {
		r := e.kiln("build", "--platform", "linux/arm64", "--node", "linux/arm64="+target, dir).fails(t, 1, "node "+n.Addr+" does not answer")
		if !strings.Contains(r.Stderr, hint) {
			t.Errorf("no TLS hint %q:\n%s", hint, r.Stderr)
		}
	}
}
