//go:build linux

package store

import (
	"bytes"
	"context"
	"testing"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc/metadata"
)

// TestIngestCommitUnderOwnLease: a remote node's exporter writes its
// result through BuildKit's session, whose content server commits each
// blob with the context of the node's request. That context carries the
// node's own containerd lease in its gRPC headers, a lease that does not
// exist here. Every write through the ingest, the commit included, must be
// held by the ingest's lease, not fail on (or be held by) the caller's.
func TestIngestCommitUnderOwnLease(t *testing.T) {
	ctx := context.Background()
	s, err := OpenEmbedded(ctx, EmbeddedOptions{Root: t.TempDir(), Namespace: "test", Snapshotter: "native"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in, err := s.NewIngest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Release()

	// What the session's content server sees: the node's lease as an
	// incoming gRPC header, and no namespace.
	remote := metadata.NewIncomingContext(ctx, metadata.Pairs(leases.GRPCHeader, "the-nodes-own-lease"))
	blob := []byte("a layer a node built")
	desc := ocispecs.Descriptor{MediaType: ocispecs.MediaTypeImageLayer, Digest: digest.FromBytes(blob), Size: int64(len(blob))}
	if err := content.WriteBlob(remote, in.Content(), "node-layer", bytes.NewReader(blob), desc); err != nil {
		t.Fatalf("writing a blob through the ingest with a node's context: %v", err)
	}

	// The blob is held by the ingest's lease: kiln's names come later.
	res, err := s.Client().LeasesService().ListResources(s.WithNamespace(ctx), in.lease)
	if err != nil {
		t.Fatal(err)
	}
	held := false
	for _, r := range res {
		held = held || (r.Type == "content" && r.ID == desc.Digest.String())
	}
	if !held {
		t.Fatalf("the ingest's lease holds %+v, not the blob %s", res, desc.Digest)
	}
	if _, err := s.CollectGarbage(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Content().Info(remote, desc.Digest); err != nil {
		t.Fatalf("the blob did not survive garbage collection under the ingest's lease: %v", err)
	}
}
