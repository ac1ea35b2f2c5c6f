package engine

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// flock locks belong to an open file, so lockers in one process exclude
// each other as kiln processes do.

func TestLockFileRemovedOnRelease(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ns.lock")
	unlock, err := lockFile(context.Background(), path, "namespace x", true, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("lock file holds %q, want this pid", b)
	}
	unlock()
	if _, err := os.Stat(path); err == nil {
		t.Error("the lock file is still there after its release")
	}

	// Without remove (the state directory's lock) it stays.
	unlock, err = lockFile(context.Background(), path, "root", false, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	unlock()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the kept lock file was removed: %v", err)
	}
}

// TestLockFileWaiterOfRemovedFile: a kiln that waited on a lock file its
// holder removes at release must not hold a lock on the removed file while
// a newcomer locks the new one.
func TestLockFileWaiterOfRemovedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ns.lock")
	ctx := context.Background()
	unlock1, err := lockFile(ctx, path, "namespace x", true, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var waitMsg syncBuffer
	got := make(chan func())
	go func() {
		unlock2, err := lockFile(ctx, path, "namespace x", true, &waitMsg)
		if err != nil {
			t.Error(err)
			close(got)
			return
		}
		got <- unlock2
	}()
	for !strings.Contains(waitMsg.String(), "waiting for the build of pid") {
		time.Sleep(10 * time.Millisecond)
	}
	unlock1()
	unlock2 := <-got
	if unlock2 == nil {
		return
	}
	// The waiter holds the lock at path: a third locker waits.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if unlock3, err := lockFile(short, path, "namespace x", true, io.Discard); err == nil {
		unlock3()
		t.Fatal("a third locker got the lock while the waiter held it")
	}
	unlock2()
	if _, err := os.Stat(path); err == nil {
		t.Error("the lock file is still there after the last release")
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLockFileRefusesPlantedFile: a lock file that kiln did not make (a
// link to another file, a second name of one, another user's) is refused,
// and the file it leads to is neither truncated nor written.
func TestLockFileRefusesPlantedFile(t *testing.T) {
	for name, c := range map[string]struct {
		plant func(victim, path string) error
		want  string
	}{
		"symlink":  {func(victim, path string) error { return os.Symlink(victim, path) }, "is a symbolic link, which kiln never makes"},
		"hardlink": {func(victim, path string) error { return os.Link(victim, path) }, "has 2 names (hard links)"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			victim := filepath.Join(dir, "victim")
			write(t, victim, "precious\n")
			path := filepath.Join(dir, "kiln.lock")
			if err := c.plant(victim, path); err != nil {
				t.Fatal(err)
			}
			for _, remove := range []bool{false, true} {
				unlock, err := lockFile(context.Background(), path, "x", remove, io.Discard)
				if err == nil {
					unlock()
					t.Fatal("lockFile took a planted lock file")
				}
				if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "remove it and retry") {
					t.Errorf("error %q lacks %q or what to do", err, c.want)
				}
			}
			if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
				t.Errorf("the victim holds %q", b)
			}
		})
	}
}

func TestLockFileRefusesForeignFile(t *testing.T) {
	asRoot(t)
	path := filepath.Join(t.TempDir(), "ns.lock")
	write(t, path, "theirs\n")
	if err := os.Chown(path, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if unlock, err := lockFile(context.Background(), path, "x", true, io.Discard); err == nil {
		unlock()
		t.Fatal("lockFile took another user's file")
	} else if !strings.Contains(err.Error(), "belongs to uid 65534") {
		t.Errorf("error %q", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "theirs\n" {
		t.Errorf("the file holds %q", b)
	}
}

// TestLockRootSymlinkedLock: the state directory's lock planted as a link
// in a state directory of kiln's leaves the file it leads to alone.
func TestLockRootSymlinkedLock(t *testing.T) {
	root := filepath.Join(t.TempDir(), "kiln")
	victim := filepath.Join(t.TempDir(), "victim")
	write(t, victim, "precious\n")
	if _, err := claimRoot(root); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(root, "kiln.lock")); err != nil {
		t.Fatal(err)
	}
	if unlock, err := lockRoot(context.Background(), root, io.Discard); err == nil {
		unlock()
		t.Fatal("lockRoot took a linked lock file")
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("the victim holds %q", b)
	}
}
