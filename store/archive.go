package store

import (
	"context"
	"fmt"
	"io"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/images/archive"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/usage"
)

// Save writes the named images, every platform of each, to w as one OCI
// image layout tar. The archive also has docker's manifest.json naming the
// host's platform of each image (or its first one), so "docker load" reads
// it too. Images whose content is partial are refused (*IncompleteError).
func (s *Store) Save(ctx context.Context, w io.Writer, names []string) error {
	if len(names) == 0 {
		return usage.Errorf("give the names of the images to save")
	}
	var imgs []images.Image
	seen := map[string]bool{}
	for _, n := range names {
		img, err := s.getImage(ctx, n)
		if err != nil {
			return err
		}
		if seen[img.Name] {
			continue
		}
		seen[img.Name] = true
		sum, err := s.summarize(ctx, img, "")
		if err != nil {
			return err
		}
		if err := sum.incomplete("save", nil); err != nil {
			return err
		}
		imgs = append(imgs, img)
	}
	ctx = s.WithNamespace(ctx)
	err := archive.Export(ctx, s.client.ContentStore(), w,
		archive.WithImages(imgs),
		archive.WithPlatform(hostFirst{}),
		archive.WithAllPlatforms(),
	)
	if err != nil {
		return fmt.Errorf("writing the image archive: %w", err)
	}
	return nil
}

// hostFirst matches every real platform (not attestations) and orders the
// host's first: the exporter names the first match in docker's
// manifest.json.
type hostFirst struct{}

func (hostFirst) Match(p ocispecs.Platform) bool {
	return !(p.OS == "unknown" && p.Architecture == "unknown")
}

func (hostFirst) Less(a, b ocispecs.Platform) bool {
	host := platforms.Only(platforms.DefaultSpec())
	return host.Match(a) && !host.Match(b)
}

// LoadOptions control Load.
type LoadOptions struct {
	// Snapshotter unpacks the host's platform of each loaded image; empty
	// skips unpacking.
	Snapshotter string
	// Progress receives a line per unpack; nil discards them.
	Progress io.Writer
}

// LoadedImage is one image Load stored.
type LoadedImage struct {
	Name   string
	Digest digest.Digest
	// Unpacked is the platform unpacked, if any.
	Unpacked string
}

// unnamedPrefix names images of an archive that carry no name.
const unnamedPrefix = "docker.io/library/import"

// Load imports every platform of every image in an archive written by
// "kiln save", "docker save" or another OCI image layout tar, names them as
// the archive does and unpacks the host's platform of each. Images the
// archive does not name are stored as import@DIGEST. Every blob of every
// image must be in the archive under its own digest: otherwise Load fails
// with an *IncompleteError naming what is missing, and no name changes.
func (s *Store) Load(ctx context.Context, r io.Reader, opts LoadOptions) ([]LoadedImage, error) {
	ctx, release, err := s.withLease(ctx)
	if err != nil {
		return nil, fmt.Errorf("taking a containerd lease for the load: %w", err)
	}
	defer release()

	// The archive's content goes in under the lease, unnamed; containerd's
	// client.Import would name each image as it goes, whole or not.
	cs := s.client.ContentStore()
	index, err := archive.ImportIndex(ctx, cs, r)
	if err != nil && ctx.Err() != nil {
		// Interrupted: the archive is not to blame.
		return nil, fmt.Errorf("loading the image archive: %w", err)
	}
	if err != nil {
		return nil, &ArchiveError{Err: err}
	}
	var idx ocispecs.Index
	if err := newInventory(ctx, cs).readJSON(index, &idx); err != nil {
		return nil, fmt.Errorf("loading the image archive: %w", err)
	}
	imgs := archiveImages(idx)
	if len(imgs) == 0 {
		return nil, fmt.Errorf("the archive holds no image")
	}
	sums, err := s.nameWhole(ctx, imgs, "load", nil)
	if err != nil {
		return nil, err
	}
	p := newProgress(opts.Progress)
	var out []LoadedImage
	for i, img := range imgs {
		li := LoadedImage{Name: img.Name, Digest: img.Target.Digest}
		if opts.Snapshotter != "" {
			if li.Unpacked, err = s.unpackHost(ctx, img, sums[i], opts.Snapshotter, p); err != nil {
				return nil, err
			}
		}
		out = append(out, li)
	}
	return out, nil
}

// archiveImages names the images of an archive's index as containerd's
// importer does: by the containerd name annotation, else by the OCI
// ref.name (see archiveRefName); an entry with neither is named
// import@DIGEST, unless it is a referrer (it has a subject).
func archiveImages(idx ocispecs.Index) []images.Image {
	var imgs []images.Image
	for _, m := range idx.Manifests {
		name := m.Annotations[images.AnnotationImageName]
		if name == "" {
			if ref := m.Annotations[ocispecs.AnnotationRefName]; ref != "" {
				name = archiveRefName(ref)
			}
		}
		if name != "" {
			imgs = append(imgs, images.Image{Name: name, Target: m})
			continue
		}
		if _, ok := m.Annotations[images.AnnotationManifestSubject]; ok {
			continue
		}
		imgs = append(imgs, images.Image{Name: archive.DigestTranslator(unnamedPrefix)(m.Digest), Target: m})
	}
	return imgs
}

// archiveRefName turns an OCI ref.name annotation into an image name: a
// full reference is normalised; a bare tag ("1.0") names nothing.
func archiveRefName(ref string) string {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return ""
	}
	if _, isTag := named.(reference.Tagged); !isTag {
		if _, isDigest := named.(reference.Digested); !isDigest {
			return "" // "latest" alone parses as the repository docker.io/library/latest
		}
	}
	return reference.TagNameOnly(named).String()
}
