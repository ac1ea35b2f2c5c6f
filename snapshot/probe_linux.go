package snapshot

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// KernelRelease returns the running kernel's release, e.g. "6.18.4".
func KernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// kernelAtLeast reports whether release is major.minor or newer.
func kernelAtLeast(release string, major, minor int) bool {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return false
	}
	maj, err := strconv.Atoi(parts[0])
	if err != nil {
		return false
	}
	digits := parts[1]
	if i := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		digits = digits[:i]
	}
	mn, _ := strconv.Atoi(digits)
	return maj > major || maj == major && mn >= minor
}

// FuseInstalled reports whether the fuse-overlayfs program is installed.
func FuseInstalled() bool {
	_, err := exec.LookPath("fuse-overlayfs")
	return err == nil
}

// Default is the snapshotter kiln would choose without asking containerd:
// overlayfs, except for a rootless containerd on a kernel older than 5.11,
// where fuse-overlayfs (when installed) or native takes its place. Commands
// that only unpack images (pull, load) use it; builds check it against
// containerd (see Choose).
func Default(rootless bool) string {
	if !rootless || kernelAtLeast(KernelRelease(), 5, 11) {
		return Overlayfs
	}
	if FuseInstalled() {
		return FuseOverlayfs
	}
	return Native
}

// ProbeOverlay mounts a small overlayfs in a temporary directory under dir
// and unmounts it again: in a user namespace that tells whether the kernel
// lets containerd's overlayfs snapshotter mount its snapshots there.
func ProbeOverlay(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(dir, "overlay-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var paths [4]string
	for i, name := range []string{"lower", "upper", "work", "merged"} {
		paths[i] = filepath.Join(tmp, name)
		if err := os.Mkdir(paths[i], 0o700); err != nil {
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", paths[0], paths[1], paths[2])
	if err := unix.Mount("overlay", paths[3], "overlay", 0, opts); err != nil {
		return fmt.Errorf("mounting overlayfs: %w", err)
	}
	return unix.Unmount(paths[3], unix.MNT_DETACH)
}
