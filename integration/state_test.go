//go:build linux

package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/kiln-build/kiln/internal/privatecontainerd"
)

// sameRoot returns an env on e's containerd and kiln root with a namespace
// of its own, removed at cleanup like e's.
func (e *env) sameRoot(t *testing.T) *env {
	t.Helper()
	ns := fmt.Sprintf("%s-%d-%d", sanitizeNamespace(t.Name()), envCounter.Add(1), os.Getpid())
	o := &env{t: t, Namespace: ns, Root: e.Root, Address: e.Address}
	t.Cleanup(func() {
		if !daemon.Dead() {
			for _, n := range []string{ns, ns + "_history"} {
				sweepNamespace(o.Address, n, t.Logf)
			}
		}
	})
	return o
}

// helloDockerfile runs a step, so that the image has a layer of its own
// that the build cache records.
const helloDockerfile = "FROM busybox\nRUN echo hello > /hello\nCMD [\"cat\", \"/hello\"]\n"

// TestTwoNamespacesOneRoot: builds into two containerd namespaces with one
// --root each keep their own build cache. With one cache for both, the
// second namespace's build found the first one's cache records, whose
// content and snapshots containerd keeps in the first namespace, and failed
// at export or unpack.
func TestTwoNamespacesOneRoot(t *testing.T) {
	t.Parallel()
	a := newEnv(t)
	b := a.sameRoot(t)
	dir := contextDir(t, map[string]string{"Dockerfile": helloDockerfile})
	for _, e := range []*env{a, b} {
		e.busyboxBase(t, "busybox", "linux/amd64")
		e.kiln("build", "-t", "hello", dir).ok(t)
		out := e.ctr("run", "--rm", "docker.io/library/hello:latest", "hello-"+e.Namespace).ok(t).Stdout
		if strings.TrimSpace(out) != "hello" {
			t.Fatalf("hello in namespace %s printed %q, want hello", e.Namespace, out)
		}
	}
	// Each namespace still has its own cache: a rebuild in either runs no
	// step.
	for _, e := range []*env{a, b} {
		r := e.kiln("build", "--progress", "plain", "-t", "hello", dir).ok(t)
		if !stepCached(r.Stderr, "RUN echo hello") {
			t.Errorf("the rebuild in namespace %s ran its step again:\n%s", e.Namespace, r.Stderr)
		}
	}
}

// stepCached reports whether plain progress output shows the step whose
// header contains step as CACHED.
func stepCached(progress, step string) bool {
	m := regexp.MustCompile(`(?m)^(#\d+) \[.*\] ` + regexp.QuoteMeta(step)).FindStringSubmatch(progress)
	return m != nil && strings.Contains(progress, m[1]+" CACHED")
}

// TestEmbeddedTwoNamespacesOneRoot is TestTwoNamespacesOneRoot on the
// embedded store, which keeps every namespace's images in one database as a
// containerd does, and had one build cache for all of them too.
func TestEmbeddedTwoNamespacesOneRoot(t *testing.T) {
	t.Parallel()
	a := newEmbeddedEnv(t)
	b := &embeddedEnv{env: a.sameRoot(t), store: a.store}
	dir := contextDir(t, map[string]string{"Dockerfile": helloDockerfile})
	for _, e := range []*embeddedEnv{a, b} {
		e.busyboxBase(t, "busybox")
		e.kiln("build", "-t", "hello", dir).ok(t)
		// A step on the image reads the layer the build made.
		check := contextDir(t, map[string]string{"Dockerfile": "FROM hello\nRUN test \"$(cat /hello)\" = hello\n"})
		e.kiln("build", check).ok(t)
	}
	for _, e := range []*embeddedEnv{a, b} {
		r := e.kiln("build", "--progress", "plain", "-t", "hello", dir).ok(t)
		if !stepCached(r.Stderr, "RUN echo hello") {
			t.Errorf("the rebuild in namespace %s ran its step again:\n%s", e.Namespace, r.Stderr)
		}
	}
}

// buildState is the namespace's build state directory kiln info reports.
func buildState(t *testing.T, infoJSON string) string {
	t.Helper()
	var info struct {
		Root  string `json:"root"`
		State string `json:"state"`
	}
	mustJSON(t, infoJSON, &info)
	return info.State
}

