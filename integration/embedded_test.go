//go:build linux

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/privatecontainerd"
)

// embeddedEnv runs kiln on its embedded store: no --address, and
// CONTAINERD_ADDRESS removed from the environment, so that nothing reaches
// the package's containerd.
type embeddedEnv struct {
	*env
	// extraEnv is added to kiln's environment.
	extraEnv []string
	// store is the --store value; empty leaves the choice to kiln.
	store string
}

// newEmbeddedEnv gives t a kiln root and namespace for the embedded store.
func newEmbeddedEnv(t *testing.T) *embeddedEnv {
	t.Helper()
	return &embeddedEnv{env: newEnv(t), store: "embedded"}
}

// kilnEnv is the environment kiln runs with: the test's, without
// CONTAINERD_ADDRESS and KILN_STORE.
func kilnEnv(extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "CONTAINERD_ADDRESS=") || strings.HasPrefix(kv, "KILN_STORE=") {
			continue
		}
		out = append(out, kv)
	}
	return append(out, extra...)
}

// globalArgs are the global flags of e's kiln: --store (when set),
// --namespace and --root.
func (e *embeddedEnv) globalArgs() []string {
	var full []string
	if e.store != "" {
		full = append(full, "--store", e.store)
	}
	return append(full, "--namespace", e.Namespace, "--root", e.Root)
}

// kiln runs kiln with e's global flags.
func (e *embeddedEnv) kiln(args ...string) result {
	e.t.Helper()
	return runEnv(e.t, kilnEnv(e.extraEnv...), "kiln "+strings.Join(args, " "), kilnBinary, append(e.globalArgs(), args...)...)
}

// startKiln starts kiln in the background with e's global flags.
func (e *embeddedEnv) startKiln(args ...string) *running {
	e.t.Helper()
	cmd := exec.Command(kilnBinary, append(e.globalArgs(), args...)...)
	cmd.Env = kilnEnv(e.extraEnv...)
	return startRunning(e.t, cmd)
}

// runEnv is runShown with the environment env.
func runEnv(t *testing.T, env []string, line, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	return execute(t, ctx, cmd, "$ ", line)
}

// busyboxBase builds the fixtures' busybox for linux/amd64 and linux/arm64
// into the embedded store as name.
func (e *embeddedEnv) busyboxBase(t *testing.T, name string) {
	t.Helper()
	dir := contextDir(t, map[string]string{"Dockerfile": busyboxDockerfile})
	if out, err := exec.Command("cp", "-a", filepath.Join(fixturesDir, "rootfs"), dir).CombinedOutput(); err != nil {
		t.Fatalf("copying fixtures rootfs: %v: %s", err, out)
	}
	e.kiln("build", "--platform", "linux/amd64,linux/arm64", "-t", name, dir).ok(t)
}

// embeddedUnameDockerfile records the machine each platform's RUN step ran on.
const embeddedUnameDockerfile = `FROM busybox
RUN uname -m > /built-on
CMD ["cat", "/built-on"]
`

// buildUname builds busybox and then name from embeddedUnameDockerfile, for
// linux/amd64 and linux/arm64, in the embedded store.
func (e *embeddedEnv) buildUname(t *testing.T, name string) {
	t.Helper()
	e.busyboxBase(t, "busybox")
	dir := contextDir(t, map[string]string{"Dockerfile": embeddedUnameDockerfile})
	e.kiln("build", "--platform", "linux/amd64,linux/arm64", "-t", name, dir).ok(t)
}

// kilnInfo is the part of "kiln info --format json" these tests read.
type kilnInfo struct {
	Store       string `json:"store"`
	StoreReason string `json:"storeReason"`
	StoreDir    string `json:"storeDir"`
	Snapshotter string `json:"snapshotter"`
	Address     string `json:"address"`
	Snapshots   struct {
		Dir        string
		Free, Size uint64
	} `json:"snapshots"`
}

func (e *embeddedEnv) info(t *testing.T) kilnInfo {
	t.Helper()
	var info kilnInfo
	out := e.kiln("info", "--format", "json").ok(t).Stdout
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("decoding kiln info: %v\n%s", err, out)
	}
	return info
}

