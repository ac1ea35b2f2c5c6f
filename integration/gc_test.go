//go:build linux

package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	units "github.com/docker/go-units"
)

// gcFreed starts the line a build prints when its garbage collection freed
// build cache.
const gcFreed = "garbage collection freed "

// TestBuildCacheGC fills the build cache of a containerd-backed kiln beyond
// a small --gc-keep-storage and checks that a build collects it down to
// that size, once per interval and not when turned off.
func TestBuildCacheGC(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.busyboxBase(t, "gcbase", "linux/amd64")
	testBuildCacheGC(t, e.Root, e.kiln)
}

// TestEmbeddedBuildCacheGC is TestBuildCacheGC on the embedded store.
func TestEmbeddedBuildCacheGC(t *testing.T) {
	t.Parallel()
	e := newEmbeddedEnv(t)
	base := contextDir(t, map[string]string{"Dockerfile": busyboxDockerfile})
	if out, err := exec.Command("cp", "-a", filepath.Join(fixturesDir, "rootfs"), base).CombinedOutput(); err != nil {
		t.Fatalf("copying fixtures rootfs: %v: %s", err, out)
	}
	e.kiln("build", "--platform", "linux/amd64", "-t", "gcbase", base).ok(t)
	testBuildCacheGC(t, e.Root, e.kiln)
}

