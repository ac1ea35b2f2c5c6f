package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/internal/errmsg"
	"github.com/kiln-build/kiln/platform"
	"github.com/kiln-build/kiln/usage"
)

// ManifestCreateOptions control CreateManifest.
type ManifestCreateOptions struct {
	// Amend adds the sources to the index NAME already holds (replacing
	// its entries for the same platforms) instead of refusing an
	// existing NAME.
	Amend bool
	// Snapshotter unpacks the host's platform of the new index; empty
	// skips unpacking.
	Snapshotter string
}

// ManifestResult describes the index a manifest command stored.
type ManifestResult struct {
	// Name is the stored name.
	Name string
	// Descriptor is the index as stored under Name.
	Descriptor ocispecs.Descriptor
	// Platforms are the platforms the index holds, in its order.
	Platforms []string
	// Replaced lists the platforms an --amend replaced.
	Replaced []string
}

// CreateManifest stores under name an index (a multi-platform image, as
// "docker manifest create" makes one) holding every platform of the
// sources: each a local image, single-platform or an index itself, given
// by name or digest. Attestations come along with the platforms they
// describe. Every source must have all of its content, so that the result
// can be pushed. With Amend, an existing index under name is extended;
// otherwise an existing name is refused.
func (s *Store) CreateManifest(ctx context.Context, name string, sources []string, opts ManifestCreateOptions) (*ManifestResult, error) {
	full, err := normalize(name)
	if err != nil {
		return nil, err
	}
	if len(sources) == 0 {
		return nil, usage.Errorf("give the images to put in %s", name)
	}
	ctx, release, err := s.withLease(ctx)
	if err != nil {
		return nil, fmt.Errorf("taking a containerd lease for the manifest list: %w", err)
	}
	defer release()

	var list entryList
	existing, err := s.client.ImageService().Get(ctx, full)
	switch {
	case err == nil && !opts.Amend:
		return nil, &ExistsError{Name: full}
	case err == nil:
		sum, err := s.summarize(ctx, existing, "")
		if err != nil {
			return nil, err
		}
		if list, err = s.entriesOf(ctx, sum); err != nil {
			return nil, err
		}
	case !errdefs.IsNotFound(err):
		return nil, fmt.Errorf("reading image %s from containerd: %w", full, err)
	}

	var replaced []string
	fromThisCall := map[string]string{} // platform -> source that gave it
	for _, src := range sources {
		sum, err := s.Summary(ctx, src, "")
		if err != nil {
			return nil, err
		}
		if err := sum.incomplete("add", nil); err != nil {
			ie := err.(*IncompleteError)
			ie.Complete = nil
			return nil, fmt.Errorf("cannot add %s to %s: %w; a manifest list must hold all of its content to be pushed", src, FamiliarName(full), ie)
		}
		add, err := s.entriesOf(ctx, sum)
		if err != nil {
			return nil, err
		}
		for _, p := range add.platforms() {
			if prev, ok := fromThisCall[p]; ok && prev != src {
				return nil, usage.Errorf("both %s and %s provide %s: give one image per platform", prev, src, p)
			}
			fromThisCall[p] = src
		}
		replaced = append(replaced, list.merge(add)...)
	}
	if len(list.platformEntries()) == 0 {
		return nil, fmt.Errorf("the sources of %s have no platform: they hold attestations only", FamiliarName(full))
	}
	idx := ocispecs.Index{Manifests: list.entries, Annotations: list.annotations}
	desc, err := s.writeIndex(ctx, idx)
	if err != nil {
		return nil, fmt.Errorf("storing the manifest list %s: %w", FamiliarName(full), err)
	}
	// The sources are whole; an amended index may not be.
	img := images.Image{Name: full, Target: desc}
	sums, err := s.nameWhole(ctx, []images.Image{img}, "add", nil)
	if err != nil {
		var ie *IncompleteError
		if errors.As(err, &ie) {
			return nil, fmt.Errorf("cannot store the manifest list %s: %w; a manifest list must hold all of its content to be pushed", FamiliarName(full), err)
		}
		return nil, err
	}
	if opts.Snapshotter != "" {
		if _, err := s.unpackHost(ctx, img, sums[0], opts.Snapshotter, newProgress(nil)); err != nil {
			return nil, err
		}
	}
	return &ManifestResult{Name: full, Descriptor: desc, Platforms: list.platforms(), Replaced: replaced}, nil
}

// entryList is the entries of an index being assembled: platform
// manifests and the attestations that describe them.
type entryList struct {
	entries     []ocispecs.Descriptor
	annotations map[string]string
}

