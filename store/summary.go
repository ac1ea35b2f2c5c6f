package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/platform"
)

// Content states of a platform or an image.
const (
	// ContentComplete means every blob (manifest, config, layers) is in the
	// content store.
	ContentComplete = "complete"
	// ContentPartial means some blob is missing, for example because only
	// some platforms were pulled.
	ContentPartial = "partial"
)

// Annotations BuildKit puts on attestation manifests in an index.
const (
	annotationReferenceType   = "vnd.docker.reference.type"
	annotationReferenceDigest = "vnd.docker.reference.digest"
	referenceTypeAttestation  = "attestation-manifest"
)

// Blob names one piece of content an image refers to.
type Blob struct {
	// Kind is index, manifest, config, layer or blob.
	Kind   string        `json:"kind"`
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
}

// PlatformSummary describes one platform of an image.
type PlatformSummary struct {
	// Platform is os/arch[/variant], or "unknown" when neither the index
	// nor a present config says.
	Platform string `json:"platform"`
	// Digest and MediaType are the platform's manifest.
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	// Content is ContentComplete or ContentPartial.
	Content string `json:"content"`
	// Missing lists the blobs that are not in the content store.
	Missing []Blob `json:"missing,omitempty"`
	// Unpacked reports whether the platform's layers are unpacked in the
	// snapshotter the summary was made for.
	Unpacked bool `json:"unpacked"`
	// Size is the bytes of the platform's blobs present in the content store.
	Size int64 `json:"size"`
	// Created is the config's creation time, when the config is present.
	Created *time.Time `json:"created,omitempty"`

	spec ocispecs.Platform
	desc ocispecs.Descriptor
}

// AttestationSummary describes an attestation manifest (provenance, SBOM)
// of an index. Attestations are not platforms.
type AttestationSummary struct {
	Digest digest.Digest `json:"digest"`
	// For is the digest of the manifest the attestation is about.
	For     digest.Digest `json:"for,omitempty"`
	Content string        `json:"content"`
	Missing []Blob        `json:"missing,omitempty"`

	desc ocispecs.Descriptor
}

// ImageSummary describes one named image: its index (or manifest), its
// platforms and what of it is in the content store.
type ImageSummary struct {
	Name string `json:"name"`
	// Digest and MediaType are the image's target: an index or a manifest.
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	// Platforms lists the image's platforms; attestations are not among them.
	Platforms    []PlatformSummary    `json:"platforms"`
	Attestations []AttestationSummary `json:"attestations,omitempty"`
	// Missing lists missing index blobs (the top-level one or nested ones).
	Missing []Blob `json:"missing,omitempty"`
	// Complete is true when every blob the image refers to is present.
	Complete bool `json:"complete"`
	// Size is the bytes of the image's distinct blobs present in the
	// content store.
	Size int64 `json:"size"`
	// Created is the newest creation time among the present configs, or
	// when containerd recorded the name if no config is present.
	Created time.Time `json:"created"`
	// Snapshotter is the snapshotter Unpacked refers to; empty when unpack
	// state was not checked.
	Snapshotter string `json:"snapshotter,omitempty"`

	target ocispecs.Descriptor
}

// IsAttestation reports whether an index entry is an attestation manifest
// rather than a platform: BuildKit marks those with the platform
// unknown/unknown and the annotation vnd.docker.reference.type.
func IsAttestation(desc ocispecs.Descriptor) bool {
	if desc.Annotations[annotationReferenceType] == referenceTypeAttestation {
		return true
	}
	return desc.Platform != nil && desc.Platform.OS == "unknown" && desc.Platform.Architecture == "unknown"
}

// blobKind names a descriptor's role for messages and progress lines.
func blobKind(mediaType string) string {
	switch {
	case images.IsIndexType(mediaType):
		return "index"
	case images.IsManifestType(mediaType):
		return "manifest"
	case images.IsConfigType(mediaType) || images.IsKnownConfig(mediaType):
		return "config"
	case images.IsLayerType(mediaType) || images.IsAttestationType(mediaType):
		return "layer"
	}
	return "blob"
}

func blobOf(d ocispecs.Descriptor) Blob {
	return Blob{Kind: blobKind(d.MediaType), Digest: d.Digest, Size: d.Size}
}

// inventory looks blobs up in the content store once each and remembers
// their sizes.
type inventory struct {
	ctx     context.Context
	cs      content.Store
	present map[digest.Digest]int64
	absent  map[digest.Digest]bool
}

