package layers

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/metadata"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/moby/buildkit/util/compression"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"

	"github.com/kiln-build/kiln/request"
)

// layerData is a few MB like a layer: incompressible bytes, then text, so
// that blocks compress differently and several blocks are in flight.
func layerData() []byte {
	rng := rand.New(rand.NewChaCha8([32]byte{'k', 'i', 'l', 'n'}))
	b := make([]byte, 0, 5<<20)
	for len(b) < 2<<20 {
		b = append(b, byte(rng.Uint32()))
	}
	for i := 0; len(b) < 5<<20+12345; i++ {
		b = fmt.Appendf(b, "%08d %d\n", i, rng.IntN(1000))
	}
	return b
}

// compress writes data through a compressor of t in writes of chunk bytes
// (as a tar writer would, in pieces of any size).
func compress(t *testing.T, typ compression.Type, comp compression.Config, data []byte, chunk int) []byte {
	t.Helper()
	fn, _ := typ.Compress(context.Background(), comp)
	var out bytes.Buffer
	w, err := fn(&out, typ.MediaType())
	if err != nil {
		t.Fatal(err)
	}
	for len(data) > 0 {
		n := min(chunk, len(data))
		if _, err := w.Write(data[:n]); err != nil {
			t.Fatal(err)
		}
		data = data[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// The parallel compressor writes the same bytes whatever the number of
// cores and however the input is cut into writes, and they are gzip that
// Go's own reader reads back.
func TestParallelGzipIsReproducible(t *testing.T) {
	data := layerData()
	typ := gzipType{mode: GzipParallel}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	var first []byte
	for _, procs := range []int{1, 2, 4} {
		runtime.GOMAXPROCS(procs)
		for _, chunk := range []int{512, 32 << 10, 3 << 20} {
			got := compress(t, typ, compression.New(typ), data, chunk)
			if first == nil {
				first = got
				continue
			}
			if !bytes.Equal(got, first) {
				t.Fatalf("GOMAXPROCS=%d, writes of %d bytes: %s, want %s as with GOMAXPROCS=1", procs, chunk, digest.FromBytes(got), digest.FromBytes(first))
			}
		}
	}
	zr, err := gzip.NewReader(bytes.NewReader(first))
	if err != nil {
		t.Fatal(err)
	}
	if !zr.ModTime.IsZero() || zr.OS != 255 {
		t.Errorf("gzip header: time %v, OS %d; want none and unknown, as compress/gzip writes", zr.ModTime, zr.OS)
	}
	back, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, data) {
		t.Fatal("the parallel compressor's output does not decompress to its input")
	}
	// A level is honoured (and still valid gzip).
	lvl := compress(t, typ, compression.New(typ).SetLevel(1), data, 32<<10)
	if bytes.Equal(lvl, first) {
		t.Error("compression-level=1 wrote the same bytes as the default level")
	}
}

// In buildkitd mode the bytes are BuildKit's own compressor's.
func TestBuildkitdGzipIsBuildKits(t *testing.T) {
	data := layerData()
	for _, comp := range []compression.Config{compression.New(compression.Gzip), compression.New(compression.Gzip).SetLevel(9)} {
		got := compress(t, gzipType{mode: GzipBuildkitd}, comp, data, 32<<10)
		want := compress(t, compression.Gzip, comp, data, 32<<10)
		if !bytes.Equal(got, want) {
			t.Errorf("level %v: buildkitd mode wrote %s, BuildKit's gzip %s", comp.Level, digest.FromBytes(got), digest.FromBytes(want))
		}
		if par := compress(t, gzipType{mode: GzipParallel}, comp, data, 32<<10); bytes.Equal(par, want) {
			t.Errorf("level %v: the parallel compressor wrote compress/gzip's bytes", comp.Level)
		}
	}
}

// testStore is containerd's content store with its metadata (labels,
// namespaces, leases), as kiln's worker sees containerd's.
func testStore(t *testing.T) (context.Context, content.Store, leases.Manager) {
	t.Helper()
	dir := t.TempDir()
	cs, err := local.NewStore(filepath.Join(dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	bdb, err := bolt.Open(filepath.Join(dir, "meta.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bdb.Close() })
	db := metadata.NewDB(bdb, cs, nil)
	ctx := namespaces.WithNamespace(context.Background(), "test")
	if err := db.Init(ctx); err != nil {
		t.Fatal(err)
	}
	return ctx, db.ContentStore(), metadata.NewLeaseManager(db)
}

// writeLayer compresses data as t and commits it as BuildKit does (the
// compressor writing into a content writer, then the finalizer).
func writeLayer(t *testing.T, ctx context.Context, cs content.Store, typ compression.Type, data []byte) ocispecs.Descriptor {
	t.Helper()
	fn, finalize := typ.Compress(ctx, compression.New(typ))
	w, err := content.OpenWriter(ctx, cs, content.WithRef(fmt.Sprintf("layer-%p", &data)))
	if err != nil {
		t.Fatal(err)
	}
	zw, err := fn(w, typ.MediaType())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	dgst := w.Digest()
	if err := w.Commit(ctx, 0, dgst, content.WithLabels(map[string]string{"containerd.io/uncompressed": digest.FromBytes(data).String()})); err != nil {
		t.Fatal(err)
	}
	if finalize != nil {
		if _, err := finalize(ctx, cs); err != nil {
			t.Fatal(err)
		}
	}
	info, err := cs.Info(ctx, dgst)
	if err != nil {
		t.Fatal(err)
	}
	return ocispecs.Descriptor{MediaType: ocispecs.MediaTypeImageLayerGzip, Digest: dgst, Size: info.Size,
		Annotations: map[string]string{"containerd.io/uncompressed": digest.FromBytes(data).String()}}
}

// A layer kiln compressed one way is converted for an export that asks for
// the other; a gzip layer kiln did not write (a base image's) is kept in
// both modes, unless the export forces compression, when BuildKit's rules
// for gzip apply as well.
func TestNeedsConversionByCompressor(t *testing.T) {
	ctx, cs, _ := testStore(t)
	data := []byte(strings.Repeat("kiln layer\n", 5000))
	par := writeLayer(t, ctx, cs, gzipType{mode: GzipParallel}, data)
	bkd := writeLayer(t, ctx, cs, gzipType{mode: GzipBuildkitd}, append(data, 'x'))
	base := writeLayer(t, ctx, cs, compression.Gzip, append(data, 'y'))
	zst := writeLayer(t, ctx, cs, compression.Zstd, append(data, 'z'))
	zst.MediaType = ocispecs.MediaTypeImageLayerZstd

	for _, c := range []struct {
		typ  gzipType
		desc ocispecs.Descriptor
		want bool
	}{
		{gzipType{mode: GzipParallel}, par, false},
		{gzipType{mode: GzipParallel}, bkd, true},
		{gzipType{mode: GzipParallel}, base, false},
		{gzipType{mode: GzipParallel}, zst, false},
		{gzipType{mode: GzipBuildkitd}, par, true},
		{gzipType{mode: GzipBuildkitd}, bkd, false},
		{gzipType{mode: GzipBuildkitd}, base, false},
		{gzipType{mode: GzipParallel, force: true}, zst, true},
		{gzipType{mode: GzipParallel, force: true}, base, false},
		{gzipType{mode: GzipBuildkitd, force: true}, par, true},
		// A layer of the base image is kept, whoever compressed it.
		{gzipType{mode: GzipBuildkitd, base: &baseLayers{diffIDs: map[digest.Digest]bool{digest.FromBytes(data): true}}}, par, false},
		{gzipType{mode: GzipBuildkitd, base: &baseLayers{diffIDs: map[digest.Digest]bool{"sha256:other": true}}}, par, true},
	} {
		got, err := c.typ.NeedsConversion(ctx, cs, c.desc)
		if err != nil {
			t.Fatal(err)
		}
		info, _ := cs.Info(ctx, c.desc.Digest)
		if got != c.want {
			t.Errorf("%s mode (force %v), layer labelled %q: needs conversion %v, want %v", c.typ.mode, c.typ.force, info.Labels[compressorLabel], got, c.want)
		}
	}
	// The labels say who wrote what.
	for dgst, want := range map[digest.Digest]string{par.Digest: parallelCompressor, bkd.Digest: buildkitdCompressor, base.Digest: ""} {
		info, err := cs.Info(ctx, dgst)
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Labels[compressorLabel]; got != want {
			t.Errorf("layer %s: %s = %q, want %q", dgst, compressorLabel, got, want)
		}
	}
}

// The exporters' attribute: parallel unless buildkitd is asked for.
func TestParseGzipMode(t *testing.T) {
	for in, want := range map[string]GzipMode{"": GzipParallel, "parallel": GzipParallel, "buildkitd": GzipBuildkitd} {
		if got, err := ParseGzipMode(in); err != nil || got != want {
			t.Errorf("ParseGzipMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	// The build option's attribute is the one the exporters read.
	if request.GzipAttr != GzipAttr || request.GzipBuildkitd != string(GzipBuildkitd) {
		t.Errorf("request sets %s=%s, the exporters read %s=%s", request.GzipAttr, request.GzipBuildkitd, GzipAttr, GzipBuildkitd)
	}
	if _, err := ParseGzipMode("pigz"); err == nil {
		t.Error("ParseGzipMode(pigz) accepted")
	}
	// BuildKit's gzip becomes kiln's; other compressions stay BuildKit's.
	if got := withMode(compression.New(compression.Gzip).SetForce(true), GzipBuildkitd); got.Type != (gzipType{mode: GzipBuildkitd, force: true}) || !got.Force {
		t.Errorf("withMode(gzip, force) = %#v", got)
	}
	if got := withMode(compression.New(compression.Zstd), GzipParallel); got.Type != compression.Zstd {
		t.Errorf("withMode(zstd) = %#v", got)
	}
}
