package engine

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/kiln-build/kiln/internal/owned"
)

// privateTempDir gives this process's temporary files and mounts a directory
// inside its state directory. BuildKit and containerd's client mount layers
// in temporary directories while they diff and copy; a kiln killed at that
// moment leaves the mounts behind. Under the root, which claimRoot found to
// be kiln's and whose lock the caller holds, they are known to be a dead
// kiln's and are removed here, while a shared /tmp would mix them with
// other programs' mounts.
func privateTempDir(root string, stderr io.Writer) error {
	// Mount points are listed by their real path.
	abs, err := filepath.EvalSymlinks(root)
	if err != nil {
		return fmt.Errorf("resolving kiln's state directory %s: %w", root, err)
	}
	if abs, err = filepath.Abs(abs); err != nil {
		return fmt.Errorf("resolving kiln's state directory %s: %w", root, err)
	}
	dir := filepath.Join(abs, "tmp")
	// kiln made tmp/ as its user's private directory; anything else there
	// was put by someone else, and its contents are not kiln's to remove.
	if err := owned.Dir(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		var oe *owned.Error
		if errors.As(err, &oe) {
			return fmt.Errorf("kiln's temporary directory %w: kiln did not make it so, and leaves what it holds alone; remove it and retry", err)
		}
		return fmt.Errorf("checking kiln's temporary directory %s: %w", dir, err)
	}
	n, err := unmountUnder(dir)
	if err != nil {
		return fmt.Errorf("removing the mounts an interrupted kiln left under %s: %w; unmount them (\"umount -R %s\") and retry", dir, err, dir)
	}
	if n > 0 {
		fmt.Fprintf(stderr, "removed %d mount(s) left by an interrupted kiln\n", n)
	}
	// Only now that nothing is mounted below it may the directory be emptied:
	// removing files through a leftover overlay mount would write into a
	// snapshot.
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("cleaning kiln's temporary directory %s: %w", dir, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("creating kiln's temporary directory %s: %w", dir, err)
	}
	if err := mount.SetTempMountLocation(dir); err != nil {
		return fmt.Errorf("using %s for temporary mounts: %w", dir, err)
	}
	return os.Setenv("TMPDIR", dir)
}

// unmountUnder detaches every mount below dir, deepest first, and reports
// how many there were. It fails if any is still there afterwards.
func unmountUnder(dir string) (int, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return 0, err
	}
	var points []string
	for _, m := range mounts {
		if m.Mountpoint != dir && strings.HasPrefix(m.Mountpoint, dir+"/") {
			points = append(points, m.Mountpoint)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
			return 0, fmt.Errorf("unmounting %s: %w", p, err)
		}
	}
	left, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return 0, err
	}
	for _, m := range left {
		if m.Mountpoint != dir {
			return 0, fmt.Errorf("%s is still mounted", m.Mountpoint)
		}
	}
	return len(points), nil
}
