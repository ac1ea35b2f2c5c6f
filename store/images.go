package store

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/internal/errmsg"
	"github.com/kiln-build/kiln/platform"
	"github.com/kiln-build/kiln/usage"
)

// MissingManifestError reports a platform of an image whose manifest is
// not in the content store, so it cannot be inspected.
type MissingManifestError struct {
	// Name is the image's stored name.
	Name     string
	Platform string
	Digest   digest.Digest
}

func (e *MissingManifestError) Error() string {
	return fmt.Sprintf("the %s manifest of image %s (%s) is not in the content store", e.Platform, e.Name, e.Digest)
}

// NotFoundError reports an image name the namespace does not hold.
type NotFoundError struct {
	// Name is the name as the user gave it.
	Name      string
	Namespace string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("image %q not found in namespace %s", e.Name, e.Namespace)
}

// Unwrap makes errdefs.IsNotFound and errors.Is(err, errdefs.ErrNotFound) true.
func (e *NotFoundError) Unwrap() error { return errdefs.ErrNotFound }

// normalize is NormalizeName with the error marked as a usage error.
func normalize(name string) (string, error) {
	full, err := NormalizeName(name)
	if err != nil {
		return "", usage.Wrap(err)
	}
	return full, nil
}

// getImage reads the image record for a name as the user gave it, or for
// a digest as "kiln images -q" prints it when one name has that digest.
func (s *Store) getImage(ctx context.Context, name string) (images.Image, error) {
	imgs, err := s.lookup(ctx, name)
	if err != nil {
		return images.Image{}, err
	}
	if len(imgs) > 1 {
		names := make([]string, len(imgs))
		for i, img := range imgs {
			names[i] = img.Name
		}
		return images.Image{}, usage.Errorf("%s is the digest of several images (%s): give one of their names", name, strings.Join(names, ", "))
	}
	return imgs[0], nil
}

// digestPrefix is how an argument refers to images by the digest of their
// index (or manifest): at least 12 of its hex digits, with or without
// "sha256:", as "kiln images -q" and the table print them.
var digestPrefix = regexp.MustCompile(`^(sha256:)?[0-9a-f]{12,64}$`)

// lookup resolves an argument to image records: the image with that name,
// or else every image whose target digest starts with the argument.
func (s *Store) lookup(ctx context.Context, arg string) ([]images.Image, error) {
	ctx = s.WithNamespace(ctx)
	if !strings.HasPrefix(arg, "sha256:") {
		full, err := normalize(arg)
		if err != nil {
			return nil, err
		}
		img, err := s.client.ImageService().Get(ctx, full)
		switch {
		case err == nil:
			return []images.Image{img}, nil
		case !errdefs.IsNotFound(err):
			return nil, fmt.Errorf("reading image %s from containerd: %w", full, err)
		case !digestPrefix.MatchString(arg):
			return nil, &NotFoundError{Name: arg, Namespace: s.namespace}
		}
	}
	if !digestPrefix.MatchString(arg) {
		return nil, usage.Wrap(&DigestError{Arg: arg})
	}
	prefix := arg
	if !strings.HasPrefix(prefix, "sha256:") {
		prefix = "sha256:" + prefix
	}
	all, err := s.client.ImageService().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing images in namespace %s: %w", s.namespace, err)
	}
	var out []images.Image
	targets := map[string]bool{}
	for _, img := range all {
		if strings.HasPrefix(img.Target.Digest.String(), prefix) {
			out = append(out, img)
			targets[img.Target.Digest.String()] = true
		}
	}
	if len(targets) > 1 {
		return nil, usage.Errorf("%s is the start of several digests: give more of it", arg)
	}
	if len(out) == 0 {
		return nil, &NotFoundError{Name: arg, Namespace: s.namespace}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ListOptions select and describe the images List returns.
type ListOptions struct {
	// Names restricts the list: a name with a tag or digest matches that
	// image only, a bare repository ("app", "registry:5000/team/app")
	// matches all its tags. Empty lists every image.
	Names []string
	// Snapshotter, when set, is checked for which platforms are unpacked.
	Snapshotter string
}

// List describes the images of the namespace, sorted by name.
func (s *Store) List(ctx context.Context, opts ListOptions) ([]ImageSummary, error) {
	match, err := nameMatcher(opts.Names)
	if err != nil {
		return nil, err
	}
	ctx = s.WithNamespace(ctx)
	imgs, err := s.client.ImageService().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing images in namespace %s: %w", s.namespace, err)
	}
	sort.Slice(imgs, func(i, j int) bool { return imgs[i].Name < imgs[j].Name })
	out := []ImageSummary{}
	for _, img := range imgs {
		if !match(img.Name) {
			continue
		}
		sum, err := s.summarize(ctx, img, opts.Snapshotter)
		if err != nil {
			return nil, err
		}
		out = append(out, sum)
	}
	return out, nil
}

