package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// leaseExpiry bounds how long content received for an image that was
// never named is kept when kiln dies before releasing its lease.
const leaseExpiry = 24 * time.Hour

// Ingest is a place in the content store to receive an image into, blob
// by blob, before it is named: everything written through Content() is
// held by a lease until Release, so containerd's garbage collector leaves
// it alone while the image is incomplete.
type Ingest struct {
	s     *Store
	lease leases.Lease
}

// NewIngest takes a lease for receiving content. The caller must Release
// it; if kiln dies first the lease expires after a day.
func (s *Store) NewIngest(ctx context.Context) (*Ingest, error) {
	l, err := s.client.LeasesService().Create(s.WithNamespace(ctx), leases.WithRandomID(), leases.WithExpiration(leaseExpiry),
		leases.WithLabel("kiln/purpose", "ingest"))
	if err != nil {
		return nil, fmt.Errorf("taking a containerd lease for the build result: %w", err)
	}
	return &Ingest{s: s, lease: l}, nil
}

// Context returns ctx set to the store's namespace and the ingest's lease.
func (in *Ingest) Context(ctx context.Context) context.Context {
	return leases.WithLease(in.s.WithNamespace(ctx), in.lease.ID)
}

// Content returns containerd's content store with every call made in the
// store's namespace under the ingest's lease, whatever context the caller
// passes: BuildKit's session calls it with contexts of its own.
func (in *Ingest) Content() content.Store {
	return leasedStore{Store: in.s.client.ContentStore(), in: in}
}

// Release drops the lease; content no image names is then reclaimed.
func (in *Ingest) Release() error {
	ctx, cancel := context.WithTimeout(in.s.WithNamespace(context.Background()), 30*time.Second)
	defer cancel()
	return in.s.client.LeasesService().Delete(ctx, in.lease)
}

// leasedStore puts the namespace and lease on every call.
type leasedStore struct {
	content.Store
	in *Ingest
}

func (l leasedStore) ctx(ctx context.Context) context.Context { return l.in.Context(ctx) }

func (l leasedStore) Info(ctx context.Context, dgst digest.Digest) (content.Info, error) {
	return l.Store.Info(l.ctx(ctx), dgst)
}

func (l leasedStore) Update(ctx context.Context, info content.Info, fieldpaths ...string) (content.Info, error) {
	return l.Store.Update(l.ctx(ctx), info, fieldpaths...)
}

func (l leasedStore) Walk(ctx context.Context, fn content.WalkFunc, filters ...string) error {
	return l.Store.Walk(l.ctx(ctx), fn, filters...)
}

func (l leasedStore) Delete(ctx context.Context, dgst digest.Digest) error {
	return l.Store.Delete(l.ctx(ctx), dgst)
}

func (l leasedStore) ReaderAt(ctx context.Context, desc ocispecs.Descriptor) (content.ReaderAt, error) {
	return l.Store.ReaderAt(l.ctx(ctx), desc)
}

func (l leasedStore) Status(ctx context.Context, ref string) (content.Status, error) {
	return l.Store.Status(l.ctx(ctx), ref)
}

func (l leasedStore) ListStatuses(ctx context.Context, filters ...string) ([]content.Status, error) {
	return l.Store.ListStatuses(l.ctx(ctx), filters...)
}

func (l leasedStore) Abort(ctx context.Context, ref string) error {
	return l.Store.Abort(l.ctx(ctx), ref)
}

func (l leasedStore) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	w, err := l.Store.Writer(l.ctx(ctx), opts...)
	if err != nil {
		return nil, err
	}
	return leasedWriter{Writer: w, l: l}, nil
}

// leasedWriter commits under the ingest's lease too. BuildKit's session
// content server commits with the context of the request it serves, and a
// remote node's request carries the node's own containerd lease in its
// gRPC headers. The embedded store's metadata takes the lease of the
// commit's context, finds none of that name here and fails ("lease does
// not exist"); a containerd commits over the stream Writer opened, under
// the ingest's lease already.
type leasedWriter struct {
	content.Writer
	l leasedStore
}

func (w leasedWriter) Commit(ctx context.Context, size int64, expected digest.Digest, opts ...content.Opt) error {
	return w.Writer.Commit(w.l.ctx(ctx), size, expected, opts...)
}

// ReadIndex reads an index blob received into the ingest.
func (in *Ingest) ReadIndex(ctx context.Context, desc ocispecs.Descriptor) (ocispecs.Index, error) {
	var idx ocispecs.Index
	inv := newInventory(in.Context(ctx), in.s.client.ContentStore())
	err := inv.readJSON(desc, &idx)
	return idx, err
}

// WriteIndex stores idx under the ingest's lease (see Store.WriteIndex).
func (in *Ingest) WriteIndex(ctx context.Context, idx ocispecs.Index) (ocispecs.Descriptor, error) {
	return in.s.writeIndex(in.Context(ctx), idx)
}

// NameOptions control Ingest.Name.
type NameOptions struct {
	// Snapshotter unpacks the host's platform; empty skips unpacking.
	Snapshotter string
	// Progress receives a line per unpack; nil discards them.
	Progress io.Writer
}

// Name gives the received image desc the names, once every blob it refers
// to is in the content store: a name never points at half an image. It
// first labels the image's blobs so that containerd's garbage collector
// keeps them as long as a name does, then unpacks the host's platform.
func (in *Ingest) Name(ctx context.Context, desc ocispecs.Descriptor, names []string, opts NameOptions) error {
	ctx = in.Context(ctx)
	imgs := make([]images.Image, len(names))
	for i, n := range names {
		imgs[i] = images.Image{Name: n, Target: desc}
	}
	sums, err := in.s.nameWhole(ctx, imgs, "store", nil)
	if err != nil {
		var ie *IncompleteError
		if errors.As(err, &ie) {
			return fmt.Errorf("the build result is incomplete, so no name was changed: %w", err)
		}
		return err
	}
	if opts.Snapshotter != "" {
		if _, err := in.s.unpackHost(ctx, imgs[0], sums[0], opts.Snapshotter, newProgress(opts.Progress)); err != nil {
			return err
		}
	}
	return nil
}
