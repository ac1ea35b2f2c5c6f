//go:build linux

package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// ociImage is an image read back from an OCI archive (-o type=oci): its
// index, and per platform the manifest, the config and the files its layers
// unpack to.
type ociImage struct {
	Top       ocispecs.Descriptor // the entry of index.json
	Digest    string              // Top's digest: the image's digest
	Index     ocispecs.Index      // the image index (empty for a lone manifest)
	Blobs     map[string][]byte   // every blob by digest, as stored
	Platforms map[string]*platformImage
	// Attestations are the attestation manifests, by the digest of the
	// manifest they describe.
	Attestations map[string]ocispecs.Manifest
	Stderr       string // the build's progress output
}

// platformImage is one platform's image.
type platformImage struct {
	Platform   string // os/arch[/variant]
	Arch       string // GOARCH
	Descriptor ocispecs.Descriptor
	Manifest   ocispecs.Manifest
	Config     imageConfig
	Files      map[string]*fileEntry // by absolute path
}

// imageConfig is the image config as BuildKit writes it: OCI's, plus
// docker's Healthcheck, OnBuild and Shell.
type imageConfig struct {
	Architecture string     `json:"architecture"`
	OS           string     `json:"os"`
	Variant      string     `json:"variant"`
	Created      *time.Time `json:"created"`
	Config       struct {
		User         string              `json:"User"`
		Env          []string            `json:"Env"`
		Entrypoint   []string            `json:"Entrypoint"`
		Cmd          []string            `json:"Cmd"`
		WorkingDir   string              `json:"WorkingDir"`
		Labels       map[string]string   `json:"Labels"`
		ExposedPorts map[string]struct{} `json:"ExposedPorts"`
		Volumes      map[string]struct{} `json:"Volumes"`
		StopSignal   string              `json:"StopSignal"`
		Shell        []string            `json:"Shell"`
		OnBuild      []string            `json:"OnBuild"`
		Healthcheck  *struct {
			Test          []string      `json:"Test"`
			Interval      time.Duration `json:"Interval"`
			Timeout       time.Duration `json:"Timeout"`
			StartPeriod   time.Duration `json:"StartPeriod"`
			StartInterval time.Duration `json:"StartInterval"`
			Retries       int           `json:"Retries"`
		} `json:"Healthcheck"`
	} `json:"config"`
	History []struct {
		Created    *time.Time `json:"created"`
		CreatedBy  string     `json:"created_by"`
		Comment    string     `json:"comment"`
		EmptyLayer bool       `json:"empty_layer"`
	} `json:"history"`
}

// fileEntry is one file of an unpacked image.
type fileEntry struct {
	Type     byte // tar type flag
	Mode     int64
	UID, GID int
	Content  string
	Linkname string
	ModTime  time.Time
}

// readOCI reads an OCI archive written by -o type=oci and unpacks every
// platform's layers in memory.
func readOCI(t *testing.T, file string) *ociImage {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	entries, err := readTarFiles(f)
	if err != nil {
		t.Fatalf("reading OCI archive %s: %v", file, err)
	}
	img := &ociImage{Blobs: map[string][]byte{}, Platforms: map[string]*platformImage{}, Attestations: map[string]ocispecs.Manifest{}}
	for name, e := range entries {
		if rest, ok := strings.CutPrefix(name, "blobs/"); ok && e.Type == tar.TypeReg {
			img.Blobs[strings.Replace(rest, "/", ":", 1)] = []byte(e.Content)
		}
	}
	var top ocispecs.Index
	idx, ok := entries["index.json"]
	if !ok {
		t.Fatalf("OCI archive %s has no index.json", file)
	}
	mustJSON(t, idx.Content, &top)
	if len(top.Manifests) != 1 {
		t.Fatalf("OCI archive %s: index.json lists %d images, want 1", file, len(top.Manifests))
	}
	img.Top, img.Digest = top.Manifests[0], top.Manifests[0].Digest.String()
	if img.Top.MediaType != ocispecs.MediaTypeImageIndex {
		img.addManifest(t, img.Top)
		return img
	}
	mustJSON(t, string(img.blob(t, img.Digest)), &img.Index)
	for _, d := range img.Index.Manifests {
		if d.Annotations["vnd.docker.reference.type"] == "attestation-manifest" {
			var m ocispecs.Manifest
			mustJSON(t, string(img.blob(t, d.Digest.String())), &m)
			img.Attestations[d.Annotations["vnd.docker.reference.digest"]] = m
			continue
		}
		img.addManifest(t, d)
	}
	return img
}

func (img *ociImage) blob(t *testing.T, dgst string) []byte {
	t.Helper()
	b, ok := img.Blobs[dgst]
	if !ok {
		t.Fatalf("blob %s is missing from the OCI archive", dgst)
	}
	return b
}