// Summary describes one image.
func (s *Store) Summary(ctx context.Context, name, snapshotter string) (ImageSummary, error) {
	img, err := s.getImage(ctx, name)
	if err != nil {
		return ImageSummary{}, err
	}
	return s.summarize(ctx, img, snapshotter)
}

// nameMatcher returns a predicate for stored names from the filters of
// ListOptions.Names.
func nameMatcher(filters []string) (func(string) bool, error) {
	if len(filters) == 0 {
		return func(string) bool { return true }, nil
	}
	exact := map[string]bool{}
	repos := map[string]bool{}
	for _, f := range filters {
		named, err := reference.ParseNormalizedNamed(f)
		if err != nil {
			return nil, usage.Errorf("invalid image name %q: %w; a name looks like \"app\", \"app:1.0\" or \"registry.example.com/team/app:1.0\"", f, err)
		}
		if reference.IsNameOnly(named) {
			repos[named.Name()] = true
		} else {
			exact[named.String()] = true
		}
	}
	return func(name string) bool {
		if exact[name] {
			return true
		}
		named, err := reference.ParseNormalizedNamed(name)
		return err == nil && repos[named.Name()]
	}, nil
}

// pick returns the platforms of sum that match want, one per wanted
// platform, or an error naming those the image does not have.
func (sum ImageSummary) pick(want []ocispecs.Platform) ([]PlatformSummary, error) {
	var out []PlatformSummary
	var absent []string
	for _, w := range want {
		m := platforms.NewMatcher(w)
		found := false
		for _, p := range sum.Platforms {
			if p.Platform != "unknown" && m.Match(p.spec) {
				out = append(out, p)
				found = true
				break
			}
		}
		if !found {
			absent = append(absent, platform.Format(w))
		}
	}
	if len(absent) > 0 {
		have := strings.Join(sum.platformNames(), ", ")
		if have == "" {
			have = "no known platform"
		}
		return nil, fmt.Errorf("image %s has no %s (it has %s)", sum.Name, strings.Join(absent, ", "), have)
	}
	return out, nil
}

// Inspection is what "kiln inspect NAME" prints: the image record, its
// top-level index or manifest as stored, and a summary of each platform.
type Inspection struct {
	Name string `json:"name"`
	// Descriptor is the image's target as containerd records it.
	Descriptor ocispecs.Descriptor `json:"descriptor"`
	// Index is the target when it is an index; Manifest when it is a
	// manifest. Either is null when its blob is missing.
	Index    json.RawMessage `json:"index,omitempty"`
	Manifest json.RawMessage `json:"manifest,omitempty"`
	// Platforms and Attestations are as in "kiln images --format json".
	Platforms    []PlatformSummary    `json:"platforms"`
	Attestations []AttestationSummary `json:"attestations,omitempty"`
	Complete     bool                 `json:"complete"`
	Size         int64                `json:"size"`
	Labels       map[string]string    `json:"labels,omitempty"`
	CreatedAt    time.Time            `json:"createdAt"`
	UpdatedAt    time.Time            `json:"updatedAt"`
}

// PlatformInspection is what "kiln inspect NAME --platform P" prints: one
// platform's manifest and config.
type PlatformInspection struct {
	Name string `json:"name"`
	// Index is the image's target (the index, or the manifest itself).
	Index ocispecs.Descriptor `json:"index"`
	// Platform summarises the platform as "kiln images --platforms" does.
	Platform PlatformSummary `json:"platform"`
	// Descriptor is the platform's manifest descriptor from the index.
	Descriptor ocispecs.Descriptor `json:"descriptor"`
	// Manifest and Config are the blobs as stored; Config is null when
	// its blob is missing.
	Manifest json.RawMessage `json:"manifest"`
	Config   json.RawMessage `json:"config"`
}

