package store

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/semaphore"

	"github.com/kiln-build/kiln/platform"
	"github.com/kiln-build/kiln/registry"
	"github.com/kiln-build/kiln/usage"
)

// maxConcurrentTransfers bounds parallel blob downloads and uploads.
const maxConcurrentTransfers = 3

// PullOptions control Pull.
type PullOptions struct {
	// Platforms to fetch; empty means this host's platform. Attestations
	// are fetched with them. The index is always stored whole, so pulling
	// some platforms of a multi-platform image leaves the others partial.
	Platforms []ocispecs.Platform
	// AllPlatforms fetches every platform.
	AllPlatforms bool
	// Snapshotter unpacks the host's platform when it was pulled; empty
	// skips unpacking.
	Snapshotter string
	// Registry says how to reach the registry.
	Registry registry.Config
	// Progress receives one line per blob; nil discards them.
	Progress io.Writer
	// Terminal draws a live bar per blob in flight on Progress.
	Terminal bool
}

// PullResult is what Pull stored.
type PullResult struct {
	// Name is the stored name.
	Name string
	// Image describes the image after the pull.
	Image ImageSummary
	// Unpacked is the platform unpacked, if any.
	Unpacked string
}

// AbsentPlatformsError reports platforms a pull asked for that the image's
// index in the registry does not list.
type AbsentPlatformsError struct {
	Name, Registry string
	// Absent are the platforms asked for and missing; Have those the
	// index lists.
	Absent, Have []string
}

func (e *AbsentPlatformsError) Error() string {
	return fmt.Sprintf("image %s in registry %s has no %s (it has %s)", e.Name, e.Registry, strings.Join(e.Absent, ", "), strings.Join(e.Have, ", "))
}

