package engine

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/cache/metadata"
	bolt "go.etcd.io/bbolt"
)

func TestStateDir(t *testing.T) {
	got, err := stateDir("/var/lib/kiln", "containerd-5ce485c5-bc07-457f-8d2a-61cb41f42ab0", "k8s.io")
	if want := "/var/lib/kiln/buildkit/containerd-5ce485c5-bc07-457f-8d2a-61cb41f42ab0/k8s.io"; err != nil || got != want {
		t.Errorf("stateDir = %q, %v; want %q", got, err, want)
	}
	for _, ns := range []string{"", ".", "..", "a/b", "../x", "a..b", strings.Repeat("n", 77)} {
		if got, err := stateDir("/r", "embedded", ns); err == nil || !strings.Contains(err.Error(), "invalid namespace") {
			t.Errorf("stateDir with namespace %q = %q, %v; want an invalid namespace error", ns, got, err)
		}
	}
	if _, err := stateDir("/r", "../x", "default"); err == nil {
		t.Error("stateDir accepted a store ID that is no path component")
	}
}

func TestLegacyWorkerDirs(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"containerd-overlayfs", "containerd-native", "runc-overlayfs", "buildkit", "store", "tmp"} {
		mkdir(t, filepath.Join(root, d))
	}
	for _, d := range []string{"containerd-overlayfs", "containerd-native", "runc-overlayfs"} {
		write(t, filepath.Join(root, d, "workerid"), "worker")
	}
	write(t, filepath.Join(root, "containerd-file"), "not a directory")
	// Only what BuildKit made is a worker directory kiln may move and
	// remove: not a directory that merely has the name, nor a link to a
	// worker directory.
	mkdir(t, filepath.Join(root, "containerd-mine"))
	write(t, filepath.Join(root, "containerd-mine", "notes"), "the user's")
	if err := os.Symlink(filepath.Join(root, "runc-overlayfs"), filepath.Join(root, "runc-link")); err != nil {
		t.Fatal(err)
	}
	for prefix, want := range map[string][]string{
		containerdWorkerPrefix: {"containerd-native", "containerd-overlayfs"},
		embeddedWorkerPrefix:   {"runc-overlayfs"},
		"":                     {"containerd-native", "containerd-overlayfs", "runc-overlayfs"},
	} {
		dirs, err := legacyWorkerDirs(root, prefix)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range dirs {
			got = append(got, filepath.Base(d))
		}
		if !slices.Equal(got, want) {
			t.Errorf("legacyWorkerDirs(%q) = %v, want %v", prefix, got, want)
		}
	}
}

