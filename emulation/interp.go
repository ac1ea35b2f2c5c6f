package emulation

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// EnvQEMUDir names a directory searched first for QEMU emulators
// (qemu-<arch>-static or qemu-<arch>).
const EnvQEMUDir = "KILN_QEMU_DIR"

// ErrNoInterpreter is wrapped by errors saying no usable QEMU emulator was
// found for an architecture.
var ErrNoInterpreter = errors.New("no QEMU interpreter")

// interpreterCandidates lists where the emulator for qarch may be, in order:
// $KILN_QEMU_DIR, PATH, Debian's binfmt wrapper names, /usr/bin.
func interpreterCandidates(qarch string) []string {
	var c []string
	if dir := os.Getenv(EnvQEMUDir); dir != "" {
		c = append(c, filepath.Join(dir, "qemu-"+qarch+"-static"), filepath.Join(dir, "qemu-"+qarch))
	}
	for _, name := range []string{"qemu-" + qarch + "-static", "qemu-" + qarch} {
		if p, err := exec.LookPath(name); err == nil {
			if abs, err := filepath.Abs(p); err == nil {
				p = abs
			}
			c = append(c, p)
		}
	}
	return append(c,
		"/usr/libexec/qemu-binfmt/"+qarch+"-binfmt-P",
		"/usr/bin/qemu-"+qarch+"-static",
	)
}

// Interpreter finds the QEMU user-mode emulator for a QEMU architecture name
// ("aarch64"). It looks in $KILN_QEMU_DIR first, then for qemu-<arch>-static
// and qemu-<arch> on PATH, then Debian's /usr/libexec/qemu-binfmt/<arch>-binfmt-P
// and /usr/bin/qemu-<arch>-static. Dynamically linked emulators are passed
// over: inside a container their shared libraries are missing, so a handler
// using one would fail exactly where builds run. The error wraps
// ErrNoInterpreter and says which package to install.
func Interpreter(qarch string) (string, error) {
	var dynamic []string
	seen := map[string]bool{}
	for _, p := range interpreterCandidates(qarch) {
		if seen[p] {
			continue
		}
		seen[p] = true
		st, err := os.Stat(p)
		if err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
			continue
		}
		if strings.Contains(p, ":") { // would break the register line
			continue
		}
		static, err := isStatic(p)
		if err != nil {
			continue
		}
		if !static {
			dynamic = append(dynamic, p)
			continue
		}
		// The first usable emulator is the one meant; an unsafe one is
		// refused rather than passed over for another.
		if interpretersMustBeRootOnly() {
			if err := checkRootOnly(p); err != nil {
				return "", untrusted(p, qarch, err)
			}
		}
		return p, nil
	}
	if len(dynamic) > 0 {
		return "", fmt.Errorf("%w for %s found: %s is dynamically linked and cannot run inside containers; install the statically linked one with \"apt-get install %s\"", ErrNoInterpreter, qarch, dynamic[0], Package)
	}
	return "", fmt.Errorf("%w for %s found; install it with \"apt-get install %s\"", ErrNoInterpreter, qarch, Package)
}

// ErrUntrustedInterpreter is wrapped by errors refusing a QEMU emulator
// that someone other than root could change.
var ErrUntrustedInterpreter = errors.New("untrusted QEMU interpreter")

// untrustedError says what of an interpreter's path someone other than
// root could change, and the command that fixes it.
type untrustedError struct {
	problem, fix string
}

func (e *untrustedError) Error() string { return e.problem + ": run \"" + e.fix + "\"" }

func (e *untrustedError) Unwrap() error { return ErrUntrustedInterpreter }

// untrusted explains why the emulator at p is refused, in one line.
func untrusted(p, qarch string, err error) error {
	var u *untrustedError
	if errors.As(err, &u) {
		return &untrustedError{
			problem: fmt.Sprintf("refusing the QEMU interpreter %s: %s, and as root kiln registers it for every %s program on the host, so it and every directory above it must be root's alone", p, u.problem, qarch),
			fix:     u.fix,
		}
	}
	return fmt.Errorf("refusing the QEMU interpreter %s: cannot check that only root can change it: %w", p, err)
}

// isStatic reports whether the ELF program at path needs no program
// interpreter (dynamic loader).
func isStatic(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}