func testBuildCacheGC(t *testing.T, root string, kiln func(args ...string) result) {
	// Every build of this Dockerfile with --no-cache adds two layers of 2MB
	// that no image uses once the next build takes the name.
	dir := contextDir(t, map[string]string{"Dockerfile": `FROM gcbase
RUN head -c 2000000 /dev/urandom > /a
RUN head -c 2000000 /dev/urandom > /b
`})
	const keep = "6MB" // 6 MiB, as buildkitd reads sizes
	keepBytes, _ := units.RAMInBytes(keep)

	if r := kiln("--gc-keep-storage", "lots", "build", dir).fails(t, 2, `invalid --gc-keep-storage "lots"`); strings.Count(strings.TrimSpace(r.Stderr), "\n") > 0 {
		t.Errorf("want a one-line error:\n%s", r.Stderr)
	}

	for i := 0; i < 5; i++ {
		r := kiln("--gc=false", "--gc-keep-storage", keep, "build", "--no-cache", "-t", "gcapp", dir).ok(t)
		if strings.Contains(r.Stderr, gcFreed) {
			t.Fatalf("a build with --gc=false collected garbage:\n%s", r.Stderr)
		}
	}
	before := reclaimable(t, kiln)
	if before < 3*keepBytes {
		t.Fatalf("five builds left only %d reclaimable bytes, want several times %s", before, keep)
	}
	stamp := gcStamp(t, root)
	old := time.Now().Add(-2 * time.Minute).Truncate(time.Second)

	// Turned off, a build neither collects nor checks, however long ago
	// the last check was.
	setMtime(t, stamp, old)
	r := kiln("--gc=false", "--gc-keep-storage", keep, "build", "-t", "gcapp", dir).ok(t)
	if strings.Contains(r.Stderr, gcFreed) || reclaimable(t, kiln) != before || !mtime(t, stamp).Equal(old) {
		t.Fatalf("a build with --gc=false collected garbage or checked for it:\n%s", r.Stderr)
	}

	// Within the interval after a check, a build does not check again.
	recent := time.Now().Add(-5 * time.Second).Truncate(time.Second)
	setMtime(t, stamp, recent)
	r = kiln("--gc-keep-storage", keep, "build", "-t", "gcapp", dir).ok(t)
	if strings.Contains(r.Stderr, gcFreed) || reclaimable(t, kiln) != before || !mtime(t, stamp).Equal(recent) {
		t.Fatalf("a build checked for garbage within a minute of the last check:\n%s", r.Stderr)
	}

	// After it, the build collects down to the kept size, says so in one
	// line, and keeps what the last build made.
	setMtime(t, stamp, old)
	r = kiln("--gc-keep-storage", keep, "build", "--progress", "plain", "-t", "gcapp", dir).ok(t)
	if n := strings.Count(r.Stderr, gcFreed); n != 1 {
		t.Fatalf("the build after the interval printed %d lines on collecting garbage, want 1:\n%s", n, r.Stderr)
	}
	if !mtime(t, stamp).After(old) {
		t.Errorf("the collection did not record its time in %s", stamp)
	}
	after := reclaimable(t, kiln)
	t.Logf("reclaimable before the collection: %d bytes, after: %d, kept size %d", before, after, keepBytes)
	if after > keepBytes || after >= before {
		t.Fatalf("after the collection %d bytes are reclaimable (before: %d), want at most %s (%d)", after, before, keep, keepBytes)
	}
	r = kiln("build", "--progress", "plain", "-t", "gcapp", dir).ok(t)
	for _, step := range []string{"RUN head -c 2000000 /dev/urandom > /a", "RUN head -c 2000000 /dev/urandom > /b"} {
		if !regexp.MustCompile(`#\d+ \[\d/3\] ` + regexp.QuoteMeta(step) + `\n#\d+ CACHED`).MatchString(r.Stderr) {
			t.Errorf("after the collection, %q is no longer cached:\n%s", step, r.Stderr)
		}
	}

	// -q keeps the report off stderr.
	setMtime(t, stamp, old)
	r = kiln("--gc-keep-storage", "1MB", "build", "-q", "-t", "gcapp", dir).ok(t)
	if strings.Contains(r.Stderr, gcFreed) || !strings.HasPrefix(r.Stdout, "sha256:") {
		t.Errorf("kiln build -q printed more than the digest:\nstdout: %s\nstderr: %s", r.Stdout, r.Stderr)
	}
	if now := reclaimable(t, kiln); now >= after {
		t.Errorf("with --gc-keep-storage 1MB the collection freed nothing (%d bytes reclaimable, before %d)", now, after)
	}

	// A collection that fails leaves the build a success, with one warning.
	if err := os.Remove(stamp); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "missing", "gc.stamp"), stamp); err != nil {
		t.Fatal(err)
	}
	r = kiln("build", "-t", "gcapp", dir).ok(t)
	warning := regexp.MustCompile(`(?m)^warning: the build succeeded, but collecting build cache garbage failed: .*\(free space with "kiln prune"\)$`)
	if !warning.MatchString(r.Stderr) {
		t.Errorf("a failed collection did not say so in one warning line:\n%s", r.Stderr)
	}
}

// reclaimable is the size kiln du reports as reclaimable.
func reclaimable(t *testing.T, kiln func(args ...string) result) int64 {
	t.Helper()
	out := kiln("du").ok(t).Stdout
	m := regexp.MustCompile(`reclaimable:\s+(\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("kiln du shows no reclaimable size:\n%s", out)
	}
	n, err := units.FromHumanSize(m[1])
	if err != nil {
		t.Fatalf("kiln du: reclaimable %q: %v", m[1], err)
	}
	return n
}

// gcStamp finds the file whose time records kiln's last garbage collection
// check, in the worker's directory of the namespace's state under root.
func gcStamp(t *testing.T, root string) string {
	t.Helper()
	found, _ := filepath.Glob(filepath.Join(root, "buildkit", "*", "*", "*", "gc.stamp"))
	if len(found) != 1 {
		t.Fatalf("want one gc.stamp in the namespace's worker directory under %s after a build with collection on, found %v", root, found)
	}
	return found[0]
}

func setMtime(t *testing.T, path string, tm time.Time) {
	t.Helper()
	if err := os.Chtimes(path, tm, tm); err != nil {
		t.Fatal(err)
	}
}

func mtime(t *testing.T, path string) time.Time {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.ModTime()
}
