package engine

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFullDisk fills a small tmpfs and checks that FullDisk names it then,
// and not once the space is back.
func TestFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64m"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	e := &Engine{snapshots: dir}
	if got := e.FullDisk(); got != "" {
		t.Fatalf("an empty 64 MiB file system is full: FullDisk() = %q", got)
	}
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), 0, 0, 63<<20); err != nil {
		t.Fatal(err)
	}
	if got := e.FullDisk(); got != dir {
		t.Errorf("with 1 MiB free FullDisk() = %q, want %q", got, dir)
	}
	if err := f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if got := e.FullDisk(); got != "" {
		t.Errorf("after freeing the space FullDisk() = %q", got)
	}
	if got := (&Engine{}).FullDisk(); got != "" {
		t.Errorf("an engine without a snapshot directory: FullDisk() = %q", got)
	}
}