// toLegacyLayout moves the build state directory state to where kiln kept
// it before it kept one per namespace: directly in root.
func toLegacyLayout(t *testing.T, root, state string) {
	t.Helper()
	entries, err := os.ReadDir(state)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range entries {
		if ent.Name() == "history" {
			continue // the build records came after the per-namespace layout
		}
		if err := os.Rename(filepath.Join(state, ent.Name()), filepath.Join(root, ent.Name())); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(filepath.Join(root, "buildkit")); err != nil {
		t.Fatal(err)
	}
	// Nor had those kilns a marker: the state directory is adopted.
	if err := os.Remove(filepath.Join(root, ".kiln-root")); err != nil {
		t.Fatal(err)
	}
}

// assertNoLegacyState fails unless root holds nothing of the legacy layout.
func assertNoLegacyState(t *testing.T, root string) {
	t.Helper()
	for _, pattern := range []string{"containerd-*", "runc-*", "cache.db", "history.db"} {
		if m, _ := filepath.Glob(filepath.Join(root, pattern)); len(m) > 0 {
			t.Errorf("legacy state left in %s: %v", root, m)
		}
	}
}

// TestLegacyStateAdopted: the build cache of a kiln that kept it directly in
// --root moves to the state directory of the namespace its records belong
// to, whichever namespace the first kiln after the upgrade builds in, and
// builds there stay cached.
func TestLegacyStateAdopted(t *testing.T) {
	t.Parallel()
	a := newEnv(t)
	b := a.sameRoot(t)
	a.busyboxBase(t, "busybox", "linux/amd64")
	dir := contextDir(t, map[string]string{"Dockerfile": helloDockerfile})
	a.kiln("build", "-t", "hello", dir).ok(t)
	state := buildState(t, a.kiln("info", "--format", "json").ok(t).Stdout)
	if want := filepath.Join(a.Root, "buildkit"); !strings.HasPrefix(state, want+"/containerd-") || filepath.Base(state) != a.Namespace {
		t.Fatalf("kiln info: build state %s, want %s/containerd-<UUID>/%s", state, want, a.Namespace)
	}
	toLegacyLayout(t, a.Root, state)

	// The first kiln after the upgrade runs in the other namespace.
	r := b.kiln("du").ok(t)
	if want := "moved the build cache of namespace " + a.Namespace; !strings.Contains(r.Stderr, want) {
		t.Fatalf("kiln du in namespace %s did not say %q:\n%s", b.Namespace, want, r.Stderr)
	}
	assertNoLegacyState(t, a.Root)
	if m, _ := filepath.Glob(filepath.Join(state, "containerd-*", "metadata_v2.db")); len(m) != 1 {
		t.Errorf("namespace %s's state %s has no worker directory: %v", a.Namespace, state, m)
	}
	b.busyboxBase(t, "busybox", "linux/amd64")
	r = b.kiln("build", "--progress", "plain", "-t", "hello", dir).ok(t)
	if stepCached(r.Stderr, "RUN echo hello") {
		t.Errorf("namespace %s found namespace %s's cache:\n%s", b.Namespace, a.Namespace, r.Stderr)
	}
	b.ctr("run", "--rm", "docker.io/library/hello:latest", "hello-b").ok(t)

	r = a.kiln("build", "--progress", "plain", "-t", "hello", dir).ok(t)
	if !stepCached(r.Stderr, "RUN echo hello") {
		t.Errorf("the moved cache was not used in namespace %s:\n%s", a.Namespace, r.Stderr)
	}
	if strings.Contains(r.Stderr, "build cache") {
		t.Errorf("a kiln after the move still talks about it:\n%s", r.Stderr)
	}
}

// TestEmbeddedLegacyStateAdopted is TestLegacyStateAdopted on the embedded
// store, whose worker directories are runc-NAME.
func TestEmbeddedLegacyStateAdopted(t *testing.T) {
	t.Parallel()
	a := newEmbeddedEnv(t)
	b := &embeddedEnv{env: a.sameRoot(t), store: a.store}
	a.busyboxBase(t, "busybox")
	dir := contextDir(t, map[string]string{"Dockerfile": helloDockerfile})
	a.kiln("build", "-t", "hello", dir).ok(t)
	state := buildState(t, a.kiln("info", "--format", "json").ok(t).Stdout)
	if want := filepath.Join(a.Root, "buildkit", "embedded", a.Namespace); state != want {
		t.Fatalf("kiln info: build state %s, want %s", state, want)
	}
	toLegacyLayout(t, a.Root, state)

	r := b.kiln("du").ok(t)
	if want := "moved the build cache of namespace " + a.Namespace; !strings.Contains(r.Stderr, want) {
		t.Fatalf("kiln du in namespace %s did not say %q:\n%s", b.Namespace, want, r.Stderr)
	}
	assertNoLegacyState(t, a.Root)
	b.busyboxBase(t, "busybox")
	b.kiln("build", "-t", "hello", dir).ok(t)

	r = a.kiln("build", "--progress", "plain", "-t", "hello", dir).ok(t)
	if !stepCached(r.Stderr, "RUN echo hello") {
		t.Errorf("the moved cache was not used in namespace %s:\n%s", a.Namespace, r.Stderr)
	}
}

// TestBuildsOfTwoRootsShareTheNamespaceLock: builds with different roots
// into one namespace queue on the namespace's lock in /run/kiln, whose file
// is gone once the last one releases it.
func TestBuildsOfTwoRootsShareTheNamespaceLock(t *testing.T) {
	t.Parallel()
	a := newEnv(t)
	root, err := os.MkdirTemp(daemon.dir, "k")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		privatecontainerd.UnmountUnder(root)
		os.RemoveAll(root)
	})
	b := &env{t: t, Namespace: a.Namespace, Root: root, Address: a.Address}
	a.busyboxBase(t, "busybox", "linux/amd64")
	results := make([]result, 2)
	var wg sync.WaitGroup
	for i, e := range []*env{a, b} {
		dir := contextDir(t, map[string]string{"Dockerfile": fmt.Sprintf("FROM busybox\nRUN echo root-%d > /id; sleep 1\n", i)})
		wg.Go(func() { results[i] = e.kiln("build", "-t", fmt.Sprintf("root-%d", i), dir) })
	}
	wg.Wait()
	waited := false
	for _, r := range results {
		r.ok(t)
		waited = waited || strings.Contains(r.Stderr, "to release namespace "+a.Namespace)
	}
	if !waited {
		t.Error("neither build waited for the other's namespace lock")
	}
	sum := sha256.Sum256([]byte(a.Address + "\x00" + a.Namespace))
	lock := filepath.Join("/run/kiln", hex.EncodeToString(sum[:8])+".lock")
	if _, err := os.Stat(lock); err == nil {
		t.Errorf("the namespace's lock file %s is still there", lock)
	}
}
