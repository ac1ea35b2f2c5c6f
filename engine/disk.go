package engine

import (
	"os"

	"github.com/moby/sys/userns"
	"golang.org/x/sys/unix"
)

// nearlyFull is the free space below which the file system of the build's
// snapshots counts as full: a step's writes fail well before it reaches 0.
const nearlyFull = 32 << 20

// FullDisk returns the directory of the build's snapshots when its file
// system has (almost) no space left, and "" otherwise. A step that failed
// then most likely failed for want of space, whatever its program printed:
// a write to a full overlayfs can fail with EIO rather than ENOSPC.
func (e *Engine) FullDisk() string {
	if e.snapshots == "" {
		return ""
	}
	var st unix.Statfs_t
	if err := unix.Statfs(e.snapshots, &st); err != nil {
		return ""
	}
	// Root's steps may use the blocks a file system reserves for root.
	free, size := st.Bavail*uint64(st.Bsize), st.Blocks*uint64(st.Bsize)
	if os.Geteuid() == 0 && !userns.RunningInUserNS() {
		free = st.Bfree * uint64(st.Bsize)
	}
	if free < nearlyFull && free < size/20 {
		return e.snapshots
	}
	return ""
}
