//go:build linux

package store

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// blobSet holds the blobs of test images by digest.
type blobSet map[digest.Digest][]byte

func (b blobSet) add(mediaType string, data []byte) ocispecs.Descriptor {
	d := ocispecs.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	b[d.Digest] = data
	return d
}

func (b blobSet) addJSON(mediaType string, v any) ocispecs.Descriptor {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b.add(mediaType, data)
}

// manifest adds a one-layer image of platform and returns its manifest's
// descriptor with the platform set, as an index entry, and its layer.
func (b blobSet) manifest(platform, tag string) (ocispecs.Descriptor, ocispecs.Descriptor) {
	p := platforms.MustParse(platform)
	layer := b.add(ocispecs.MediaTypeImageLayer, []byte("layer of "+platform+" "+tag))
	config := b.addJSON(ocispecs.MediaTypeImageConfig, ocispecs.Image{Platform: p, RootFS: ocispecs.RootFS{Type: "layers", DiffIDs: []digest.Digest{layer.Digest}}})
	m := b.addJSON(ocispecs.MediaTypeImageManifest, ocispecs.Manifest{
		Versioned: specsVersion(), MediaType: ocispecs.MediaTypeImageManifest, Config: config, Layers: []ocispecs.Descriptor{layer},
	})
	m.Platform = &p
	return m, layer
}

// index adds an index of the manifests.
func (b blobSet) index(ms ...ocispecs.Descriptor) ocispecs.Descriptor {
	return b.addJSON(ocispecs.MediaTypeImageIndex, ocispecs.Index{Versioned: specsVersion(), MediaType: ocispecs.MediaTypeImageIndex, Manifests: ms})
}

// named returns d as an archive's index.json entry naming it name.
func named(d ocispecs.Descriptor, name string) ocispecs.Descriptor {
	d.Platform = nil
	d.Annotations = map[string]string{images.AnnotationImageName: name}
	return d
}

func specsVersion() specs.Versioned { return specs.Versioned{SchemaVersion: 2} }

