//go:build linux

package integration

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Layer compression and the reuse of epoch rewrites (package layers): kiln compresses new
// gzip layers on every core by default, the same bytes on any number of cores; with
// --buildkitd-gzip as buildkitd does (TestRealWorld compares those digests with buildkitd's);
// a layer compressed one way is not reused by a build that asks for the other; and a rebuild
// with --source-date-epoch reuses the layers it rewrote before.

// gzipDockerfile adds two layers to the busybox base: a file of the context (incompressible
// bytes, then text: several of the parallel compressor's 256 KiB blocks) and one a step writes.
const gzipDockerfile = `FROM gzbase
COPY data.bin /data/data.bin
RUN seq 1 200000 > /data/seq.txt && chmod 600 /data/seq.txt
`

// gzipContext writes the context and returns it with data.bin's SHA-256.
func gzipContext(t *testing.T) (string, string) {
	t.Helper()
	dir := contextDir(t, map[string]string{"Dockerfile": gzipDockerfile})
	rng := rand.New(rand.NewChaCha8([32]byte{'g', 'z'}))
	var b bytes.Buffer
	for b.Len() < 1500000 {
		b.WriteByte(byte(rng.Uint32()))
	}
	for i := 0; b.Len() < 3500000; i++ {
		fmt.Fprintf(&b, "%07d %d\n", i, rng.IntN(100000))
	}
	if err := os.WriteFile(filepath.Join(dir, "data.bin"), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b.Bytes())
	return dir, hex.EncodeToString(sum[:])
}

// contentLabels reads the labels of every blob in e's namespace (ctr content ls).
func (e *env) contentLabels(t *testing.T) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, line := range strings.Split(e.ctr("content", "ls").ok(t).Stdout, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(f[0], "sha256:") {
			continue
		}
		labels := map[string]string{}
		if last := f[len(f)-1]; strings.Contains(last, "=") {
			for _, kv := range strings.Split(last, ",") {
				k, v, _ := strings.Cut(kv, "=")
				labels[k] = v
			}
		}
		out[f[0]] = labels
	}
	return out
}

// readBlob reads a blob of the package's containerd.
func readBlob(t *testing.T, dgst string) []byte {
	t.Helper()
	b, err := readBlobBytes(dgst)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// gunzip decompresses a gzip layer, failing the test if it is not valid gzip.
func gunzip(t *testing.T, blob []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	tar, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("invalid gzip stream: %v", err)
	}
	return tar
}

// stdGzip is what Go's compress/gzip at its default level, BuildKit's compressor, writes.
func stdGzip(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.DefaultCompression)
	zw.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// layerDigests are the layers of a single-platform image.
func (e *env) layerDigests(t *testing.T, name string) []string {
	t.Helper()
	img := e.image(t, "docker.io/library/"+name)
	var out []string
	for _, l := range img.Manifest.Layers {
		if !strings.Contains(l.MediaType, "gzip") {
			t.Errorf("%s: layer %s is %s, want gzip", name, l.Digest, l.MediaType)
		}
		out = append(out, l.Digest.String())
	}
	if len(out) != 3 {
		t.Fatalf("%s has %d layers, want 3 (the base, COPY, RUN)", name, len(out))
	}
	return out
}

