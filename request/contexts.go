package request

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/internal/safeio"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/usage"
)

// Kinds of --build-context.
const (
	ContextDir       = "dir"
	ContextImage     = "docker-image"
	ContextOCILayout = "oci-layout"
)

// BuildContext is one parsed --build-context NAME=VALUE: a directory, an
// image (docker-image://REF) or an image in an OCI layout directory
// (oci-layout://PATH[:TAG][@DIGEST]) that the Dockerfile can use by NAME
// in FROM, COPY --from and RUN --mount from=.
type BuildContext struct {
	Name string
	Kind string
	// Path is the directory (dir, oci-layout); Ref the image (docker-image).
	Path, Ref string
	// Tag and Digest select the image in an OCI layout; Tag defaults to latest.
	Tag    string
	Digest digest.Digest
}

// ParseBuildContext parses one --build-context value. It checks the syntax
// only; Parse looks at the directories.
func ParseBuildContext(s string) (BuildContext, error) {
	name, value, ok := strings.Cut(s, "=")
	name = strings.TrimSpace(name)
	if !ok || name == "" || value == "" {
		return BuildContext{}, usage.Errorf("invalid --build-context %q: use NAME=DIR, NAME=docker-image://REF or NAME=oci-layout://PATH", s)
	}
	bc := BuildContext{Name: name}
	switch {
	case strings.HasPrefix(value, "docker-image://"):
		bc.Kind, bc.Ref = ContextImage, strings.TrimPrefix(value, "docker-image://")
		if _, err := reference.ParseNormalizedNamed(bc.Ref); err != nil {
			return BuildContext{}, usage.Errorf("invalid --build-context %s: image %q: %w", name, bc.Ref, err)
		}
	case strings.HasPrefix(value, "oci-layout://"):
		bc.Kind = ContextOCILayout
		if err := bc.parseLayout(strings.TrimPrefix(value, "oci-layout://")); err != nil {
			return BuildContext{}, usage.Errorf("invalid --build-context %s: %w", name, err)
		}
	case strings.Contains(value, "://") || strings.HasPrefix(value, "git@"):
		return BuildContext{}, usage.Errorf("unsupported --build-context %s=%s: kiln takes a directory, docker-image://REF or oci-layout://PATH", name, value)
	default:
		bc.Kind, bc.Path = ContextDir, value
	}
	return bc, nil
}

// parseLayout splits PATH[:TAG][@DIGEST]; a colon counts as a tag only in
// the last path element.
func (bc *BuildContext) parseLayout(v string) error {
	if i := strings.LastIndex(v, "@"); i >= 0 {
		d, err := digest.Parse(v[i+1:])
		if err != nil {
			return fmt.Errorf("digest %q: %w", v[i+1:], err)
		}
		bc.Digest, v = d, v[:i]
	}
	base := strings.LastIndex(v, "/") + 1
	if i := strings.LastIndex(v[base:], ":"); i >= 0 {
		bc.Tag, v = v[base+i+1:], v[:base+i]
		if bc.Tag == "" {
			return fmt.Errorf("empty tag after %q", v)
		}
	}
	if v == "" {
		return errors.New("oci-layout:// needs the layout's directory")
	}
	bc.Path = v
	if bc.Tag == "" {
		bc.Tag = "latest"
	}
	return nil
}

// resolveContexts checks each --build-context and records what the solve
// needs: a frontend attribute per name, plus the directories and OCI
// layouts the session serves.
func (r *Request) resolveContexts(ctx context.Context, o *Options) error {
	contexts, err := parseUnique(o.BuildContexts, ParseBuildContext, func(bc BuildContext) string { return bc.Name }, func(name string) error {
		return usage.Errorf("--build-context %s is given twice: give each name once", name)
	})
	if err != nil {
		return err
	}
	for i, bc := range contexts {
		// Names may be image references (to replace a FROM), so the
		// session's keys are made up rather than derived from them.
		key := fmt.Sprintf("kiln-context-%d", i)
		switch bc.Kind {
		case ContextImage:
			r.FrontendAttrs["context:"+bc.Name] = "docker-image://" + bc.Ref
		case ContextDir:
			abs, err := contextDirectory(bc)
			if err != nil {
				return err
			}
			r.ContextDirs[key] = abs
			r.FrontendAttrs["context:"+bc.Name] = "local:" + key
		case ContextOCILayout:
			if err := r.addLayout(ctx, key, bc); err != nil {
				return err
			}
		}
	}
	return nil
}

