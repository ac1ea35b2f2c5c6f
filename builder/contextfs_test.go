package builder

import (
	"bytes"
	"context"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/request"
)

// TestContextFSSpecialFiles: sockets are left out of the context with a
// warning (not for ignored ones), block devices and sparse files are sent
// with a warning, and a file swapped for a named pipe is refused, not
// waited for.
func TestContextFSSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("Dockerfile", "FROM scratch\nCOPY . /\n")
	write(".dockerignore", "ignored/\n")
	write("reg", "x")
	os.Mkdir(filepath.Join(dir, "ignored"), 0o755)
	for _, s := range []string{"app.sock", "ignored/other.sock"} {
		l, err := net.Listen("unix", filepath.Join(dir, s))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
	}
	sparse, err := os.Create(filepath.Join(dir, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	sparse.Truncate(1 << 30)
	sparse.Close()
	block := syscall.Getuid() == 0
	if block {
		if err := syscall.Mknod(filepath.Join(dir, "blk"), syscall.S_IFBLK|0o600, 7<<8); err != nil {
			t.Fatal(err)
		}
	}

	req := &request.Request{ContextDir: dir, Dockerfile: request.Dockerfile{Dir: dir, Name: "Dockerfile"}}
	var stderr bytes.Buffer
	c, err := newContextFS(dir, dockerignore(context.Background(), req), &stderr)
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	err = c.Walk(context.Background(), "", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		seen = append(seen, path)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"app.sock", "ignored/other.sock"} {
		if slices.Contains(seen, s) {
			t.Errorf("the walk sent socket %s", s)
		}
	}
	for _, f := range []string{"reg", "sparse", "Dockerfile"} {
		if !slices.Contains(seen, f) {
			t.Errorf("the walk left out %s: %v", f, seen)
		}
	}
	c.Close()
	want := []string{
		"warning: skipping socket app.sock in the build context: a socket cannot be sent (docker skips it too); exclude it in .dockerignore to silence this",
		"warning: sparse file sparse in the build context (1GiB, 0B on disk) is sent and stored whole: BuildKit's context transfer does not keep holes; exclude it in .dockerignore, or create it in a RUN step",
	}
	if block {
		want = slices.Insert(want, 1, "warning: block device blk in the build context: RUN --mount sees it as a block device, but COPY and ADD make it a character device (a BuildKit limitation, see README)")
	}
	if got := strings.Split(strings.TrimSpace(stderr.String()), "\n"); !slices.Equal(got, want) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Printed once.
	stderr.Reset()
	c.Close()
	if stderr.Len() > 0 {
		t.Errorf("a second Close printed %q", stderr.String())
	}

	// A regular file swapped for a named pipe after the walk.
	os.Remove(filepath.Join(dir, "reg"))
	syscall.Mkfifo(filepath.Join(dir, "reg"), 0o600)
	done := make(chan error, 1)
	go func() {
		f, err := c.Open("reg")
		if f != nil {
			f.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "is a named pipe (FIFO), not a regular file") {
			t.Errorf("Open(FIFO) = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Open blocked on a named pipe")
	}
	if f, err := c.Open("Dockerfile"); err != nil {
		t.Errorf("Open(Dockerfile) = %v", err)
	} else {
		f.Close()
	}
}
