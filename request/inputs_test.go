package request

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/buildkit/session/secrets/secretsprovider"

	"github.com/kiln-build/kiln/internal/safeio"
)

// parseWithin is parse, failing the test if it does not return in time:
// the inputs here used to block Parse forever.
func parseWithin(t *testing.T, ctx context.Context, o *Options) (*Request, error) {
	t.Helper()
	type result struct {
		r   *Request
		err error
	}
	done := make(chan result, 1)
	if o.NodesFiles == nil {
		o.NodesFiles = []string{}
	}
	go func() {
		r, err := Parse(ctx, o)
		done <- result{r, err}
	}()
	select {
	case res := <-done:
		return res.r, res.err
	case <-time.After(10 * time.Second):
		t.Fatalf("Parse did not return within 10s")
		return nil, nil
	}
}

func mkfifo(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestUntrustedInputsAreRefused: inputs that are not regular files, or
// are too large, are one usage error each, at once, never a hang or an
// out-of-memory crash.
func TestUntrustedInputsAreRefused(t *testing.T) {
	dir := t.TempDir()
	ctxDir := writeContext(t, "FROM scratch\n")
	fifo := mkfifo(t, dir, "fifo")
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("#"), MaxDockerfileSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	fifoContext := writeContext(t, "")
	mkfifo(t, fifoContext, "Dockerfile")
	layout := t.TempDir()
	mkfifo(t, layout, "index.json")
	cache := t.TempDir()
	mkfifo(t, cache, "index.json")
	zero, err := os.Open("/dev/zero")
	if err != nil {
		t.Fatal(err)
	}
	defer zero.Close()
	cases := []struct {
		name string
		o    Options
		want string
	}{
		{"-f FIFO", Options{ContextDir: ctxDir, Dockerfile: fifo},
			"Dockerfile " + fifo + " is a named pipe (FIFO): name a regular file with -f, or pass -f - to read the Dockerfile from standard input"},
		{"-f /dev/zero", Options{ContextDir: ctxDir, Dockerfile: "/dev/zero"},
			"Dockerfile /dev/zero is a character device: name a regular file with -f"},
		{"a FIFO named Dockerfile in the context", Options{ContextDir: fifoContext},
			"Dockerfile is a named pipe (FIFO): name a regular file"},
		{"a Dockerfile over the limit", Options{ContextDir: ctxDir, Dockerfile: big},
			"Dockerfile " + big + " is larger than 16MiB: BuildKit's Dockerfile frontend reads no more; check what -f names"},
		{"-f - with endless input", Options{ContextDir: ctxDir, Dockerfile: "-", Stdin: zero},
			"the Dockerfile from standard input is larger than 16MiB: BuildKit's Dockerfile frontend reads no more"},
		{"--secret src=FIFO", Options{ContextDir: ctxDir, Secrets: []string{"id=tok,src=" + fifo}},
			`secret "tok": ` + fifo + " is a named pipe (FIFO): src= must name a regular file (or use env=VARIABLE)"},
		{"--secret src=/dev/zero", Options{ContextDir: ctxDir, Secrets: []string{"id=tok,src=/dev/zero"}},
			`secret "tok": /dev/zero is a character device: src= must name a regular file`},
		{"--ssh x=FIFO", Options{ContextDir: ctxDir, SSH: []string{"x=" + fifo}},
			"--ssh x: " + fifo + " is a named pipe (FIFO): give an ssh-agent socket or a private key file"},
		{"--ssh x=/dev/zero", Options{ContextDir: ctxDir, SSH: []string{"x=/dev/zero"}},
			"--ssh x: /dev/zero is a character device: give an ssh-agent socket or a private key file"},
		{"--ssh x=a large file", Options{ContextDir: ctxDir, SSH: []string{"x=" + big}},
			"is larger than 100KiB: more than a private key"},
		{"--build-context with a FIFO index.json", Options{ContextDir: ctxDir, BuildContexts: []string{"base=oci-layout://" + layout}},
			"index.json is a named pipe (FIFO), not a regular file"},
		{"--cache-from with a FIFO index.json", Options{ContextDir: ctxDir, CacheFrom: []string{"type=local,src=" + cache}},
			"index.json is a named pipe (FIFO), not a regular file: a local cache holds the index.json"},
		{"--iidfile a directory", Options{ContextDir: ctxDir, IIDFile: dir}, "--iidfile " + dir + " is a directory: name a file"},
		{"--metadata-file in a missing directory", Options{ContextDir: ctxDir, MetadataFile: filepath.Join(dir, "no", "meta.json")},
			"--metadata-file " + filepath.Join(dir, "no", "meta.json") + ": directory " + filepath.Join(dir, "no") + " does not exist"},
		{"-o type=oci,dest=DIR", Options{ContextDir: ctxDir, Outputs: []string{"type=oci,dest=" + dir}}, "--output type=oci,dest=" + dir + " is a directory: name a file"},
		{"-o type=local,dest=FILE", Options{ContextDir: ctxDir, Outputs: []string{"type=local,dest=" + big}}, "is a regular file: type=local writes a directory"},
	}
	for _, c := range cases {
		_, err := parseWithin(t, context.Background(), &c.o)
		wantUsage(t, c.name, err, c.want)
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: the error has several lines: %q", c.name, err)
		}
	}
	// Devices and pipes are fine outputs: they are written in place.
	if _, err := parseWithin(t, context.Background(), &Options{ContextDir: ctxDir, IIDFile: "/dev/null", Outputs: []string{"type=tar,dest=/dev/null"}}); err != nil {
		t.Errorf("outputs to /dev/null: %v", err)
	}
}

