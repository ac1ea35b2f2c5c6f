//go:build linux

package integration

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

// sameRoot returns an env on e's containerd and kiln root with a namespace
// of its own, removed at cleanup like e's.
func (e *env) sameRoot(t *testing.T) *env {
	t.Helper()
	ns := fmt.Sprintf("%s-%d-%d", sanitizeNamespace(t.Name()), envCounter.Add(1), os.Getpid())
	o := &env{t: t, Namespace: ns, Root: e.Root, Address: e.Address}
	t.Cleanup(func() {
		if !daemon.dead() {
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
