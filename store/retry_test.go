//go:build linux

package store

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestPullRetriesAResetBlob: a registry whose connection is reset in the
// middle of a layer once still gives the whole image, the retry asking
// only for the rest, and the progress says it tried again.
func TestPullRetriesAResetBlob(t *testing.T) {
	blobs := blobSet{}
	data := make([]byte, 1<<20)
	rand.Read(data)
	layer := blobs.add(ocispecs.MediaTypeImageLayer, data)
	config := blobs.addJSON(ocispecs.MediaTypeImageConfig, ocispecs.Image{Platform: ocispecs.Platform{OS: "linux", Architecture: "amd64"}})
	m := blobs.addJSON(ocispecs.MediaTypeImageManifest, ocispecs.Manifest{Versioned: specsVersion(), MediaType: ocispecs.MediaTypeImageManifest, Config: config, Layers: []ocispecs.Descriptor{layer}})
	reg := &testRegistry{blobs: blobs, tags: map[string]ocispecs.Descriptor{"1": m}}
	var resets, ranged atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, layer.Digest.String()) {
			if req.Header.Get("Range") != "" {
				ranged.Add(1)
				// The rest, as a registry serves a range.
				var from int
				if _, err := fmt.Sscanf(req.Header.Get("Range"), "bytes=%d-", &from); err == nil && from > 0 {
					w.Header().Set("Content-Range", "bytes "+strconv.Itoa(from)+"-"+strconv.Itoa(len(data)-1)+"/"+strconv.Itoa(len(data)))
					w.Header().Set("Content-Length", strconv.Itoa(len(data)-from))
					w.WriteHeader(http.StatusPartialContent)
					w.Write(data[from:])
					return
				}
			}
			if resets.Add(1) == 1 {
				w.Header().Set("Content-Length", strconv.Itoa(len(data)))
				w.WriteHeader(http.StatusOK)
				w.Write(data[:256<<10])
				w.(http.Flusher).Flush()
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					conn.(*net.TCPConn).SetLinger(0) // a reset, not a clean close
					conn.Close()
				}
				return
			}
		}
		reg.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	name := strings.TrimPrefix(srv.URL, "http://") + "/team/reset:1"
	var out bytes.Buffer
	s, res, err, _ := pullWithin(t, name, PullOptions{Platforms: []ocispecs.Platform{{OS: "linux", Architecture: "amd64"}}, Progress: &out})
	if err != nil {
		t.Fatalf("Pull: %v\n%s", err, out.String())
	}
	if !res.Image.Complete || target(t, s, name) != m.Digest {
		t.Fatalf("after the pull: %+v", res.Image)
	}
	if !strings.Contains(out.String(), "pulling  layer") || !strings.Contains(out.String(), "again (attempt 2 of 5)") || !strings.Contains(out.String(), "pulled   layer") {
		t.Errorf("progress does not show the retry:\n%s", out.String())
	}
	if resets.Load() < 1 {
		t.Error("the layer was never reset")
	}
	t.Logf("progress:\n%s(%d ranged requests)", out.String(), ranged.Load())
}
