package builder

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// lockRoot takes kiln's state lock. BuildKit's bolt databases block forever
// when another process holds them, so kiln serialises builds on one root
// itself and says whom it is waiting for instead of hanging silently.
func lockRoot(ctx context.Context, root string, stderr io.Writer) (func(), error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("creating kiln's state directory %s: %w (choose another with --root)", root, err)
	}
	path := filepath.Join(root, "kiln.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening kiln's lock file %s: %w (choose another state directory with --root)", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		fmt.Fprintf(stderr, "waiting for the build of %s to release %s\n", holder(f), root)
		if err := waitLock(ctx, f); err != nil {
			f.Close()
			return nil, err
		}
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() {
		f.Truncate(0)
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, nil
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