// Pull fetches an image from its registry into the namespace and unpacks
// the host's platform if it was among those fetched.
func (s *Store) Pull(ctx context.Context, name string, opts PullOptions) (*PullResult, error) {
	full, err := normalize(name)
	if err != nil {
		return nil, err
	}
	if opts.AllPlatforms && len(opts.Platforms) > 0 {
		return nil, usage.Errorf("pull either some platforms or all of them, not both")
	}
	want := opts.Platforms
	if len(want) == 0 && !opts.AllPlatforms {
		want = []ocispecs.Platform{platforms.DefaultSpec()}
	}
	resolver, err := registryResolver(opts.Registry)
	if err != nil {
		return nil, err
	}
	ctx, release, err := s.withLease(ctx)
	if err != nil {
		return nil, fmt.Errorf("taking a containerd lease for the pull: %w", err)
	}
	defer release()

	resolved, desc, err := resolver.Resolve(ctx, full)
	if err != nil {
		return nil, registryError(opts.Registry, "pull", full, err)
	}
	fetcher, err := resolver.Fetcher(ctx, resolved)
	if err != nil {
		return nil, registryError(opts.Registry, "pull", full, err)
	}
	p := newLiveProgress(opts.Progress, opts.Terminal)
	defer p.close()
	pf := &progressFetcher{Fetcher: fetcher, p: p}
	cs := s.client.ContentStore()
	fetch := boundManifests(pf.fetchHandler(cs))

	// The index first: it says whether the wanted platforms exist.
	if _, err := fetch(ctx, desc); err != nil {
		return nil, registryError(opts.Registry, "pull", full, err)
	}
	var matcher platforms.Matcher = platforms.All
	var only platforms.Matcher // what the name promises: all of it, or the wanted platforms
	if !opts.AllPlatforms {
		if err := checkRemotePlatforms(ctx, cs, full, desc, want); err != nil {
			return nil, err
		}
		matcher = withAttestations{platforms.Any(want...)}
		only = matcher
	}
	distSource, err := docker.AppendDistributionSourceLabel(cs, resolved)
	if err != nil {
		return nil, fmt.Errorf("labelling content of %s with its source: %w", full, err)
	}
	handler := images.Handlers(
		fetch,
		images.SetChildrenLabels(cs, images.FilterPlatforms(images.ChildrenHandler(cs), matcher)),
		distSource,
	)
	if err := images.Dispatch(ctx, handler, semaphore.NewWeighted(maxConcurrentTransfers), desc); err != nil {
		return nil, registryError(opts.Registry, "pull", full, err)
	}

	img := images.Image{Name: full, Target: desc}
	sums, err := s.nameWhole(ctx, []images.Image{img}, "pull", only)
	if err != nil {
		return nil, err
	}
	res := &PullResult{Name: full, Image: sums[0]}
	if opts.Snapshotter != "" {
		if res.Unpacked, err = s.unpackHost(ctx, img, res.Image, opts.Snapshotter, p); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// withAttestations also matches the unknown/unknown platform of
// attestation manifests, which go with the platforms they describe.
type withAttestations struct{ platforms.Matcher }

func (m withAttestations) Match(p ocispecs.Platform) bool {
	return (p.OS == "unknown" && p.Architecture == "unknown") || m.Matcher.Match(p)
}

// checkRemotePlatforms fails when the fetched index lacks a wanted
// platform, before any layer is downloaded.
func checkRemotePlatforms(ctx context.Context, cs content.Store, name string, desc ocispecs.Descriptor, want []ocispecs.Platform) error {
	if !images.IsIndexType(desc.MediaType) {
		return nil // a single manifest is fetched whatever its platform
	}
	b, err := content.ReadBlob(ctx, cs, desc)
	if err != nil {
		return fmt.Errorf("reading the index of %s: %w", name, err)
	}
	var idx ocispecs.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return fmt.Errorf("decoding the index of %s: %w", name, err)
	}
	var have []string
	var absent []string
	for _, m := range idx.Manifests {
		if m.Platform != nil && !IsAttestation(m) {
			have = append(have, platform.Format(*m.Platform))
		}
	}
	for _, w := range want {
		found := false
		for _, m := range idx.Manifests {
			if m.Platform != nil && !IsAttestation(m) && platforms.NewMatcher(w).Match(*m.Platform) {
				found = true
			}
		}
		if !found {
			absent = append(absent, platform.Format(w))
		}
	}
	if len(absent) > 0 {
		return &AbsentPlatformsError{Name: name, Registry: registry.Host(name), Absent: absent, Have: have}
	}
	return nil
}

// putImage creates or updates an image record.
func (s *Store) putImage(ctx context.Context, img images.Image) error {
	is := s.client.ImageService()
	img = s.withCRILabel(img)
	if _, err := is.Create(ctx, img); err != nil {
		if !errdefs.IsAlreadyExists(err) {
			return fmt.Errorf("storing image %s: %w", img.Name, err)
		}
		fields := []string{"target"}
		if s.forCRI() {
			fields = append(fields, "labels."+criImageLabel)
		}
		if _, err := is.Update(ctx, img, fields...); err != nil {
			return fmt.Errorf("storing image %s: %w", img.Name, err)
		}
	}
	if s.forCRI() {
		return s.addCRIReferences(ctx, img)
	}
	return nil
}

// unpackHost unpacks the host's platform of img into the snapshotter when
// its content is complete; it returns the platform unpacked or "".
func (s *Store) unpackHost(ctx context.Context, img images.Image, sum ImageSummary, snapshotter string, p *progress) (string, error) {
	snapshotter = s.snapshotterName(snapshotter)
	host, ok := sum.hostPlatform()
	if !ok || host.Content != ContentComplete {
		return "", nil
	}
	p.printf("unpacking %s into %s\n", host.Platform, snapshotter)
	cimg := containerd.NewImageWithPlatform(s.client, img, platforms.Only(host.spec))
	if err := cimg.Unpack(ctx, snapshotter); err != nil {
		return "", fmt.Errorf("unpacking %s of %s into snapshotter %q: %w", host.Platform, img.Name, snapshotter, err)
	}
	return host.Platform, nil
}
