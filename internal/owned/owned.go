// Package owned checks that a file or directory is the running user's own
// and that no other user can change it. kiln removes, clears, locks and
// writes only in such places: a directory that someone else owns or may
// write could hold a link, a hard link or a file planted to make kiln
// delete, truncate or trust what is not kiln's.
package owned

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Kind is what is wrong with a path, for callers that say what to do.
type Kind int

// The kinds of Error.
const (
	// Symlink: the path is a symbolic link.
	Symlink Kind = iota + 1
	// WrongType: not a directory, or not a regular file.
	WrongType
	// HardLinks: the file has other names.
	HardLinks
	// Owner: another user owns it.
	Owner
	// Writable: group or others may write it.
	Writable
)

// Error says why path is not the user's own: Problem completes a sentence
// that starts with the path ("is a symbolic link").
type Error struct {
	Path    string
	Kind    Kind
	Problem string
}

func (e *Error) Error() string { return e.Path + " " + e.Problem }

// Dir checks that path is a directory, not a symbolic link to one, owned
// by the effective user and not writable by group or others. The uids are
// as this process sees them: inside a user namespace the user's own files
// belong to root of the namespace, as the process does.
func Dir(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return &Error{path, Symlink, "is a symbolic link"}
	case !fi.IsDir():
		return &Error{path, WrongType, "is not a directory"}
	}
	return checkOwner(path, fi)
}

// MkdirPrivate creates the directory path with mode 0700 unless it exists
// (its parent must), and checks it with Dir either way. created says
// whether this call made it: only then is it known to be empty.
func MkdirPrivate(path string) (created bool, err error) {
	err = os.Mkdir(path, 0o700)
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return false, err
	}
	created = err == nil
	return created, Dir(path)
}

// OpenFile opens the regular file path read-write, creating it with mode
// 0600 when it is missing, without following a symbolic link at path and
// without truncating it. It fails unless the file it opened is a regular
// file owned by the effective user, with no other name (a hard link), and
// not writable by group or others: only such a file may be written. The
// directory holding path must have been checked with Dir, so that nobody
// else can replace the file afterwards.
func OpenFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0o600)
	if errors.Is(err, unix.ELOOP) {
		return nil, &Error{path, Symlink, "is a symbolic link"}
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil {
		err = checkFile(path, fi)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// File checks, without opening it, what OpenFile checks of the file path.
func File(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	return checkFile(path, fi)
}

func checkFile(path string, fi fs.FileInfo) error {
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return &Error{path, Symlink, "is a symbolic link"}
	case !fi.Mode().IsRegular():
		return &Error{path, WrongType, "is not a regular file"}
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
		return &Error{path, HardLinks, fmt.Sprintf("has %d names (hard links)", st.Nlink)}
	}
	return checkOwner(path, fi)
}

func checkOwner(path string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return &Error{path, Owner, "has no owner kiln can read"}
	}
	if euid := os.Geteuid(); int(st.Uid) != euid {
		return &Error{path, Owner, fmt.Sprintf("belongs to uid %d, not to uid %d that kiln runs as", st.Uid, euid)}
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return &Error{path, Writable, fmt.Sprintf("is writable by group or others (mode %04o)", perm)}
	}
	return nil
}

// Above checks that nobody but root and the user can change which
// directory path names: that every directory above it, up to /, belongs to
// root or to the user and, unless it is sticky (as /tmp is), is not
// writable by others. Whoever may write a directory above path could
// otherwise move path away after kiln checked it and put a link in its
// place, leading kiln's next step elsewhere. path must be absolute and
// free of symbolic links (filepath.EvalSymlinks).
//
// In a user namespace, root's files and those of every other user outside
// it show as the overflow uid, which is accepted there: from inside, they
// cannot be told apart.
func Above(path string) error {
	overflow := -1
	if InUserNamespace() {
		overflow = overflowUID()
	}
	euid := os.Geteuid()
	for d := filepath.Dir(path); ; d = filepath.Dir(d) {
		fi, err := os.Lstat(d)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return &Error{d, Owner, "has no owner kiln can read"}
		}
		if uid := int(st.Uid); uid != 0 && uid != euid && uid != overflow {
			return &Error{d, Owner, fmt.Sprintf("belongs to uid %d, neither root nor uid %d that kiln runs as", uid, euid)}
		}
		if fi.Mode().Perm()&0o002 != 0 && fi.Mode()&fs.ModeSticky == 0 {
			return &Error{d, Writable, fmt.Sprintf("is writable by others and not sticky (mode %04o)", fi.Mode().Perm())}
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// InUserNamespace reports whether the process runs in a user namespace
// other than the initial one, whose uid map is the identity of every uid.
func InUserNamespace() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return !(len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295")
}

// overflowUID is the uid that files of unmapped owners show in a user
// namespace.
func overflowUID() int {
	b, err := os.ReadFile("/proc/sys/kernel/overflowuid")
	if err != nil {
		return 65534
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 65534
	}
	return n
}