// ociArchive writes an OCI image layout tar of the blobs with index.json
// listing entries. Blobs in tamper are written with other content under
// the same file name; blobs in omit are left out.
func ociArchive(t *testing.T, blobs blobSet, entries []ocispecs.Descriptor, omit, tamper []digest.Digest) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	put := func(name string, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	idx, _ := json.Marshal(ocispecs.Index{Versioned: specsVersion(), MediaType: ocispecs.MediaTypeImageIndex, Manifests: entries})
	put("index.json", idx)
	for d, data := range blobs {
		switch {
		case contains(omit, d):
			continue
		case contains(tamper, d):
			data = append([]byte("tampered "), data...)
		}
		put("blobs/sha256/"+d.Encoded(), data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func contains(ds []digest.Digest, d digest.Digest) bool {
	for _, x := range ds {
		if x == d {
			return true
		}
	}
	return false
}

func openTestStore(t *testing.T) *Store {
	t.Helper()
	s, err := OpenEmbedded(context.Background(), EmbeddedOptions{Root: t.TempDir(), Namespace: "test", Snapshotter: "native"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// target returns the digest name points at, or "" when it names nothing.
func target(t *testing.T, s *Store, name string) digest.Digest {
	t.Helper()
	img, err := s.Client().ImageService().Get(s.WithNamespace(context.Background()), name)
	if err != nil {
		return ""
	}
	return img.Target.Digest
}

func TestLoadRefusesIncompleteArchives(t *testing.T) {
	ctx := context.Background()
	const app = "docker.io/library/app:1"
	good := blobSet{}
	gm, _ := good.manifest("linux/amd64", "good")
	gidx := good.index(gm)
	// withApp returns a store where a whole archive named app:1. Each case
	// has its own: blobs a refused load brought stay until garbage
	// collection, and would complete the next case's image.
	withApp := func(t *testing.T) *Store {
		s := openTestStore(t)
		if _, err := s.Load(ctx, bytes.NewReader(ociArchive(t, good, []ocispecs.Descriptor{named(gidx, app)}, nil, nil)), LoadOptions{}); err != nil {
			t.Fatal(err)
		}
		if got := target(t, s, app); got != gidx.Digest {
			t.Fatalf("%s = %s after loading a whole archive, want %s", app, got, gidx.Digest)
		}
		return s
	}

	bad := blobSet{}
	am, alayer := bad.manifest("linux/amd64", "new")
	bm, _ := bad.manifest("linux/arm64", "new")
	bidx := bad.index(am, bm)
	other := blobSet{}
	om, _ := other.manifest("linux/amd64", "other")
	for name, tc := range map[string]struct {
		entries      []ocispecs.Descriptor
		omit, tamper []digest.Digest
		want         string
	}{
		"missing layer": {
			entries: []ocispecs.Descriptor{named(bidx, app)}, omit: []digest.Digest{alayer.Digest},
			want: "linux/amd64 (layer " + short(alayer.Digest) + " not present)",
		},
		"missing manifest": {
			entries: []ocispecs.Descriptor{named(bidx, app)}, omit: []digest.Digest{bm.Digest},
			want: "linux/arm64 (manifest " + short(bm.Digest) + " not present)",
		},
		"blob not matching its digest": {
			entries: []ocispecs.Descriptor{named(bidx, app)}, tamper: []digest.Digest{alayer.Digest},
			want: "linux/amd64 (layer " + short(alayer.Digest) + " not present)",
		},
		"missing index": {
			entries: []ocispecs.Descriptor{named(bidx, app)}, omit: []digest.Digest{bidx.Digest},
			want: "index (index " + short(bidx.Digest) + " not present)",
		},
		// A whole image beside a broken one is not named either.
		"one of two": {
			entries: []ocispecs.Descriptor{named(om, "docker.io/library/other:1"), named(bidx, app)}, omit: []digest.Digest{alayer.Digest},
			want: "linux/amd64 (layer " + short(alayer.Digest) + " not present)",
		},
	} {
		t.Run(name, func(t *testing.T) {
			s := withApp(t)
			blobs := blobSet{}
			for d, b := range bad {
				blobs[d] = b
			}
			for d, b := range other {
				blobs[d] = b
			}
			_, err := s.Load(ctx, bytes.NewReader(ociArchive(t, blobs, tc.entries, tc.omit, tc.tamper)), LoadOptions{})
			var ie *IncompleteError
			if !errors.As(err, &ie) || ie.Action != "load" || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "no image was loaded and no name changed") {
				t.Fatalf("Load = %v, want an *IncompleteError naming %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "kiln pull") {
				t.Errorf("the error is not one line about the archive: %q", err)
			}
			if got := target(t, s, app); got != gidx.Digest {
				t.Errorf("%s moved to %s", app, got)
			}
			if got := target(t, s, "docker.io/library/other:1"); got != "" {
				t.Errorf("other:1 was named (%s) though the archive was refused", got)
			}
		})
	}
}

func short(d digest.Digest) string { return "sha256:" + d.Encoded()[:12] }

// loadImage loads a whole image of blobs named name into s.
func loadImage(t *testing.T, s *Store, blobs blobSet, d ocispecs.Descriptor, name string) {
	t.Helper()
	if _, err := s.Load(context.Background(), bytes.NewReader(ociArchive(t, blobs, []ocispecs.Descriptor{named(d, name)}, nil, nil)), LoadOptions{}); err != nil {
		t.Fatal(err)
	}
}

// removeBlob deletes a blob from the store's content store, as a crash or
// "ctr content rm" would leave an image.
func removeBlob(t *testing.T, s *Store, d digest.Digest) {
	t.Helper()
	if err := s.Client().ContentStore().Delete(s.WithNamespace(context.Background()), d); err != nil {
		t.Fatal(err)
	}
}

func TestTagRefusesPartialImages(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
	blobs := blobSet{}
	am, alayer := blobs.manifest("linux/amd64", "a")
	bm, _ := blobs.manifest("linux/arm64", "a")
	idx := blobs.index(am, bm)
	loadImage(t, s, blobs, idx, "docker.io/library/partial:1")
	other := blobSet{}
	om, _ := other.manifest("linux/amd64", "good")
	loadImage(t, s, other, om, "docker.io/library/app:1")
	removeBlob(t, s, alayer.Digest)

	err := s.Tag(ctx, "partial:1", []string{"app:1", "new:1"})
	var ie *IncompleteError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "linux/amd64 (layer "+short(alayer.Digest)+" not present)") {
		t.Fatalf("Tag of a partial image = %v, want an *IncompleteError", err)
	}
	if strings.Contains(err.Error(), "tag with --platform") {
		t.Errorf("the error suggests a flag tag does not have: %v", err)
	}
	if got := target(t, s, "docker.io/library/app:1"); got != om.Digest {
		t.Errorf("app:1 moved to %s", got)
	}
	if got := target(t, s, "docker.io/library/new:1"); got != "" {
		t.Errorf("new:1 was created, pointing at %s", got)
	}
	// A whole image is tagged.
	if err := s.Tag(ctx, "app:1", []string{"new:1"}); err != nil || target(t, s, "docker.io/library/new:1") != om.Digest {
		t.Fatalf("Tag of a whole image = %v", err)
	}
}

func TestCreateManifestRefusesAmendingPartialList(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
	blobs := blobSet{}
	am, alayer := blobs.manifest("linux/amd64", "list")
	bm, _ := blobs.manifest("linux/arm64", "list")
	idx := blobs.index(am, bm)
	loadImage(t, s, blobs, idx, "docker.io/library/list:1")
	src := blobSet{}
	sm, _ := src.manifest("linux/s390x", "src")
	loadImage(t, s, src, sm, "docker.io/library/src:1")
	removeBlob(t, s, alayer.Digest)

	_, err := s.CreateManifest(ctx, "list:1", []string{"src:1"}, ManifestCreateOptions{Amend: true})
	var ie *IncompleteError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "linux/amd64 (layer "+short(alayer.Digest)+" not present)") {
		t.Fatalf("CreateManifest --amend of a partial list = %v, want an *IncompleteError", err)
	}
	if got := target(t, s, "docker.io/library/list:1"); got != idx.Digest {
		t.Errorf("list:1 moved to %s", got)
	}
}

func TestNameWholeScope(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t)
	blobs := blobSet{}
	am, _ := blobs.manifest("linux/amd64", "scope")
	bm, blayer := blobs.manifest("linux/arm64", "scope")
	idx := blobs.index(am, bm)
	loadImage(t, s, blobs, idx, "docker.io/library/scope:1")
	removeBlob(t, s, blayer.Digest)
	img := images.Image{Name: "docker.io/library/scope:2", Target: idx}

	// What pull --platform linux/amd64 promises is whole; all of it is not.
	if _, err := s.nameWhole(ctx, []images.Image{img}, "pull", platforms.Only(platforms.MustParse("linux/amd64"))); err != nil {
		t.Fatalf("nameWhole(linux/amd64) = %v", err)
	}
	img.Name = "docker.io/library/scope:3"
	_, err := s.nameWhole(ctx, []images.Image{img}, "pull", platforms.Only(platforms.MustParse("linux/arm64")))
	if err == nil || !strings.Contains(err.Error(), "linux/arm64") {
		t.Fatalf("nameWhole(linux/arm64) = %v", err)
	}
	if _, err := s.nameWhole(ctx, []images.Image{img}, "pull", nil); err == nil {
		t.Fatal("nameWhole(all) named a partial image")
	}
	if target(t, s, "docker.io/library/scope:3") != "" {
		t.Fatal("scope:3 was named")
	}
}