// Inspect describes an image for "kiln inspect" without --platform.
func (s *Store) Inspect(ctx context.Context, name, snapshotter string) (*Inspection, error) {
	img, err := s.getImage(ctx, name)
	if err != nil {
		return nil, err
	}
	sum, err := s.summarize(ctx, img, snapshotter)
	if err != nil {
		return nil, err
	}
	out := &Inspection{
		Name:         img.Name,
		Descriptor:   img.Target,
		Platforms:    sum.Platforms,
		Attestations: sum.Attestations,
		Complete:     sum.Complete,
		Size:         sum.Size,
		Labels:       img.Labels,
		CreatedAt:    img.CreatedAt,
		UpdatedAt:    img.UpdatedAt,
	}
	raw, err := s.readBlob(ctx, img.Target)
	if err != nil && !errdefs.IsNotFound(err) {
		return nil, err
	}
	if raw != nil {
		if images.IsIndexType(img.Target.MediaType) {
			out.Index = raw
		} else {
			out.Manifest = raw
		}
	}
	return out, nil
}

// InspectPlatform describes one platform of an image for "kiln inspect
// --platform".
func (s *Store) InspectPlatform(ctx context.Context, name string, platform ocispecs.Platform, snapshotter string) (*PlatformInspection, error) {
	sum, err := s.Summary(ctx, name, snapshotter)
	if err != nil {
		return nil, err
	}
	picked, err := sum.pick([]ocispecs.Platform{platform})
	if err != nil {
		return nil, err
	}
	p := picked[0]
	out := &PlatformInspection{Name: sum.Name, Index: sum.target, Platform: p, Descriptor: p.desc}
	if out.Manifest, err = s.readBlob(ctx, p.desc); err != nil {
		if errdefs.IsNotFound(err) {
			return nil, &MissingManifestError{Name: sum.Name, Platform: p.Platform, Digest: p.Digest}
		}
		return nil, err
	}
	var m ocispecs.Manifest
	if err := json.Unmarshal(out.Manifest, &m); err != nil {
		return nil, fmt.Errorf("decoding manifest %s: %w", p.Digest, err)
	}
	cfg, err := s.readBlob(ctx, m.Config)
	if err != nil && !errdefs.IsNotFound(err) {
		return nil, err
	}
	out.Config = cfg
	if out.Config == nil {
		out.Config = json.RawMessage("null")
	}
	return out, nil
}

// RawBlob returns the bytes of an image's index (or manifest) blob, or with
// a platform, that platform's manifest blob.
func (s *Store) RawBlob(ctx context.Context, name string, platform *ocispecs.Platform) ([]byte, error) {
	img, err := s.getImage(ctx, name)
	if err != nil {
		return nil, err
	}
	desc := img.Target
	if platform != nil {
		sum, err := s.summarize(ctx, img, "")
		if err != nil {
			return nil, err
		}
		picked, err := sum.pick([]ocispecs.Platform{*platform})
		if err != nil {
			return nil, err
		}
		desc = picked[0].desc
	}
	b, err := s.readBlob(ctx, desc)
	if errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("the %s %s of image %s is not in the content store (the image is partial)", blobKind(desc.MediaType), desc.Digest, img.Name)
	}
	return b, err
}

func (s *Store) readBlob(ctx context.Context, desc ocispecs.Descriptor) ([]byte, error) {
	b, err := readBlobBounded(s.WithNamespace(ctx), s.client.ContentStore(), desc, blobKind(desc.MediaType) != "config")
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, err
		}
		return nil, fmt.Errorf("reading %s %s: %w", blobKind(desc.MediaType), desc.Digest, err)
	}
	return b, nil
}

