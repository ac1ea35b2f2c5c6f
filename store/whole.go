package store

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/internal/errmsg"
)

// The rule every path that gives an image a name follows (build results,
// load, pull, tag, manifest create, copy between stores): a name moves only
// to an image whose every blob is in the content store, checked for all the
// images of the operation before the first name moves, so that a failure
// leaves every existing name as it was. The one exception is "kiln pull
// --platform", which fetches some platforms of an index by design: there
// the wanted platforms, their attestations and the index blobs must be
// whole.

// requireWhole summarises img and returns an *IncompleteError when a blob
// of it is missing: any blob when only is nil, else the index blobs and
// the blobs of the platforms only matches (and of their attestations).
// Entries without a platform are always in scope, as containerd's
// platform filter fetches them too.
func (s *Store) requireWhole(ctx context.Context, img images.Image, action string, only platforms.Matcher) (ImageSummary, error) {
	sum, err := s.summarize(ctx, img, "")
	if err != nil {
		return sum, err
	}
	if only == nil {
		return sum, sum.incomplete(action, nil)
	}
	chosen := []PlatformSummary{}
	for _, p := range sum.Platforms {
		if p.desc.Platform == nil || only.Match(*p.desc.Platform) {
			chosen = append(chosen, p)
		}
	}
	return sum, sum.incompleteIn(action, chosen, true)
}

// nameWhole gives every image of imgs its name, once every one of them is
// whole (see requireWhole): all the names move, or none does. Before the
// names move, the blobs of each image are labelled as containerd's garbage
// collector expects (each index and manifest names its children), so that
// they stay as long as a name does; callers hold a lease on ctx until then
// when the content is new. It returns the summary of each image.
func (s *Store) nameWhole(ctx context.Context, imgs []images.Image, action string, only platforms.Matcher) ([]ImageSummary, error) {
	ctx = s.WithNamespace(ctx)
	sums := make([]ImageSummary, len(imgs))
	var errs []error
	checked := map[string]error{} // by target digest: several names may share one
	for i, img := range imgs {
		key := img.Target.Digest.String()
		err, done := checked[key]
		if !done {
			sums[i], err = s.requireWhole(ctx, img, action, only)
			checked[key] = err
			if err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if err == nil {
			sums[i], err = s.summarize(ctx, img, "")
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errmsg.Join(errs...)
	}
	cs := s.client.ContentStore()
	// Out-of-scope content (platforms a pull did not fetch) is absent by
	// design: it is passed over, not labelled.
	children := func(ctx context.Context, desc ocispecs.Descriptor) ([]ocispecs.Descriptor, error) {
		c, err := images.Children(ctx, cs, desc)
		if errdefs.IsNotFound(err) {
			return nil, images.ErrSkipDesc
		}
		return c, err
	}
	handler := images.SetChildrenLabels(cs, images.FilterPlatforms(images.HandlerFunc(children), only))
	labelled := map[string]bool{}
	for _, img := range imgs {
		if labelled[img.Target.Digest.String()] {
			continue
		}
		labelled[img.Target.Digest.String()] = true
		if err := images.Walk(ctx, handler, img.Target); err != nil {
			return nil, fmt.Errorf("recording the blobs of image %s in the content store: %w", img.Name, err)
		}
	}
	for _, img := range imgs {
		if err := s.putImage(ctx, img); err != nil {
			return nil, err
		}
	}
	return sums, nil
}
