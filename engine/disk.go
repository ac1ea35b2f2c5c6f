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
	d := describeDisk(e.snapshots)
	if d != nil && d.Free < nearlyFull && d.Free < d.Size/20 {
		return d.Dir
	}
	return ""
}

// describeDisk measures the file system of dir; nil when dir is empty or
// cannot be measured.
func describeDisk(dir string) *DiskInfo {
	if dir == "" {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return nil
	}
	d := &DiskInfo{Dir: dir, Free: st.Bavail * uint64(st.Bsize), Size: st.Blocks * uint64(st.Bsize)}
	// Root's steps may use the blocks a file system reserves for root.
	if os.Geteuid() == 0 && !userns.RunningInUserNS() {
		d.Free = st.Bfree * uint64(st.Bsize)
	}
	return d
}