// TestEmbeddedBuildPushRun is the quick start without containerd: a
// two-platform build into the embedded store, listed by kiln images and
// pushed to a registry; a containerd started afterwards pulls each platform
// and runs it.
func TestEmbeddedBuildPushRun(t *testing.T) {
	t.Parallel()
	e := newEmbeddedEnv(t)
	info := e.info(t)
	if info.Store != "embedded" || info.StoreDir != filepath.Join(e.Root, "store") || info.Address != "" {
		t.Fatalf("kiln info: %+v, want the embedded store in %s/store", info, e.Root)
	}
	if s := info.Snapshots; s.Dir != filepath.Join(e.Root, "store", "snapshots") || s.Size == 0 || s.Free > s.Size {
		t.Errorf("kiln info: snapshots %+v, want the file system of %s/store/snapshots", s, e.Root)
	}
	e.buildUname(t, "hello")

	rows := e.kiln("images", "--format", "json", "hello").ok(t).Stdout
	var row imageRow
	if err := json.Unmarshal([]byte(rows), &row); err != nil {
		t.Fatalf("decoding kiln images: %v\n%s", err, rows)
	}
	if row.Name != "docker.io/library/hello:latest" || strings.Join(row.Platforms, ",") != "linux/amd64,linux/arm64" || !row.Complete {
		t.Fatalf("kiln images: %+v, want hello complete for linux/amd64,linux/arm64", row)
	}
	var hostRow platformRow
	for _, line := range strings.Split(strings.TrimSpace(e.kiln("images", "--platforms", "--format", "json", "hello").ok(t).Stdout), "\n") {
		var r platformRow
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if r.Platform == "linux/"+hostArch(t) {
			hostRow = r
		}
	}
	if !hostRow.Unpacked || hostRow.Snapshotter != info.Snapshotter {
		t.Fatalf("host platform %+v, want it unpacked in %s", hostRow, info.Snapshotter)
	}

	reg := startRegistry(t)
	ref := reg + "/embedded/hello:1"
	e.kiln("tag", "hello", ref).ok(t)
	pushed := e.kiln("push", ref).ok(t).Stdout
	if !strings.HasPrefix(pushed, ref+"@sha256:") {
		t.Fatalf("kiln push printed %q", pushed)
	}

	// A containerd that starts only now runs what was pushed.
	d, err := startContainerd(nil)
	if err != nil {
		t.Fatalf("starting a containerd: %v", err)
	}
	t.Cleanup(func() { d.stop() })
	ctr := func(args ...string) result {
		return runCommand(t, "", filepath.Join(toolsDir, "ctr"), append([]string{"-a", d.address, "-n", "later"}, args...)...)
	}
	for _, want := range []struct{ platform, machine string }{{"linux/amd64", "x86_64"}, {"linux/arm64", "aarch64"}} {
		ctr("images", "pull", "--plain-http", "--platform", want.platform, ref).ok(t)
		id := "hello-" + strings.ReplaceAll(want.platform, "/", "-")
		out := ctr("run", "--rm", "--platform", want.platform, ref, id).ok(t).Stdout
		if strings.TrimSpace(out) != want.machine {
			t.Errorf("%s: the image printed %q, want %q (built on that platform)", want.platform, out, want.machine)
		}
	}
}

// hostArch is GOARCH as a platform's architecture.
func hostArch(t *testing.T) string {
	dir, _ := hostFixtureArch(t)
	return dir
}