// Tag gives the image src the names dsts, replacing images that had them.
// A source that lacks content is refused (*IncompleteError) and no name
// changes: a name only ever moves to a whole image.
func (s *Store) Tag(ctx context.Context, src string, dsts []string) error {
	if len(dsts) == 0 {
		return usage.Errorf("give at least one new name for %s", src)
	}
	names, err := NormalizeNames(dsts)
	if err != nil {
		return usage.Wrap(err)
	}
	img, err := s.getImage(ctx, src)
	if err != nil {
		return err
	}
	if _, err := s.requireWhole(ctx, img, "tag", nil); err != nil {
		return err
	}
	ctx = s.WithNamespace(ctx)
	is := s.client.ImageService()
	for _, name := range names {
		if name == img.Name {
			continue
		}
		tagged := s.withCRILabel(images.Image{Name: name, Target: img.Target, Labels: img.Labels})
		if _, err := is.Create(ctx, tagged); err != nil {
			if !errdefs.IsAlreadyExists(err) {
				return fmt.Errorf("naming %s %s: %w", img.Name, name, err)
			}
			if _, err := is.Update(ctx, tagged, "target", "labels"); err != nil {
				return fmt.Errorf("naming %s %s: %w", img.Name, name, err)
			}
		}
		if s.forCRI() {
			if err := s.addCRIReferences(ctx, tagged); err != nil {
				return err
			}
		}
	}
	return nil
}

// RemoveOptions control Remove.
type RemoveOptions struct {
	// Force removes images that containers use; the containers stay.
	Force bool
}

// InUseError reports an image that containers use, so it was not removed.
type InUseError struct {
	Name string
	// Containers are the IDs of the containers using it, sorted.
	Containers []string
}

func (e *InUseError) Error() string {
	which := fmt.Sprintf("container %s uses", e.Containers[0])
	if len(e.Containers) > 1 {
		which = fmt.Sprintf("containers %s use", strings.Join(e.Containers, ", "))
	}
	return fmt.Sprintf("image %s is in use: %s it", e.Name, which)
}

// Remove deletes the named images. Content no other image refers to is
// reclaimed by containerd's garbage collector before Remove returns. It
// removes what it can and returns the names removed and one error for the
// rest.
func (s *Store) Remove(ctx context.Context, names []string, opts RemoveOptions) ([]string, error) {
	if len(names) == 0 {
		return nil, usage.Errorf("give the names of the images to remove")
	}
	for _, n := range names {
		if strings.HasPrefix(n, "sha256:") {
			if !digestPrefix.MatchString(n) {
				return nil, usage.Wrap(&DigestError{Arg: n})
			}
		} else if _, err := normalize(n); err != nil {
			return nil, err
		}
	}
	ctx = s.WithNamespace(ctx)
	users := map[string][]string{}
	if !opts.Force {
		ctrs, err := s.client.ContainerService().List(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing containers in namespace %s: %w", s.namespace, err)
		}
		for _, c := range ctrs {
			users[c.Image] = append(users[c.Image], c.ID)
		}
	}
	var removed []string
	var errs []error
	handled := map[string]bool{} // arguments and stored names dealt with
	for _, n := range names {
		if handled["arg:"+n] {
			continue
		}
		handled["arg:"+n] = true
		imgs, err := s.lookup(ctx, n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, img := range imgs {
			if handled["name:"+img.Name] {
				continue
			}
			handled["name:"+img.Name] = true
			if ids := users[img.Name]; len(ids) > 0 {
				sort.Strings(ids)
				errs = append(errs, &InUseError{Name: img.Name, Containers: ids})
				continue
			}
			if err := s.client.ImageService().Delete(ctx, img.Name, images.SynchronousDelete()); err != nil {
				if errdefs.IsNotFound(err) {
					errs = append(errs, &NotFoundError{Name: n, Namespace: s.namespace})
				} else {
					errs = append(errs, fmt.Errorf("removing image %s: %w", img.Name, err))
				}
				continue
			}
			removed = append(removed, img.Name)
		}
	}
	return removed, errmsg.Join(errs...)
}

// FamiliarName shortens a stored name to the form users type:
// "app:1" for "docker.io/library/app:1". Names it cannot parse are returned
// as they are.
func FamiliarName(name string) string {
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return name
	}
	return reference.FamiliarString(named)
}
