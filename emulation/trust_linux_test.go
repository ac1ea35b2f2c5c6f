package emulation

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInterpreterMustBeRootOnly: as root on the host, kiln refuses an
// emulator that someone else could change, naming the path and the fix.
func TestInterpreterMustBeRootOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the files must be root's to begin with")
	}
	orig := interpretersMustBeRootOnly
	interpretersMustBeRootOnly = func() bool { return true }
	t.Cleanup(func() { interpretersMustBeRootOnly = orig })
	static, err := probeBinary("amd64")
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir() // under /tmp, root's and sticky: accepted
	dir := filepath.Join(base, "qemu")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	emu := filepath.Join(dir, "qemu-kilntrust-static")
	if err := os.WriteFile(emu, static, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvQEMUDir, dir)
	t.Setenv("PATH", "")
	if got, err := Interpreter("kilntrust"); err != nil || got != emu {
		t.Fatalf("Interpreter of root's own emulator = %q, %v", got, err)
	}
	// Through a link in a safe directory to the same file: still fine.
	linkDir := filepath.Join(base, "links")
	if err := os.Mkdir(linkDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../qemu/qemu-kilntrust-static", filepath.Join(linkDir, "qemu-kilntrust-static")); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvQEMUDir, linkDir)
	if _, err := Interpreter("kilntrust"); err != nil {
		t.Fatalf("Interpreter through a safe link = %v", err)
	}

	for _, tc := range []struct {
		name  string
		setup func() error
		undo  func() error
		want  string
	}{
		{"group-writable file", func() error { return os.Chmod(emu, 0o775) }, func() error { return os.Chmod(emu, 0o755) },
			emu + ` is writable by group (mode 0775)`},
		{"others-writable directory", func() error { return os.Chmod(dir, 0o777) }, func() error { return os.Chmod(dir, 0o755) },
			dir + ` is writable by group and others (mode 0777)`},
		{"file owned by another user", func() error { return os.Chown(emu, 1000, 0) }, func() error { return os.Chown(emu, 0, 0) },
			emu + ` is owned by uid 1000, not root`},
		{"directory owned by another user", func() error { return os.Chown(dir, 1000, 0) }, func() error { return os.Chown(dir, 0, 0) },
			dir + ` is owned by uid 1000, not root`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.setup(); err != nil {
				t.Fatal(err)
			}
			defer tc.undo()
			for _, qdir := range []string{dir, linkDir} {
				t.Setenv(EnvQEMUDir, qdir)
				_, err := Interpreter("kilntrust")
				if !errors.Is(err, ErrUntrustedInterpreter) || !strings.Contains(err.Error(), tc.want) ||
					!strings.HasPrefix(err.Error(), "refusing the QEMU interpreter "+filepath.Join(qdir, "qemu-kilntrust-static")+": ") ||
					!strings.Contains(err.Error(), "run \"ch") || strings.Contains(err.Error(), "\n") {
					t.Errorf("Interpreter via %s = %v, want it refused because %s", qdir, err, tc.want)
				}
			}
		})
	}
	// Debian's emulators, reached through its binfmt links, pass.
	for _, p := range []string{"/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "/usr/bin/qemu-aarch64-static"} {
		if _, err := os.Stat(p); err == nil {
			if err := checkRootOnly(p); err != nil {
				t.Errorf("checkRootOnly(%s) = %v", p, err)
			}
		}
	}
	// Not root on the host: the user's own emulator is theirs to choose.
	interpretersMustBeRootOnly = func() bool { return false }
	t.Setenv(EnvQEMUDir, dir)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := Interpreter("kilntrust"); err != nil {
		t.Errorf("Interpreter without the root rule = %v", err)
	}
}