// TestEmbeddedSelection: without --address, CONTAINERD_ADDRESS or --store,
// kiln uses the embedded store when containerd's default socket is
// missing; an address given stays containerd's even when nothing answers.
func TestEmbeddedSelection(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/run/containerd/containerd.sock"); err == nil {
		t.Skip("containerd's default socket exists on this host: kiln would use it")
	}
	e := newEmbeddedEnv(t)
	e.store = ""
	info := e.info(t)
	if info.Store != "embedded" || !strings.Contains(info.StoreReason, "no containerd socket at /run/containerd/containerd.sock") {
		t.Fatalf("kiln info: %+v, want the embedded store because the default socket is missing", info)
	}
	table := e.kiln("info").ok(t).Stdout
	if !strings.Contains(table, "store:") || !strings.Contains(table, "embedded (no containerd socket") {
		t.Fatalf("kiln info does not say which store and why:\n%s", table)
	}
	e.kiln("images").ok(t)

	missing := filepath.Join(t.TempDir(), "containerd.sock")
	r := runEnv(t, kilnEnv(), "kiln --address "+missing+" images", kilnBinary, "--address", missing, "--root", e.Root, "images")
	r.fails(t, 1, "containerd is not running at "+missing)
	r = runEnv(t, kilnEnv("CONTAINERD_ADDRESS="+missing), "CONTAINERD_ADDRESS=... kiln images", kilnBinary, "--root", e.Root, "images")
	r.fails(t, 1, "containerd is not running at "+missing)

	// The package's containerd, named by the environment, is used.
	r = runEnv(t, kilnEnv("CONTAINERD_ADDRESS="+e.Address), "CONTAINERD_ADDRESS=... kiln info", kilnBinary, "--root", e.Root, "info", "--format", "json")
	if !strings.Contains(r.ok(t).Stdout, `"store": "containerd"`) {
		t.Fatalf("kiln info with CONTAINERD_ADDRESS:\n%s", r.Stdout)
	}
	r = runEnv(t, kilnEnv("KILN_STORE=embedded", "CONTAINERD_ADDRESS="+e.Address), "KILN_STORE=embedded kiln info", kilnBinary, "--root", e.Root, "info", "--format", "json")
	if !strings.Contains(r.ok(t).Stdout, `"store": "embedded"`) {
		t.Fatalf("kiln info with KILN_STORE=embedded:\n%s", r.Stdout)
	}

	e.store = "bogus"
	e.kiln("images").fails(t, 2, `invalid --store "bogus": use auto, containerd or embedded`)
	e.store = "embedded"
	e.kiln("--snapshotter", "zfs", "images").fails(t, 2, `the embedded store has no snapshotter "zfs"`)
}

