//go:build linux

package integration

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// outputContext is a build whose result differs per platform without
// running anything, so it needs no emulation.
func outputContext(t *testing.T) string {
	return contextDir(t, map[string]string{
		"Dockerfile": "FROM scratch\nARG TARGETARCH\nCOPY hello.txt /\nCOPY ${TARGETARCH}.txt /arch.txt\n",
		"hello.txt":  "hello\n",
		"amd64.txt":  "amd64\n",
		"arm64.txt":  "arm64\n",
	})
}

// readTar returns the regular files of a tar archive by name.
func readTar(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("reading %s: %v", path, err)
		}
		if h.Typeflag == tar.TypeReg {
			b, _ := io.ReadAll(tr)
			out[strings.TrimPrefix(h.Name, "./")] = b
		}
	}
}

func TestBuildOutputs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := outputContext(t)
	out := t.TempDir()
	oci, fstar, local := filepath.Join(out, "image.tar"), filepath.Join(out, "fs.tar"), filepath.Join(out, "local")
	e.kiln("build", "--platform", "linux/amd64,linux/arm64", "-t", "outputs",
		"-o", "type=oci,dest="+oci, "-o", "type=tar,dest="+fstar, "-o", "type=local,dest="+local, dir).ok(t)

	// An OCI layout whose index points at one image index with two manifests.
	files := readTar(t, oci)
	var top, idx ocispecs.Index
	mustJSON(t, string(files["index.json"]), &top)
	if len(top.Manifests) != 1 || top.Manifests[0].Annotations[ocispecs.AnnotationRefName] == "" {
		t.Fatalf("index.json: %+v, want one named image index", top)
	}
	mustJSON(t, string(files["blobs/sha256/"+top.Manifests[0].Digest.Encoded()]), &idx)
	if got := indexPlatforms(idx); len(got) != 2 || !contains(got, "linux/amd64") || !contains(got, "linux/arm64") {
		t.Errorf("OCI archive platforms %v, want linux/amd64 and linux/arm64", got)
	}
	if _, ok := files["oci-layout"]; !ok {
		t.Error("OCI archive has no oci-layout file")
	}

	// tar and local: one directory per platform with that platform's files.
	fs := readTar(t, fstar)
	for _, arch := range []string{"amd64", "arm64"} {
		if got := string(fs["linux_"+arch+"/arch.txt"]); got != arch+"\n" {
			t.Errorf("tar output linux_%s/arch.txt = %q", arch, got)
		}
		b, err := os.ReadFile(filepath.Join(local, "linux_"+arch, "arch.txt"))
		if err != nil || string(b) != arch+"\n" {
			t.Errorf("local output linux_%s/arch.txt = %q, %v", arch, b, err)
		}
	}
	// -o without type=image stores nothing in containerd, as in buildx.
	if strings.Contains(e.ctr("images", "ls", "-q").ok(t).Stdout, "outputs") {
		t.Error("an -o oci/tar/local build also stored the image in containerd")
	}
}

func TestBuildOutputDockerAndShorthands(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := outputContext(t)
	out := t.TempDir()
	docker := filepath.Join(out, "docker.tar")
	e.kiln("build", "--platform", "linux/arm64", "-t", "single", "-o", "type=docker,dest="+docker, dir).ok(t)
	files := readTar(t, docker)
	var manifest []struct{ RepoTags []string }
	mustJSON(t, string(files["manifest.json"]), &manifest)
	if len(manifest) != 1 || !contains(manifest[0].RepoTags, "single:latest") {
		t.Errorf("docker archive manifest.json: %+v", manifest)
	}
	// "-o DIR" is type=local; "-o -" is a tar on standard output.
	short := filepath.Join(out, "short")
	e.kiln("build", "-o", short, dir).ok(t)
	if b, err := os.ReadFile(filepath.Join(short, "hello.txt")); err != nil || string(b) != "hello\n" {
		t.Errorf("-o DIR wrote %q, %v", b, err)
	}
	r := e.kiln("build", "--progress", "quiet", "-o", "-", dir).ok(t)
	if !strings.Contains(r.Stdout, "hello.txt") {
		t.Errorf("-o - did not write a tar to standard output (%d bytes)", len(r.Stdout))
	}

	e.kiln("build", "--platform", "linux/amd64,linux/arm64", "-o", "type=docker,dest="+docker, dir).
		fails(t, 2, "type=docker holds one platform, and 2 were requested: use type=oci")
	e.kiln("build", "-o", "type=oci", dir).fails(t, 2, "needs dest=PATH")
	e.kiln("build", "-o", "type=floppy,dest=x", dir).fails(t, 2, `unknown --output type "floppy"`)
	e.kiln("build", "--push", dir).fails(t, 2, "pushing needs a name")
}

func TestBuildPush(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reg := startRegistry(t)
	dir := outputContext(t)
	// --push keeps the image in containerd and pushes it; type=registry only pushes.
	e.kiln("build", "--platform", "linux/amd64,linux/arm64", "--push", "-t", reg+"/kiln/push:1", dir).ok(t)
	e.image(t, reg+"/kiln/push:1")
	e.kiln("build", "--platform", "linux/amd64,linux/arm64", "-o", "type=registry", "-t", reg+"/kiln/push:2", dir).ok(t)
	if strings.Contains(e.ctr("images", "ls", "-q").ok(t).Stdout, "push:2") {
		t.Error("type=registry also stored the image in containerd")
	}
	for _, tag := range []string{"1", "2"} {
		req, _ := http.NewRequest("GET", "http://"+reg+"/v2/kiln/push/manifests/"+tag, nil)
		req.Header.Set("Accept", ocispecs.MediaTypeImageIndex)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var idx ocispecs.Index
		err = json.NewDecoder(resp.Body).Decode(&idx)
		resp.Body.Close()
		if err != nil || len(indexPlatforms(idx)) != 2 {
			t.Errorf("registry has tag %s as %+v (%v), want a two-platform index", tag, idx, err)
		}
	}
	e.kiln("build", "--push", "-t", "127.0.0.1:1/kiln/nowhere", dir).
		fails(t, 1, "cannot push 127.0.0.1:1/kiln/nowhere:latest: registry 127.0.0.1:1 is not reachable")
}
