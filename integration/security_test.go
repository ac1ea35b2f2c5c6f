//go:build linux

package integration

import (
	"archive/tar"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// libraryLogLine matches a line of Go's log package as grpc-go and others
// write it ("2026/01/02 15:04:05 ERROR: [transport] ...").
var libraryLogLine = regexp.MustCompile(`(?m)^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d `)

// TestSecurityInvalidUTF8DockerfileLogsNoLibraryLine: a Dockerfile with
// invalid UTF-8 fails with kiln's one-line error, and no library log line
// (grpc-go logged 4-8 KB failing to send the error's status) comes before
// it without --debug.
func TestSecurityInvalidUTF8DockerfileLogsNoLibraryLine(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := contextDir(t, map[string]string{"Dockerfile": "FROM scratch\n\xff\xfe bad instruction\n"})
	r := e.kiln("build", "--progress", "plain", dir).fails(t, 1, "dockerfile parse error on line 2: unknown instruction")
	if libraryLogLine.MatchString(r.Stderr) || strings.Contains(r.Stderr, "[transport]") || len(r.Stderr) > 1024 {
		t.Errorf("stderr has a library's log line or is long (%d bytes):\n%.2000s", len(r.Stderr), r.Stderr)
	}
	// --debug still shows them.
	if r := e.kiln("--debug", "build", "--progress", "plain", dir); !strings.Contains(r.Stderr, "[transport]") {
		t.Errorf("kiln --debug does not show grpc-go's log line:\n%.2000s", r.Stderr)
	}
}

// TestSecurityLoadRefusesIncompleteArchive: with a real containerd, an
// archive that names a missing manifest, or holds a blob whose content
// does not match its digest, is refused naming what is missing, and the
// image that had the name keeps it.
func TestSecurityLoadRefusesIncompleteArchive(t *testing.T) {
	t.Parallel()
	src := newEnv(t)
	src.busyboxBase(t, "busybox", "linux/amd64", "linux/arm64")
	saved := filepath.Join(t.TempDir(), "busybox.tar")
	src.kiln("save", "busybox", "-o", saved).ok(t)
	files := readTar(t, saved)
	base := src.image(t, "docker.io/library/busybox:latest")
	arm64 := manifestFor(t, base.Index, "linux/arm64")
	amd64 := manifestFor(t, base.Index, "linux/amd64")
	var m ocispecs.Manifest
	mustJSON(t, string(files["blobs/sha256/"+amd64.Digest.Encoded()]), &m)
	layer := m.Layers[len(m.Layers)-1].Digest

	// The archive's image is to be named app:1, which names another image.
	var idx ocispecs.Index
	mustJSON(t, string(files["index.json"]), &idx)
	for i := range idx.Manifests {
		idx.Manifests[i].Annotations = map[string]string{
			"io.containerd.image.name": "docker.io/library/app:1",
			ocispecs.AnnotationRefName: "docker.io/library/app:1",
		}
	}
	files["index.json"], _ = json.Marshal(idx)
	delete(files, "manifest.json")

	// Each case in a namespace of its own, where app:1 names an image of
	// its own: blobs a refused load brought in stay until containerd
	// collects them, and would complete the next case's image.
	mineCtx := contextDir(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY f /f\n", "f": "mine\n"})
	withApp := func() (*env, string) {
		e := newEnv(t)
		e.kiln("build", "-t", "app:1", mineCtx).ok(t)
		return e, e.image(t, "docker.io/library/app:1").Digest
	}
	for name, change := range map[string]struct {
		edit func(map[string][]byte)
		want string
	}{
		"missing manifest": {func(f map[string][]byte) { delete(f, "blobs/sha256/"+arm64.Digest.Encoded()) },
			"is missing content for linux/arm64 (manifest sha256:" + arm64.Digest.Encoded()[:12] + " not present)"},
		"blob not matching its digest": {func(f map[string][]byte) {
			f["blobs/sha256/"+layer.Encoded()] = append([]byte("tampered"), f["blobs/sha256/"+layer.Encoded()]...)
		}, "is missing content for linux/amd64 (layer sha256:" + layer.Encoded()[:12] + " not present)"},
	} {
		e, mine := withApp()
		bad := map[string][]byte{}
		for k, v := range files {
			bad[k] = v
		}
		change.edit(bad)
		archive := filepath.Join(t.TempDir(), "bad.tar")
		writeTarFiles(t, archive, bad)
		r := e.kiln("load", "-i", archive).fails(t, 1, change.want)
		if !strings.Contains(r.Stderr, "no image was loaded and no name changed") {
			t.Errorf("%s: %s", name, r.Stderr)
		}
		if got := e.image(t, "docker.io/library/app:1").Digest; got != mine {
			t.Errorf("%s: app:1 moved to %s", name, got)
		}
		for _, p := range e.platformRows(t, "app:1") {
			if p.Content != "complete" {
				t.Errorf("%s: app:1 after the refused load: %+v", name, p)
			}
		}
	}
	// The whole archive loads.
	e, _ := withApp()
	whole := filepath.Join(t.TempDir(), "whole.tar")
	writeTarFiles(t, whole, files)
	e.kiln("load", "-i", whole).ok(t)
	if got := e.image(t, "docker.io/library/app:1").Digest; got != base.Digest {
		t.Errorf("app:1 is %s after loading the whole archive, want %s", got, base.Digest)
	}
}

// writeTarFiles writes files (path -> content) as a tar at path, oci-layout first.
func writeTarFiles(t *testing.T, path string, files map[string][]byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	names := []string{"oci-layout"}
	for n := range files {
		if n != "oci-layout" {
			names = append(names, n)
		}
	}
	for _, n := range names {
		b, ok := files[n]
		if !ok {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}