// TestEmbeddedImageCommands runs every image command and build output on
// the embedded store.
func TestEmbeddedImageCommands(t *testing.T) {
	t.Parallel()
	e := newEmbeddedEnv(t)
	e.buildUname(t, "app:1")

	e.kiln("tag", "app:1", "app:2", "other/app:3").ok(t)
	names := e.kiln("images", "--format", "{{.Name}}").ok(t).Stdout
	for _, n := range []string{"docker.io/library/app:1", "docker.io/library/app:2", "docker.io/other/app:3"} {
		if !strings.Contains(names, n) {
			t.Errorf("kiln images lacks %s:\n%s", n, names)
		}
	}
	var insp struct {
		Name      string `json:"name"`
		Complete  bool   `json:"complete"`
		Platforms []struct {
			Platform string `json:"platform"`
		} `json:"platforms"`
	}
	if err := json.Unmarshal([]byte(e.kiln("inspect", "app:2").ok(t).Stdout), &insp); err != nil {
		t.Fatal(err)
	}
	if insp.Name != "docker.io/library/app:2" || !insp.Complete || len(insp.Platforms) != 2 {
		t.Fatalf("kiln inspect: %+v", insp)
	}
	raw := e.kiln("inspect", "--platform", "linux/arm64", "--raw", "app:1").ok(t).Stdout
	if !strings.Contains(raw, `"layers"`) {
		t.Fatalf("kiln inspect --raw of linux/arm64 is not a manifest:\n%s", raw)
	}
	e.kiln("rm", "app:2", "other/app:3").ok(t)
	e.kiln("inspect", "app:2").fails(t, 1, `image "app:2" not found`)

	archive := filepath.Join(t.TempDir(), "app.tar")
	e.kiln("save", "app:1", "-o", archive).ok(t)
	e.kiln("rm", "app:1").ok(t)
	e.kiln("load", "-i", archive).ok(t)
	e.kiln("images", "app:1").ok(t)

	reg := startRegistry(t)
	ref := reg + "/embedded/app:1"
	e.kiln("tag", "app:1", ref).ok(t)
	e.kiln("push", "-q", ref).ok(t)
	e.kiln("rm", ref).ok(t)
	e.kiln("pull", "-q", "--platform", "linux/arm64", ref).ok(t)
	plat := e.kiln("images", "--platforms", "--format", "{{.Platform}} {{.Content}}", ref).ok(t).Stdout
	if !strings.Contains(plat, "linux/arm64 complete") || !strings.Contains(plat, "linux/amd64 partial") {
		t.Fatalf("after pulling linux/arm64 only:\n%s", plat)
	}

	// Build outputs other than the store.
	dir := contextDir(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo built > /out.txt\n"})
	out := t.TempDir()
	oci := filepath.Join(out, "oci.tar")
	e.kiln("build", "--platform", "linux/amd64,linux/arm64", "-o", "type=oci,dest="+oci, dir).ok(t)
	if files := readTar(t, oci); files["index.json"] == nil || files["oci-layout"] == nil {
		t.Fatalf("-o type=oci wrote no OCI layout")
	}
	docker := filepath.Join(out, "docker.tar")
	e.kiln("build", "-o", "type=docker,dest="+docker, dir).ok(t)
	if files := readTar(t, docker); files["manifest.json"] == nil {
		t.Fatalf("-o type=docker wrote no manifest.json")
	}
	local := filepath.Join(out, "local")
	e.kiln("build", "-o", "type=local,dest="+local, dir).ok(t)
	if b, err := os.ReadFile(filepath.Join(local, "out.txt")); err != nil || string(b) != "built\n" {
		t.Fatalf("-o type=local: out.txt %q, %v", b, err)
	}
	tarOut := filepath.Join(out, "fs.tar")
	e.kiln("build", "-o", "type=tar,dest="+tarOut, dir).ok(t)
	if files := readTar(t, tarOut); string(files["out.txt"]) != "built\n" {
		t.Fatalf("-o type=tar lacks out.txt")
	}
	pushRef := reg + "/embedded/built:1"
	e.kiln("build", "--platform", "linux/amd64,linux/arm64", "-t", pushRef, "--push", dir).ok(t)
	e.kiln("build", "-o", "type=registry,name="+reg+"/embedded/only-registry:1", dir).ok(t)
	e.kiln("rm", pushRef).ok(t)
	e.kiln("pull", "-q", "--all-platforms", pushRef).ok(t)
	e.kiln("pull", "-q", reg+"/embedded/only-registry:1").ok(t)

	// Cache management works on the embedded store's worker.
	e.kiln("du").ok(t)
	e.kiln("prune", "--all").ok(t)
}

// TestEmbeddedTransfer copies an image from the embedded store into the
// running containerd, runs it there, and copies it back into a fresh
// embedded store.
func TestEmbeddedTransfer(t *testing.T) {
	t.Parallel()
	e := newEmbeddedEnv(t)
	e.buildUname(t, "hello:1")

	dest := "containerd://" + e.Address + "/" + e.Namespace
	out := e.kiln("push", "hello:1", dest).ok(t)
	if !strings.HasPrefix(out.Stdout, "docker.io/library/hello:1@sha256:") {
		t.Fatalf("kiln push to containerd printed %q", out.Stdout)
	}
	if !strings.Contains(out.Stderr, "unpacking linux/"+hostArch(t)) {
		t.Fatalf("the host platform was not unpacked in containerd:\n%s", out.Stderr)
	}
	// Every platform, and the host's runs at once.
	listed := e.env.ctr("images", "ls").ok(t).Stdout
	if !strings.Contains(listed, "docker.io/library/hello:1") || !strings.Contains(listed, "linux/amd64,linux/arm64") {
		t.Fatalf("ctr images ls after the copy:\n%s", listed)
	}
	_, machine := hostFixtureArch(t)
	run := e.env.ctr("run", "--rm", "docker.io/library/hello:1", "copied-host").ok(t).Stdout
	if strings.TrimSpace(run) != machine {
		t.Fatalf("the copied image printed %q, want %q", run, machine)
	}
	run = e.env.ctr("run", "--rm", "--platform", "linux/arm64", "docker.io/library/hello:1", "copied-arm64").ok(t).Stdout
	if strings.TrimSpace(run) != "aarch64" {
		t.Fatalf("linux/arm64 of the copied image printed %q", run)
	}
	// A second copy finds every blob there.
	again := e.kiln("push", "hello:1", dest).ok(t).Stderr
	if strings.Contains(again, "copied ") {
		t.Fatalf("the second copy copied blobs again:\n%s", again)
	}

	// And back, into another state directory.
	back := newEmbeddedEnv(t)
	back.kiln("pull", "hello:1", dest).ok(t)
	if got := back.kiln("images", "--format", "{{.Digest}} {{.Complete}}", "hello:1").ok(t).Stdout; !strings.Contains(got, "true") {
		t.Fatalf("copied back: %s", got)
	}
	if a, b := e.kiln("images", "-q", "--no-trunc", "hello:1").ok(t).Stdout, back.kiln("images", "-q", "--no-trunc", "hello:1").ok(t).Stdout; a != b {
		t.Fatalf("digest changed on the way: %s vs %s", a, b)
	}

	e.kiln("push", "hello:1", "containerd://"+e.Address+"/Bad Namespace").fails(t, 2, "invalid containerd namespace")
	e.kiln("push", "--platform", "linux/amd64", "hello:1", dest).fails(t, 2, "--platform is for registries")
	e.kiln("push", "hello:1", "registry.example.com/x").fails(t, 2, "optionally containerd://")
	e.kiln("push", "missing:1", dest).fails(t, 1, `image "missing:1" not found`)
}

// TestEmbeddedLock: while a build holds the embedded store, image commands
// wait for it and say so; kiln info does not wait.
func TestEmbeddedLock(t *testing.T) {
	t.Parallel()
	e := newEmbeddedEnv(t)
	e.busyboxBase(t, "busybox")
	dir := contextDir(t, map[string]string{"Dockerfile": "FROM busybox\nRUN " + slowStepEcho + " && sleep 4\n"})
	build := e.startKiln("build", "--progress", "plain", "--no-cache", dir)
	build.waitFor(t, slowStepRunning)
	start := time.Now()
	e.info(t)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("kiln info took %v during a build; it must not wait", d)
	}
	r := e.kiln("images").ok(t)
	if !strings.Contains(r.Stderr, fmt.Sprintf("waiting for the build of pid %d", build.cmd.Process.Pid)) {
		t.Errorf("kiln images did not say it waited for the build:\n%s", r.Stderr)
	}
	if code, out := build.wait(t); code != 0 {
		t.Fatalf("the build failed: exit code %d\n%s", code, out)
	}
}

