package engine

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// asRoot skips tests that give files to another user, which only root can.
func asRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("only root can give a directory to another user")
	}
}

// nobody is a uid that is not the test's.
const nobody = 65534

func marked(dir string) bool {
	_, err := os.Lstat(filepath.Join(dir, rootMarker))
	return err == nil
}

func TestClaimRootCreatesAndMarks(t *testing.T) {
	root := filepath.Join(t.TempDir(), "a", "kiln")
	real, err := claimRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	if real != root {
		t.Errorf("claimRoot = %q, want %q", real, root)
	}
	fi, err := os.Stat(root)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("the new state directory: %v, %v; want mode 0700", fi, err)
	}
	b, err := os.ReadFile(filepath.Join(root, rootMarker))
	if err != nil || !validMarker(string(b)) {
		t.Fatalf("marker %q, %v", b, err)
	}
	// The marker is kiln's: claimed again as it is.
	if _, err := claimRoot(root); err != nil {
		t.Fatal(err)
	}
	if b2, _ := os.ReadFile(filepath.Join(root, rootMarker)); string(b2) != string(b) {
		t.Errorf("the marker changed: %q, then %q", b, b2)
	}
}

// TestClaimRootRefusesUsersDirectory: a --root naming a directory of the
// user's ($HOME, say) is refused, and its tmp/ survives every command that
// opens the state directory.
func TestClaimRootRefusesUsersDirectory(t *testing.T) {
	for name, files := range map[string][]string{
		"tmp only":             {"tmp/precious"},
		"with a kiln.lock too": {"kiln.lock", "tmp/precious", "notes.txt"},
		"a worker's name":      {"runc-overlayfs/precious"},
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			for _, f := range files {
				mkdir(t, filepath.Join(root, filepath.Dir(f)))
				write(t, filepath.Join(root, f), "the user's")
			}
			unlock, err := lockRoot(context.Background(), root, io.Discard)
			if err == nil {
				unlock()
				t.Fatal("lockRoot claimed a directory of the user's")
			}
			for _, want := range []string{root + " is not kiln's state directory", "kiln clears and removes files only in a directory it made"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is not one line", err)
			}
			for _, f := range files {
				if b, err := os.ReadFile(filepath.Join(root, f)); err != nil || string(b) != "the user's" {
					t.Errorf("%s: %q, %v; want it untouched", f, b, err)
				}
			}
			if marked(root) {
				t.Error("kiln marked the user's directory as its own")
			}
			if _, err := os.Stat(filepath.Join(root, "kiln.lock")); err == nil && !strings.Contains(strings.Join(files, " "), "kiln.lock") {
				t.Error("kiln made a lock file in the user's directory")
			}
		})
	}
}

// TestClaimRootAdoptsEarlierKiln: a state directory an earlier kiln made
// (before the marker) keeps working, and gets the marker; so do an empty
// directory and a fresh file system's.
func TestClaimRootAdoptsEarlierKiln(t *testing.T) {
	for name, files := range map[string][]string{
		"current layout": {"kiln.lock", "tmp/x", "buildkit/embedded/default/runc-overlayfs/workerid", "store/metadata.db"},
		"legacy layout":  {"kiln.lock", "tmp/", "containerd-overlayfs/workerid", "cache.db", "history.db"},
		"empty":          nil,
		"a file system":  {"lost+found/"},
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			for _, f := range files {
				mkdir(t, filepath.Join(root, filepath.Dir(f)))
				if !strings.HasSuffix(f, "/") {
					write(t, filepath.Join(root, f), "kiln's")
				}
			}
			if _, err := claimRoot(root); err != nil {
				t.Fatal(err)
			}
			if !marked(root) {
				t.Error("no marker was written")
			}
		})
	}
}

func TestClaimRootRefusesOpenDirectory(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "kiln.lock"), "")
	if err := os.Chmod(root, 0o770); err != nil {
		t.Fatal(err)
	}
	_, err := claimRoot(root)
	if err == nil || !strings.Contains(err.Error(), "is writable by group or others (mode 0770)") || !strings.Contains(err.Error(), `run "chmod go-w `+root+`"`) {
		t.Fatalf("claimRoot of a group-writable directory: %v", err)
	}
	if marked(root) {
		t.Error("kiln marked a group-writable directory")
	}
	// Even one kiln marked earlier.
	if err := os.Chmod(root, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := claimRoot(root); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(root, 0o707); err != nil {
		t.Fatal(err)
	}
	if _, err := claimRoot(root); err == nil {
		t.Fatal("claimRoot accepted a marked directory others can write")
	}
}

