//go:build linux

package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/privatecontainerd"
)

// usersDir makes a directory of the user's, as --root $HOME would name
// one: it holds tmp/precious, which every kiln before the marker removed
// (with the rest of tmp/) as soon as it opened the state directory.
func usersDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp(daemon.dir, "home")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		privatecontainerd.UnmountUnder(dir)
		os.RemoveAll(dir)
	})
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tmp", "precious"), []byte("the user's\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("the user's\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// assertUntouched fails unless dir holds what usersDir put there, and
// nothing of kiln's.
func assertUntouched(t *testing.T, dir string) {
	t.Helper()
	for _, f := range []string{"tmp/precious", "notes.txt"} {
		if b, err := os.ReadFile(filepath.Join(dir, f)); err != nil || string(b) != "the user's\n" {
			t.Errorf("%s: %q, %v; want it untouched", f, b, err)
		}
	}
	for _, f := range []string{".kiln-root", "kiln.lock", "buildkit", "store"} {
		if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
			t.Errorf("kiln made %s in the user's directory", f)
		}
	}
}

// TestSecurityRootOfTheUser: kiln refuses a --root it did not make, with a
// line that says what to do, and leaves everything in it as it was, with
// either store: image commands of the embedded store and builds open the
// state directory.
func TestSecurityRootOfTheUser(t *testing.T) {
	t.Parallel()
	const want = "is not kiln's state directory (no .kiln-root marker, and it holds "
	const todo = "choose a new or empty directory with --root (kiln creates it)"
	ctx := contextDir(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY Dockerfile /\n"})

	e := newEnv(t)
	e.Root = usersDir(t)
	r := e.kiln("build", ctx).fails(t, 1, want)
	if !strings.Contains(r.Stderr, todo) || strings.Count(strings.TrimSpace(r.Stderr), "\n") > 0 {
		t.Errorf("the error is not one line saying what to do:\n%s", r.Stderr)
	}
	e.kiln("du").fails(t, 1, want)
	assertUntouched(t, e.Root)

	m := newEmbeddedEnv(t)
	m.Root = usersDir(t)
	m.kiln("images").fails(t, 1, want)
	m.kiln("build", ctx).fails(t, 1, want)
	m.kiln("info").fails(t, 1, want)
	assertUntouched(t, m.Root)

	// A directory other users can write is refused even when it is
	// kiln's: they could plant what kiln then removes or runs.
	m.Root = newEnv(t).Root
	m.kiln("images").ok(t)
	if err := os.Chmod(m.Root, 0o770); err != nil {
		t.Fatal(err)
	}
	m.kiln("images").fails(t, 1, `is writable by group or others (mode 0770): another user could change what kiln removes and runs there; run "chmod go-w `+m.Root+`"`)
}

// TestSecurityLockPlantedAsLink: a lock file planted as a link to another
// file, the state directory's or the namespace's in /run/kiln, is refused
// and the file it leads to stays as it was.
func TestSecurityLockPlantedAsLink(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.kiln("du").ok(t)
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	assertVictim := func() {
		t.Helper()
		if b, err := os.ReadFile(victim); err != nil || string(b) != "precious\n" {
			t.Fatalf("the victim holds %q, %v", b, err)
		}
	}

	lock := filepath.Join(e.Root, "kiln.lock")
	if err := os.Remove(lock); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, lock); err != nil {
		t.Fatal(err)
	}
	e.kiln("du").fails(t, 1, "kiln's lock file "+lock+" is a symbolic link, which kiln never makes")
	m := &embeddedEnv{env: e, store: "embedded"}
	m.kiln("images").fails(t, 1, "is a symbolic link")
	assertVictim()
	if err := os.Remove(lock); err != nil {
		t.Fatal(err)
	}

	sum := sha256.Sum256([]byte(e.Address + "\x00" + e.Namespace))
	nsLock := filepath.Join("/run/kiln", hex.EncodeToString(sum[:8])+".lock")
	if err := os.Symlink(victim, nsLock); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(nsLock) })
	e.kiln("du").fails(t, 1, "kiln's lock file "+nsLock+" is a symbolic link")
	assertVictim()
	os.Remove(nsLock)
	e.kiln("du").ok(t)
}

// TestSecurityEarlierRootKeepsWorking: a state directory a kiln before the
// marker made (the current layout, without .kiln-root) is adopted: builds
// in it stay cached, and it gets the marker.
func TestSecurityEarlierRootKeepsWorking(t *testing.T) {
	t.Parallel()
	dir := contextDir(t, map[string]string{"Dockerfile": helloDockerfile})
	t.Run("containerd", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.busyboxBase(t, "busybox", "linux/amd64")
		e.kiln("build", "-t", "hello", dir).ok(t)
		unmark(t, e.Root)
		r := e.kiln("build", "--progress", "plain", "-t", "hello", dir).ok(t)
		if !stepCached(r.Stderr, "RUN echo hello") {
			t.Errorf("the rebuild in an earlier kiln's root ran its step again:\n%s", r.Stderr)
		}
		assertMarked(t, e.Root)
	})
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		e := newEmbeddedEnv(t)
		e.busyboxBase(t, "busybox")
		e.kiln("build", "-t", "hello", dir).ok(t)
		unmark(t, e.Root)
		e.kiln("images").ok(t)
		assertMarked(t, e.Root)
		unmark(t, e.Root)
		r := e.kiln("build", "--progress", "plain", "-t", "hello", dir).ok(t)
		if !stepCached(r.Stderr, "RUN echo hello") {
			t.Errorf("the rebuild in an earlier kiln's root ran its step again:\n%s", r.Stderr)
		}
		assertMarked(t, e.Root)
	})
}

// unmark removes kiln's marker from root, as a kiln before it left root.
func unmark(t *testing.T, root string) {
	t.Helper()
	if err := os.Remove(filepath.Join(root, ".kiln-root")); err != nil {
		t.Fatalf("kiln left no marker in its state directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "tmp")); err != nil {
		t.Fatalf("kiln's state directory has no tmp/: %v", err)
	}
}

func assertMarked(t *testing.T, root string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, ".kiln-root"))
	if err != nil || !strings.HasPrefix(string(b), "kiln-root 1 ") {
		t.Errorf("kiln's marker: %q, %v", b, err)
	}
}