// TestEmbeddedKilled: a kiln killed during a step leaves its bundle and
// mounts; the next kiln on the state directory removes them.
func TestEmbeddedKilled(t *testing.T) {
	t.Parallel()
	e := newEmbeddedEnv(t)
	e.busyboxBase(t, "busybox")
	dir := contextDir(t, map[string]string{"Dockerfile": "FROM busybox\nRUN " + slowStepEcho + " && sleep 600\n"})
	build := e.startKiln("build", "--progress", "plain", "--no-cache", dir)
	build.waitFor(t, slowStepRunning)
	build.cmd.Process.Kill()
	build.wait(t)

	r := e.kiln("build", "-q", contextDir(t, map[string]string{"Dockerfile": "FROM busybox\nRUN true\n"})).ok(t)
	if !strings.Contains(r.Stderr, "left by an interrupted kiln") {
		t.Errorf("the next build did not clean up after the killed one:\n%s", r.Stderr)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), e.Root+"/") {
		t.Errorf("mounts under %s remain after the next build:\n%s", e.Root, mounts)
	}
	bundles, _ := filepath.Glob(filepath.Join(e.Root, "buildkit", "embedded", "*", "runc-*", "executor", "*", "config.json"))
	if len(bundles) > 0 {
		t.Errorf("step bundles remain: %v", bundles)
	}
	if out, _ := exec.Command("pgrep", "-f", "sleep 600").Output(); len(out) > 0 {
		// Another test's step could match; name ours precisely.
		for _, pid := range strings.Fields(string(out)) {
			cmdline, _ := os.ReadFile("/proc/" + pid + "/cmdline")
			if strings.Contains(string(cmdline), slowStepEcho) {
				t.Errorf("the killed build's step still runs (pid %s)", pid)
			}
		}
	}
}

// embeddedUser is the unprivileged user TestEmbeddedUnprivileged builds
// as, with subordinate ids as an administrator gives them.
const embeddedUser = "kiln-it-embedded"

