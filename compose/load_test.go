package compose

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/safeio"
)

// loadWithin loads o, failing the test if Load does not return within a
// few seconds: a FIFO must be refused, not waited on.
func loadWithin(t *testing.T, ctx context.Context, o LoadOptions) (*Project, error) {
	t.Helper()
	type result struct {
		p   *Project
		err error
	}
	done := make(chan result, 1)
	go func() {
		p, err := Load(ctx, o)
		done <- result{p, err}
	}()
	select {
	case r := <-done:
		return r.p, r.err
	case <-time.After(10 * time.Second):
		t.Fatalf("Load(%+v) still waits after 10s", o)
		return nil, nil
	}
}

// A compose file or env file that is not a regular file, or larger than
// any real one, is refused before compose-go reads it.
func TestLoadRefusesWhatIsNotAFile(t *testing.T) {
	dir := t.TempDir()
	compose := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(compose, []byte("services:\n  a:\n    build: .\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, maxFileSize+1); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []struct {
		name string
		o    LoadOptions
		want string
	}{
		{"a FIFO compose file", LoadOptions{Files: []string{fifo}}, "compose file " + fifo + " is a named pipe (FIFO): name a regular file"},
		{"a large compose file", LoadOptions{Files: []string{compose, big}}, "compose file " + big + " is larger than 16MiB, the most kiln reads"},
		{"a FIFO env file", LoadOptions{Files: []string{compose}, EnvFiles: []string{fifo}}, "env file " + fifo + " is a named pipe (FIFO)"},
		{"a large env file", LoadOptions{Files: []string{compose}, EnvFiles: []string{big}}, "env file " + big + " is larger than 16MiB"},
		{"a directory", LoadOptions{Files: []string{compose, dir}}, "is a directory"},
	} {
		_, err := loadWithin(t, ctx, c.o)
		wantUsage(t, c.name, err, c.want)
	}
	if _, err := loadWithin(t, ctx, LoadOptions{Files: []string{compose}, EnvFiles: []string{os.DevNull}}); err != nil {
		t.Errorf("an empty env file, /dev/null: %v", err)
	}
}

// The compose file "-" is read from standard input, bounded, in the
// working directory, and the wait for it ends with the context.
func TestLoadFromStandardInput(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := loadWithin(t, ctx, LoadOptions{Files: []string{"-"}, WorkingDir: dir, Stdin: strings.NewReader("name: piped\nservices:\n  a:\n    build: ./a\n")})
	if err != nil {
		t.Fatal(err)
	}
	pl := plan(t, p, BuildOptions{})
	if a := build(t, pl, "a"); pl.Project != "piped" || a.Options.ContextDir != filepath.Join(dir, "a") {
		t.Errorf("project %q, context %q; want piped and %s", pl.Project, a.Options.ContextDir, filepath.Join(dir, "a"))
	}
	_, err = loadWithin(t, ctx, LoadOptions{Files: []string{"-"}, WorkingDir: dir, Stdin: strings.NewReader("services: [\n")})
	wantUsage(t, "bad yaml on standard input", err, "standard input")
	if err != nil && strings.Contains(err.Error(), stdinName) {
		t.Errorf("the error names the temporary file: %v", err)
	}
	_, err = loadWithin(t, ctx, LoadOptions{Files: []string{"-"}, WorkingDir: dir, Stdin: bytes.NewReader(make([]byte, maxFileSize+1))})
	wantUsage(t, "a large standard input", err, "the compose file on standard input is larger than 16MiB")

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	defer r.Close()
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := loadWithin(t, cctx, LoadOptions{Files: []string{"-"}, WorkingDir: dir, Stdin: r}); !errors.Is(err, safeio.ErrInterrupted) {
		t.Errorf("a silent standard input: %v, want an interruption", err)
	}
}

// A compose file another user put in a directory every user may write,
// or a link of theirs there, is not read (see owned.Resolve).
func TestLoadRefusesOthersFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to another user")
	}
	shared := filepath.Join(t.TempDir(), "tmp")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o777|fs.ModeSticky); err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(t.TempDir(), "compose.yaml")
	if err := os.WriteFile(mine, []byte("services:\n  a:\n    build: .\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(shared, "compose.yaml")
	if err := os.Symlink(mine, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(context.Background(), LoadOptions{Files: []string{link}}); err != nil {
		t.Fatalf("a link of the user's own: %v", err)
	}
	if err := os.Lchown(link, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	_, err := Load(context.Background(), LoadOptions{Files: []string{link}})
	wantUsage(t, "another user's link", err, "compose file "+link+": "+link+" belongs to uid 4242 and is in "+shared+", which every user may write: kiln does not read what another user may have put there")
	// Found by looking in the parent directories, too.
	work := filepath.Join(shared, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = Load(context.Background(), LoadOptions{WorkingDir: work})
	wantUsage(t, "another user's link found in a parent", err, "belongs to uid 4242")
}
