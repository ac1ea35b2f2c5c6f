//go:build linux

package store

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// writeImage stores a one-layer image named name in s and returns its
// layer's descriptor.
func writeImage(t *testing.T, s *Store, name string) ocispecs.Descriptor {
	t.Helper()
	ctx := s.WithNamespace(context.Background())
	ctx, done, err := s.Client().WithLease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer done(context.Background())
	cs := s.Client().ContentStore()
	put := func(mediaType string, b []byte, labels map[string]string) ocispecs.Descriptor {
		d := ocispecs.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
		if err := content.WriteBlob(ctx, cs, d.Digest.String(), bytes.NewReader(b), d, content.WithLabels(labels)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	layer := put(ocispecs.MediaTypeImageLayer, []byte("not really a tar"), nil)
	cfg, _ := json.Marshal(ocispecs.Image{Platform: ocispecs.Platform{OS: "linux", Architecture: "amd64"}, RootFS: ocispecs.RootFS{Type: "layers", DiffIDs: []digest.Digest{layer.Digest}}})
	config := put(ocispecs.MediaTypeImageConfig, cfg, nil)
	m, _ := json.Marshal(ocispecs.Manifest{MediaType: ocispecs.MediaTypeImageManifest, Config: config, Layers: []ocispecs.Descriptor{layer}})
	manifest := put(ocispecs.MediaTypeImageManifest, m, map[string]string{
		"containerd.io/gc.ref.content.config": config.Digest.String(),
		"containerd.io/gc.ref.content.l.0":    layer.Digest.String(),
	})
	manifest.Platform = &ocispecs.Platform{OS: "linux", Architecture: "amd64"}
	if _, err := s.Client().ImageService().Create(ctx, images.Image{Name: name, Target: manifest}); err != nil {
		t.Fatal(err)
	}
	return layer
}

func TestEmbeddedStore(t *testing.T) {
	root := t.TempDir()
	ctx := context.Background()
	released := 0
	open := func() *Store {
		t.Helper()
		s, err := OpenEmbedded(ctx, EmbeddedOptions{Root: root, Namespace: "test", Snapshotter: "native", Release: func() { released++ }})
		if err != nil {
			t.Fatal(err)
		}
		if !s.Embedded() || s.Dir() != EmbeddedDir(root) || s.Snapshotter("overlayfs") != "native" {
			t.Fatalf("store: embedded %v, dir %q, snapshotter %q", s.Embedded(), s.Dir(), s.Snapshotter("overlayfs"))
		}
		return s
	}

	s := open()
	layer := writeImage(t, s, "docker.io/library/app:1")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if released != 1 {
		t.Fatalf("Close released the lock %d times, want 1", released)
	}

	// The image and its content survive the process, and the database
	// opens again once closed.
	s = open()
	defer s.Close()
	sums, err := s.List(ctx, ListOptions{Snapshotter: "overlayfs"})
	if err != nil {
		t.Fatal(err)
	}
	if len(sums) != 1 || sums[0].Name != "docker.io/library/app:1" || !sums[0].Complete {
		t.Fatalf("List = %+v, want app:1 complete", sums)
	}
	// --snapshotter's default names a snapshotter the store does not run:
	// the store's own is used.
	if got := sums[0].Platforms[0]; got.Unpacked || sums[0].Snapshotter != "native" {
		t.Fatalf("platform %+v of a never unpacked image in snapshotter %q, want not unpacked in native", got, sums[0].Snapshotter)
	}
	if err := s.Tag(ctx, "app:1", []string{"app:2"}); err != nil {
		t.Fatal(err)
	}

	// Removing the last name reclaims the content before Remove returns.
	if _, err := s.Remove(ctx, []string{"app:1", "app:2"}, RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = s.Client().ContentStore().Info(s.WithNamespace(ctx), layer.Digest)
	if !errdefs.IsNotFound(err) {
		t.Fatalf("layer after removing the image: %v, want not found", err)
	}
}

func TestEmbeddedStoreInvalid(t *testing.T) {
	_, err := OpenEmbedded(context.Background(), EmbeddedOptions{Root: t.TempDir(), Namespace: "no/slash", Snapshotter: "native"})
	if err == nil {
		t.Fatal("OpenEmbedded accepted an invalid namespace")
	}
	_, err = OpenEmbedded(context.Background(), EmbeddedOptions{Root: t.TempDir(), Namespace: "default", Snapshotter: "zfs"})
	if err == nil {
		t.Fatal("OpenEmbedded accepted an unknown snapshotter")
	}
}