// unprivilegedEmbeddedUser creates embeddedUser if needed, with 65536
// subordinate uids and gids, and returns its uid and gid.
func unprivilegedEmbeddedUser(t *testing.T) (uid, gid string) {
	t.Helper()
	if err := exec.Command("id", embeddedUser).Run(); err != nil {
		if out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", embeddedUser).CombinedOutput(); err != nil {
			t.Fatalf("creating user %s: %v: %s", embeddedUser, err, out)
		}
	}
	owned := func(file string) bool {
		b, _ := os.ReadFile(file)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, embeddedUser+":") {
				return true
			}
		}
		return false
	}
	if !owned("/etc/subuid") || !owned("/etc/subgid") {
		// A range after every range given so far, as usermod suggests.
		next := 100000
		for _, file := range []string{"/etc/subuid", "/etc/subgid"} {
			b, _ := os.ReadFile(file)
			for _, line := range strings.Split(string(b), "\n") {
				var owner string
				var start, count int
				if f := strings.Split(line, ":"); len(f) == 3 {
					owner = f[0]
					fmt.Sscan(f[1], &start)
					fmt.Sscan(f[2], &count)
				}
				if owner != "" && start+count > next {
					next = start + count
				}
			}
		}
		ids := fmt.Sprintf("%d-%d", next, next+65535)
		if out, err := exec.Command("usermod", "--add-subuids", ids, "--add-subgids", ids, embeddedUser).CombinedOutput(); err != nil {
			t.Fatalf("giving %s subordinate ids: %v: %s", embeddedUser, err, out)
		}
	}
	u, err := exec.Command("id", "-u", embeddedUser).Output()
	if err != nil {
		t.Fatal(err)
	}
	g, err := exec.Command("id", "-g", embeddedUser).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(u)), strings.TrimSpace(string(g))
}

