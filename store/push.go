package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/semaphore"

	"github.com/kiln-build/kiln/registry"
)

// PushOptions control Push.
type PushOptions struct {
	// Platforms, when set, pushes a new index holding only these platforms
	// (and their attestations). Empty pushes the image as it is stored,
	// which needs all of its content.
	Platforms []ocispecs.Platform
	// Registry says how to reach the registry.
	Registry registry.Config
	// Progress receives one line per blob; nil discards them.
	Progress io.Writer
	// Terminal draws a live bar per blob in flight on Progress.
	Terminal bool
}

// PushResult is what Push uploaded.
type PushResult struct {
	// Name is the stored name the image was pushed under.
	Name string
	// Descriptor is the index or manifest pushed under the name's tag: the
	// stored one, or the new index of the platforms picked.
	Descriptor ocispecs.Descriptor
}

// Push uploads the named image, with every blob it refers to, to the
// registry its name points at, under its tag. It refuses an image whose
// content is partial, naming what is missing (an *IncompleteError), unless
// Platforms picks platforms that are complete. name may also be a digest
// as "kiln images -q" prints it.
func (s *Store) Push(ctx context.Context, name string, opts PushOptions) (*PushResult, error) {
	img, err := s.getImage(ctx, name)
	if err != nil {
		return nil, err
	}
	ctx, release, err := s.withLease(ctx)
	if err != nil {
		return nil, fmt.Errorf("taking a containerd lease for the push: %w", err)
	}
	defer release()

	sum, err := s.summarize(ctx, img, "")
	if err != nil {
		return nil, err
	}
	desc := img.Target
	if len(opts.Platforms) == 0 {
		if err := sum.incomplete("push", nil); err != nil {
			return nil, err
		}
	} else {
		picked, err := sum.pick(opts.Platforms)
		if err != nil {
			return nil, err
		}
		if err := sum.incomplete("push", picked); err != nil {
			return nil, err
		}
		if desc, err = s.subsetIndex(ctx, sum, picked); err != nil {
			return nil, err
		}
	}

	resolver, err := registryResolver(opts.Registry)
	if err != nil {
		return nil, err
	}
	// With the digest, only the top-level manifest is pushed under the tag.
	pusher, err := resolver.Pusher(ctx, img.Name+"@"+desc.Digest.String())
	if err != nil {
		return nil, registryError(opts.Registry, "push", img.Name, err)
	}
	p := newLiveProgress(opts.Progress, opts.Terminal)
	defer p.close()
	cs := s.client.ContentStore()
	err = remotes.PushContent(ctx, transferPusher{Pusher: pusher, provider: cs, p: p}, desc, cs,
		semaphore.NewWeighted(maxConcurrentTransfers), platforms.All, nil)
	if err != nil {
		return nil, registryError(opts.Registry, "push", img.Name, err)
	}
	return &PushResult{Name: img.Name, Descriptor: desc}, nil
}

// subsetIndex returns the descriptor to push for the picked platforms: the
// image's own target when it holds exactly those, otherwise a new index
// written to the content store (under the caller's lease).
func (s *Store) subsetIndex(ctx context.Context, sum ImageSummary, picked []PlatformSummary) (ocispecs.Descriptor, error) {
	if !images.IsIndexType(sum.target.MediaType) {
		return sum.target, nil // a single manifest: pick succeeded, so it matches
	}
	cs := s.client.ContentStore()
	raw, err := content.ReadBlob(ctx, cs, sum.target)
	if err != nil {
		return ocispecs.Descriptor{}, fmt.Errorf("reading the index of %s: %w", sum.Name, err)
	}
	keep := map[digest.Digest]bool{}
	for _, p := range picked {
		keep[p.Digest] = true
	}
	for _, a := range sum.Attestations {
		if keep[a.For] && a.Content == ContentComplete {
			keep[a.Digest] = true
		}
	}
	b, changed, err := filterIndex(raw, keep)
	if err != nil {
		return ocispecs.Descriptor{}, fmt.Errorf("building an index of %s for the chosen platforms: %w", sum.Name, err)
	}
	if !changed {
		return sum.target, nil
	}
	desc := ocispecs.Descriptor{MediaType: sum.target.MediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
	var idx ocispecs.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return ocispecs.Descriptor{}, err
	}
	labels := map[string]string{}
	for i, m := range idx.Manifests {
		labels[fmt.Sprintf("containerd.io/gc.ref.content.m.%d", i)] = m.Digest.String()
	}
	if err := content.WriteBlob(ctx, cs, "kiln-push-"+desc.Digest.String(), bytes.NewReader(b), desc, content.WithLabels(labels)); err != nil {
		return ocispecs.Descriptor{}, fmt.Errorf("storing the index of %s for the chosen platforms: %w", sum.Name, err)
	}
	return desc, nil
}

// filterIndex keeps the index entries whose digests are in keep, and every
// other field of the index as it was. It reports whether anything was
// dropped.
func filterIndex(raw []byte, keep map[digest.Digest]bool) ([]byte, bool, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, false, err
	}
	var manifests []json.RawMessage
	if err := json.Unmarshal(fields["manifests"], &manifests); err != nil {
		return nil, false, err
	}
	kept := []json.RawMessage{}
	for _, m := range manifests {
		var d ocispecs.Descriptor
		if err := json.Unmarshal(m, &d); err != nil {
			return nil, false, err
		}
		if keep[d.Digest] {
			kept = append(kept, m)
		}
	}
	if len(kept) == len(manifests) {
		return raw, false, nil
	}
	b, err := json.Marshal(kept)
	if err != nil {
		return nil, false, err
	}
	fields["manifests"] = b
	out, err := json.Marshal(fields)
	return out, true, err
}
