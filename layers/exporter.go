package layers

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/moby/buildkit/cache"
	cacheconfig "github.com/moby/buildkit/cache/config"
	"github.com/moby/buildkit/client"
	"github.com/moby/buildkit/exporter"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	"github.com/moby/buildkit/exporter/util/epoch"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/solver"
	"github.com/moby/buildkit/util/compression"
	"github.com/moby/buildkit/worker/base"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// Worker is BuildKit's worker with kiln's image, oci and docker exporters:
// BuildKit's own, handed cache references whose GetRemotes compresses new
// gzip layers kiln's way and reuses layers already rewritten for the
// export's epoch. Add it to BuildKit's worker controller in place of the
// worker it wraps.
type Worker struct {
	*base.Worker
}

// Exporter returns BuildKit's exporter name, wrapped for the image, oci
// and docker exporters.
func (w Worker) Exporter(name string, sm *session.Manager) (exporter.Exporter, error) {
	e, err := w.Worker.Exporter(name, sm)
	if err != nil {
		return nil, err
	}
	switch name {
	case client.ExporterImage, client.ExporterOCI, client.ExporterDocker:
		return &imageExporter{Exporter: e, cs: w.ContentStore()}, nil
	}
	return e, nil
}

// imageExporter is one of BuildKit's exporters that write images.
type imageExporter struct {
	exporter.Exporter
	cs content.Store
}

// Resolve takes GzipAttr out of attrs and resolves the rest with BuildKit's
// exporter.
func (e *imageExporter) Resolve(ctx context.Context, id int, attrs map[string]string) (exporter.ExporterInstance, error) {
	attrs = maps.Clone(attrs)
	mode, err := ParseGzipMode(attrs[GzipAttr])
	if err != nil {
		return nil, err
	}
	delete(attrs, GzipAttr)
	inst, err := e.Exporter.Resolve(ctx, id, attrs)
	if err != nil {
		return nil, err
	}
	opts, err := parseRewrite(attrs)
	if err != nil {
		return nil, err
	}
	return &instance{ExporterInstance: inst, exp: e, mode: mode, rewrite: opts}, nil
}

// rewriteOpts are an export's attributes that decide the epoch rewrite, as
// BuildKit's ImageCommitOpts reads them.
type rewriteOpts struct {
	enabled bool
	epoch   *time.Time // source-date-epoch, when given to the exporter
}

func parseRewrite(attrs map[string]string) (rewriteOpts, error) {
	var o rewriteOpts
	if v, ok := attrs[string(exptypes.OptKeyRewriteTimestamp)]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return o, fmt.Errorf("non-bool value specified for %s: %w", exptypes.OptKeyRewriteTimestamp, err)
		}
		o.enabled = b
	}
	ep, _, err := epoch.ParseExporterAttrs(attrs)
	if err != nil {
		return o, err
	}
	if ep != nil {
		o.epoch = ep.Value
	}
	return o, nil
}

// instance is a resolved exporter of images.
type instance struct {
	exporter.ExporterInstance
	exp     *imageExporter
	mode    GzipMode
	rewrite rewriteOpts
}

// Export hands BuildKit's exporter the source with its references wrapped
// (see ref).
func (i *instance) Export(ctx context.Context, src *exporter.Source, info exporter.ExportBuildInfo) (map[string]string, exporter.FinalizeFunc, exporter.DescriptorReference, error) {
	src = src.Clone()
	ps, err := exptypes.ParsePlatforms(src.Metadata)
	if err != nil {
		return nil, nil, nil, err
	}
	if src.Ref != nil {
		// As BuildKit's writer: a single reference is its only platform's.
		var p *exptypes.Platform
		if len(src.Refs) == 0 && len(ps.Platforms) == 1 {
			p = &ps.Platforms[0]
		}
		r, err := i.wrap(src, src.Ref, p)
		if err != nil {
			return nil, nil, nil, err
		}
		src.Ref = r
	}
	if len(src.Refs) > 0 {
		byID := map[string]*exptypes.Platform{}
		for k := range ps.Platforms {
			byID[ps.Platforms[k].ID] = &ps.Platforms[k]
		}
		refs := make(map[string]cache.ImmutableRef, len(src.Refs))
		for id, r := range src.Refs {
			if r == nil {
				refs[id] = nil
				continue
			}
			w, err := i.wrap(src, r, byID[id])
			if err != nil {
				return nil, nil, nil, err
			}
			refs[id] = w
		}
		src.Refs = refs
	}
	return i.ExporterInstance.Export(ctx, src, info)
}