// TestEmbeddedUnprivileged is the quick start as an unprivileged user on a
// host without containerd: kiln makes its own user and mount namespaces
// (newuidmap, newgidmap), runs runc rootless and registers emulation in
// that user namespace only.
func TestEmbeddedUnprivileged(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"/usr/bin/newuidmap", "/usr/bin/newgidmap", "/usr/bin/setpriv"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s is missing: install the uidmap and util-linux packages", p)
		}
	}
	uid, gid := unprivilegedEmbeddedUser(t)
	// Everything the user touches: home (kiln's root by default), the build
	// contexts, the outputs, and a copy of kiln.
	home, err := os.MkdirTemp("/tmp", "kiln-emb-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		privatecontainerd.UnmountUnder(home)
		os.RemoveAll(home)
	})
	bin := filepath.Join(home, "kiln")
	if out, err := exec.Command("cp", kilnBinary, bin).CombinedOutput(); err != nil {
		t.Fatalf("copying kiln: %v: %s", err, out)
	}
	bb := filepath.Join(home, "busybox")
	if err := os.MkdirAll(bb, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bb, "Dockerfile"), []byte(busyboxDockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(fixturesDir, "rootfs"), bb).CombinedOutput(); err != nil {
		t.Fatalf("copying fixtures: %v: %s", err, out)
	}
	app := filepath.Join(home, "app")
	os.MkdirAll(app, 0o755)
	os.WriteFile(filepath.Join(app, "Dockerfile"), []byte(embeddedUnameDockerfile), 0o644)
	// No RUN step: only the platform check runs anything for riscv64.
	scratch := filepath.Join(home, "scratch")
	os.MkdirAll(scratch, 0o755)
	os.WriteFile(filepath.Join(scratch, "Dockerfile"), []byte("FROM scratch\nCOPY Dockerfile /\n"), 0o644)
	within, over := filepath.Join(home, "within"), filepath.Join(home, "over")
	os.MkdirAll(within, 0o755)
	os.WriteFile(filepath.Join(within, "Dockerfile"), []byte(withinBudgetDockerfile), 0o644)
	os.MkdirAll(over, 0o755)
	os.WriteFile(filepath.Join(over, "Dockerfile"), []byte(overBudgetDockerfile), 0o644)
	if out, err := exec.Command("chown", "-R", uid+":"+gid, home).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v: %s", err, out)
	}

	// No --store, --address or --root: an unprivileged user's defaults.
	env := []string{"HOME=" + home, "USER=" + embeddedUser, "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}
	user := func(args ...string) result {
		t.Helper()
		full := append([]string{"--reuid", uid, "--regid", gid, "--clear-groups", bin}, args...)
		return runEnv(t, env, "("+embeddedUser+") kiln "+strings.Join(args, " "), "/usr/bin/setpriv", full...)
	}

	var info struct {
		Store         string `json:"store"`
		StoreDir      string `json:"storeDir"`
		UserNamespace string `json:"userNamespace"`
		Snapshotter   string `json:"snapshotter"`
	}
	out := user("info", "--format", "json").ok(t).Stdout
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("kiln info: %v\n%s", err, out)
	}
	wantDir := filepath.Join(home, ".local", "share", "kiln", "store")
	if info.Store != "embedded" || info.StoreDir != wantDir || !strings.Contains(info.UserNamespace, "host uid "+uid+" is 0") {
		t.Fatalf("kiln info as %s: %+v, want the embedded store in %s in kiln's own user namespace", embeddedUser, info, wantDir)
	}

	user("build", "--platform", "linux/amd64,linux/arm64", "-t", "busybox", bb).ok(t)
	user("build", "--platform", "linux/amd64,linux/arm64", "-t", "hello", app).ok(t)
	// Rootless runc gets no cgroups of its own: without a cgroup delegated
	// to the user a budget is refused, not ignored.
	user("build", "--memory", "256m", "-t", "hello", app).fails(t, 1, "cannot be enforced (memory 256MiB): as an unprivileged user")

	// In a cgroup delegated to the user the budget holds: kiln starts runc
	// inside the build's cgroup, below the delegated one.
	uidN, _ := strconv.Atoi(uid)
	gidN, _ := strconv.Atoi(gid)
	join, delegated := delegatedCgroup(t, uidN, gidN)
	inCgroup := func(args ...string) result {
		t.Helper()
		full := append([]string{"--reuid", uid, "--regid", gid, "--clear-groups", "/bin/sh", "-c", join, bin}, args...)
		return runEnv(t, env, "("+embeddedUser+", in a delegated cgroup) kiln "+strings.Join(args, " "), "/usr/bin/setpriv", full...)
	}
	inCgroup("build", "--memory", "256m", "--cpus", "0.5", "-t", "within", within).ok(t)
	r := inCgroup("build", "--memory", "256m", "--progress", "plain", "-t", "over", over).fails(t, 1, "out of memory")
	checkOutOfMemory(t, r)
	if left := buildCgroupsBelow(delegated); len(left) > 0 {
		t.Errorf("the build's cgroups are still there: %v", left)
	}
	rows := user("images", "--format", "{{.Name}} {{join .Platforms \",\"}} {{.Complete}}").ok(t).Stdout
	if !strings.Contains(rows, "docker.io/library/hello:latest linux/amd64,linux/arm64 true") {
		t.Fatalf("kiln images as %s:\n%s", embeddedUser, rows)
	}
	oci := filepath.Join(home, "hello-oci.tar")
	user("build", "--platform", "linux/amd64,linux/arm64", "-o", "type=oci,dest="+oci, app).ok(t)
	if files := readTar(t, oci); files["index.json"] == nil {
		t.Fatalf("-o type=oci as %s wrote no OCI layout", embeddedUser)
	}

	// The store belongs to the user and the ids they were given: nothing
	// in it is the host's root's, and nothing stays mounted on the host.
	filepath.Walk(filepath.Join(home, ".local"), func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == 0 {
				t.Errorf("%s belongs to root", p)
				return filepath.SkipAll
			}
		}
		return nil
	})
	if mounts, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mounts), home+"/") {
		t.Errorf("kiln's mounts reached the host's mount namespace:\n%s", mounts)
	}

	// Pushed to a registry, it runs in containerd, each platform built
	// where it belongs.
	reg := startRegistry(t)
	ref := reg + "/unprivileged/hello:1"
	user("build", "--platform", "linux/amd64,linux/arm64", "-t", ref, "--push", app).ok(t)
	e := newEnv(t)
	// ctr runs the arm64 half on the host, through the host's handler, which the test must not
	// expect an earlier test to have left.
	e.kiln("emulation", "install", "linux/arm64").ok(t)
	for _, want := range []struct{ platform, machine string }{{"linux/amd64", "x86_64"}, {"linux/arm64", "aarch64"}} {
		e.ctr("images", "pull", "--plain-http", "--platform", want.platform, ref).ok(t)
		got := e.ctr("run", "--rm", "--platform", want.platform, ref, "unpriv-"+strings.ReplaceAll(want.platform, "/", "-")).ok(t).Stdout
		if strings.TrimSpace(got) != want.machine {
			t.Errorf("%s built by %s printed %q, want %q", want.platform, embeddedUser, got, want.machine)
		}
	}

	// A platform the host has no handler for is registered in kiln's user
	// namespace only.
	const riscv = "/proc/sys/fs/binfmt_misc/qemu-riscv64"
	if _, err := os.Stat("/usr/bin/qemu-riscv64-static"); err == nil {
		if _, err := os.Stat(riscv); err == nil {
			t.Log("the host has a riscv64 handler already; not checking registration in the user namespace")
		} else {
			r := user("build", "--platform", "linux/riscv64", "-t", "rv", scratch).ok(t)
			if !strings.Contains(r.Stderr, "registered a QEMU binfmt_misc handler for linux/riscv64") {
				t.Errorf("no handler was registered for linux/riscv64:\n%s", r.Stderr)
			}
			if _, err := os.Stat(riscv); err == nil {
				t.Errorf("the user's build registered %s on the host", riscv)
			}
		}
	}
}

