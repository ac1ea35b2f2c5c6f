//go:build linux

package rootless

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// userEnv points an unprivileged user's directories into a temporary
// directory: runtime (XDG_RUNTIME_DIR), home, and /tmp.
func userEnv(t *testing.T) (runtime, home, tmp string) {
	t.Helper()
	base := t.TempDir()
	runtime, home, tmp = filepath.Join(base, "run"), filepath.Join(base, "home"), filepath.Join(base, "tmp")
	for _, d := range []string{runtime, home, tmp} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(tmp, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XDG_RUNTIME_DIR", runtime)
	t.Setenv("HOME", home)
	t.Setenv("XDG_STATE_HOME", "")
	old := tmpBase
	tmpBase = tmp
	t.Cleanup(func() { tmpBase = old })
	return runtime, home, tmp
}

func TestUserRunDir(t *testing.T) {
	runtime, home, tmp := userEnv(t)

	// The runtime directory of the user's own.
	dir, err := userRunDir()
	if want := filepath.Join(runtime, "kiln"); err != nil || dir != want {
		t.Fatalf("userRunDir() = %q, %v; want %q", dir, err, want)
	}
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Fatalf("%s: %v, %v; want a directory with mode 0700", dir, fi, err)
	}

	// One others can write is not used: the user's home is.
	if err := os.Chmod(runtime, 0o777); err != nil {
		t.Fatal(err)
	}
	dir, err = userRunDir()
	if want := filepath.Join(home, ".local", "state", "kiln", "run"); err != nil || dir != want {
		t.Fatalf("userRunDir() with a runtime directory anyone can write = %q, %v; want %q", dir, err, want)
	}

	// No runtime directory and no home to write: /tmp/kiln-UID, made by kiln.
	t.Setenv("XDG_RUNTIME_DIR", filepath.Join(runtime, "missing"))
	t.Setenv("HOME", "/proc/no-home")
	dir, err = userRunDir()
	if want := filepath.Join(tmp, "kiln-"+strconv.Itoa(UID())); err != nil || dir != want {
		t.Fatalf("userRunDir() without runtime directory or home = %q, %v; want %q", dir, err, want)
	}
}

// TestUserRunDirRefusesPlanted: in /tmp, a predictable name another user
// can take first, kiln refuses what it did not make, and never follows a
// link planted there.
func TestUserRunDirRefusesPlanted(t *testing.T) {
	_, _, tmp := userEnv(t)
	t.Setenv("XDG_RUNTIME_DIR", "/proc/no-runtime-dir")
	t.Setenv("HOME", "/proc/no-home")
	path := filepath.Join(tmp, "kiln-"+strconv.Itoa(UID()))

	victim := t.TempDir()
	if err := os.Symlink(victim, path); err != nil {
		t.Fatal(err)
	}
	_, err := userRunDir()
	if err == nil || !strings.Contains(err.Error(), path+" is a symbolic link") || !strings.Contains(err.Error(), "set XDG_RUNTIME_DIR") {
		t.Fatalf("userRunDir() with a planted link: %v", err)
	}
	if entries, _ := os.ReadDir(victim); len(entries) > 0 {
		t.Errorf("kiln wrote where the link leads: %v", entries)
	}
	os.Remove(path)

	if err := os.Mkdir(path, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := userRunDir(); err == nil || !strings.Contains(err.Error(), "is writable by group or others") {
		t.Fatalf("userRunDir() with an open directory: %v", err)
	}

	if os.Geteuid() != 0 {
		return
	}
	if err := os.Chmod(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if _, err := userRunDir(); err == nil || !strings.Contains(err.Error(), "belongs to uid 65534") {
		t.Fatalf("userRunDir() with another user's directory: %v", err)
	}
}

// TestUserRunDirForeignRuntimeDir: a runtime directory that is not the
// user's is not used.
func TestUserRunDirForeignRuntimeDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root can give a directory to another user")
	}
	runtime, home, _ := userEnv(t)
	if err := os.Chown(runtime, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	dir, err := userRunDir()
	if want := filepath.Join(home, ".local", "state", "kiln", "run"); err != nil || dir != want {
		t.Fatalf("userRunDir() with another user's runtime directory = %q, %v; want %q", dir, err, want)
	}
}