func TestGzipLayers(t *testing.T) {
	e := newEnv(t)
	e.busyboxBase(t, "gzbase", "linux/amd64")
	ctx, dataSum := gzipContext(t)

	// kiln's default: new layers compressed in parallel, labelled so, valid gzip.
	e.kiln("build", "--progress", "plain", "-t", "gz:parallel", ctx).ok(t)
	par := e.layerDigests(t, "gz:parallel")
	labels := e.contentLabels(t)
	for _, l := range par[1:] {
		if got := labels[l]["kiln.io/gzip"]; got != "pgzip/256KiB" {
			t.Errorf("new layer %s: kiln.io/gzip=%q, want pgzip/256KiB", l, got)
		}
		gunzip(t, readBlob(t, l))
	}
	// --buildkitd-gzip on the cached build: the same layers (same tars), compressed
	// again exactly as Go's compress/gzip does, not the cached parallel blobs.
	e.kiln("build", "--progress", "plain", "--buildkitd-gzip", "-t", "gz:buildkitd", ctx).ok(t)
	bkd := e.layerDigests(t, "gz:buildkitd")
	labels = e.contentLabels(t)
	if bkd[0] != par[0] {
		t.Errorf("the base layer changed with --buildkitd-gzip: %s, was %s", bkd[0], par[0])
	}
	for i := 1; i < 3; i++ {
		if bkd[i] == par[i] {
			t.Errorf("layer %d: --buildkitd-gzip reused the parallel blob %s", i, par[i])
			continue
		}
		tar := gunzip(t, readBlob(t, bkd[i]))
		if !bytes.Equal(tar, gunzip(t, readBlob(t, par[i]))) {
			t.Errorf("layer %d: the two compressions hold different tars", i)
		}
		if !bytes.Equal(readBlob(t, bkd[i]), stdGzip(t, tar)) {
			t.Errorf("layer %d: %s is not what compress/gzip writes for its tar", i, bkd[i])
		}
		if got := labels[bkd[i]]["kiln.io/gzip"]; got != "compress/gzip" {
			t.Errorf("layer %d: kiln.io/gzip=%q, want compress/gzip", i, got)
		}
	}

	// Back to the default, cached: the parallel blobs again.
	e.kiln("build", "--progress", "plain", "-t", "gz:parallel-again", ctx).ok(t)
	if again := e.image(t, "docker.io/library/gz:parallel-again").Digest; again != e.image(t, "docker.io/library/gz:parallel").Digest {
		t.Errorf("the default build after --buildkitd-gzip gave %s, before it %s", again, e.image(t, "docker.io/library/gz:parallel").Digest)
	}

	// Reproducible: --no-cache with an epoch, on one core and on two, the same digest.
	var digests []string
	for _, procs := range []string{"1", "2"} {
		name := "gz:procs" + procs
		e.kilnEnv([]string{"GOMAXPROCS=" + procs}, "build", "--progress", "plain", "--no-cache", "--source-date-epoch", "0", "-t", name, ctx).ok(t)
		digests = append(digests, e.image(t, "docker.io/library/"+name).Digest)
	}
	if digests[0] != digests[1] {
		t.Errorf("--no-cache --source-date-epoch 0: GOMAXPROCS=1 gave %s, GOMAXPROCS=2 %s", digests[0], digests[1])
	}
	e.kiln("build", "--progress", "plain", "--no-cache", "--buildkitd-gzip", "--source-date-epoch", "0", "-t", "gz:bkd0", ctx).ok(t)
	if d := e.image(t, "docker.io/library/gz:bkd0").Digest; d == digests[0] {
		t.Errorf("--buildkitd-gzip gave the parallel compressor's digest %s", d)
	}

	// The image runs.
	out := e.ctr("run", "--rm", "docker.io/library/gz:procs1", "gz-run", "sh", "-c", "sha256sum /data/data.bin; wc -l < /data/seq.txt").ok(t).Stdout
	wantLines(t, "ctr run", out, dataSum+"  /data/data.bin", "200000")
}

// reuseLine matches the progress line of an export whose rewritten layers all came from the
// memo, rewriteLine one that rewrote some.
var (
	reuseLine   = regexp.MustCompile(`reusing (\d+) layers rewritten for source-date-epoch (\d+)`)
	rewriteLine = regexp.MustCompile(`rewriting (\d+) layers for source-date-epoch (\d+) \((\d+) reused\)`)
)

// epochProgress returns what kiln's progress says about the layers rewritten for the epoch:
// how many were rewritten and how many reused.
func epochProgress(t *testing.T, out string) (rewritten, reused string) {
	t.Helper()
	if m := rewriteLine.FindStringSubmatch(out); m != nil {
		return m[1], m[3]
	}
	if m := reuseLine.FindStringSubmatch(out); m != nil {
		return "0", m[1]
	}
	t.Fatalf("no line about rewriting layers for the epoch in the progress:\n%s", out)
	return "", ""
}