func (img *ociImage) addManifest(t *testing.T, d ocispecs.Descriptor) {
	t.Helper()
	p := &platformImage{Descriptor: d, Files: map[string]*fileEntry{}}
	mustJSON(t, string(img.blob(t, d.Digest.String())), &p.Manifest)
	mustJSON(t, string(img.blob(t, p.Manifest.Config.Digest.String())), &p.Config)
	p.Arch = p.Config.Architecture
	p.Platform = p.Config.OS + "/" + p.Config.Architecture
	if p.Config.Variant != "" {
		p.Platform += "/" + p.Config.Variant
	}
	for _, l := range p.Manifest.Layers {
		data, err := decompress(img.blob(t, l.Digest.String()))
		if err != nil {
			t.Fatalf("%s: layer %s (%s): %v", p.Platform, l.Digest, l.MediaType, err)
		}
		if err := p.apply(data); err != nil {
			t.Fatalf("%s: unpacking layer %s: %v", p.Platform, l.Digest, err)
		}
	}
	img.Platforms[p.Platform] = p
}

// each returns the platforms' images, sorted by platform.
func (img *ociImage) each() []*platformImage {
	var out []*platformImage
	for _, p := range img.Platforms {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Platform < out[j].Platform })
	return out
}

// apply unpacks one layer over the files so far, honouring whiteouts.
func (p *platformImage) apply(layer []byte) error {
	entries, err := readTarFiles(bytes.NewReader(layer))
	if err != nil {
		return err
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		abs := "/" + n
		dir, base := path.Split(abs)
		switch {
		case base == ".wh..wh..opq":
			p.removeUnder(path.Clean(dir), false)
		case strings.HasPrefix(base, ".wh."):
			p.removeUnder(path.Join(dir, strings.TrimPrefix(base, ".wh.")), true)
		}
	}
	for _, n := range names {
		if base := path.Base(n); !strings.HasPrefix(base, ".wh.") {
			p.Files["/"+n] = entries[n]
		}
	}
	return nil
}

func (p *platformImage) removeUnder(dir string, self bool) {
	for name := range p.Files {
		if (self && name == dir) || strings.HasPrefix(name, dir+"/") {
			delete(p.Files, name)
		}
	}
}

// readTarFiles reads a tar stream into entries by cleaned relative name.
func readTarFiles(r io.Reader) (map[string]*fileEntry, error) {
	out := map[string]*fileEntry{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if name == "" {
			continue
		}
		e := &fileEntry{Type: h.Typeflag, Mode: h.Mode & 0o7777, UID: h.Uid, GID: h.Gid, Linkname: h.Linkname, ModTime: h.ModTime}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				return nil, err
			}
			e.Content = string(b)
		}
		out[name] = e
	}
}

// decompress undoes gzip (and so eStargz) or zstd, recognised by their
// magic numbers; anything else is returned as it is.
func decompress(b []byte) ([]byte, error) {
	switch {
	case bytes.HasPrefix(b, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		return io.ReadAll(zr)
	case bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		return io.ReadAll(zr)
	}
	return b, nil
}

// file returns the content of a regular file, failing the test if it is
// missing.
func (p *platformImage) file(t *testing.T, name string) string {
	t.Helper()
	f, ok := p.Files[name]
	if !ok {
		t.Fatalf("%s: %s is not in the image", p.Platform, name)
	}
	if f.Type != tar.TypeReg {
		t.Fatalf("%s: %s is not a regular file (type %q)", p.Platform, name, f.Type)
	}
	return f.Content
}

// want checks a regular file's content.
func (p *platformImage) want(t *testing.T, name, content string) {
	t.Helper()
	if got := p.file(t, name); got != content {
		t.Errorf("%s: %s is %q, want %q", p.Platform, name, got, content)
	}
}

// wantMeta checks a file's permission bits and owner.
func (p *platformImage) wantMeta(t *testing.T, name string, mode int64, uid, gid int) {
	t.Helper()
	f, ok := p.Files[name]
	if !ok {
		t.Errorf("%s: %s is not in the image", p.Platform, name)
		return
	}
	if f.Mode != mode || f.UID != uid || f.GID != gid {
		t.Errorf("%s: %s has mode %o owner %d:%d, want mode %o owner %d:%d", p.Platform, name, f.Mode, f.UID, f.GID, mode, uid, gid)
	}
}

// absent checks that a path is not in the image.
func (p *platformImage) absent(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, ok := p.Files[n]; ok {
			t.Errorf("%s: %s is in the image, want it absent", p.Platform, n)
		}
	}
}

// env returns the value of an environment variable of the image config.
func (p *platformImage) env(name string) (string, bool) {
	for _, kv := range p.Config.Config.Env {
		if k, v, _ := strings.Cut(kv, "="); k == name {
			return v, true
		}
	}
	return "", false
}

// decodeJSON is json.Unmarshal for byte slices in tests.
func decodeJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decoding %q: %v", b, err)
	}
}