// entriesOf lists an image's platform manifests, each with its platform
// set (from the index, or from the config of a single manifest), and its
// attestations. Nested indexes are flattened.
func (s *Store) entriesOf(ctx context.Context, sum ImageSummary) (entryList, error) {
	var l entryList
	if images.IsIndexType(sum.target.MediaType) {
		raw, err := s.readBlob(ctx, sum.target)
		if err != nil {
			return l, fmt.Errorf("reading the index of %s: %w", sum.Name, err)
		}
		var idx ocispecs.Index
		if err := json.Unmarshal(raw, &idx); err != nil {
			return l, fmt.Errorf("decoding the index of %s: %w", sum.Name, err)
		}
		l.annotations = idx.Annotations
	}
	for _, p := range sum.Platforms {
		if p.Platform == "unknown" {
			return l, fmt.Errorf("image %s has a manifest (%s) whose platform is unknown: neither its index nor its config names one", sum.Name, p.Digest)
		}
		d := p.desc
		spec := p.spec
		if d.Platform != nil {
			spec = *d.Platform // keep os.version and os.features as the index gave them
		}
		d.Platform = &spec
		l.entries = append(l.entries, d)
	}
	for _, a := range sum.Attestations {
		l.entries = append(l.entries, a.desc)
	}
	return l, nil
}

// platformKey identifies an entry's platform for replacing and matching.
func platformKey(d ocispecs.Descriptor) string {
	if d.Platform == nil {
		return "unknown"
	}
	return platforms.FormatAll(platforms.Normalize(*d.Platform))
}

func (l *entryList) platformEntries() []ocispecs.Descriptor {
	var out []ocispecs.Descriptor
	for _, d := range l.entries {
		if !IsAttestation(d) {
			out = append(out, d)
		}
	}
	return out
}

// platforms lists the platforms of the entries in order.
func (l *entryList) platforms() []string {
	var out []string
	for _, d := range l.platformEntries() {
		out = append(out, platformKey(d))
	}
	return out
}

// merge adds the entries of add. An entry for a platform l already has
// replaces it, and the attestations of the replaced manifest go with it;
// merge returns the platforms replaced. Entries already present (same
// digest) are kept once.
func (l *entryList) merge(add entryList) []string {
	newPlatforms := map[string]bool{}
	newDigests := map[digest.Digest]bool{}
	for _, d := range add.entries {
		newDigests[d.Digest] = true
		if !IsAttestation(d) {
			newPlatforms[platformKey(d)] = true
		}
	}
	dropped := map[digest.Digest]bool{}
	var replaced []string
	var kept []ocispecs.Descriptor
	for _, d := range l.entries {
		if !IsAttestation(d) && newPlatforms[platformKey(d)] {
			dropped[d.Digest] = true
			if !newDigests[d.Digest] {
				replaced = append(replaced, platformKey(d))
			}
			continue
		}
		kept = append(kept, d)
	}
	l.entries = kept[:0:0]
	for _, d := range kept {
		if IsAttestation(d) && (dropped[digest.Digest(d.Annotations[annotationReferenceDigest])] || newDigests[d.Digest]) {
			continue
		}
		l.entries = append(l.entries, d)
	}
	l.entries = append(l.entries, add.entries...)
	if l.annotations == nil && len(add.annotations) > 0 {
		l.annotations = add.annotations
	}
	return replaced
}

// indexMediaType is docker's manifest list when every entry is a docker
// manifest, as "docker manifest create" makes it, and an OCI index
// otherwise.
func indexMediaType(entries []ocispecs.Descriptor) string {
	for _, d := range entries {
		if d.MediaType != images.MediaTypeDockerSchema2Manifest {
			return ocispecs.MediaTypeImageIndex
		}
	}
	return images.MediaTypeDockerSchema2ManifestList
}

// WriteIndex stores idx in the content store with the labels that keep
// its manifests from containerd's garbage collector, and returns its
// descriptor. MediaType and SchemaVersion are filled in when empty. The
// caller holds a lease on ctx until an image names the index.
func (s *Store) WriteIndex(ctx context.Context, idx ocispecs.Index) (ocispecs.Descriptor, error) {
	return s.writeIndex(s.WithNamespace(ctx), idx)
}

func (s *Store) writeIndex(ctx context.Context, idx ocispecs.Index) (ocispecs.Descriptor, error) {
	idx.SchemaVersion = 2
	if idx.MediaType == "" {
		idx.MediaType = indexMediaType(idx.Manifests)
	}
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return ocispecs.Descriptor{}, err
	}
	desc := ocispecs.Descriptor{MediaType: idx.MediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
	labels := map[string]string{}
	for i, m := range idx.Manifests {
		labels[fmt.Sprintf("containerd.io/gc.ref.content.m.%d", i)] = m.Digest.String()
	}
	if err := content.WriteBlob(ctx, s.client.ContentStore(), "kiln-index-"+desc.Digest.String(), bytes.NewReader(b), desc, content.WithLabels(labels)); err != nil {
		return ocispecs.Descriptor{}, err
	}
	return desc, nil
}