// wrap returns r as the reference BuildKit's image writer gets for
// platform p (nil for a single reference): with its base image's layers
// and the epoch BuildKit's writer will rewrite it for, found as its Commit
// finds them.
func (i *instance) wrap(src *exporter.Source, r cache.ImmutableRef, p *exptypes.Platform) (cache.ImmutableRef, error) {
	w := &ref{ImmutableRef: r, mode: i.mode, cs: i.exp.cs}
	if cfg := exptypes.ParseKey(src.Metadata, exptypes.ExporterImageBaseConfigKey, p); len(cfg) > 0 {
		var img dockerspec.DockerOCIImage
		if err := json.Unmarshal(cfg, &img); err != nil {
			return nil, fmt.Errorf("failed to unmarshal base image config: %w", err)
		}
		w.baseDiffIDs = img.RootFS.DiffIDs
	}
	if !i.rewrite.enabled {
		return w, nil
	}
	tm := i.rewrite.epoch
	if tm == nil {
		var err error
		if tm, err = epoch.ParseSource(src, nil); err != nil {
			return nil, err
		}
		if tm == nil && p != nil {
			if tm, err = epoch.ParseSource(src, p); err != nil {
				return nil, err
			}
		}
	}
	if tm == nil {
		return w, nil // BuildKit warns that there is no epoch
	}
	w.epoch = tm
	return w, nil
}

// ref is a cache reference as kiln's exporters hand it to BuildKit's image
// writer. Its GetRemotes asks for kiln's gzip compression in mode, and,
// when the writer will rewrite the layers for an epoch, returns them
// rewritten already, reusing earlier rewrites (see rewriter): the writer's
// own rewrite then finds nothing left to do.
type ref struct {
	cache.ImmutableRef
	mode        GzipMode
	cs          content.Store
	epoch       *time.Time
	baseDiffIDs []digest.Digest
}

// GetRemotes is BuildKit's, with kiln's compression. A layer above the
// base image's that kiln compressed in the other mode is compressed again
// (as BuildKit's force-compression does, for that export only); the base
// image's layers are kept as BuildKit keeps them. With an epoch, the layers
// come back rewritten.
func (r *ref) GetRemotes(ctx context.Context, createIfNeeded bool, cfg cacheconfig.RefConfig, all bool, s session.Group) ([]*solver.Remote, error) {
	cfg.Compression = withMode(cfg.Compression, r.mode)
	gz, isGzip := cfg.Compression.Type.(gzipType)
	if isGzip && len(r.baseDiffIDs) > 0 {
		gz.base = &baseLayers{diffIDs: map[digest.Digest]bool{}}
		for _, id := range r.baseDiffIDs {
			gz.base.diffIDs[id] = true
		}
		cfg.Compression.Type = gz
	}
	remotes, err := r.ImmutableRef.GetRemotes(ctx, createIfNeeded, cfg, all, s)
	if err != nil || !createIfNeeded || len(remotes) == 0 {
		return remotes, err
	}
	if isGzip && !cfg.Compression.Force {
		other, err := r.otherMode(ctx, remotes[0].Descriptors, gz)
		if err != nil {
			return nil, err
		}
		if other {
			cfg.Compression.Force = true
			if remotes, err = r.ImmutableRef.GetRemotes(ctx, createIfNeeded, cfg, all, s); err != nil {
				return nil, err
			}
		}
	}
	if r.epoch == nil {
		return remotes, nil
	}
	rw := rewriter{cs: r.cs, comp: cfg.Compression, epoch: *r.epoch, baseDiffIDs: r.baseDiffIDs}
	out := append([]*solver.Remote(nil), remotes...)
	if out[0], err = rw.rewrite(ctx, remotes[0]); err != nil {
		return nil, err
	}
	return out, nil
}

// otherMode reports whether one of descs above the base image's layers was
// compressed by kiln in the mode other than gz's.
func (r *ref) otherMode(ctx context.Context, descs []ocispecs.Descriptor, gz gzipType) (bool, error) {
	found := make([]bool, len(descs))
	var eg errgroup.Group
	for k, desc := range descs {
		if !compression.IsMediaType(compression.Gzip, desc.MediaType) || gz.isBase(desc) {
			continue
		}
		eg.Go(func() (err error) {
			found[k], err = otherCompressor(ctx, r.cs, desc.Digest, gz.compressor())
			return err
		})
	}
	if err := eg.Wait(); err != nil {
		return false, err
	}
	for _, f := range found {
		if f {
			return true, nil
		}
	}
	return false, nil
}
