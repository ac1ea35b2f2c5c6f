package layers

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/pkg/labels"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/buildkit/cache"
	"github.com/moby/buildkit/solver"
	"github.com/moby/buildkit/util/bklog"
	"github.com/moby/buildkit/util/compression"
	"github.com/moby/buildkit/util/contentutil"
	"github.com/moby/buildkit/util/converter"
	"github.com/moby/buildkit/util/progress"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// rewrittenTimestampLabel is BuildKit's label (and layer annotation) on a
// blob its converter rewrote for an epoch: the epoch's seconds. BuildKit's
// image writer does not rewrite a layer whose descriptor carries it.
const rewrittenTimestampLabel = "buildkit/rewritten-timestamp"

// The memo of rewrites, in content store labels:
//
//   - memoLabel+KEY on the source blob, one per compression KEY (see
//     memoKey), says "EPOCH=DIGEST": the last rewrite of this blob for that
//     compression; memoRefLabel+KEY beside it names DIGEST for containerd's
//     garbage collector, so that the last rewrite lives as long as the
//     source layer (as BuildKit keeps a layer's compression variants), and
//     no export has to lease it again before using it;
//   - rewriteOfLabel+SOURCE on the rewritten blob says "KEY@EPOCH": what it
//     was made from, checked before the memo is used.
const (
	memoLabel      = "kiln.io/rewritten."
	memoRefLabel   = "containerd.io/gc.ref.content.kiln.rewritten."
	rewriteOfLabel = "kiln.io/rewrite-of."
)

// memoKey names comp in the memo; empty when its layers are not remembered
// (eStargz: BuildKit keeps what its finalizer says about a layer in the
// layer's descriptor, which a remembered blob would lack).
func memoKey(comp compression.Config) string {
	var key string
	switch t := comp.Type.(type) {
	case gzipType:
		key = "gzip." + t.compressor()
	default:
		switch comp.Type {
		case compression.Zstd:
			key = "zstd"
		case compression.Uncompressed:
			return "uncompressed"
		default:
			return ""
		}
	}
	if comp.Level != nil {
		key += ".level" + strconv.Itoa(*comp.Level)
	}
	return strings.ReplaceAll(key, "/", "-")
}

// rewriter rewrites the layers of one reference for an epoch as BuildKit's
// image writer does (exporter/containerimage/writer.go,
// rewriteRemoteWithEpoch, v0.34.2: TestRewriteMatchesBuildKit pins it), with
// the memo.
type rewriter struct {
	cs          content.Store
	comp        compression.Config
	epoch       time.Time
	baseDiffIDs []digest.Digest
}

// rewrite returns remote with its layers rewritten for the epoch: the
// layers of the base image (the leading layers with the base config's
// diff IDs) as they are, the others from the memo or converted. A layer
// that fails to convert is left for BuildKit's writer, which tries again
// and warns, as it would have.
func (rw rewriter) rewrite(ctx context.Context, remote *solver.Remote) (*solver.Remote, error) {
	descs := append([]ocispecs.Descriptor(nil), remote.Descriptors...)
	cs := contentutil.NewStoreWithProvider(rw.cs, remote.Provider)
	key := memoKey(rw.comp)
	sec := strconv.FormatInt(rw.epoch.UTC().Unix(), 10)

	type job struct {
		i      int
		immDif digest.Digest
	}
	var jobs []job
	diverged := false
	for i, desc := range descs {
		diffID := digest.Digest(desc.Annotations[labels.LabelUncompressed])
		if diffID == "" {
			info, err := cs.Info(ctx, desc.Digest)
			if err != nil {
				return nil, err
			}
			diffID = digest.Digest(info.Labels[labels.LabelUncompressed])
		}
		var imm digest.Digest
		if !diverged && i < len(rw.baseDiffIDs) {
			imm = rw.baseDiffIDs[i]
			if imm == diffID {
				continue
			}
			diverged = true
		}
		jobs = append(jobs, job{i, imm})
	}
	if len(jobs) == 0 {
		return remote, nil
	}

	// The memo first, so that the progress line can say what is left.
	var todo []job
	if key != "" {
		hit := make([]bool, len(jobs))
		var eg errgroup.Group
		for k, j := range jobs {
			eg.Go(func() error {
				if d, ok := rw.remembered(ctx, descs[j.i], key, sec); ok {
					descs[j.i], hit[k] = d, true
				}
				return nil
			})
		}
		eg.Wait() //nolint:errcheck // every lookup returns nil; a miss converts
		for k, j := range jobs {
			if !hit[k] {
				todo = append(todo, j)
			}
		}
	} else {
		todo = jobs
	}
	reused := len(jobs) - len(todo)
	if len(todo) == 0 {
		progress.OneOff(ctx, fmt.Sprintf("reusing %d layers rewritten for source-date-epoch %s", reused, sec))(nil)
	} else {
		done := progress.OneOff(ctx, fmt.Sprintf("rewriting %d layers for source-date-epoch %s (%d reused)", len(todo), sec, reused))
		eg, ctx := errgroup.WithContext(ctx)
		for _, j := range todo {
			eg.Go(func() error {
				desc := descs[j.i]
				var imm map[digest.Digest]struct{}
				if j.immDif != "" {
					imm = map[digest.Digest]struct{}{j.immDif: {}}
				}
				fn, err := converter.NewWithRewriteTimestamp(ctx, cs, desc, rw.comp, &rw.epoch, imm)
				if err != nil || fn == nil {
					return nil // BuildKit's writer decides again, and says why
				}
				d, err := fn(ctx, cs, desc)
				if err != nil {
					bklog.G(ctx).WithError(err).Warnf("rewriting layer %s for source-date-epoch %s", desc.Digest, sec)
					return nil
				}
				descs[j.i] = *d
				// A rewrite that left the blob as it was is not remembered: the
				// converter returns a layer it found to be the base image's
				// untouched, and its descriptor must stay as BuildKit leaves it.
				if key != "" && d.Digest != desc.Digest {
					rw.remember(ctx, desc.Digest, d.Digest, key, sec)
				}
				return nil
			})
		}
		if err := done(eg.Wait()); err != nil {
			return nil, err
		}
	}

	var provider content.InfoReaderProvider = cs
	if u, ok := remote.Provider.(cache.Unlazier); ok {
		// The layers not rewritten (the base image's) may still be lazy.
		provider = &unlazyStore{Store: cs, unlazier: u}
	}
	return &solver.Remote{Descriptors: descs, Provider: provider}, nil
}

