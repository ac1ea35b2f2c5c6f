//go:build linux

package store

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// testRegistry serves blobs and tagged manifests of one repository as a
// registry does, on 127.0.0.1 (which kiln reaches over plain HTTP). A
// manifest whose digest is in endless is streamed without end instead.
type testRegistry struct {
	blobs   blobSet
	tags    map[string]ocispecs.Descriptor
	endless map[digest.Digest]bool
	// headSize, when set, is the size HEAD announces for tags.
	headSize int64
	served   atomic.Int64
}

// endlessCap ends an endless stream after this much, so that a kiln that
// reads on does not hang the test.
const endlessCap = 64 << 20

func (r *testRegistry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	p := req.URL.Path
	if p == "/v2/" {
		return
	}
	_, ref, ok := strings.Cut(p, "/manifests/")
	isManifest := ok
	if !ok {
		if _, ref, ok = strings.Cut(p, "/blobs/"); !ok {
			http.NotFound(w, req)
			return
		}
	}
	desc, tagged := r.tags[ref]
	if !tagged {
		d := digest.Digest(ref)
		b, ok := r.blobs[d]
		if !ok && !r.endless[d] {
			http.NotFound(w, req)
			return
		}
		desc = ocispecs.Descriptor{Digest: d, Size: int64(len(b)), MediaType: "application/octet-stream"}
		for _, m := range r.tags {
			if m.Digest == d {
				desc.MediaType = m.MediaType
			}
		}
		if isManifest && desc.MediaType == "application/octet-stream" {
			desc.MediaType = ocispecs.MediaTypeImageManifest
		}
	}
	w.Header().Set("Content-Type", desc.MediaType)
	if r.endless[desc.Digest] {
		// No size, no digest: the resolver reads the body to learn both.
		if req.Method == http.MethodHead {
			if r.headSize > 0 {
				w.Header().Set("Content-Length", strconv.FormatInt(r.headSize, 10))
				w.Header().Set("Docker-Content-Digest", desc.Digest.String())
			}
			return
		}
		chunk := []byte(strings.Repeat(`{"manifests":[`, 2048))
		for r.served.Load() < endlessCap {
			n, err := w.Write(chunk)
			r.served.Add(int64(n))
			if err != nil {
				return
			}
		}
		return
	}
	w.Header().Set("Docker-Content-Digest", desc.Digest.String())
	w.Header().Set("Content-Length", strconv.Itoa(len(r.blobs[desc.Digest])))
	if req.Method == http.MethodGet {
		n, _ := w.Write(r.blobs[desc.Digest])
		r.served.Add(int64(n))
	}
}