// TestEmbeddedUnprivilegedNoSubIDs: a user without subordinate ids is told
// what to ask an administrator for.
func TestEmbeddedUnprivilegedNoSubIDs(t *testing.T) {
	t.Parallel()
	prefix := unprivilegedUser(t) // kiln-it, which has no subordinate ids
	if b, _ := os.ReadFile("/etc/subuid"); strings.Contains(string(b), "\nkiln-it:") || strings.HasPrefix(string(b), "kiln-it:") {
		t.Skip("kiln-it has subordinate uids on this host")
	}
	args := append(prefix, kilnBinary, "--root", filepath.Join(t.TempDir(), "root"), "images")
	r := runEnv(t, kilnEnv(), "(kiln-it) kiln images", "/usr/bin/setpriv", args...)
	r.fails(t, 1, "/etc/subuid has no subordinate uid range for kiln-it")
	if !strings.Contains(r.Stderr, "usermod --add-subuids") {
		t.Errorf("the error does not say how to add subordinate ids:\n%s", r.Stderr)
	}
}

// TestEmbeddedOfflineBase: on an offline host, a build on the embedded store
// whose base image is only in a containerd names that containerd and the
// "kiln pull NAME containerd://..." that copies it (issue #21), and after
// that copy the build succeeds, still offline.
func TestEmbeddedOfflineBase(t *testing.T) {
	t.Parallel()
	e := newEmbeddedEnv(t)
	e.env.busyboxBase(t, "offlinebase:1", "linux/amd64")
	dir := contextDir(t, map[string]string{"Dockerfile": "FROM offlinebase:1\nRUN echo ok > /ok\n"})
	// A network namespace with nothing but a loopback that is down: any
	// registry contact fails, while containerd's socket still answers.
	offline := func(args ...string) result {
		full := append([]string{"-n", kilnBinary, "--address", e.Address}, append(e.globalArgs(), args...)...)
		return runEnv(t, kilnEnv(), "unshare -n kiln "+strings.Join(args, " "), "unshare", full...)
	}
	want := "cannot fetch base image docker.io/library/offlinebase:1: the registry is not reachable"
	r := offline("build", "--platform", "linux/amd64", "-t", "offline", dir)
	r.fails(t, 1, want)
	fix := fmt.Sprintf("the containerd at %s has it in namespace %s: copy it into kiln's store with \"kiln pull docker.io/library/offlinebase:1 containerd://%s/%s\"", e.Address, e.Namespace, e.Address, e.Namespace)
	if !strings.Contains(r.Stderr, fix) {
		t.Fatalf("the error does not name the containerd that has the base:\n%s", r.Stderr)
	}
	offline("pull", "docker.io/library/offlinebase:1", "containerd://"+e.Address+"/"+e.Namespace).ok(t)
	offline("build", "--platform", "linux/amd64", "-t", "offline", dir).ok(t)

	// Without a containerd that has it, the error says both ways.
	other := newEmbeddedEnv(t)
	r = runEnv(t, kilnEnv(), "unshare -n kiln build", "unshare", append([]string{"-n", kilnBinary, "--address", filepath.Join(t.TempDir(), "none.sock")}, append(other.globalArgs(), "build", "--platform", "linux/amd64", dir)...)...)
	r.fails(t, 1, want)
	if !strings.Contains(r.Stderr, "copy it from a containerd that has it with \"kiln pull docker.io/library/offlinebase:1 containerd://[ADDRESS][/NAMESPACE]\"") {
		t.Fatalf("the error does not offer the containerd copy:\n%s", r.Stderr)
	}
}