func TestEpochRewriteReuse(t *testing.T) {
	e := newEnv(t)
	e.busyboxBase(t, "gzbase", "linux/amd64")
	ctx, _ := gzipContext(t)
	build := func(name string, args ...string) (digest, rewritten, reused string) {
		t.Helper()
		r := e.kiln(append(append([]string{"build", "--progress", "plain", "-t", name}, args...), ctx)...).ok(t)
		rewritten, reused = epochProgress(t, r.Stderr)
		return e.image(t, "docker.io/library/"+name).Digest, rewritten, reused
	}
	want := func(what, gotRewritten, gotReused, rewritten, reused string) {
		t.Helper()
		if gotRewritten != rewritten || gotReused != reused {
			t.Errorf("%s: %s layers rewritten and %s reused, want %s and %s", what, gotRewritten, gotReused, rewritten, reused)
		}
	}

	first, rw, ru := build("ep:1", "--source-date-epoch", "100")
	want("the first build with epoch 100", rw, ru, "2", "0")
	again, rw, ru := build("ep:2", "--source-date-epoch", "100")
	want("the cached rebuild with epoch 100", rw, ru, "0", "2")
	if again != first {
		t.Errorf("the rebuild gave %s, the first build %s", again, first)
	}
	// The memo: labels on the source blobs naming the rewritten layers of the image.
	layers := e.layerDigests(t, "ep:2")
	targets := map[string]bool{}
	for blob, l := range e.contentLabels(t) {
		if v, ok := l["kiln.io/rewritten.gzip.pgzip-256KiB"]; ok {
			at, target, _ := strings.Cut(v, "=")
			if at == "100" {
				targets[target] = true
			}
			// The source layer keeps its last rewrite alive, as a compression variant.
			if ref := l["containerd.io/gc.ref.content.kiln.rewritten.gzip.pgzip-256KiB"]; ref != target {
				t.Errorf("source blob %s: garbage collection reference %q, want %s", blob, ref, target)
			}
			if l["kiln.io/gzip"] != "pgzip/256KiB" {
				t.Errorf("source blob %s of a rewrite is not labelled as kiln's parallel gzip: %v", blob, l)
			}
		}
	}
	for _, l := range layers[1:] {
		if !targets[l] {
			t.Errorf("layer %s is no remembered rewrite (remembered: %v)", l, keys(targets))
		}
	}

	// Another epoch, another compression, the other gzip: rewritten, not reused.
	other, rw, ru := build("ep:200", "--source-date-epoch", "200")
	want("epoch 200", rw, ru, "2", "0")
	if other == first {
		t.Errorf("epoch 200 gave epoch 100's digest %s", other)
	}
	_, rw, ru = build("ep:zstd", "--source-date-epoch", "200", "--compression", "zstd")
	want("epoch 200 with zstd", rw, ru, "2", "0")
	bkd, rw, ru := build("ep:bkd", "--source-date-epoch", "200", "--buildkitd-gzip")
	want("epoch 200 with --buildkitd-gzip", rw, ru, "2", "0")
	if bkd == other {
		t.Errorf("--buildkitd-gzip reused the parallel rewrite %s", other)
	}
	back, rw, ru := build("ep:200-again", "--source-date-epoch", "200")
	want("epoch 200 again", rw, ru, "0", "2")
	if back != other {
		t.Errorf("epoch 200 again gave %s, before %s", back, other)
	}

	// A remembered blob that does not say it is that rewrite is not used.
	layers = e.layerDigests(t, "ep:200-again")
	for blob, l := range e.contentLabels(t) {
		if v := l["kiln.io/rewritten.gzip.pgzip-256KiB"]; strings.HasSuffix(v, "="+layers[2]) {
			e.ctr("content", "label", layers[2], "kiln.io/rewrite-of."+blob+"=something-else").ok(t)
		}
	}
	checked, rw, ru := build("ep:checked", "--source-date-epoch", "200")
	want("epoch 200 with one remembered blob relabelled", rw, ru, "1", "1")
	if checked != other {
		t.Errorf("the rewrite after relabelling gave %s, before %s", checked, other)
	}
}
