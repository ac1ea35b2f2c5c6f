package store

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
)

// The label containerd's CRI plugin gives the images it manages (its
// labels.ImageLabelKey and ImageLabelValue): the kubelet sees only those,
// and the CRI marks an image it finds without it as its own again.
const (
	criImageLabel   = "io.cri-containerd.image"
	criImageManaged = "managed"
)

// forCRI reports whether images named in the store are for Kubernetes'
// CRI: those of its namespace.
func (s *Store) forCRI() bool { return s.namespace == KubernetesNamespace }

// withCRILabel is img with the CRI's label, when the store is the CRI's.
func (s *Store) withCRILabel(img images.Image) images.Image {
	if !s.forCRI() {
		return img
	}
	labels := make(map[string]string, len(img.Labels)+1)
	for k, v := range img.Labels {
		labels[k] = v
	}
	labels[criImageLabel] = criImageManaged
	img.Labels = labels
	return img
}

// ManageForCRI makes the images names, already stored, look as the CRI's
// own pulls do, when the store is the CRI's namespace (k8s.io; otherwise
// it does nothing): each name carries the CRI's label, and beside it are
// the references the CRI creates for a pulled image, the image ID (the
// digest of this host's config) and NAME@DIGEST. So crictl and the
// kubelet list the image under its name, digest and ID at once, without
// waiting for the CRI to notice it, and its ID keeps it (and the host's
// unpacked snapshots, which its config's labels hold) when a name moves.
// A build names its result through BuildKit's exporter, and calls this
// after; kiln's own naming (tag, pull, load, manifest, copy) does it as it
// names. Names not in the store are passed over.
func (s *Store) ManageForCRI(ctx context.Context, names []string) error {
	if !s.forCRI() {
		return nil
	}
	ctx = s.WithNamespace(ctx)
	is := s.client.ImageService()
	for _, name := range names {
		img, err := is.Get(ctx, name)
		if errdefs.IsNotFound(err) {
			// Pushed, not stored (type=registry).
			continue
		}
		if err != nil {
			return fmt.Errorf("reading image %s to hand it to the CRI: %w", name, err)
		}
		if img.Labels[criImageLabel] != criImageManaged {
			img = s.withCRILabel(img)
			if _, err := is.Update(ctx, img, "labels."+criImageLabel); err != nil {
				return fmt.Errorf("labelling image %s for the CRI: %w", name, err)
			}
		}
		if err := s.addCRIReferences(ctx, img); err != nil {
			return err
		}
	}
	return nil
}

// addCRIReferences adds the references the CRI creates beside a name it
// pulls: the image ID and NAME@DIGEST, labelled as the CRI's. An image
// without this host's platform has no ID here (the CRI could not run it)
// and gets only the digest reference.
func (s *Store) addCRIReferences(ctx context.Context, img images.Image) error {
	var refs []string
	if named, err := reference.ParseNormalizedNamed(img.Name); err == nil {
		if _, digested := named.(reference.Digested); !digested {
			refs = append(refs, named.Name()+"@"+img.Target.Digest.String())
		}
	}
	cimg := containerd.NewImageWithPlatform(s.client, img, platforms.Default())
	if config, err := cimg.Config(ctx); err == nil {
		refs = append([]string{config.Digest.String()}, refs...)
	}
	is := s.client.ImageService()
	for _, ref := range refs {
		ri := s.withCRILabel(images.Image{Name: ref, Target: img.Target})
		if _, err := is.Create(ctx, ri); err == nil {
			continue
		} else if !errdefs.IsAlreadyExists(err) {
			return fmt.Errorf("adding the CRI's reference %s of image %s: %w", ref, img.Name, err)
		}
		if _, err := is.Update(ctx, ri, "target", "labels."+criImageLabel); err != nil {
			return fmt.Errorf("adding the CRI's reference %s of image %s: %w", ref, img.Name, err)
		}
	}
	return nil
}

// rawCodec passes messages through as bytes, for the one CRI call kiln
// makes without the CRI's generated types (see CRISnapshotter).
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// CRISnapshotter asks containerd's CRI plugin which snapshotter it unpacks
// and runs images with: the CRI's ImageFsInfo names the snapshotter's
// directory, io.containerd.snapshotter.v1.NAME. It fails when containerd
// has no CRI plugin (or one that does not say).
func (s *Store) CRISnapshotter(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, resp := []byte{}, []byte{}
	conn, ok := s.client.Conn().(*grpc.ClientConn)
	if !ok {
		return "", fmt.Errorf("kiln's store has no CRI plugin to ask")
	}
	if err := conn.Invoke(ctx, "/runtime.v1.ImageService/ImageFsInfo", &req, &resp, grpc.ForceCodec(rawCodec{})); err != nil {
		return "", fmt.Errorf("asking containerd's CRI plugin for its image file system: %w", err)
	}
	for _, mp := range imageFsMountpoints(resp) {
		if name, ok := strings.CutPrefix(filepath.Base(mp), "io.containerd.snapshotter.v1."); ok && name != "" {
			return name, nil
		}
	}
	return "", fmt.Errorf("containerd's CRI plugin names no snapshotter directory as its image file system")
}

// imageFsMountpoints reads the image file systems' mount points from a
// CRI ImageFsInfoResponse: field 1 (image_filesystems) holds
// FilesystemUsage messages, whose field 2 (fs_id) is a
// FilesystemIdentifier whose field 1 is the mount point.
func imageFsMountpoints(b []byte) []string {
	var out []string
	for _, usage := range protoFields(b, 1) {
		for _, id := range protoFields(usage, 2) {
			for _, mp := range protoFields(id, 1) {
				out = append(out, string(mp))
			}
		}
	}
	return out
}

// protoFields returns the length-delimited values of field num in the
// protobuf message b; it stops at the first malformed byte.
func protoFields(b []byte, num protowire.Number) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return out
		}
		b = b[l:]
		if typ == protowire.BytesType && n == num {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return out
			}
			out = append(out, v)
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(n, typ, b)
		if m < 0 {
			return out
		}
		b = b[m:]
	}
	return out
}