// InspectManifest returns the stored index (or manifest) of name,
// indented, as "docker manifest inspect" prints it.
func (s *Store) InspectManifest(ctx context.Context, name string) ([]byte, error) {
	raw, err := s.RawBlob(ctx, name, nil)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return nil, fmt.Errorf("decoding the index of %s: %w", name, err)
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

// AnnotateOptions say what "kiln manifest annotate" changes.
type AnnotateOptions struct {
	// Platform picks the entry to change; nil changes the index itself,
	// which takes Annotations only.
	Platform *ocispecs.Platform
	// OS, Architecture, Variant and OSVersion replace the entry's platform
	// fields when set; OSFeatures replaces its os.features when not nil.
	OS, Architecture, Variant, OSVersion string
	OSFeatures                           []string
	// Annotations are added to the entry (or the index); an empty value
	// removes the key.
	Annotations map[string]string
}

// AnnotateManifest changes the platform fields or annotations of one entry
// of the index stored under name, or the index's own annotations, and
// stores the new index under name.
func (s *Store) AnnotateManifest(ctx context.Context, name string, opts AnnotateOptions) (*ManifestResult, error) {
	if opts.Platform == nil && (opts.OS != "" || opts.Architecture != "" || opts.Variant != "" || opts.OSVersion != "" || opts.OSFeatures != nil) {
		return nil, usage.Errorf("the OS, architecture, variant, OS version and OS features of an entry change one entry: give its platform")
	}
	if opts.Platform == nil && len(opts.Annotations) == 0 {
		return nil, usage.Errorf("nothing to change: give annotations, or the platform of an entry and what to change in it")
	}
	img, err := s.getImage(ctx, name)
	if err != nil {
		return nil, err
	}
	if !images.IsIndexType(img.Target.MediaType) {
		return nil, &NotListError{Name: img.Name, Given: name, Action: "annotate"}
	}
	ctx, release, err := s.withLease(ctx)
	if err != nil {
		return nil, fmt.Errorf("taking a containerd lease for the manifest list: %w", err)
	}
	defer release()
	raw, err := s.readBlob(ctx, img.Target)
	if err != nil {
		return nil, fmt.Errorf("reading the index of %s: %w", img.Name, err)
	}
	var idx ocispecs.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("decoding the index of %s: %w", img.Name, err)
	}
	if err := annotateIndex(&idx, opts); err != nil {
		return nil, fmt.Errorf("cannot annotate %s: %w", FamiliarName(img.Name), err)
	}
	desc, err := s.writeIndex(ctx, idx)
	if err != nil {
		return nil, fmt.Errorf("storing the manifest list %s: %w", FamiliarName(img.Name), err)
	}
	img.Target = desc
	if err := s.putImage(ctx, img); err != nil {
		return nil, err
	}
	l := entryList{entries: idx.Manifests}
	return &ManifestResult{Name: img.Name, Descriptor: desc, Platforms: l.platforms()}, nil
}

// annotateIndex applies opts to idx.
func annotateIndex(idx *ocispecs.Index, opts AnnotateOptions) error {
	if opts.Platform == nil {
		idx.Annotations = setAnnotations(idx.Annotations, opts.Annotations)
		return nil
	}
	// Entries are matched on os/arch/variant, so one whose os.features
	// were set is still found by the platform it was created with.
	want := platform.Format(*opts.Platform)
	found := -1
	var have []string
	for i, d := range idx.Manifests {
		if IsAttestation(d) || d.Platform == nil {
			continue
		}
		have = append(have, platformKey(d))
		if found < 0 && platform.Format(*d.Platform) == want {
			found = i
		}
	}
	if found < 0 {
		return fmt.Errorf("it has no %s (it has %s)", want, strings.Join(have, ", "))
	}
	d := &idx.Manifests[found]
	p := *d.Platform
	if opts.OS != "" {
		p.OS = opts.OS
	}
	if opts.Architecture != "" {
		p.Architecture = opts.Architecture
	}
	if opts.Variant != "" {
		p.Variant = opts.Variant
	}
	if opts.OSVersion != "" {
		p.OSVersion = opts.OSVersion
	}
	if opts.OSFeatures != nil {
		p.OSFeatures = opts.OSFeatures
	}
	d.Platform = &p
	d.Annotations = setAnnotations(d.Annotations, opts.Annotations)
	return nil
}

func setAnnotations(m, set map[string]string) map[string]string {
	if len(set) == 0 {
		return m
	}
	if m == nil {
		m = map[string]string{}
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if set[k] == "" {
			delete(m, k)
		} else {
			m[k] = set[k]
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// RemoveManifests removes manifest lists (images whose target is an index)
// by name; their platforms' images stay. A single-platform image is
// refused: "kiln rm" removes those.
func (s *Store) RemoveManifests(ctx context.Context, names []string) ([]string, error) {
	if len(names) == 0 {
		return nil, usage.Errorf("give the names of the manifest lists to remove")
	}
	var errs []error
	var ok []string
	for _, n := range names {
		img, err := s.getImage(ctx, n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !images.IsIndexType(img.Target.MediaType) {
			errs = append(errs, &NotListError{Name: img.Name, Given: n, Action: "remove"})
			continue
		}
		ok = append(ok, img.Name)
	}
	var removed []string
	if len(ok) > 0 {
		r, err := s.Remove(ctx, ok, RemoveOptions{})
		removed = r
		if err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errmsg.Join(errs...)
}
