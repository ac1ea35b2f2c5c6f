package layers

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/labels"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/klauspost/pgzip"
	"github.com/moby/buildkit/util/compression"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// GzipAttr is the image, oci and docker exporters' attribute that says how
// new gzip layers are compressed: GzipParallel (the default) or
// GzipBuildkitd. kiln's exporters take it out before BuildKit's see the
// attributes.
const GzipAttr = "kiln.gzip"

// GzipMode is how kiln compresses the gzip layers it creates.
type GzipMode string

const (
	// GzipParallel compresses with klauspost/pgzip in blocks of a fixed
	// size on every core: the same bytes for the same input whatever the
	// number of cores, but not buildkitd's bytes.
	GzipParallel GzipMode = "parallel"
	// GzipBuildkitd compresses with BuildKit's own gzip compressor (Go's
	// compress/gzip, one core): byte for byte what buildkitd writes when it
	// is built with the same Go.
	GzipBuildkitd GzipMode = "buildkitd"
)

// ParseGzipMode reads GzipAttr's value; empty is GzipParallel.
func ParseGzipMode(s string) (GzipMode, error) {
	switch GzipMode(s) {
	case "", GzipParallel:
		return GzipParallel, nil
	case GzipBuildkitd:
		return GzipBuildkitd, nil
	}
	return "", fmt.Errorf("invalid %s %q: use %s or %s", GzipAttr, s, GzipParallel, GzipBuildkitd)
}

// compressorLabel is the content store label kiln sets on every gzip blob
// it compressed, naming the compressor (parallelCompressor or
// buildkitdCompressor). A layer compressed one way is not reused by an
// export that asks for the other (NeedsConversion); a blob without the
// label, such as a base image's, is kept by both.
const compressorLabel = "kiln.io/gzip"

// blockSize is the parallel compressor's block: each block is compressed
// on its own, with the 32 KiB before it as dictionary, so block boundaries
// (and the bytes written) depend only on the input. Changing it changes
// every digest: parallelCompressor names it. 256 KiB rather than pgzip's
// 1 MiB: as fast on two cores, and each block in flight holds a quarter of
// the memory (BENCHMARKS.md).
const blockSize = 256 << 10

const (
	parallelCompressor  = "pgzip/256KiB"
	buildkitdCompressor = "compress/gzip"
)

// gzipType is BuildKit's gzip compression type with kiln's compressor. It
// writes the same media type and reads gzip layers the same way; what
// differs is the compressor, the label it leaves, and which existing blobs
// it accepts.
type gzipType struct {
	mode GzipMode
	// force is the export's force-compression: every layer, the base
	// image's too, must then be gzip as BuildKit defines it as well.
	force bool
	// base holds the diff IDs of the base image's layers, which are kept
	// as they are whoever compressed them, as buildkitd keeps them (see
	// ref); nil without a base image.
	base *baseLayers
}

// baseLayers are the diff IDs of the layers an image was built on.
type baseLayers struct{ diffIDs map[digest.Digest]bool }

// isBase reports whether desc is a layer of the base image.
func (t gzipType) isBase(desc ocispecs.Descriptor) bool {
	return t.base != nil && t.base.diffIDs[digest.Digest(desc.Annotations[labels.LabelUncompressed])]
}

// withMode returns comp with kiln's gzip type in mode when comp asks for
// gzip; other compressions are BuildKit's own in either mode.
func withMode(comp compression.Config, mode GzipMode) compression.Config {
	switch t := comp.Type.(type) {
	case gzipType:
		t.mode = mode
		comp.Type = t
	default:
		if comp.Type == compression.Gzip {
			comp.Type = gzipType{mode: mode, force: comp.Force}
		}
	}
	return comp
}

// compressor is what compressorLabel says of the blobs t writes.
func (t gzipType) compressor() string {
	if t.mode == GzipBuildkitd {
		return buildkitdCompressor
	}
	return parallelCompressor
}

// Compress returns a compressor that also digests what it writes, and a
// finalizer that labels the blobs it wrote whole with compressorLabel.
// When BuildKit hands the work to containerd's differ instead (which
// compresses with its own gzip), nothing is written through the compressor
// and nothing is labelled.
func (t gzipType) Compress(ctx context.Context, comp compression.Config) (compression.Compressor, compression.Finalizer) {
	var mu sync.Mutex
	var written []digest.Digest
	compress := func(dest io.Writer, mediaType string) (io.WriteCloser, error) {
		d := digest.Canonical.Digester()
		w, err := t.writer(ctx, io.MultiWriter(dest, d.Hash()), mediaType, comp)
		if err != nil {
			return nil, err
		}
		return &digestingWriter{WriteCloser: w, closed: func() {
			mu.Lock()
			written = append(written, d.Digest())
			mu.Unlock()
		}}, nil
	}
	finalize := func(ctx context.Context, cs content.Store) (map[string]string, error) {
		mu.Lock()
		ds := written
		mu.Unlock()
		for _, d := range ds {
			info := content.Info{Digest: d, Labels: map[string]string{compressorLabel: t.compressor()}}
			// A stream of a failed attempt may never have been committed.
			if _, err := cs.Update(ctx, info, "labels."+compressorLabel); err != nil && !cerrdefs.IsNotFound(err) {
				return nil, fmt.Errorf("labelling layer %s as written by %s: %w", d, t.compressor(), err)
			}
		}
		return nil, nil
	}
	return compress, finalize
}

