package emulation

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// interpretersMustBeRootOnly says whether emulators must be root's alone: as
// root in the initial user namespace kiln registers them host-wide with
// flag F, so whoever can change one runs code in every foreign-architecture
// program, root's included. In a user namespace of kiln's own the handler
// serves that namespace only, and the user's own files are fine. A
// variable for tests.
var interpretersMustBeRootOnly = func() bool { return os.Geteuid() == 0 && !InUserNamespace() }

// checkRootOnly returns an error naming what someone other than root
// could change on the way to the file at path: the file, each directory
// the kernel looks a name up in, and each symbolic link's directory, as
// the path resolves. Each must be owned by root and not writable by group
// or others; a directory writable by others is accepted when it is root's
// and sticky (/tmp), since others cannot then rename or remove root's
// entries in it.
func checkRootOnly(path string) error {
	if !filepath.IsAbs(path) {
		abs, err := filepath.Abs(path)
		if err != nil {
			return err
		}
		path = abs
	}
	if err := rootOnly("/", true); err != nil {
		return err
	}
	cur := "/"
	pending := splitPath(path)
	for hops := 0; len(pending) > 0; {
		name := pending[0]
		pending = pending[1:]
		if name == ".." {
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, name)
		fi, err := os.Lstat(next)
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if hops++; hops > 40 {
				return fmt.Errorf("%s: too many levels of symbolic links", path)
			}
			target, err := os.Readlink(next)
			if err != nil {
				return err
			}
			if filepath.IsAbs(target) {
				cur = "/"
			}
			pending = append(splitPath(target), pending...)
			continue
		}
		if err := rootOnly(next, fi.IsDir()); err != nil {
			return err
		}
		cur = next
	}
	return nil
}

func splitPath(p string) []string {
	var out []string
	for _, s := range strings.Split(p, "/") {
		if s != "" && s != "." {
			out = append(out, s)
		}
	}
	return out
}

// rootOnly checks one file or directory.
func rootOnly(path string, dir bool) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("cannot tell who owns %s", path)
	}
	mode := fi.Mode()
	switch {
	case st.Uid != 0:
		return &untrustedError{problem: fmt.Sprintf("%s is owned by uid %d, not root", path, st.Uid), fix: "chown root " + path}
	case mode.Perm()&0o022 == 0:
		return nil
	case dir && mode&fs.ModeSticky != 0:
		return nil // root's and sticky: others cannot replace root's entries
	}
	who := "group"
	if mode.Perm()&0o002 != 0 {
		who = "others"
		if mode.Perm()&0o020 != 0 {
			who = "group and others"
		}
	}
	return &untrustedError{problem: fmt.Sprintf("%s is writable by %s (mode %04o)", path, who, mode.Perm()), fix: "chmod go-w " + path}
}
