package owned

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func problem(err error) string {
	var oe *Error
	if errors.As(err, &oe) {
		return oe.Problem
	}
	if err == nil {
		return ""
	}
	return "other: " + err.Error()
}

func TestDir(t *testing.T) {
	dir := t.TempDir()
	mine := filepath.Join(dir, "mine")
	if created, err := MkdirPrivate(mine); !created || err != nil {
		t.Fatalf("MkdirPrivate = %v, %v", created, err)
	}
	if created, err := MkdirPrivate(mine); created || err != nil {
		t.Fatalf("MkdirPrivate of an existing directory = %v, %v", created, err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(mine, link); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o750|0o020); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		mine: "",
		link: "is a symbolic link",
		file: "is not a directory",
		open: "is writable by group or others (mode 0770)",
	} {
		if got := problem(Dir(path)); got != want {
			t.Errorf("Dir(%s): %q, want %q", filepath.Base(path), got, want)
		}
	}
	if _, err := MkdirPrivate(link); problem(err) != "is a symbolic link" {
		t.Errorf("MkdirPrivate of a link: %v", err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(mine, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if got := problem(Dir(mine)); !strings.HasPrefix(got, "belongs to uid 65534") {
			t.Errorf("Dir of another user's directory: %q", got)
		}
	}
}

func TestOpenFile(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	hard := filepath.Join(dir, "hard")
	if err := os.Link(victim, hard); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		link: "is a symbolic link",
		hard: "has 2 names (hard links)",
		fifo: "is not a regular file",
	} {
		f, err := OpenFile(path)
		if err == nil {
			f.Close()
		}
		if got := problem(err); got != want {
			t.Errorf("OpenFile(%s): %q, want %q", filepath.Base(path), got, want)
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Errorf("the victim holds %q", b)
	}

	// A new file is made, an existing one is not truncated.
	path := filepath.Join(dir, "lock")
	f, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("123\n")
	f.Close()
	if f, err = OpenFile(path); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if b, _ := os.ReadFile(path); string(b) != "123\n" {
		t.Errorf("reopened file holds %q", b)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("new file mode %v", fi.Mode())
	}
}

func TestAbove(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(dir, "shared")
	if err := os.Mkdir(shared, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(shared, "a"), 0o700); err != nil {
		t.Fatal(err)
	}
	below := filepath.Join(shared, "a", "kiln")
	if err := Above(below); err != nil {
		// t.TempDir's parents: / and the temporary directory are root's.
		t.Fatalf("Above(%s): %v", below, err)
	}
	if err := os.Chmod(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	if got := problem(Above(below)); got != "is writable by others and not sticky (mode 0777)" {
		t.Errorf("Above below a directory anyone can write: %q", got)
	}
	if err := os.Chmod(shared, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := Above(below); err != nil {
		t.Errorf("Above below a sticky directory: %v", err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(filepath.Join(shared, "a"), 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if got := problem(Above(below)); !strings.HasPrefix(got, "belongs to uid 65534") {
			t.Errorf("Above below another user's directory: %q", got)
		}
	}
}
