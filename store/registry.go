package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/errdefs"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/internal/errmsg"
	"github.com/kiln-build/kiln/registry"
)

// registryResolver is the registry resolver of the image commands: cfg's hosts
// and credentials, with manifests bounded (see manifestLimit).
func registryResolver(cfg registry.Config) (remotes.Resolver, error) {
	return cfg.Resolver(withManifestLimit)
}

// registryError turns an error from talking to a registry into one line
// that says what to do (see registry.Config.Explain). op is "pull" or
// "push".
func registryError(cfg registry.Config, op, name string, err error) error {
	if err == nil {
		return nil
	}
	var large *ManifestTooLargeError
	if errors.As(err, &large) {
		return errmsg.New(fmt.Sprintf("registry %s sent a manifest for %s that kiln refuses: %s; the registry or the image is broken", registry.Host(name), name, large.Error()), err)
	}
	return cfg.Explain(op, name, err)
}

// progressFetcher reports each download as it starts, counts its bytes
// and retries it where a bad network broke it (fetchHandler).
type progressFetcher struct {
	remotes.Fetcher
	p       *progress
	started sync.Map // digest.Digest -> *blobState
}

func (f *progressFetcher) Fetch(ctx context.Context, desc ocispecs.Descriptor) (io.ReadCloser, error) {
	var b *blobState
	if v, ok := f.started.Load(desc.Digest); ok {
		b = v.(*blobState)
	} else {
		b = f.p.start("pulling", desc)
		f.started.Store(desc.Digest, b)
	}
	rc, err := f.Fetcher.Fetch(ctx, desc)
	if err != nil {
		return nil, err
	}
	return &counter{r: rc, b: b}, nil
}

// fetchHandler fetches a blob unless it is present, reports the downloads
// that finished, and starts one again where the network or the registry
// failed for a moment: the content store keeps what came, so the next
// attempt asks only for the rest.
func (f *progressFetcher) fetchHandler(ingester content.Ingester) func(context.Context, ocispecs.Descriptor) ([]ocispecs.Descriptor, error) {
	inner := remotes.FetchHandler(ingester, f)
	return func(ctx context.Context, desc ocispecs.Descriptor) ([]ocispecs.Descriptor, error) {
		var children []ocispecs.Descriptor
		err := registry.Retry(ctx, func() error {
			var err error
			children, err = inner(ctx, desc)
			return err
		}, func(attempt int, err error) { f.p.retrying("pulling", desc, attempt, err) })
		if v, ok := f.started.LoadAndDelete(desc.Digest); ok {
			if err == nil {
				f.p.finish(v.(*blobState), "pulled")
			} else {
				f.p.fail(v.(*blobState))
			}
		}
		return children, err
	}
}

// transferPusher uploads each blob itself, from the content store, and
// starts an upload again where the network or the registry failed for a
// moment: a new upload session, since the registry may keep part of the
// broken one. It reports uploads as they start and end, and blobs the
// registry already has. containerd's push handler then finds the blob
// present.
type transferPusher struct {
	remotes.Pusher
	provider content.Provider
	p        *progress
}

func (tp transferPusher) Push(ctx context.Context, desc ocispecs.Descriptor) (content.Writer, error) {
	var b *blobState
	err := registry.Retry(ctx, func() error {
		cw, err := tp.Pusher.Push(ctx, desc)
		if errdefs.IsAlreadyExists(err) {
			if b == nil {
				tp.p.blob("exists", desc)
			}
			return nil
		}
		if err != nil {
			return err
		}
		defer cw.Close()
		if b == nil {
			b = tp.p.start("pushing", desc)
		}
		b.pos.Store(0)
		ra, err := tp.provider.ReaderAt(ctx, desc)
		if err != nil {
			return fmt.Errorf("reading %s %s: %w", blobKind(desc.MediaType), desc.Digest, err)
		}
		defer ra.Close()
		return content.Copy(ctx, cw, &counter{r: io.NewSectionReader(ra, 0, desc.Size), b: b}, desc.Size, desc.Digest)
	}, func(attempt int, err error) { tp.p.retrying("pushing", desc, attempt, err) })
	if b != nil {
		if err != nil {
			tp.p.fail(b)
		} else {
			tp.p.finish(b, "pushed")
		}
	}
	if err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("%s %s: %w", blobKind(desc.MediaType), desc.Digest, errdefs.ErrAlreadyExists)
}
