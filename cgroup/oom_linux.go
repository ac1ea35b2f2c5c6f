package cgroup

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// oomWatch counts the OOM notifications of a v1 memory cgroup: the kernel
// signals an eventfd registered through cgroup.event_control whenever the
// cgroup, or one below it, runs out of memory under its limit. The eventfd
// adds the notifications up until read, so no goroutine needs to wait on
// it.
type oomWatch struct {
	mu    sync.Mutex
	efd   int
	file  *os.File // memory.oom_control, open as long as the registration
	total uint64
}

func watchOOM(dir string) (*oomWatch, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("creating an eventfd: %w", err)
	}
	f, err := os.Open(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		unix.Close(efd)
		return nil, err
	}
	if err := write(dir, "cgroup.event_control", fmt.Sprintf("%d %d", efd, f.Fd())); err != nil {
		f.Close()
		unix.Close(efd)
		return nil, err
	}
	return &oomWatch{efd: efd, file: f}, nil
}

// count returns the notifications so far.
func (w *oomWatch) count() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.efd < 0 {
		return w.total
	}
	var buf [8]byte
	if n, err := unix.Read(w.efd, buf[:]); err == nil && n == 8 {
		w.total += binary.NativeEndian.Uint64(buf[:])
	}
	return w.total
}

func (w *oomWatch) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.efd >= 0 {
		unix.Close(w.efd)
		w.file.Close()
		w.efd = -1
	}
}