func startTestRegistry(t *testing.T, r *testRegistry) string {
	t.Helper()
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// pullWithin pulls name into a new embedded store, giving up after a
// minute.
func pullWithin(t *testing.T, name string, opts PullOptions) (*Store, *PullResult, error, time.Duration) {
	t.Helper()
	s := openTestStore(t)
	opts.Registry.DockerConfigDir = t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	res, err := s.Pull(ctx, name, opts)
	return s, res, err, time.Since(start)
}

func TestPullBoundsManifests(t *testing.T) {
	host := platforms.DefaultSpec()
	endless := digest.FromString("endless")

	t.Run("endless manifest behind a tag", func(t *testing.T) {
		r := &testRegistry{blobs: blobSet{}, endless: map[digest.Digest]bool{endless: true},
			tags: map[string]ocispecs.Descriptor{"1": {MediaType: ocispecs.MediaTypeImageIndex, Digest: endless}}}
		reg := startTestRegistry(t, r)
		name := reg + "/team/endless:1"
		_, _, err, took := pullWithin(t, name, PullOptions{})
		want := "registry " + reg + " sent a manifest for " + name + " that kiln refuses: the manifest at http://" + reg + "/v2/team/endless/manifests/1 is larger than kiln's bound of 4 MiB for manifests and indexes; the registry or the image is broken"
		if err == nil || err.Error() != want {
			t.Fatalf("Pull = %v\nwant %s", err, want)
		}
		if took > 10*time.Second || r.served.Load() > 16<<20 {
			t.Errorf("kiln took %s and read %d bytes of the endless manifest", took, r.served.Load())
		}
	})

	t.Run("announced too large", func(t *testing.T) {
		r := &testRegistry{blobs: blobSet{}, endless: map[digest.Digest]bool{endless: true}, headSize: 5 << 20,
			tags: map[string]ocispecs.Descriptor{"1": {MediaType: ocispecs.MediaTypeImageIndex, Digest: endless}}}
		reg := startTestRegistry(t, r)
		name := reg + "/team/large:1"
		_, _, err, _ := pullWithin(t, name, PullOptions{})
		if err == nil || !strings.Contains(err.Error(), "is 5242880 bytes, over kiln's bound of 4 MiB") || strings.Contains(err.Error(), "not found") {
			t.Fatalf("Pull = %v, want the manifest's size refused", err)
		}
	})

	t.Run("index naming a huge manifest", func(t *testing.T) {
		blobs := blobSet{}
		huge := ocispecs.Descriptor{MediaType: ocispecs.MediaTypeImageManifest, Digest: endless, Size: 1 << 40, Platform: &host}
		idx := blobs.index(huge)
		r := &testRegistry{blobs: blobs, endless: map[digest.Digest]bool{endless: true}, tags: map[string]ocispecs.Descriptor{"1": idx}}
		reg := startTestRegistry(t, r)
		name := reg + "/team/huge:1"
		s, _, err, took := pullWithin(t, name, PullOptions{})
		if err == nil || !strings.Contains(err.Error(), "manifest "+endless.String()+" is 1099511627776 bytes, over kiln's bound of 4 MiB") || strings.Contains(err.Error(), "\n") {
			t.Fatalf("Pull = %v, want the manifest's size refused", err)
		}
		if took > 10*time.Second || r.served.Load() > 1<<20 {
			t.Errorf("kiln took %s and read %d bytes", took, r.served.Load())
		}
		if got := target(t, s, name); got != "" {
			t.Errorf("%s was named (%s)", name, got)
		}
	})
}

// TestPullPlatformNamesPartialIndex: pull --platform names an index some
// platforms of which it did not fetch, as documented; the one check every
// naming path makes holds it to the platforms asked for.
func TestPullPlatformNamesPartialIndex(t *testing.T) {
	blobs := blobSet{}
	am, _ := blobs.manifest("linux/amd64", "pull")
	bm, _ := blobs.manifest("linux/s390x", "pull")
	idx := blobs.index(am, bm)
	reg := startTestRegistry(t, &testRegistry{blobs: blobs, tags: map[string]ocispecs.Descriptor{"1": idx}})
	name := reg + "/team/app:1"
	s, res, err, _ := pullWithin(t, name, PullOptions{Platforms: []ocispecs.Platform{platforms.MustParse("linux/s390x")}})
	if err != nil {
		t.Fatal(err)
	}
	if got := target(t, s, name); got != idx.Digest || res.Image.Complete || res.Image.Platforms[1].Content != ContentComplete || res.Image.Platforms[0].Content != ContentPartial {
		t.Fatalf("after pull --platform linux/s390x: %s -> %s, %+v", name, got, res.Image)
	}
}

// TestLoadBoundsManifests: a manifest of an archive is read no more than a
// registry's: an image that names a blob of 5 MiB as its manifest is refused.
func TestLoadBoundsManifests(t *testing.T) {
	s := openTestStore(t)
	blobs := blobSet{}
	big := blobs.add(ocispecs.MediaTypeImageManifest, []byte(`{"layers":[`+strings.Repeat(" ", 5<<20)+`]}`))
	_, err := s.Load(context.Background(), strings.NewReader(string(ociArchive(t, blobs, []ocispecs.Descriptor{named(big, "docker.io/library/big:1")}, nil, nil))), LoadOptions{})
	if err == nil || err.Error() != "reading image docker.io/library/big:1: manifest "+big.Digest.String()+" is "+strconv.FormatInt(big.Size, 10)+" bytes, over kiln's bound of 4 MiB for manifests and indexes" {
		t.Fatalf("Load = %v, want the manifest's size refused", err)
	}
	if got := target(t, s, "docker.io/library/big:1"); got != "" {
		t.Errorf("big:1 was named (%s)", got)
	}
}