func TestClaimRootRefusesForeignDirectory(t *testing.T) {
	asRoot(t)
	root := t.TempDir()
	if _, err := claimRoot(root); err != nil {
		t.Fatal(err)
	}
	mkdir(t, filepath.Join(root, "tmp"))
	write(t, filepath.Join(root, "tmp", "precious"), "theirs")
	// Marked, then given to another user: not kiln's to use any more.
	if err := os.Chown(root, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	unlock, err := lockRoot(context.Background(), root, io.Discard)
	if err == nil {
		unlock()
		t.Fatal("lockRoot accepted another user's directory")
	}
	if want := "belongs to uid 65534, not to uid 0 that kiln runs as"; !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "own user") {
		t.Errorf("error %q lacks %q or what to do", err, want)
	}
	if _, err := os.Stat(filepath.Join(root, "tmp", "precious")); err != nil {
		t.Error(err)
	}
}

// TestClaimRootRefusesSwappableDirectory: a state directory inside one
// another user can write (or owns) could be swapped for a link after the
// checks.
func TestClaimRootRefusesSwappableDirectory(t *testing.T) {
	shared := filepath.Join(t.TempDir(), "shared")
	mkdir(t, shared)
	if err := os.Chmod(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	_, err := claimRoot(filepath.Join(shared, "kiln"))
	if err == nil || !strings.Contains(err.Error(), "inside "+shared+", which is writable by others and not sticky") {
		t.Fatalf("claimRoot inside a directory anyone can write: %v", err)
	}
	// Sticky, as /tmp is: nobody else can move what kiln made there.
	if err := os.Chmod(shared, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if _, err := claimRoot(filepath.Join(shared, "kiln")); err != nil {
		t.Fatal(err)
	}

	if os.Geteuid() != 0 {
		return
	}
	theirs := filepath.Join(t.TempDir(), "theirs")
	mkdir(t, theirs)
	if err := os.Chown(theirs, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	_, err = claimRoot(filepath.Join(theirs, "kiln"))
	if err == nil || !strings.Contains(err.Error(), "inside "+theirs+", which belongs to uid 65534") {
		t.Fatalf("claimRoot inside another user's directory: %v", err)
	}
}

func TestClaimRootFollowsLinkedRoot(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "disk", "kiln")
	mkdir(t, target)
	link := filepath.Join(dir, "kiln")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	real, err := claimRoot(link)
	if err != nil {
		t.Fatal(err)
	}
	if real != target || !marked(target) {
		t.Errorf("claimRoot(%s) = %s (marked: %v), want %s", link, real, marked(target), target)
	}
}

func TestClaimRootRefusesForgedMarker(t *testing.T) {
	victim := filepath.Join(t.TempDir(), "victim")
	write(t, victim, markerHeader+"0123456789abcdef0123456789abcdef\n")
	for name, plant := range map[string]func(path string) error{
		"link":     func(path string) error { return os.Symlink(victim, path) },
		"garbage":  func(path string) error { return os.WriteFile(path, []byte("mine\n"), 0o600) },
		"hardlink": func(path string) error { return os.Link(victim, path) },
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			mkdir(t, filepath.Join(root, "tmp"))
			write(t, filepath.Join(root, "tmp", "precious"), "the user's")
			if err := plant(filepath.Join(root, rootMarker)); err != nil {
				t.Fatal(err)
			}
			_, err := claimRoot(root)
			if err == nil || !strings.Contains(err.Error(), "marker "+filepath.Join(root, rootMarker)+" is not kiln's") {
				t.Fatalf("claimRoot with a forged marker: %v", err)
			}
		})
	}
}

// TestPrivateTempDirLeavesForeignTmp: in a state directory of kiln's, a tmp/
// that kiln did not make (a link, another user's) is left alone.
func TestPrivateTempDirLeavesForeignTmp(t *testing.T) {
	// privateTempDir points TMPDIR into the state directory.
	t.Setenv("TMPDIR", os.Getenv("TMPDIR"))
	elsewhere := t.TempDir()
	write(t, filepath.Join(elsewhere, "precious"), "the user's")
	root := t.TempDir()
	if _, err := claimRoot(root); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(root, "tmp")); err != nil {
		t.Fatal(err)
	}
	err := privateTempDir(root, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "is a symbolic link") {
		t.Fatalf("privateTempDir with tmp a link: %v", err)
	}
	if _, err := os.Stat(filepath.Join(elsewhere, "precious")); err != nil {
		t.Error(err)
	}
	os.Remove(filepath.Join(root, "tmp"))

	// kiln's own is emptied.
	mkdir(t, filepath.Join(root, "tmp", "left"))
	if err := privateTempDir(root, io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "tmp", "left")); err == nil {
		t.Error("kiln's own temporary directory was not emptied")
	}

	if os.Geteuid() != 0 {
		return
	}
	write(t, filepath.Join(root, "tmp", "precious"), "theirs")
	if err := os.Chown(filepath.Join(root, "tmp"), nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if err := privateTempDir(root, io.Discard); err == nil || !strings.Contains(err.Error(), "belongs to uid 65534") {
		t.Fatalf("privateTempDir with another user's tmp: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "tmp", "precious")); err != nil {
		t.Error(err)
	}
}