func contextDirectory(bc BuildContext) (string, error) {
	fi, err := os.Stat(bc.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", usage.Errorf("--build-context %s: directory %s does not exist", bc.Name, bc.Path)
	case err != nil:
		return "", usage.Errorf("--build-context %s: %w", bc.Name, err)
	case !fi.IsDir():
		return "", usage.Errorf("--build-context %s: %s is not a directory: a named context is a directory, docker-image://REF or oci-layout://PATH", bc.Name, bc.Path)
	}
	return filepath.Abs(bc.Path)
}

// addLayout opens an OCI layout and pins the image the context names, as
// buildx does: BuildKit reads it through the session by digest.
func (r *Request) addLayout(ctx context.Context, key string, bc BuildContext) error {
	dt, err := safeio.ReadFile(ctx, filepath.Join(bc.Path, ocispecs.ImageIndexFile), store.MaxManifestSize)
	var pathErr *fs.PathError
	switch {
	case errors.Is(err, safeio.ErrInterrupted):
		return err
	case errors.As(err, &pathErr):
		return usage.Errorf("--build-context %s: %s is not an OCI layout: reading its index.json: %w; export one with -o type=oci,dest=FILE and unpack it with tar -xf", bc.Name, bc.Path, errors.Unwrap(err))
	case err != nil:
		return usage.Errorf("--build-context %s: %s is not an OCI layout: %w", bc.Name, bc.Path, err)
	}
	if bc.Digest == "" {
		var idx ocispecs.Index
		if err := json.Unmarshal(dt, &idx); err != nil {
			return usage.Errorf("--build-context %s: reading %s: %w", bc.Name, filepath.Join(bc.Path, ocispecs.ImageIndexFile), err)
		}
		d, err := layoutDigest(idx, bc.Tag)
		if err != nil {
			return usage.Errorf("--build-context %s: %s: %w", bc.Name, bc.Path, err)
		}
		bc.Digest = d
	}
	cs, err := local.NewStore(bc.Path)
	if err != nil {
		return fmt.Errorf("--build-context %s: opening OCI layout %s: %w", bc.Name, bc.Path, err)
	}
	r.OCIStores[key] = layoutStore{Store: cs, dir: bc.Path}
	r.FrontendAttrs["context:"+bc.Name] = "oci-layout://" + key + ":" + bc.Tag + "@" + bc.Digest.String()
	return nil
}

// layoutDigest finds the image tagged tag in an OCI layout's index. A
// layout holding one image needs no tag.
func layoutDigest(idx ocispecs.Index, tag string) (digest.Digest, error) {
	for _, m := range idx.Manifests {
		name := m.Annotations[ocispecs.AnnotationRefName]
		if name == tag || strings.HasSuffix(name, ":"+tag) || strings.HasSuffix(m.Annotations["io.containerd.image.name"], ":"+tag) {
			return m.Digest, nil
		}
	}
	if len(idx.Manifests) == 1 && tag == "latest" {
		return idx.Manifests[0].Digest, nil
	}
	return "", fmt.Errorf("no image tagged %q in the layout: name one with oci-layout://PATH:TAG or @sha256:DIGEST", tag)
}

// layoutStore is an OCI layout's content store that reads only blobs that
// are regular files: BuildKit reads them through the session during the
// build, and a blob that is a named pipe would block that read forever.
type layoutStore struct {
	content.Store
	dir string
}

// ReaderAt opens the blob of desc after checking that it is a file.
func (s layoutStore) ReaderAt(ctx context.Context, desc ocispecs.Descriptor) (content.ReaderAt, error) {
	if err := desc.Digest.Validate(); err != nil {
		return nil, err
	}
	p := filepath.Join(s.dir, ocispecs.ImageBlobsDir, desc.Digest.Algorithm().String(), desc.Digest.Encoded())
	if _, err := safeio.CheckRegular(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s of OCI layout %s: %w", desc.Digest, s.dir, err)
	}
	return s.Store.ReaderAt(ctx, desc)
}
