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

	var list IndexEntries
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
		for _, p := range add.Platforms() {
			if prev, ok := fromThisCall[p]; ok && prev != src {
				return nil, usage.Errorf("both %s and %s provide %s: give one image per platform", prev, src, p)
			}
			fromThisCall[p] = src
		}
		replaced = append(replaced, list.Join(add)...)
	}
	if len(list.platformEntries()) == 0 {
		return nil, fmt.Errorf("the sources of %s have no platform: they hold attestations only", FamiliarName(full))
	}
	desc, err := s.writeIndex(ctx, list.Index(""))
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
	return &ManifestResult{Name: full, Descriptor: desc, Platforms: list.Platforms(), Replaced: replaced}, nil
}

// IndexEntries are the entries of an index being assembled: platform
// manifests and the attestations that describe them, and the index's
// annotations. Join is the one way indexes are joined, for manifest
// create and for the results of remote nodes.
type IndexEntries struct {
	Manifests   []ocispecs.Descriptor
	Annotations map[string]string
}

// EntriesOf returns the entries of idx.
func EntriesOf(idx ocispecs.Index) IndexEntries {
	return IndexEntries{Manifests: idx.Manifests, Annotations: idx.Annotations}
}

// Index is the index of the entries. An empty mediaType makes it docker's
// manifest list when every entry is a docker manifest, as "docker manifest
// create" does, and an OCI index otherwise.
func (l IndexEntries) Index(mediaType string) ocispecs.Index {
	return ocispecs.Index{MediaType: mediaType, Manifests: l.Manifests, Annotations: l.Annotations}
}

// readIndex reads and decodes the index desc of the image name.
func (s *Store) readIndex(ctx context.Context, desc ocispecs.Descriptor, name string) (ocispecs.Index, error) {
	var idx ocispecs.Index
	raw, err := s.readBlob(ctx, desc)
	if err != nil {
		return idx, fmt.Errorf("reading the index of %s: %w", name, err)
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		return idx, fmt.Errorf("decoding the index of %s: %w", name, err)
	}
	return idx, nil
}

// entriesOf lists an image's platform manifests, each with its platform
// set (from the index, or from the config of a single manifest), and its
// attestations. Nested indexes are flattened.
func (s *Store) entriesOf(ctx context.Context, sum ImageSummary) (IndexEntries, error) {
	var l IndexEntries
	if images.IsIndexType(sum.target.MediaType) {
		idx, err := s.readIndex(ctx, sum.target, sum.Name)
		if err != nil {
			return l, err
		}
		l.Annotations = idx.Annotations
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
		l.Manifests = append(l.Manifests, d)
	}
	for _, a := range sum.Attestations {
		l.Manifests = append(l.Manifests, a.desc)
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

func (l *IndexEntries) platformEntries() []ocispecs.Descriptor {
	var out []ocispecs.Descriptor
	for _, d := range l.Manifests {
		if !IsAttestation(d) {
			out = append(out, d)
		}
	}
	return out
}

// Platforms lists the platforms of the entries in order.
func (l *IndexEntries) Platforms() []string {
	var out []string
	for _, d := range l.platformEntries() {
		out = append(out, platformKey(d))
	}
	return out
}

// Join adds the entries of add after l's. An entry for a platform l
// already has replaces it, and the attestations of the replaced manifest
// go with it; Join returns the platforms replaced. Entries already present
// (same digest) are kept once. The first annotations that say anything
// are the index's.
func (l *IndexEntries) Join(add IndexEntries) []string {
	newPlatforms := map[string]bool{}
	newDigests := map[digest.Digest]bool{}
	for _, d := range add.Manifests {
		newDigests[d.Digest] = true
		if !IsAttestation(d) {
			newPlatforms[platformKey(d)] = true
		}
	}
	dropped := map[digest.Digest]bool{}
	var replaced []string
	var kept []ocispecs.Descriptor
	for _, d := range l.Manifests {
		if !IsAttestation(d) && newPlatforms[platformKey(d)] {
			dropped[d.Digest] = true
			if !newDigests[d.Digest] {
				replaced = append(replaced, platformKey(d))
			}
			continue
		}
		kept = append(kept, d)
	}
	l.Manifests = kept[:0:0]
	for _, d := range kept {
		if IsAttestation(d) && (dropped[digest.Digest(d.Annotations[annotationReferenceDigest])] || newDigests[d.Digest]) {
			continue
		}
		l.Manifests = append(l.Manifests, d)
	}
	l.Manifests = append(l.Manifests, add.Manifests...)
	if l.Annotations == nil && len(add.Annotations) > 0 {
		l.Annotations = add.Annotations
	}
	return replaced
}

// Order puts the platform manifests in the order of ps, those ps does not
// name after them as they were, and the attestations last.
func (l *IndexEntries) Order(ps []ocispecs.Platform) {
	plats := l.platformEntries()
	sorted := make([]ocispecs.Descriptor, 0, len(l.Manifests))
	used := make([]bool, len(plats))
	for _, p := range ps {
		for i, m := range plats {
			if !used[i] && m.Platform != nil && platform.Format(*m.Platform) == platform.Format(p) {
				used[i] = true
				sorted = append(sorted, m)
			}
		}
	}
	for i, m := range plats {
		if !used[i] {
			sorted = append(sorted, m)
		}
	}
	for _, m := range l.Manifests {
		if IsAttestation(m) {
			sorted = append(sorted, m)
		}
	}
	l.Manifests = sorted
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
	idx, err := s.readIndex(ctx, img.Target, img.Name)
	if err != nil {
		return nil, err
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
	l := EntriesOf(idx)
	return &ManifestResult{Name: img.Name, Descriptor: desc, Platforms: l.Platforms()}, nil
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
