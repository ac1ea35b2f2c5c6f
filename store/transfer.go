package store

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/identifiers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/semaphore"

	"github.com/kiln-build/kiln/usage"
)

// ContainerdScheme starts the name of a containerd as push and pull take
// it in place of a registry: containerd://[ADDRESS][/NAMESPACE].
const ContainerdScheme = "containerd://"

// ContainerdRef names a running containerd and one of its namespaces.
type ContainerdRef struct {
	Address   string
	Namespace string
}

func (r ContainerdRef) String() string {
	return fmt.Sprintf("namespace %s of the containerd at %s", r.Namespace, r.Address)
}

// IsContainerdRef reports whether s names a containerd rather than an image.
func IsContainerdRef(s string) bool { return strings.HasPrefix(s, ContainerdScheme) }

// ParseContainerdRef parses containerd://[ADDRESS][/NAMESPACE]. ADDRESS is
// an absolute socket path (default DefaultAddress); NAMESPACE defaults to
// namespace. "containerd://" alone is the default containerd,
// "containerd://ci" or "containerd:///ci" its namespace ci,
// "containerd:///run/k3s/containerd/containerd.sock/k8s.io" a namespace of
// another containerd: the longest prefix that is a socket is the address.
func ParseContainerdRef(s, namespace string) (ContainerdRef, error) {
	rest, ok := strings.CutPrefix(s, ContainerdScheme)
	if !ok {
		return ContainerdRef{}, usage.Errorf("%q does not name a containerd: write containerd://[ADDRESS][/NAMESPACE]", s)
	}
	ref := ContainerdRef{Address: DefaultAddress, Namespace: namespace}
	rest = strings.TrimSuffix(rest, "/")
	switch {
	case rest == "":
	case !strings.HasPrefix(rest, "/"):
		ref.Namespace = rest
	case isSocket(rest):
		ref.Address = rest
	case isSocket(filepath.Dir(rest)):
		ref.Address, ref.Namespace = filepath.Dir(rest), filepath.Base(rest)
	case filepath.Dir(rest) == "/":
		ref.Namespace = rest[1:]
	default:
		return ContainerdRef{}, fmt.Errorf("no containerd socket at %s or %s: write containerd://ADDRESS[/NAMESPACE] with the socket's absolute path, for example %s%s/default", rest, filepath.Dir(rest), ContainerdScheme, DefaultAddress)
	}
	if err := identifiers.Validate(ref.Namespace); err != nil {
		return ContainerdRef{}, usage.Errorf("invalid containerd namespace %q in %s: use letters, digits, '.', '_' and '-'", ref.Namespace, s)
	}
	return ref, nil
}

func isSocket(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode()&fs.ModeSocket != 0
}

// CopyOptions control Copy.
type CopyOptions struct {
	// Snapshotter unpacks the host's platform in the destination; empty
	// skips unpacking.
	Snapshotter string
	// Progress receives one line per blob; nil discards them.
	Progress io.Writer
}

// CopyResult is what Copy stored in the destination.
type CopyResult struct {
	// Name is the image's name, the same in both stores.
	Name string
	// Descriptor is the image's index or manifest.
	Descriptor ocispecs.Descriptor
	// Unpacked is the platform unpacked in the destination, if any.
	Unpacked string
}

