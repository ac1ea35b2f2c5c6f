package safeio

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestReadFileRefusesWhatIsNotAFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		fifo:        "is a named pipe (FIFO), not a regular file",
		"/dev/zero": "is a character device, not a regular file",
		dir:         "is a directory, not a regular file",
	}
	for path, want := range cases {
		done := make(chan error, 1)
		go func() {
			_, err := ReadFile(context.Background(), path, 1<<20)
			done <- err
		}()
		select {
		case err := <-done:
			var nr *NotRegularError
			if !errors.As(err, &nr) || !strings.HasSuffix(err.Error(), want) {
				t.Errorf("ReadFile(%s) = %v, want a *NotRegularError ending %q", path, err, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("ReadFile(%s) blocked", path)
		}
	}
	if _, err := ReadFile(context.Background(), filepath.Join(dir, "missing"), 10); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile(missing) = %v, want fs.ErrNotExist", err)
	}
}

func TestReadFileBounded(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	if dt, err := ReadFile(context.Background(), p, 10); err != nil || string(dt) != "0123456789" {
		t.Errorf("ReadFile at the limit = %q, %v", dt, err)
	}
	_, err := ReadFile(context.Background(), p, 9)
	var tl *TooLargeError
	if !errors.As(err, &tl) || err.Error() != p+" is larger than 9B, the most kiln reads" {
		t.Errorf("ReadFile over the limit = %v", err)
	}
}

func TestReadAllBoundedAndInterruptible(t *testing.T) {
	// Endless input stops at the limit.
	_, err := ReadAll(context.Background(), zeros{}, "standard input", 1<<20)
	if err == nil || err.Error() != "standard input is larger than 1MiB, the most kiln reads" {
		t.Errorf("ReadAll(endless) = %v", err)
	}
	// Input that never comes: the context ends the wait.
	r, w := io.Pipe()
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err = ReadAll(ctx, r, "the Dockerfile from standard input", 1<<20)
	if !errors.Is(err, ErrInterrupted) || err.Error() != "interrupted while reading the Dockerfile from standard input" {
		t.Errorf("ReadAll(blocked, cancelled) = %v", err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestCreateCommitReplacesWhole(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.tar")
	if err := os.WriteFile(p, []byte("old"), 0o640); err != nil {
		t.Fatal(err)
	}
	f, err := Create(p, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(f.TempName()), TempPrefix+"out.tar-") || filepath.Dir(f.TempName()) != dir {
		t.Errorf("temporary file %s is not %sout.tar-* beside the output", f.TempName(), TempPrefix)
	}
	f.Write([]byte("new content"))
	if got, _ := os.ReadFile(p); string(got) != "old" {
		t.Errorf("before Commit the output holds %q, want the old content", got)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	f.Close() // after Commit: nothing
	got, _ := os.ReadFile(p)
	fi, _ := os.Stat(p)
	if string(got) != "new content" || fi.Mode().Perm() != 0o640 {
		t.Errorf("after Commit: %q mode %v, want the new content with the old mode 0640", got, fi.Mode().Perm())
	}
	assertOnly(t, dir, "out.tar")
}

func TestCreateCloseKeepsOld(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.tar")
	os.WriteFile(p, []byte("old"), 0o644)
	f, err := Create(p, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("partial"))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); string(got) != "old" {
		t.Errorf("after Close the output holds %q, want the old content", got)
	}
	assertOnly(t, dir, "out.tar")

	// A failed write leaves no new file either.
	q := filepath.Join(dir, "new.json")
	err = WriteWith(q, 0o644, func(w io.Writer) error {
		w.Write([]byte("{"))
		return errors.New("boom")
	})
	if err == nil || err.Error() != "boom" {
		t.Errorf("WriteWith = %v", err)
	}
	assertOnly(t, dir, "out.tar")
}

func TestCreateNewFileMode(t *testing.T) {
	dir := t.TempDir()
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	p := filepath.Join(dir, "iid")
	if err := WriteFile(p, []byte("sha256:x"), 0o666); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o644 {
		t.Errorf("new file mode %v, want 0644 (0666 less the umask, as os.Create)", fi.Mode().Perm())
	}
}

func TestCreateSpecialTargets(t *testing.T) {
	// A device is written in place, not replaced.
	if err := WriteFile("/dev/null", []byte("x"), 0o644); err != nil {
		t.Errorf("WriteFile(/dev/null) = %v", err)
	}
	if fi, err := os.Stat("/dev/null"); err != nil || fi.Mode()&fs.ModeCharDevice == 0 {
		t.Fatalf("/dev/null is no longer a device: %v %v", fi.Mode(), err)
	}
	dir := t.TempDir()
	// A named pipe nobody reads is refused at once.
	fifo := filepath.Join(dir, "fifo")
	syscall.Mkfifo(fifo, 0o600)
	done := make(chan error, 1)
	go func() { _, err := Create(fifo, 0o644); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "named pipe no process reads from") {
			t.Errorf("Create(fifo) = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Create(fifo) blocked")
	}
	// A directory is refused.
	if _, err := Create(dir, 0o644); err == nil || !strings.HasSuffix(err.Error(), "is a directory, not a regular file") {
		t.Errorf("Create(dir) = %v", err)
	}
	// A symbolic link is replaced, not written through.
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte("keep"), 0o644)
	link := filepath.Join(dir, "link")
	os.Symlink(target, link)
	if err := WriteFile(link, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(target); string(got) != "keep" {
		t.Errorf("the link's target was written: %q", got)
	}
	if fi, _ := os.Lstat(link); !fi.Mode().IsRegular() {
		t.Errorf("the link was not replaced by the output: %v", fi.Mode())
	}
}

// assertOnly checks that dir holds exactly names (no temporary file left).
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, " ") != strings.Join(names, " ") {
		t.Errorf("%s holds %v, want %v", dir, got, names)
	}
}

// TestOpenAndInterruptible: opening a named pipe no one writes to, and
// reading one that stays silent, both end with the context.
func TestOpenAndInterruptible(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	syscall.Mkfifo(fifo, 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := Open(ctx, fifo); !errors.Is(err, ErrInterrupted) {
		t.Errorf("Open(FIFO without a writer) = %v, want an interruption", err)
	}

	pr, pw := io.Pipe()
	defer pw.Close()
	ctx, cancel = context.WithCancel(context.Background())
	r := Interruptible(ctx, pr, "the archive")
	defer r.Close()
	go pw.Write([]byte("some"))
	buf := make([]byte, 4)
	if n, err := io.ReadFull(r, buf); err != nil || string(buf[:n]) != "some" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := r.Read(buf)
	if !errors.Is(err, ErrInterrupted) || err.Error() != "interrupted while reading the archive" {
		t.Errorf("Read after the context ended = %v", err)
	}
	// Without interruption, the data and its end come through.
	r2 := Interruptible(context.Background(), strings.NewReader("whole"), "x")
	if b, err := io.ReadAll(r2); err != nil || string(b) != "whole" {
		t.Errorf("ReadAll = %q, %v", b, err)
	}
	r2.Close()
}
