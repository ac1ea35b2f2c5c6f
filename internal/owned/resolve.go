package owned

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// maxLinks is how many symbolic links Resolve follows, as Linux does.
const maxLinks = 40

// Resolve returns the path of the file path names, following its symbolic
// links, for a file kiln is about to read. It refuses to pass through
// anything in a directory every user may write (such as /tmp) that someone
// other than root, the user or that directory's owner put there: a link
// there is not followed, and a file or directory there is not used, as
// its content is another user's choice. This is Linux's protected_symlinks
// rule, applied to every part of the path and to files as well as links.
// The refusal is an *Error of Kind Owner; a missing part of the path gives
// an error wrapping fs.ErrNotExist.
func Resolve(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	euid := uint32(os.Geteuid())
	resolved := "/"
	rest := strings.Split(abs, "/")
	for links := 0; len(rest) > 0; {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			resolved = filepath.Dir(resolved)
			continue
		}
		dir, err := os.Lstat(resolved)
		if err != nil {
			return "", err
		}
		next := filepath.Join(resolved, name)
		fi, err := os.Lstat(next)
		if err != nil {
			return "", err
		}
		if dir.Mode().Perm()&0o002 != 0 {
			owner, dirOwner := uid(fi), uid(dir)
			if owner != 0 && owner != euid && owner != dirOwner {
				return "", &Error{next, Owner, fmt.Sprintf("belongs to uid %d and is in %s, which every user may write", owner, resolved)}
			}
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			resolved = next
			continue
		}
		if links++; links > maxLinks {
			return "", &fs.PathError{Op: "resolve", Path: path, Err: syscall.ELOOP}
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			resolved = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return resolved, nil
}

// uid is the owner of fi; one that cannot be read counts as nobody's.
func uid(fi fs.FileInfo) uint32 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid
	}
	return ^uint32(0)
}