// remembered returns the remembered rewrite of desc for the compression key
// and epoch sec, once it has checked that the blob is there and says it was
// made from desc that way. The source blob's garbage collection reference
// keeps it (the source is held by its cache record and the export).
func (rw rewriter) remembered(ctx context.Context, desc ocispecs.Descriptor, key, sec string) (ocispecs.Descriptor, bool) {
	src, err := rw.cs.Info(ctx, desc.Digest)
	if err != nil {
		return ocispecs.Descriptor{}, false
	}
	at, target, ok := strings.Cut(src.Labels[memoLabel+key], "=")
	dgst, err := digest.Parse(target)
	if !ok || at != sec || err != nil || src.Labels[memoRefLabel+key] != target {
		return ocispecs.Descriptor{}, false
	}
	info, err := rw.cs.Info(ctx, dgst)
	if err != nil {
		return ocispecs.Descriptor{}, false
	}
	diffID := info.Labels[labels.LabelUncompressed]
	if info.Labels[rewriteOfLabel+desc.Digest.String()] != key+"@"+sec || info.Labels[rewrittenTimestampLabel] != sec || diffID == "" {
		return ocispecs.Descriptor{}, false
	}
	// What BuildKit's converter returns for this rewrite.
	d := desc
	d.MediaType = rw.comp.Type.MediaType()
	d.Digest = info.Digest
	d.Size = info.Size
	d.Annotations = map[string]string{labels.LabelUncompressed: diffID, rewrittenTimestampLabel: sec}
	return d, true
}

// remember records that src rewritten for the compression key and epoch sec
// is dst, replacing what src remembered for key. A failure only means the
// next export rewrites again.
func (rw rewriter) remember(ctx context.Context, src, dst digest.Digest, key, sec string) {
	of := rewriteOfLabel + src.String()
	if _, err := rw.cs.Update(ctx, content.Info{Digest: dst, Labels: map[string]string{of: key + "@" + sec}}, "labels."+of); err != nil {
		bklog.G(ctx).WithError(err).Debugf("labelling rewritten layer %s", dst)
		return
	}
	info := content.Info{Digest: src, Labels: map[string]string{memoLabel + key: sec + "=" + dst.String(), memoRefLabel + key: dst.String()}}
	if _, err := rw.cs.Update(ctx, info, "labels."+memoLabel+key, "labels."+memoRefLabel+key); err != nil && !cerrdefs.IsNotFound(err) {
		bklog.G(ctx).WithError(err).Debugf("remembering the rewrite of layer %s", src)
	}
}

// unlazyStore is the content store with the rewritten layers that can
// still fetch the lazy layers of the remote it replaces.
type unlazyStore struct {
	content.Store
	unlazier cache.Unlazier
}

func (s *unlazyStore) Unlazy(ctx context.Context) error { return s.unlazier.Unlazy(ctx) }
