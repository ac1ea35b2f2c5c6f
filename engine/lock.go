package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/internal/owned"
	"github.com/kiln-build/kiln/rootless"
	"github.com/kiln-build/kiln/store"
)

// lockState takes kiln's two locks: one on the state directory, whose
// BuildKit bolt databases block forever when another process holds them, and
// one on the containerd namespace, where BuildKit's worker deletes every
// temporary lease at start and kiln deletes them again at exit. Builds that
// share either queue, and say whom they wait for instead of hanging.
//
// The root's lock covers every namespace's state under it, so builds into
// two namespaces with one --root still run one after the other: the
// temporary directory, the step containers' label and cgroup, and moving an
// earlier kiln's state (see adoptLegacyState) are the root's, not a
// namespace's.
func lockState(ctx context.Context, cfg Config, stderr io.Writer) (func(), error) {
	unlockRoot, err := lockRoot(ctx, cfg.Root, stderr)
	if err != nil {
		return nil, err
	}
	dir, err := rootless.RunDir()
	if err != nil {
		unlockRoot()
		return nil, err
	}
	sum := sha256.Sum256([]byte(cfg.Address + "\x00" + cfg.Namespace))
	what := fmt.Sprintf("namespace %s of %s", cfg.Namespace, cfg.Address)
	// One file per containerd and namespace would pile up in the lock
	// directory: it is removed when released.
	unlockNS, err := lockFile(ctx, filepath.Join(dir, hex.EncodeToString(sum[:8])+".lock"), what, true, stderr)
	if err != nil {
		unlockRoot()
		return nil, err
	}
	unlock := func() {
		unlockNS()
		unlockRoot()
	}
	// Holding the root's lock, this process may claim its temporary
	// directory and clear what a killed predecessor left there.
	if err := privateTempDir(cfg.Root, stderr); err != nil {
		unlock()
		return nil, err
	}
	return unlock, nil
}

// lockRoot creates the state directory root, or checks that it is kiln's
// (see claimRoot), and takes its lock, which every kiln process that runs
// BuildKit or opens the embedded store under root holds (see lockState).
func lockRoot(ctx context.Context, root string, stderr io.Writer) (func(), error) {
	real, err := claimRoot(root)
	if err != nil {
		return nil, err
	}
	return lockFile(ctx, filepath.Join(real, "kiln.lock"), root, false, stderr)
}

// lockFile takes an exclusive lock on path and records this process's pid in
// it, so that a waiting kiln can say whom it waits for. With remove, the
// release deletes the file while still holding the lock; every locker then
// checks, once it holds a lock, that the file it locked is still the one at
// path, and starts over when it is not: a process that waited on the
// deleted file would otherwise hold a lock nobody else takes.
//
// The directory of path must be the user's own and closed to others (see
// claimRoot and rootless.RunDir); the lock file itself is opened without
// following a link and used only when it is a regular file of the user's
// with no other name, so that writing the pid cannot truncate a file a
// link leads to.
func lockFile(ctx context.Context, path, what string, remove bool, stderr io.Writer) (func(), error) {
	waiting := false
	for {
		f, err := owned.OpenFile(path)
		if err != nil {
			return nil, lockFileError(path, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			if !waiting {
				fmt.Fprintf(stderr, "waiting for the build of %s to release %s\n", holder(f), what)
				waiting = true
			}
			if err := waitLock(ctx, f); err != nil {
				f.Close()
				return nil, err
			}
		}
		if !lockedFileAt(f, path) {
			f.Close() // releases the lock
			continue
		}
		f.Truncate(0)
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		return func() {
			if remove {
				// Only the file this process locked: if it is no longer
				// at path, whatever is there is not this lock's.
				if lockedFileAt(f, path) {
					os.Remove(path)
				}
			} else {
				f.Truncate(0)
			}
			unix.Flock(int(f.Fd()), unix.LOCK_UN)
			f.Close()
		}, nil
	}
}

// lockFileError says why the lock file path cannot be used, and what to
// do.
func lockFileError(path string, err error) error {
	var oe *owned.Error
	if !errors.As(err, &oe) {
		return &store.StateDirError{Doing: "opening kiln's lock file", Path: path, Err: err}
	}
	if oe.Kind == owned.Symlink {
		return fmt.Errorf("kiln's lock file %s is a symbolic link, which kiln never makes (one may have been planted to make kiln overwrite the file it leads to): remove it and retry", path)
	}
	return fmt.Errorf("kiln's lock file %s %s: kiln only uses a lock file it made; remove it and retry", path, oe.Problem)
}

// lockedFileAt reports whether f is still the file at path.
func lockedFileAt(f *os.File, path string) bool {
	held, err := f.Stat()
	if err != nil {
		return false
	}
	now, err := os.Lstat(path)
	return err == nil && os.SameFile(held, now)
}

func holder(f *os.File) string {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	if pid := strings.TrimSpace(string(b[:n])); pid != "" {
		return "pid " + pid
	}
	return "another kiln process"
}

// waitLock polls rather than blocking in flock so that an interrupt ends
// the wait at once.
func waitLock(ctx context.Context, f *os.File) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up waiting for kiln's state lock: %w", ctx.Err())
		case <-t.C:
			if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
				return nil
			}
		}
	}
}
