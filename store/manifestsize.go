package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// MaxManifestSize bounds the manifests and indexes kiln reads, from a
// registry or from its content store: 4 MiB, the size the OCI distribution
// specification asks registries to accept and about the bound containerd's
// resolver applies when it resolves a name. Real manifests are a few KiB;
// a registry that sends more is broken or hostile, and without a bound it
// could stream one forever.
const MaxManifestSize = 4 << 20

// ManifestTooLargeError reports a manifest or index over MaxManifestSize.
type ManifestTooLargeError struct {
	// What names the manifest: a URL or "index sha256:...".
	What string
	// Size is the size announced or found; 0 when the registry streamed
	// past the bound without announcing one.
	Size int64
}

func (e *ManifestTooLargeError) Error() string {
	if e.Size > 0 {
		return fmt.Sprintf("%s is %d bytes, over kiln's bound of %d MiB for manifests and indexes", e.What, e.Size, MaxManifestSize>>20)
	}
	return fmt.Sprintf("%s is larger than kiln's bound of %d MiB for manifests and indexes", e.What, MaxManifestSize>>20)
}

// checkManifestSize refuses a manifest or index descriptor over
// MaxManifestSize before anything reads it. Other blobs pass.
func checkManifestSize(desc ocispecs.Descriptor, size int64) error {
	if !images.IsIndexType(desc.MediaType) && !images.IsManifestType(desc.MediaType) {
		return nil
	}
	if size > MaxManifestSize {
		return &ManifestTooLargeError{What: fmt.Sprintf("%s %s", blobKind(desc.MediaType), desc.Digest), Size: size}
	}
	return nil
}

// boundManifests wraps a pull's handler so that an index naming a
// manifest or index over MaxManifestSize fails before it is fetched.
// Fetches of a known size are bounded by it (content.Copy reads no more).
func boundManifests(h images.HandlerFunc) images.HandlerFunc {
	return func(ctx context.Context, desc ocispecs.Descriptor) ([]ocispecs.Descriptor, error) {
		if err := checkManifestSize(desc, desc.Size); err != nil {
			return nil, err
		}
		return h(ctx, desc)
	}
}

// manifestLimit bounds the manifest responses of a registry: a response
// to .../manifests/... that announces more than MaxManifestSize fails at
// once, and its body ends in an error once it has given that much. The
// registry resolver reads the manifest behind a tag whole when the
// registry does not say its size or digest, so without this a registry
// streaming one forever would keep kiln reading.
type manifestLimit struct {
	http.RoundTripper
}

// withManifestLimit wraps a registry host's transport in manifestLimit.
func withManifestLimit(rt http.RoundTripper) http.RoundTripper { return manifestLimit{rt} }

func (l manifestLimit) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.RoundTripper.RoundTrip(req)
	if err != nil || !isManifestURL(req) || resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp, err
	}
	u := req.URL
	if resp.Request != nil && resp.Request.URL != nil {
		u = resp.Request.URL // where an HTTPS-then-HTTP fallback went
	}
	what := "the manifest at " + u.Redacted()
	if resp.ContentLength > MaxManifestSize {
		resp.Body.Close()
		return nil, &ManifestTooLargeError{What: what, Size: resp.ContentLength}
	}
	resp.Body = &limitedBody{ReadCloser: resp.Body, left: MaxManifestSize, what: what}
	return resp, nil
}

// isManifestURL reports whether req asks a registry for a manifest:
// /v2/NAME/manifests/REFERENCE.
func isManifestURL(req *http.Request) bool {
	p := req.URL.Path
	return strings.HasPrefix(p, "/v2/") && strings.Contains(p, "/manifests/")
}

// limitedBody fails a read once more than left bytes came.
type limitedBody struct {
	io.ReadCloser
	left int64
	what string
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, &ManifestTooLargeError{What: b.what}
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n, &ManifestTooLargeError{What: b.what}
	}
	return n, err
}

// readBlobBounded is content.ReadBlob, refusing a blob over
// MaxManifestSize when bounded: the size checked is the stored blob's,
// whatever the descriptor says.
func readBlobBounded(ctx context.Context, p content.Provider, desc ocispecs.Descriptor, bounded bool) ([]byte, error) {
	if !bounded {
		return content.ReadBlob(ctx, p, desc)
	}
	ra, err := p.ReaderAt(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer ra.Close()
	if ra.Size() > MaxManifestSize {
		return nil, &ManifestTooLargeError{What: fmt.Sprintf("%s %s", blobKind(desc.MediaType), desc.Digest), Size: ra.Size()}
	}
	b := make([]byte, ra.Size())
	n, err := ra.ReadAt(b, 0)
	if errors.Is(err, io.EOF) && int64(n) == ra.Size() {
		err = nil
	}
	if err == nil && int64(n) != ra.Size() {
		err = io.ErrUnexpectedEOF
	}
	return b, err
}