func newInventory(ctx context.Context, cs content.Store) *inventory {
	return &inventory{ctx: ctx, cs: cs, present: map[digest.Digest]int64{}, absent: map[digest.Digest]bool{}}
}

// has reports whether d is in the content store.
func (inv *inventory) has(d ocispecs.Descriptor) (bool, error) {
	if _, ok := inv.present[d.Digest]; ok {
		return true, nil
	}
	if inv.absent[d.Digest] {
		return false, nil
	}
	info, err := inv.cs.Info(inv.ctx, d.Digest)
	switch {
	case errdefs.IsNotFound(err):
		inv.absent[d.Digest] = true
		return false, nil
	case err != nil:
		return false, fmt.Errorf("looking up blob %s in containerd's content store: %w", d.Digest, err)
	}
	inv.present[d.Digest] = info.Size
	return true, nil
}

func (inv *inventory) readJSON(d ocispecs.Descriptor, v any) error {
	// Whatever is read as an index or a manifest is bounded: an archive
	// or an index may name a blob of any size as one.
	b, err := readBlobBounded(inv.ctx, inv.cs, d, blobKind(d.MediaType) != "config")
	var large *ManifestTooLargeError
	if errors.As(err, &large) {
		return err // it names the blob
	}
	if err != nil {
		return fmt.Errorf("reading %s %s: %w", blobKind(d.MediaType), d.Digest, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decoding %s %s: %w", blobKind(d.MediaType), d.Digest, err)
	}
	return nil
}

// entries walks an index (nested indexes included) and returns its
// platform manifests and attestation manifests, plus missing index blobs.
func (inv *inventory) entries(desc ocispecs.Descriptor, depth int) (plats, atts []ocispecs.Descriptor, missing []Blob, err error) {
	if images.IsManifestType(desc.MediaType) {
		return []ocispecs.Descriptor{desc}, nil, nil, nil
	}
	if !images.IsIndexType(desc.MediaType) {
		return nil, nil, nil, fmt.Errorf("image target %s has media type %q, which is neither an index nor a manifest", desc.Digest, desc.MediaType)
	}
	ok, err := inv.has(desc)
	if err != nil {
		return nil, nil, nil, err
	}
	if !ok {
		return nil, nil, []Blob{blobOf(desc)}, nil
	}
	if depth > 4 {
		return nil, nil, nil, fmt.Errorf("index %s nests more than 4 indexes deep", desc.Digest)
	}
	var idx ocispecs.Index
	if err := inv.readJSON(desc, &idx); err != nil {
		return nil, nil, nil, err
	}
	for _, m := range idx.Manifests {
		switch {
		case images.IsIndexType(m.MediaType):
			p, a, miss, err := inv.entries(m, depth+1)
			if err != nil {
				return nil, nil, nil, err
			}
			plats, atts, missing = append(plats, p...), append(atts, a...), append(missing, miss...)
		case IsAttestation(m):
			atts = append(atts, m)
		default:
			plats = append(plats, m)
		}
	}
	return plats, atts, missing, nil
}

// manifestContent checks a manifest and its config and layers. It returns
// the blobs present and missing, and the decoded manifest and config when
// present.
func (inv *inventory) manifestContent(m ocispecs.Descriptor) (blobs []ocispecs.Descriptor, missing []Blob, manifest *ocispecs.Manifest, config *ocispecs.Image, err error) {
	ok, err := inv.has(m)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if !ok {
		return nil, []Blob{blobOf(m)}, nil, nil, nil
	}
	blobs = append(blobs, m)
	manifest = &ocispecs.Manifest{}
	if err := inv.readJSON(m, manifest); err != nil {
		return nil, nil, nil, nil, err
	}
	for _, d := range append([]ocispecs.Descriptor{manifest.Config}, manifest.Layers...) {
		ok, err := inv.has(d)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		if !ok {
			missing = append(missing, blobOf(d))
			continue
		}
		blobs = append(blobs, d)
	}
	if ok, _ := inv.has(manifest.Config); ok && images.IsKnownConfig(manifest.Config.MediaType) {
		config = &ocispecs.Image{}
		if err := inv.readJSON(manifest.Config, config); err != nil {
			return nil, nil, nil, nil, err
		}
	}
	return blobs, missing, manifest, config, nil
}

// summarize describes img. With a snapshotter it also checks which
// platforms are unpacked there.
func (s *Store) summarize(ctx context.Context, img images.Image, snapshotter string) (ImageSummary, error) {
	snapshotter = s.snapshotterName(snapshotter)
	ctx = s.WithNamespace(ctx)
	inv := newInventory(ctx, s.client.ContentStore())
	sum := ImageSummary{
		Name:        img.Name,
		Digest:      img.Target.Digest,
		MediaType:   img.Target.MediaType,
		Snapshotter: snapshotter,
		target:      img.Target,
		Platforms:   []PlatformSummary{},
	}
	all := map[digest.Digest]bool{img.Target.Digest: true}
	plats, atts, missing, err := inv.entries(img.Target, 0)
	if err != nil {
		return sum, fmt.Errorf("reading image %s: %w", img.Name, err)
	}
	sum.Missing = missing
	for _, m := range plats {
		ps := PlatformSummary{Digest: m.Digest, MediaType: m.MediaType, desc: m}
		blobs, miss, _, config, err := inv.manifestContent(m)
		if err != nil {
			return sum, fmt.Errorf("reading image %s: %w", img.Name, err)
		}
		switch {
		case m.Platform != nil:
			ps.spec = platforms.Normalize(*m.Platform)
		case config != nil:
			ps.spec = platforms.Normalize(config.Platform)
		}
		ps.Platform = platform.Format(ps.spec)
		ps.Missing = miss
		ps.Content = contentState(miss)
		seen := map[digest.Digest]bool{}
		for _, b := range blobs {
			all[b.Digest] = true
			if !seen[b.Digest] {
				seen[b.Digest] = true
				ps.Size += inv.present[b.Digest]
			}
		}
		if config != nil {
			ps.Created = config.Created
			if snapshotter != "" {
				ps.Unpacked, err = s.isUnpacked(ctx, snapshotter, config.RootFS.DiffIDs)
				if err != nil {
					return sum, err
				}
			}
		}
		sum.Platforms = append(sum.Platforms, ps)
	}
	for _, a := range atts {
		as := AttestationSummary{Digest: a.Digest, For: digest.Digest(a.Annotations[annotationReferenceDigest]), desc: a}
		blobs, miss, _, _, err := inv.manifestContent(a)
		if err != nil {
			return sum, fmt.Errorf("reading image %s: %w", img.Name, err)
		}
		for _, b := range blobs {
			all[b.Digest] = true
		}
		as.Missing = miss
		as.Content = contentState(miss)
		sum.Attestations = append(sum.Attestations, as)
	}
	sum.Complete = len(sum.Missing) == 0
	for _, p := range sum.Platforms {
		sum.Complete = sum.Complete && p.Content == ContentComplete
		if p.Created != nil && p.Created.After(sum.Created) {
			sum.Created = *p.Created
		}
	}
	for _, a := range sum.Attestations {
		sum.Complete = sum.Complete && a.Content == ContentComplete
	}
	if sum.Created.IsZero() {
		sum.Created = img.CreatedAt
	}
	for d := range all {
		sum.Size += inv.present[d]
	}
	return sum, nil
}

func contentState(missing []Blob) string {
	if len(missing) == 0 {
		return ContentComplete
	}
	return ContentPartial
}

// isUnpacked reports whether the layers with these diff IDs are unpacked in
// the snapshotter: the snapshot named by their chain ID exists.
func (s *Store) isUnpacked(ctx context.Context, snapshotter string, diffIDs []digest.Digest) (bool, error) {
	if len(diffIDs) == 0 {
		return false, nil
	}
	sn := s.client.SnapshotService(snapshotter)
	if sn == nil {
		// The embedded store has no such snapshotter, so nothing is
		// unpacked in it.
		return false, nil
	}
	_, err := sn.Stat(ctx, identity.ChainID(diffIDs).String())
	switch {
	case err == nil:
		return true, nil
	case errdefs.IsNotFound(err):
		return false, nil
	}
	return false, &SnapshotterError{Snapshotter: snapshotter, Err: err}
}

// hostPlatform returns the platform of img this host runs natively, if it
// has one.
func (sum ImageSummary) hostPlatform() (PlatformSummary, bool) {
	host := platforms.Only(platforms.DefaultSpec())
	best := -1
	for i, p := range sum.Platforms {
		if p.Platform == "unknown" || !host.Match(p.spec) {
			continue
		}
		if best < 0 || host.Less(p.spec, sum.Platforms[best].spec) {
			best = i
		}
	}
	if best < 0 {
		return PlatformSummary{}, false
	}
	return sum.Platforms[best], true
}

// platformNames lists the image's platforms as strings.
func (sum ImageSummary) platformNames() []string {
	out := make([]string, len(sum.Platforms))
	for i, p := range sum.Platforms {
		out[i] = p.Platform
	}
	return out
}