// TestStdinDockerfileIsInterruptible: Parse waiting for a Dockerfile on
// standard input returns as soon as its context ends (kiln got SIGINT).
func TestStdinDockerfileIsInterruptible(t *testing.T) {
	r, w := io.Pipe()
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err := parseWithin(t, ctx, &Options{ContextDir: writeContext(t, ""), Dockerfile: "-", Stdin: r})
	if !errors.Is(err, safeio.ErrInterrupted) || err.Error() != "interrupted while reading the Dockerfile from standard input" {
		t.Errorf("Parse = %v, want an interruption", err)
	}
}

// TestSecretStoreReadsOnlyFiles: a secret file swapped for a named pipe or
// grown past the limit after Parse checked it is refused when a step
// mounts it, not waited for.
func TestSecretStoreReadsOnlyFiles(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "tok")
	os.WriteFile(p, []byte("s3cret"), 0o600)
	t.Setenv("KILN_TEST_SECRET", "from-env")
	store := secretStore{"tok": {ID: "tok", FilePath: p}, "env": {ID: "env", Env: "KILN_TEST_SECRET"}}
	ctx := context.Background()
	if v, err := store.GetSecret(ctx, "tok"); err != nil || string(v) != "s3cret" {
		t.Errorf("GetSecret(tok) = %q, %v", v, err)
	}
	if v, err := store.GetSecret(ctx, "env"); err != nil || string(v) != "from-env" {
		t.Errorf("GetSecret(env) = %q, %v", v, err)
	}
	if _, err := store.GetSecret(ctx, "missing"); err == nil {
		t.Error("GetSecret(missing) succeeded")
	}
	os.WriteFile(p, bytes.Repeat([]byte("x"), secretsprovider.MaxSecretSize+1), 0o600)
	if _, err := store.GetSecret(ctx, "tok"); err == nil || !strings.Contains(err.Error(), "is larger than") {
		t.Errorf("GetSecret(grown) = %v", err)
	}
	os.Remove(p)
	syscall.Mkfifo(p, 0o600)
	done := make(chan error, 1)
	go func() { _, err := store.GetSecret(ctx, "tok"); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "is a named pipe (FIFO), not a regular file") {
			t.Errorf("GetSecret(FIFO) = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("GetSecret blocked on a named pipe")
	}
}