// legacyRoot makes a state directory of the legacy layout whose worker
// directory containerd-overlayfs holds the given cache records.
func legacyRoot(t *testing.T, records ...string) (root, dir string) {
	t.Helper()
	root = t.TempDir()
	dir = filepath.Join(root, "containerd-overlayfs")
	mkdir(t, filepath.Join(dir, "cachemounts"))
	write(t, filepath.Join(dir, "workerid"), "worker1")
	write(t, filepath.Join(root, "cache.db"), "solver cache")
	write(t, filepath.Join(root, "history.db"), "history")
	md, err := metadata.NewStore(filepath.Join(dir, "metadata_v2.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	for _, id := range records {
		// With an index, as BuildKit's local sources keep theirs: dropping
		// the record must drop it too.
		v, err := metadata.NewValue("value of " + id)
		if err != nil {
			t.Fatal(err)
		}
		v.Index = "shared:" + id
		si, _ := md.Get(id)
		if err := si.Update(func(b *bolt.Bucket) error { return si.SetValue(b, "k", v) }); err != nil {
			t.Fatal(err)
		}
	}
	return root, dir
}

func records(t *testing.T, path string) []string {
	t.Helper()
	ids, err := recordIDs(path)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	return ids
}

func TestAdoptWorkerDirSplitsByNamespace(t *testing.T) {
	root, dir := legacyRoot(t, "a1", "a2", "b1", "lost")
	owners := map[string]string{"a1": "a", "a2": "a", "b1": "b", "other": "c"}
	var stderr bytes.Buffer
	if err := adoptWorkerDir(Config{Root: root, Namespace: "b"}, "containerd-x", owners, dir, &stderr); err != nil {
		t.Fatal(err)
	}
	for ns, want := range map[string][]string{"a": {"a1", "a2"}, "b": {"b1"}} {
		state := filepath.Join(root, "buildkit", "containerd-x", ns)
		if got := records(t, filepath.Join(state, "containerd-overlayfs", "metadata_v2.db")); !slices.Equal(got, want) {
			t.Errorf("namespace %s got the records %v, want %v", ns, got, want)
		}
		if b, err := os.ReadFile(filepath.Join(state, "containerd-overlayfs", "workerid")); err != nil || string(b) != "worker1" {
			t.Errorf("namespace %s's worker ID: %q, %v; want the legacy one, which cache.db refers to", ns, b, err)
		}
		if b, err := os.ReadFile(filepath.Join(state, "cache.db")); err != nil || string(b) != "solver cache" {
			t.Errorf("namespace %s's cache.db: %q, %v; want a copy of the legacy one", ns, b, err)
		}
		if !strings.Contains(stderr.String(), "moved the build cache of namespace "+ns+" from "+dir) {
			t.Errorf("no line about namespace %s:\n%s", ns, stderr.String())
		}
	}
	md, err := metadata.NewStore(filepath.Join(root, "buildkit", "containerd-x", "b", "containerd-overlayfs", "metadata_v2.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	for id, want := range map[string]bool{"a1": false, "lost": false, "b1": true} {
		if found, err := md.Probe("shared:" + id); err != nil || found != want {
			t.Errorf("namespace b's index of %s: found %v (%v), want %v", id, found, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "buildkit", "containerd-x", "c")); err == nil {
		t.Error("a namespace without records of the directory got state")
	}
	if _, err := os.Stat(dir); err == nil {
		t.Error("the legacy worker directory is still there")
	}
	if left, _ := filepath.Glob(filepath.Join(root, "buildkit", "*", "*", "*.adopting")); len(left) > 0 {
		t.Errorf("temporary directories left: %v", left)
	}
}

func TestAdoptWorkerDirKeepsExistingState(t *testing.T) {
	root, dir := legacyRoot(t, "a1", "b1")
	owners := map[string]string{"a1": "a", "b1": "b"}
	// Namespace a has state of its own, without a1: a kiln of the legacy
	// layout ran after an upgrade.
	existing := filepath.Join(root, "buildkit", "embedded", "a", "containerd-overlayfs")
	mkdir(t, existing)
	var stderr bytes.Buffer
	if err := adoptWorkerDir(Config{Root: root, Namespace: "a"}, "embedded", owners, dir, &stderr); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(existing, "metadata_v2.db")); err == nil {
		t.Error("existing state was overwritten")
	}
	if got := records(t, filepath.Join(root, "buildkit", "embedded", "b", "containerd-overlayfs", "metadata_v2.db")); !slices.Equal(got, []string{"b1"}) {
		t.Errorf("namespace b got %v, want [b1]", got)
	}
	if _, err := os.Stat(dir); err != nil || !strings.Contains(stderr.String(), "leaving the build cache "+dir) {
		t.Errorf("the directory with a1, which namespace a lacks, was not left in place with a note (%v):\n%s", err, stderr.String())
	}

	// Once namespace a's state has a1 (as an interrupted adoption leaves
	// it), the directory goes.
	if err := os.RemoveAll(existing); err != nil {
		t.Fatal(err)
	}
	if err := copyWorkerDir(dir, existing, []string{"a1"}); err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	if err := adoptWorkerDir(Config{Root: root, Namespace: "a"}, "embedded", owners, dir, &stderr); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err == nil || stderr.Len() > 0 {
		t.Errorf("the directory was not removed quietly once every namespace had its records:\n%s", stderr.String())
	}
}

func TestAdoptWorkerDirLeavesForeignCache(t *testing.T) {
	root, dir := legacyRoot(t, "x1")
	var stderr bytes.Buffer
	if err := adoptWorkerDir(Config{Root: root, Namespace: "default"}, "containerd-x", map[string]string{"y": "default"}, dir, &stderr); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "metadata_v2.db")); err != nil {
		t.Errorf("a cache none of whose records this store has was not left in place: %v", err)
	}
	if !strings.Contains(stderr.String(), "leaving the build cache "+dir) {
		t.Errorf("kiln did not say it left %s:\n%s", dir, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(root, "buildkit")); err == nil {
		t.Error("state was made for a cache of no namespace")
	}
}

func TestAdoptWorkerDirRemovesEmptyCache(t *testing.T) {
	root, dir := legacyRoot(t)
	var stderr bytes.Buffer
	if err := adoptWorkerDir(Config{Root: root, Namespace: "default"}, "containerd-x", nil, dir, &stderr); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err == nil || stderr.Len() > 0 {
		t.Errorf("a legacy worker directory without records was not removed quietly (stderr %q)", stderr.String())
	}
}

func TestCopyIfAbsent(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	if err := copyIfAbsent(src, dst); err != nil {
		t.Fatalf("a missing source: %v", err)
	}
	if _, err := os.Stat(dst); err == nil {
		t.Fatal("a missing source made a destination")
	}
	write(t, src, "one")
	if err := copyIfAbsent(src, dst); err != nil {
		t.Fatal(err)
	}
	write(t, src, "two")
	if err := copyIfAbsent(src, dst); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "one" {
		t.Errorf("destination %q, want the first copy kept", b)
	}
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
