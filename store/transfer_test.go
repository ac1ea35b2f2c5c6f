//go:build linux

package store

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/usage"
)

func TestParseContainerdRef(t *testing.T) {
	dir, sock := listeningSocket(t)
	cases := []struct {
		in, address, namespace string
	}{
		{"containerd://", DefaultAddress, "kiln"},
		{"containerd:///", DefaultAddress, "kiln"},
		{"containerd://ci", DefaultAddress, "ci"},
		{"containerd:///ci", DefaultAddress, "ci"},
		{"containerd://" + sock, sock, "kiln"},
		{"containerd://" + sock + "/", sock, "kiln"},
		{"containerd://" + sock + "/k8s.io", sock, "k8s.io"},
	}
	for _, c := range cases {
		got, err := ParseContainerdRef(c.in, "kiln")
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if got.Address != c.address || got.Namespace != c.namespace {
			t.Errorf("%s: got %+v, want address %s namespace %s", c.in, got, c.address, c.namespace)
		}
	}
	for in, want := range map[string]string{
		"docker://x":                        "does not name a containerd",
		"containerd://Bad Namespace":        "invalid containerd namespace",
		"containerd://" + sock + "/a/b":     "no containerd socket at",
		"containerd://" + dir + "/x.sock/n": "no containerd socket at",
	} {
		_, err := ParseContainerdRef(in, "kiln")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one containing %q", in, err, want)
		}
	}
	if _, err := ParseContainerdRef("containerd://Bad Namespace", "kiln"); !usage.Is(err) {
		t.Errorf("an invalid namespace is not a usage error: %v", err)
	}
}

func TestCopyBetweenEmbeddedStores(t *testing.T) {
	ctx := context.Background()
	open := func(root, ns string) *Store {
		t.Helper()
		s, err := OpenEmbedded(ctx, EmbeddedOptions{Root: root, Namespace: ns, Snapshotter: "native"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	src := open(t.TempDir(), "default")
	dst := open(t.TempDir(), "other")
	writeImage(t, src, "docker.io/library/app:1")

	var progress bytes.Buffer
	res, err := src.Copy(ctx, dst, "app:1", CopyOptions{Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if res.Name != "docker.io/library/app:1" {
		t.Fatalf("copied %s", res.Name)
	}
	if n := strings.Count(progress.String(), "copied "); n != 3 {
		t.Fatalf("copied %d blobs, want 3 (manifest, config, layer):\n%s", n, progress.String())
	}
	sum, err := dst.Summary(ctx, "app:1", "")
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Complete || sum.Digest != res.Descriptor.Digest {
		t.Fatalf("destination has %+v, want the complete image %s", sum, res.Descriptor.Digest)
	}

	// Again: every blob is there already.
	progress.Reset()
	if _, err := src.Copy(ctx, dst, "app:1", CopyOptions{Progress: &progress}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(progress.String(), "copied ") || strings.Count(progress.String(), "exists ") != 3 {
		t.Fatalf("second copy:\n%s", progress.String())
	}

	// The destination's garbage collector keeps the copy: the image's
	// manifest names its children.
	if _, err := dst.CollectGarbage(ctx); err != nil {
		t.Fatal(err)
	}
	if sum, err := dst.Summary(ctx, "app:1", ""); err != nil || !sum.Complete {
		t.Fatalf("after garbage collection: %+v, %v", sum, err)
	}

	if _, err := src.Copy(ctx, src, "app:1", CopyOptions{}); err == nil || !usage.Is(err) {
		t.Fatalf("copy onto itself: %v, want a usage error", err)
	}
	if _, err := src.Copy(ctx, dst, "missing:1", CopyOptions{}); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("copy of a missing image: %v", err)
	}
}