// Copy copies the named image, every platform with all its content, from s
// into dst under the same name, and unpacks the host's platform there: from
// the embedded store into a running containerd, or back. Blobs dst already
// has are not copied again. A partial image is refused, naming what is
// missing. name may also be a digest as "kiln images -q" prints it.
func (s *Store) Copy(ctx context.Context, dst *Store, name string, opts CopyOptions) (*CopyResult, error) {
	if s.Same(dst) {
		return nil, usage.Errorf("%s is where the image is already: name another containerd or namespace, as containerd://[ADDRESS][/NAMESPACE]", dst.describe())
	}
	img, err := s.getImage(ctx, name)
	if err != nil {
		return nil, err
	}
	sctx := s.WithNamespace(ctx)
	sum, err := s.summarize(sctx, img, "")
	if err != nil {
		return nil, err
	}
	if err := sum.incomplete("copy", nil); err != nil {
		return nil, err
	}
	dctx, release, err := dst.withLease(ctx)
	if err != nil {
		return nil, fmt.Errorf("taking a lease in %s for the copy: %w", dst.describe(), err)
	}
	defer release()

	p := newProgress(opts.Progress)
	scs, dcs := s.client.ContentStore(), dst.client.ContentStore()
	copyBlob := func(_ context.Context, desc ocispecs.Descriptor) ([]ocispecs.Descriptor, error) {
		if err := copyContent(sctx, scs, dctx, dcs, desc, p); err != nil {
			return nil, err
		}
		return images.Children(dctx, dcs, desc)
	}
	// Each index and manifest gets containerd's garbage-collection labels
	// naming its children, so that the image record keeps all of them.
	handler := images.SetChildrenLabels(dcs, images.HandlerFunc(copyBlob))
	if err := images.Dispatch(dctx, handler, semaphore.NewWeighted(maxConcurrentTransfers), img.Target); err != nil {
		return nil, fmt.Errorf("copying %s to %s: %w", img.Name, dst.describe(), err)
	}
	copied := images.Image{Name: img.Name, Target: img.Target, Labels: img.Labels}
	dsums, err := dst.nameWhole(dctx, []images.Image{copied}, "copy", nil)
	if err != nil {
		return nil, fmt.Errorf("in %s: %w", dst.describe(), err)
	}
	res := &CopyResult{Name: img.Name, Descriptor: img.Target}
	if opts.Snapshotter != "" {
		if res.Unpacked, err = dst.unpackHost(dctx, copied, dsums[0], opts.Snapshotter, p); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// copyContent copies one blob from the source store to the destination,
// with the labels that say where it came from, unless the destination has
// it already.
func copyContent(sctx context.Context, scs content.Store, dctx context.Context, dcs content.Store, desc ocispecs.Descriptor, p *progress) error {
	if _, err := dcs.Info(dctx, desc.Digest); err == nil {
		p.blob("exists", desc)
		return nil
	} else if !errdefs.IsNotFound(err) {
		return err
	}
	var labels map[string]string
	if info, err := scs.Info(sctx, desc.Digest); err == nil {
		for k, v := range info.Labels {
			if strings.HasPrefix(k, "containerd.io/distribution.source.") || k == "containerd.io/uncompressed" {
				if labels == nil {
					labels = map[string]string{}
				}
				labels[k] = v
			}
		}
	}
	ra, err := scs.ReaderAt(sctx, desc)
	if err != nil {
		return fmt.Errorf("reading %s %s: %w", blobKind(desc.MediaType), desc.Digest, err)
	}
	defer ra.Close()
	p.blob("copying", desc)
	err = content.WriteBlob(dctx, dcs, "kiln-copy-"+desc.Digest.String(), content.NewReader(ra), desc, content.WithLabels(labels))
	if err != nil && !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("writing %s %s: %w", blobKind(desc.MediaType), desc.Digest, err)
	}
	p.blob("copied", desc)
	return nil
}

// describe names the store in messages.
func (s *Store) describe() string {
	if s.embedded != nil {
		return fmt.Sprintf("namespace %s of kiln's embedded store in %s", s.namespace, s.embedded.dir)
	}
	return ContainerdRef{Address: s.address, Namespace: s.namespace}.String()
}

// Same reports whether s and other are the same namespace of the same
// store.
func (s *Store) Same(other *Store) bool {
	if s.namespace != other.namespace {
		return false
	}
	if s.embedded != nil || other.embedded != nil {
		return s.embedded != nil && other.embedded != nil && s.embedded.dir == other.embedded.dir
	}
	a, errA := filepath.EvalSymlinks(s.address)
	b, errB := filepath.EvalSymlinks(other.address)
	return s.address == other.address || errA == nil && errB == nil && a == b
}

// URL is r as push and pull take it: containerd://ADDRESS/NAMESPACE.
func (r ContainerdRef) URL() string {
	return ContainerdScheme + r.Address + "/" + r.Namespace
}

// FindInContainerd looks for the image name in the containerd at address,
// in namespace first and then in its other namespaces, so that a build on
// the embedded store that cannot reach a registry can say where a copy is.
// It reports false when no containerd answers there or none of its
// namespaces names the image.
func FindInContainerd(ctx context.Context, address, namespace, name string) (ContainerdRef, bool) {
	s, err := Open(ctx, address, namespace)
	if err != nil {
		return ContainerdRef{}, false
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	all, err := s.client.NamespaceService().List(ctx)
	if err != nil {
		return ContainerdRef{}, false
	}
	order := append([]string{namespace}, slices.DeleteFunc(all, func(ns string) bool { return ns == namespace })...)
	for _, ns := range order {
		if _, err := s.client.ImageService().Get(namespaces.WithNamespace(ctx, ns), name); err == nil {
			return ContainerdRef{Address: s.address, Namespace: ns}, true
		}
	}
	return ContainerdRef{}, false
}