// writer is the compressing writer of mode t.mode.
func (t gzipType) writer(ctx context.Context, dest io.Writer, mediaType string, comp compression.Config) (io.WriteCloser, error) {
	if t.mode == GzipBuildkitd {
		fn, _ := compression.Gzip.Compress(ctx, comp)
		return fn(dest, mediaType)
	}
	level := pgzip.DefaultCompression
	if comp.Level != nil {
		level = *comp.Level
	}
	z, err := pgzip.NewWriterLevel(dest, level)
	if err != nil {
		return nil, err
	}
	// Blocks in flight: one per core keeps every core busy while the
	// writer drains the finished ones in order; more would only hold
	// memory. The count does not change the output, the block size would.
	if err := z.SetConcurrency(blockSize, max(runtime.GOMAXPROCS(0), 1)); err != nil {
		return nil, err
	}
	// As compress/gzip writes a zero time: pgzip would write the low bits
	// of year 1's Unix time.
	z.ModTime = time.Unix(0, 0)
	return z, nil
}

// digestingWriter calls closed once, when the stream was closed without
// error, so that only whole streams are labelled.
type digestingWriter struct {
	io.WriteCloser
	once   sync.Once
	closed func()
}

func (w *digestingWriter) Close() error {
	err := w.WriteCloser.Close()
	if err == nil {
		w.once.Do(w.closed)
	}
	return err
}

// Decompress reads a gzip layer as BuildKit does.
func (gzipType) Decompress(ctx context.Context, cs content.Store, desc ocispecs.Descriptor) (io.ReadCloser, error) {
	return compression.Gzip.Decompress(ctx, cs, desc)
}

// NeedsConversion reports whether desc must be compressed again for an
// export in t's mode: when kiln compressed it the other way, unless it is a
// layer of the base image. BuildKit asks
// only for exports with force-compression (and when rewriting layers for an
// epoch, which compresses anyway); with t.force, BuildKit's own rules for
// gzip apply as well (a zstd or eStargz layer is converted).
func (t gzipType) NeedsConversion(ctx context.Context, cs content.Store, desc ocispecs.Descriptor) (bool, error) {
	if t.force {
		if needs, err := compression.Gzip.NeedsConversion(ctx, cs, desc); err != nil || needs {
			return needs, err
		}
	}
	if !images.IsLayerType(desc.MediaType) || !compression.IsMediaType(compression.Gzip, desc.MediaType) {
		return false, nil
	}
	if t.isBase(desc) {
		return false, nil
	}
	return otherCompressor(ctx, cs, desc.Digest, t.compressor())
}

// otherCompressor reports whether the blob dgst carries a compressorLabel
// other than want. A blob that is not in the store (a lazy base layer) is
// nobody's.
func otherCompressor(ctx context.Context, cs content.Store, dgst digest.Digest, want string) (bool, error) {
	info, err := cs.Info(ctx, dgst)
	if cerrdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	by, ok := info.Labels[compressorLabel]
	return ok && by != want, nil
}

// NeedsComputeDiffBySelf: when BuildKit cannot diff an overlay snapshot
// itself (other snapshotters, diffs of merged references), containerd's
// differ would compress with its own gzip; in parallel mode kiln diffs in
// its process instead, with its compressor. In buildkitd mode this is
// BuildKit's rule: only a compression level needs it.
func (t gzipType) NeedsComputeDiffBySelf(comp compression.Config) bool {
	return t.mode != GzipBuildkitd || comp.Level != nil
}

// OnlySupportOCITypes is false: gzip layers have Docker media types too.
func (gzipType) OnlySupportOCITypes() bool { return false }

// MediaType is the OCI gzip layer type, as BuildKit's.
func (gzipType) MediaType() string { return ocispecs.MediaTypeImageLayerGzip }

// String is "gzip", as BuildKit's: it names the compression in BuildKit's
// messages and in the content references of conversions.
func (gzipType) String() string { return "gzip" }
