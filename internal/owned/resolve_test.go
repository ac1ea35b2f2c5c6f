package owned

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Resolve follows links as the kernel does where only their owners can
// write.
func TestResolveFollowsLinks(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "a", "compose.yaml")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"abs":     file,
		"rel":     "a/compose.yaml",
		"dirlink": "a",
		"chain":   "abs",
		"loop1":   "loop2",
		"loop2":   "loop1",
	} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"abs", "rel", "dirlink/compose.yaml", "chain", "a/../dirlink/./compose.yaml"} {
		if got, err := Resolve(filepath.Join(dir, p)); got != file || err != nil {
			t.Errorf("Resolve(%s) = %q, %v; want %s", p, got, err, file)
		}
	}
	if _, err := Resolve(filepath.Join(dir, "loop1")); !errors.Is(err, syscall.ELOOP) {
		t.Errorf("Resolve of a loop: %v, want ELOOP", err)
	}
	if _, err := Resolve(filepath.Join(dir, "dirlink", "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Resolve of a missing file: %v, want fs.ErrNotExist", err)
	}
}

// In a directory every user may write, Resolve refuses what another user
// put there: a link, a file, a directory on the way.
func TestResolveRefusesOthersEntries(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to another user")
	}
	const other = 4242
	shared := filepath.Join(t.TempDir(), "tmp")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o777|fs.ModeSticky); err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(shared, "mine.yaml")
	theirs := filepath.Join(shared, "theirs.yaml")
	for _, f := range []string{mine, theirs} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	their := func(p string) {
		t.Helper()
		if err := os.Lchown(p, other, other); err != nil {
			t.Fatal(err)
		}
	}
	their(theirs)
	theirLink := filepath.Join(shared, "their-link")
	myLink := filepath.Join(shared, "my-link")
	os.Symlink(mine, theirLink)
	os.Symlink(mine, myLink)
	their(theirLink)
	theirDir := filepath.Join(shared, "their-dir")
	os.Mkdir(theirDir, 0o755)
	os.WriteFile(filepath.Join(theirDir, "compose.yaml"), nil, 0o644)
	their(theirDir)
	// A directory of theirs that everyone may write: its owner's entries
	// are theirs to make, as the kernel's rule has it.
	openTheirs := filepath.Join(t.TempDir(), "open")
	os.Mkdir(openTheirs, 0o777)
	os.Chmod(openTheirs, 0o777)
	their(openTheirs)
	ownersFile := filepath.Join(openTheirs, "compose.yaml")
	os.WriteFile(ownersFile, nil, 0o644)
	their(ownersFile)
	// Closed directories are their owners' business.
	closed := filepath.Join(t.TempDir(), "closed.yaml")
	os.WriteFile(closed, nil, 0o644)
	their(closed)

	for path, want := range map[string]string{
		mine:                                    "",
		myLink:                                  "",
		ownersFile:                              "",
		closed:                                  "",
		theirs:                                  "belongs to uid 4242 and is in " + shared + ", which every user may write",
		theirLink:                               "belongs to uid 4242 and is in " + shared,
		filepath.Join(theirDir, "compose.yaml"): "belongs to uid 4242 and is in " + shared,
	} {
		_, err := Resolve(path)
		if got := problem(err); !strings.HasPrefix(got, want) || (want == "") != (got == "") {
			t.Errorf("Resolve(%s): %q, want %q", path, got, want)
		}
	}
}
