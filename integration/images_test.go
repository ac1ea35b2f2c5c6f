//go:build linux

package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// archAppDockerfile builds an image whose only layer of its own differs per
// platform (/arch.txt), with no RUN step, so no platform needs emulation.
const archAppDockerfile = `FROM busybox
ARG TARGETARCH
COPY ${TARGETARCH}.txt /arch.txt
LABEL kiln.test=images
`

// buildArchApp builds busybox (from the fixtures) and name from
// archAppDockerfile for linux/amd64 and linux/arm64 into e's namespace.
func (e *env) buildArchApp(t *testing.T, name string) storedImage {
	t.Helper()
	e.busyboxBase(t, "busybox")
	dir := contextDir(t, map[string]string{
		"Dockerfile": archAppDockerfile,
		"amd64.txt":  "file for amd64\n",
		"arm64.txt":  "file for arm64\n",
	})
	e.kiln("build", "--platform", "linux/amd64,linux/arm64", "-t", name, dir).ok(t)
	full := name
	if !strings.Contains(name, "/") {
		full = "docker.io/library/" + name
	}
	return e.image(t, full)
}

// imageRow and platformRow are the JSON lines of "kiln images --format json"
// and "kiln images --platforms --format json", as documented.
type imageRow struct {
	Name      string    `json:"name"`
	Digest    string    `json:"digest"`
	Platforms []string  `json:"platforms"`
	Partial   []string  `json:"partial"`
	Complete  bool      `json:"complete"`
	Size      int64     `json:"size"`
	Created   time.Time `json:"created"`
}

type platformRow struct {
	Name     string `json:"name"`
	Index    string `json:"index"`
	Platform string `json:"platform"`
	Digest   string `json:"digest"`
	Content  string `json:"content"`
	Missing  []struct {
		Kind   string `json:"kind"`
		Digest string `json:"digest"`
		Size   int64  `json:"size"`
	} `json:"missing"`
	Unpacked    bool       `json:"unpacked"`
	Snapshotter string     `json:"snapshotter"`
	Size        int64      `json:"size"`
	Created     *time.Time `json:"created"`
}

// jsonLines decodes one JSON value per line into a slice of T.
func jsonLines[T any](t *testing.T, out string) []T {
	t.Helper()
	var rows []T
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var r T
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("decoding JSON lines: %v\n%s", err, out)
		}
		rows = append(rows, r)
	}
	return rows
}

func (e *env) imageRows(t *testing.T, args ...string) []imageRow {
	t.Helper()
	return jsonLines[imageRow](t, e.kiln(append([]string{"images", "--format", "json"}, args...)...).ok(t).Stdout)
}

// platformRows returns the --platforms rows of one image, by platform.
func (e *env) platformRows(t *testing.T, name string) map[string]platformRow {
	t.Helper()
	rows := jsonLines[platformRow](t, e.kiln("images", "--platforms", "--format", "json", name).ok(t).Stdout)
	out := map[string]platformRow{}
	for _, r := range rows {
		out[r.Platform] = r
	}
	return out
}

// manifestFor returns the index entry of platform p.
func manifestFor(t *testing.T, idx ocispecs.Index, p string) ocispecs.Descriptor {
	t.Helper()
	for _, m := range idx.Manifests {
		if m.Platform != nil && m.Platform.OS+"/"+m.Platform.Architecture == p {
			return m
		}
	}
	t.Fatalf("index has no %s: %+v", p, idx.Manifests)
	return ocispecs.Descriptor{}
}

// layerFile reads path from a gzip layer blob of e's content store.
func (e *env) layerFile(t *testing.T, layer digest.Digest, path string) string {
	t.Helper()
	blob := e.ctr("content", "get", layer.String()).ok(t).Stdout
	zr, err := gzip.NewReader(strings.NewReader(blob))
	if err != nil {
		t.Fatalf("layer %s: %v", layer, err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("layer %s: %v", layer, err)
		}
		if strings.TrimPrefix(h.Name, "./") == path {
			b, _ := io.ReadAll(tr)
			return string(b)
		}
	}
	t.Fatalf("layer %s has no %s", layer, path)
	return ""
}

// registryManifest GETs a manifest or index from a registry and returns its
// Docker-Content-Digest and body.
func registryManifest(t *testing.T, reg, repo, ref string) (string, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+reg+"/v2/"+repo+"/manifests/"+ref, nil)
	req.Header.Set("Accept", strings.Join([]string{ocispecs.MediaTypeImageIndex, ocispecs.MediaTypeImageManifest,
		"application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.docker.distribution.manifest.v2+json"}, ", "))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/%s:%s: %s: %s", reg, repo, ref, resp.Status, body)
	}
	return resp.Header.Get("Docker-Content-Digest"), body
}

func TestImagesListInspectTagPushPull(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reg := startRegistry(t)
	img := e.buildArchApp(t, "app:1")
	const name = "docker.io/library/app:1"
	amd64, arm64 := manifestFor(t, img.Index, "linux/amd64"), manifestFor(t, img.Index, "linux/arm64")

	// kiln images: the table, JSON field by field, -q and the name filter.
	table := e.kiln("images").ok(t).Stdout
	var row []string
	for _, l := range strings.Split(table, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == name {
			row = f
		}
	}
	if !strings.HasPrefix(table, "NAME") || len(row) < 5 || row[1] != strings.TrimPrefix(img.Digest, "sha256:")[:12] || row[2] != "linux/amd64,linux/arm64" || !strings.HasSuffix(table, "ago\n") {
		t.Fatalf("kiln images table:\n%s", table)
	}
	rows := e.imageRows(t, "app")
	if len(rows) != 1 {
		t.Fatalf("kiln images app: %d rows, want 1: %+v", len(rows), rows)
	}
	r := rows[0]
	if r.Name != name || r.Digest != img.Digest || strings.Join(r.Platforms, ",") != "linux/amd64,linux/arm64" ||
		len(r.Partial) != 0 || !r.Complete || r.Size < 1_000_000 || time.Since(r.Created) > time.Hour || time.Since(r.Created) < 0 {
		t.Errorf("kiln images --format json: %+v", r)
	}
	if out := e.kiln("images", "-q", "app:1").ok(t).Stdout; out != img.Digest+"\n" {
		t.Errorf("kiln images -q = %q, want %s", out, img.Digest)
	}
	if rows := e.imageRows(t, "nosuchimage"); len(rows) != 0 {
		t.Errorf("a filter that matches nothing listed %+v", rows)
	}
	plats := e.platformRows(t, "app:1")
	hostArch := "linux/" + runtime.GOARCH
	for p, m := range map[string]ocispecs.Descriptor{"linux/amd64": amd64, "linux/arm64": arm64} {
		pr := plats[p]
		if pr.Name != name || pr.Index != img.Digest || pr.Digest != m.Digest.String() || pr.Content != "complete" ||
			pr.Unpacked != (p == hostArch) || pr.Snapshotter != "overlayfs" || pr.Size < 1_000_000 || pr.Created == nil || len(pr.Missing) != 0 {
			t.Errorf("kiln images --platforms %s: %+v", p, pr)
		}
	}

	// kiln inspect, whole and per platform, parsed and raw.
	var ins struct {
		Name       string              `json:"name"`
		Descriptor ocispecs.Descriptor `json:"descriptor"`
		Index      ocispecs.Index      `json:"index"`
		Platforms  []platformRow       `json:"platforms"`
		Complete   bool                `json:"complete"`
	}
	mustJSON(t, e.kiln("inspect", "app:1").ok(t).Stdout, &ins)
	if ins.Name != name || ins.Descriptor.Digest.String() != img.Digest || len(ins.Index.Manifests) != 2 || len(ins.Platforms) != 2 || !ins.Complete {
		t.Errorf("kiln inspect: %+v", ins)
	}
	var pins struct {
		Name       string              `json:"name"`
		Index      ocispecs.Descriptor `json:"index"`
		Platform   platformRow         `json:"platform"`
		Descriptor ocispecs.Descriptor `json:"descriptor"`
		Manifest   ocispecs.Manifest   `json:"manifest"`
		Config     ocispecs.Image      `json:"config"`
	}
	mustJSON(t, e.kiln("inspect", "--platform", "linux/arm64", "app:1").ok(t).Stdout, &pins)
	if pins.Index.Digest.String() != img.Digest || pins.Descriptor.Digest != arm64.Digest || pins.Platform.Platform != "linux/arm64" ||
		pins.Config.Architecture != "arm64" || pins.Config.Config.Labels["kiln.test"] != "images" || len(pins.Manifest.Layers) != 2 {
		t.Errorf("kiln inspect --platform linux/arm64: %+v", pins)
	}
	armLayer := pins.Manifest.Layers[len(pins.Manifest.Layers)-1].Digest
	if got := e.kiln("inspect", "--raw", "app:1").ok(t).Stdout; got != e.ctr("content", "get", img.Digest).ok(t).Stdout {
		t.Errorf("kiln inspect --raw differs from the stored index:\n%s", got)
	}
	if got := e.kiln("inspect", "--raw", "--platform", "arm64", "app:1").ok(t).Stdout; got != e.ctr("content", "get", arm64.Digest.String()).ok(t).Stdout {
		t.Errorf("kiln inspect --raw --platform arm64 differs from the stored manifest:\n%s", got)
	}
	e.kiln("inspect", "--platform", "linux/s390x", "app:1").fails(t, 1, "image docker.io/library/app:1 has no linux/s390x (it has linux/amd64, linux/arm64)")

	// kiln tag, then push to the registry.
	remote := reg + "/team/app:1"
	e.kiln("tag", "app:1", remote, reg+"/team/app:extra").ok(t)
	for _, n := range []string{remote, reg + "/team/app:extra"} {
		if got := e.image(t, n).Digest; got != img.Digest {
			t.Errorf("%s has digest %s, want %s", n, got, img.Digest)
		}
	}
	push := e.kiln("push", remote).ok(t)
	if push.Stdout != remote+"@"+img.Digest+"\n" {
		t.Errorf("kiln push printed %q", push.Stdout)
	}
	for _, want := range []string{"pushed   layer", "pushed   manifest", "pushed   index     sha256:" + strings.TrimPrefix(img.Digest, "sha256:")[:12]} {
		if !strings.Contains(push.Stderr, want) {
			t.Errorf("push progress lacks %q:\n%s", want, push.Stderr)
		}
	}
	if got, _ := registryManifest(t, reg, "team/app", "1"); got != img.Digest {
		t.Errorf("registry has %s under team/app:1, want %s", got, img.Digest)
	}
	if got := e.kiln("push", "-q", remote).ok(t).Stderr; got != "" {
		t.Errorf("kiln push -q printed progress: %q", got)
	}

	// kiln rm: the names go, and content only they used is reclaimed.
	out := e.kiln("rm", "app:1", remote, reg+"/team/app:extra").ok(t).Stdout
	if out != "removed "+name+"\nremoved "+remote+"\nremoved "+reg+"/team/app:extra\n" {
		t.Errorf("kiln rm printed %q", out)
	}
	if rows := e.imageRows(t, "app"); len(rows) != 0 {
		t.Errorf("app still listed after rm: %+v", rows)
	}
	if content := e.ctr("content", "ls", "-q").ok(t).Stdout; strings.Contains(content, img.Digest) {
		t.Errorf("the index blob %s was not reclaimed after kiln rm", img.Digest)
	}

	// kiln pull of one platform into a fresh namespace: the index is whole,
	// arm64 complete, amd64 partial.
	e2 := newEnv(t)
	if out := e2.kiln("pull", "--platform", "linux/arm64", remote).ok(t).Stdout; out != remote+"\n" {
		t.Errorf("kiln pull printed %q", out)
	}
	rows = e2.imageRows(t)
	if len(rows) != 1 || rows[0].Digest != img.Digest || rows[0].Complete || strings.Join(rows[0].Partial, ",") != "linux/amd64" {
		t.Errorf("after pull --platform linux/arm64: %+v", rows)
	}
	plats = e2.platformRows(t, remote)
	if p := plats["linux/arm64"]; p.Content != "complete" || p.Digest != arm64.Digest.String() || p.Unpacked {
		t.Errorf("arm64 after pull: %+v", p)
	}
	if p := plats["linux/amd64"]; p.Content != "partial" || p.Unpacked || len(p.Missing) == 0 || p.Missing[0].Digest != amd64.Digest.String() {
		t.Errorf("amd64 after pull --platform linux/arm64: %+v", p)
	}
	table = e2.kiln("images").ok(t).Stdout
	if !strings.Contains(table, "linux/amd64(partial),linux/arm64") {
		t.Errorf("the table does not mark amd64 partial:\n%s", table)
	}
	if got := e2.layerFile(t, armLayer, "arch.txt"); got != "file for arm64\n" {
		t.Errorf("arch.txt of the pulled arm64 layer is %q", got)
	}
	if _, err := os.Stat("/proc/sys/fs/binfmt_misc/qemu-aarch64"); err == nil {
		out := e2.ctr("run", "--rm", "--platform", "linux/arm64", remote, "pulled-arm64", "sh", "-c", "cat /arch.txt; uname -m").ok(t).Stdout
		if out != "file for arm64\naarch64\n" {
			t.Errorf("the arm64 image printed %q", out)
		}
	} else {
		t.Logf("no qemu-aarch64 binfmt handler: checked the arm64 layer's file instead of running it")
	}

	// Pulling the host's platform completes the image and unpacks it.
	e2.kiln("pull", remote).ok(t)
	plats = e2.platformRows(t, remote)
	if p := plats[hostArch]; p.Content != "complete" || !p.Unpacked {
		t.Errorf("%s after kiln pull: %+v", hostArch, p)
	}
	e2.kiln("pull", "--platform", "linux/s390x", remote).fails(t, 1, "has no linux/s390x (it has linux/amd64, linux/arm64)")
	e2.kiln("pull", reg+"/team/app:nosuchtag").fails(t, 1, "image "+reg+"/team/app:nosuchtag not found in registry "+reg)
}

// uploadBlob uploads b to a registry's repository.
func uploadBlob(t *testing.T, reg, repo, mediaType string, b []byte) ocispecs.Descriptor {
	t.Helper()
	d := ocispecs.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
	resp, err := http.Post("http://"+reg+"/v2/"+repo+"/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("starting an upload: %s %v", resp.Status, err)
	}
	loc = (&url.URL{Scheme: "http", Host: reg}).ResolveReference(loc)
	q := loc.Query()
	q.Set("digest", d.Digest.String())
	loc.RawQuery = q.Encode()
	req, _ := http.NewRequest(http.MethodPut, loc.String(), bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("uploading a blob: %v %v", resp, err)
	}
	resp.Body.Close()
	return d
}

// putManifest puts a manifest or index under ref and returns its descriptor.
func putManifest(t *testing.T, reg, repo, ref string, v any) ocispecs.Descriptor {
	t.Helper()
	b, _ := json.Marshal(v)
	var mt struct {
		MediaType string `json:"mediaType"`
	}
	_ = json.Unmarshal(b, &mt)
	req, _ := http.NewRequest(http.MethodPut, "http://"+reg+"/v2/"+repo+"/manifests/"+ref, bytes.NewReader(b))
	req.Header.Set("Content-Type", mt.MediaType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("putting a manifest: %v %v", resp, err)
	}
	resp.Body.Close()
	return ocispecs.Descriptor{MediaType: mt.MediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
}

// pushRandomImage uploads a one-layer image for this host's platform, with
// content no containerd has seen, straight to a registry; it returns the
// manifest's descriptor.
func pushRandomImage(t *testing.T, reg, repo, tag string) ocispecs.Descriptor {
	t.Helper()
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	data := []byte(fmt.Sprintf("random %d\n", time.Now().UnixNano()))
	if err := tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(data)
	tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tarBuf.Bytes())
	zw.Close()
	config, _ := json.Marshal(ocispecs.Image{
		Platform: ocispecs.Platform{OS: "linux", Architecture: runtime.GOARCH},
		RootFS:   ocispecs.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(tarBuf.Bytes())}},
	})
	return putManifest(t, reg, repo, tag, ocispecs.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispecs.MediaTypeImageManifest,
		Config:    uploadBlob(t, reg, repo, ocispecs.MediaTypeImageConfig, config),
		Layers:    []ocispecs.Descriptor{uploadBlob(t, reg, repo, ocispecs.MediaTypeImageLayerGzip, gz.Bytes())},
	})
}

// pushIndexWithAttestation uploads an index holding a random image for this
// host's platform and a BuildKit-style provenance attestation of it.
func pushIndexWithAttestation(t *testing.T, reg, repo, tag string) (index, image, attestation ocispecs.Descriptor) {
	t.Helper()
	image = pushRandomImage(t, reg, repo, "image-of-"+tag)
	image.Platform = &ocispecs.Platform{OS: "linux", Architecture: runtime.GOARCH}
	statement := []byte(`{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://slsa.dev/provenance/v0.2","subject":[{"name":"x","digest":{"sha256":"` + image.Digest.Encoded() + `"}}],"predicate":{}}`)
	layer := uploadBlob(t, reg, repo, "application/vnd.in-toto+json", statement)
	layer.Annotations = map[string]string{"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"}
	config := uploadBlob(t, reg, repo, ocispecs.MediaTypeImageConfig,
		[]byte(`{"architecture":"unknown","os":"unknown","config":{},"rootfs":{"type":"layers","diff_ids":["`+digest.FromBytes(statement).String()+`"]}}`))
	attestation = putManifest(t, reg, repo, "attestation-of-"+tag, ocispecs.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispecs.MediaTypeImageManifest,
		Config: config, Layers: []ocispecs.Descriptor{layer},
	})
	attestation.Platform = &ocispecs.Platform{OS: "unknown", Architecture: "unknown"}
	attestation.Annotations = map[string]string{
		"vnd.docker.reference.digest": image.Digest.String(),
		"vnd.docker.reference.type":   "attestation-manifest",
	}
	index = putManifest(t, reg, repo, tag, ocispecs.Index{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispecs.MediaTypeImageIndex,
		Manifests: []ocispecs.Descriptor{image, attestation},
	})
	return index, image, attestation
}

func TestImagesAttestationsAreNotPlatforms(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reg := startRegistry(t)
	index, image, attestation := pushIndexWithAttestation(t, reg, "att/img", "v1")
	name := reg + "/att/img:v1"
	e.kiln("pull", name).ok(t)

	rows := e.imageRows(t)
	host := "linux/" + runtime.GOARCH
	if len(rows) != 1 || rows[0].Digest != index.Digest.String() || strings.Join(rows[0].Platforms, ",") != host || !rows[0].Complete {
		t.Errorf("kiln images with an attestation: %+v", rows)
	}
	plats := jsonLines[platformRow](t, e.kiln("images", "--platforms", "--format", "json").ok(t).Stdout)
	if len(plats) != 1 || plats[0].Platform != host || plats[0].Digest != image.Digest.String() || !plats[0].Unpacked {
		t.Errorf("kiln images --platforms with an attestation: %+v", plats)
	}
	var ins struct {
		Platforms    []platformRow `json:"platforms"`
		Attestations []struct {
			Digest  string `json:"digest"`
			For     string `json:"for"`
			Content string `json:"content"`
		} `json:"attestations"`
	}
	mustJSON(t, e.kiln("inspect", name).ok(t).Stdout, &ins)
	if len(ins.Platforms) != 1 || len(ins.Attestations) != 1 || ins.Attestations[0].Digest != attestation.Digest.String() ||
		ins.Attestations[0].For != image.Digest.String() || ins.Attestations[0].Content != "complete" {
		t.Errorf("kiln inspect with an attestation: %+v", ins)
	}
	// The whole index, attestation included, goes to another repository.
	e.kiln("tag", name, reg+"/att/copy:v1").ok(t)
	e.kiln("push", reg+"/att/copy:v1").ok(t)
	if got, _ := registryManifest(t, reg, "att/copy", "v1"); got != index.Digest.String() {
		t.Errorf("pushed %s, want %s", got, index.Digest)
	}
}

func TestImagesPullShowsProgressAndUnpacks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reg := startRegistry(t)
	want := pushRandomImage(t, reg, "random/img", "v1").Digest
	name := reg + "/random/img:v1"
	r := e.kiln("pull", name).ok(t)
	for _, line := range []string{"pulling  manifest  sha256:" + want.Encoded()[:12], "pulled   layer", "pulled   config", "unpacking linux/" + runtime.GOARCH + " into overlayfs"} {
		if !strings.Contains(r.Stderr, line) {
			t.Errorf("pull progress lacks %q:\n%s", line, r.Stderr)
		}
	}
	rows := jsonLines[platformRow](t, e.kiln("images", "--platforms", "--format", "json").ok(t).Stdout)
	if len(rows) != 1 || rows[0].Index != want.String() || rows[0].Digest != want.String() || rows[0].Content != "complete" || !rows[0].Unpacked {
		t.Errorf("after pulling a single-manifest image: %+v", rows)
	}
	// Pulling again downloads nothing.
	if again := e.kiln("pull", name).ok(t).Stderr; strings.Contains(again, "pulling") {
		t.Errorf("a second pull downloaded again:\n%s", again)
	}
}

func TestImagesSaveLoad(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	img := e.buildArchApp(t, "saved:1")
	archive := filepath.Join(t.TempDir(), "saved.tar")
	e.kiln("save", "saved:1", "busybox", "-o", archive).ok(t)

	// An OCI layout with both platforms, and docker's manifest.json.
	files := readTar(t, archive)
	for _, m := range append([]ocispecs.Descriptor{{Digest: digest.Digest(img.Digest)}}, img.Index.Manifests...) {
		if _, ok := files["blobs/sha256/"+m.Digest.Encoded()]; !ok {
			t.Errorf("archive lacks blob %s", m.Digest)
		}
	}
	var dockerManifest []struct{ RepoTags []string }
	mustJSON(t, string(files["manifest.json"]), &dockerManifest)
	var tags []string
	for _, m := range dockerManifest {
		tags = append(tags, m.RepoTags...)
	}
	if len(dockerManifest) != 2 || !contains(tags, "saved:1") || !contains(tags, "busybox:latest") {
		t.Errorf("manifest.json: %s", files["manifest.json"])
	}
	if _, ok := files["oci-layout"]; !ok {
		t.Errorf("archive has no oci-layout file")
	}

	// Loading into another namespace keeps the index digest and all platforms.
	e2 := newEnv(t)
	out := e2.kiln("load", "-i", archive).ok(t).Stdout
	if out != "docker.io/library/saved:1\ndocker.io/library/busybox:latest\n" {
		t.Errorf("kiln load printed %q", out)
	}
	rows := e2.imageRows(t, "saved:1")
	if len(rows) != 1 || rows[0].Digest != img.Digest || !rows[0].Complete || strings.Join(rows[0].Platforms, ",") != "linux/amd64,linux/arm64" {
		t.Errorf("after load: %+v", rows)
	}
	if p := e2.platformRows(t, "saved:1")["linux/"+runtime.GOARCH]; !p.Unpacked {
		t.Errorf("the host platform was not unpacked by load: %+v", p)
	}

	// Standard output and standard input work too.
	stream := e.kiln("save", "saved:1").ok(t).Stdout
	e3 := newEnv(t)
	if out := e3.kilnStdin(stream, "load").ok(t).Stdout; out != "docker.io/library/saved:1\n" {
		t.Errorf("kiln load from stdin printed %q", out)
	}
	if got := e3.image(t, "docker.io/library/saved:1").Digest; got != img.Digest {
		t.Errorf("loaded from stdin with digest %s, want %s", got, img.Digest)
	}
	e3.kilnStdin("not a tar archive", "load").fails(t, 1, "loading the image archive")
}

func TestImagesPartialImage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reg := startRegistry(t)
	name := reg + "/team/partial:1"
	img := e.buildArchApp(t, name)
	amd64 := manifestFor(t, img.Index, "linux/amd64")
	var m ocispecs.Manifest
	mustJSON(t, e.ctr("content", "get", amd64.Digest.String()).ok(t).Stdout, &m)
	layer := m.Layers[len(m.Layers)-1].Digest
	e.ctr("content", "rm", layer.String()).ok(t)

	plats := e.platformRows(t, name)
	if p := plats["linux/amd64"]; p.Content != "partial" || len(p.Missing) != 1 || p.Missing[0].Digest != layer.String() || p.Missing[0].Kind != "layer" {
		t.Errorf("amd64 after removing its layer: %+v", p)
	}
	if p := plats["linux/arm64"]; p.Content != "complete" {
		t.Errorf("arm64: %+v", p)
	}
	want := fmt.Sprintf("image %s is missing content for linux/amd64 (layer sha256:%s not present); pull it with \"kiln pull --platform linux/amd64 %s\" or push with --platform linux/arm64",
		name, layer.Encoded()[:12], name)
	e.kiln("push", name).fails(t, 1, want)
	e.kiln("save", name, "-o", filepath.Join(t.TempDir(), "x.tar")).fails(t, 1, "is missing content for linux/amd64")

	// The complete platform can still be pushed, as a new index of it alone.
	out := e.kiln("push", "--platform", "linux/arm64", name).ok(t).Stdout
	dgst, body := registryManifest(t, reg, "team/partial", "1")
	if out != name+"@"+dgst+"\n" {
		t.Errorf("kiln push --platform printed %q, registry has %s", out, dgst)
	}
	var idx ocispecs.Index
	mustJSON(t, string(body), &idx)
	if got := indexPlatforms(idx); len(got) != 1 || got[0] != "linux/arm64" || idx.Manifests[0].Digest != manifestFor(t, img.Index, "linux/arm64").Digest {
		t.Errorf("pushed index: %s", body)
	}
}

func TestImagesRemoveRefusesImagesInUse(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.busyboxBase(t, "busybox", "linux/"+runtime.GOARCH)
	e.kiln("tag", "busybox", "inuse:1", "inuse:2").ok(t)
	e.ctr("containers", "create", "docker.io/library/inuse:1", "user-of-inuse").ok(t)
	e.kiln("rm", "inuse:1").fails(t, 1, "image docker.io/library/inuse:1 is in use: container user-of-inuse uses it; remove the container first (ctr containers rm user-of-inuse) or remove the image anyway with --force")
	e.image(t, "docker.io/library/inuse:1")
	if out := e.kiln("rm", "--force", "inuse:1").ok(t).Stdout; out != "removed docker.io/library/inuse:1\n" {
		t.Errorf("kiln rm --force printed %q", out)
	}
	if out := e.ctr("containers", "ls", "-q").ok(t).Stdout; strings.TrimSpace(out) != "user-of-inuse" {
		t.Errorf("the container did not stay: %q", out)
	}
	// rmi is an alias; a digest as "kiln images -q" prints it removes every name.
	dgst := strings.TrimSpace(e.kiln("images", "-q", "inuse:2").ok(t).Stdout)
	// The short digest of the table names the image too, when one image has it.
	e.kiln("inspect", strings.TrimPrefix(dgst, "sha256:")[:12]).fails(t, 2, "is the digest of several images (docker.io/library/busybox:latest, docker.io/library/inuse:2)")
	e.kiln("tag", strings.TrimPrefix(dgst, "sha256:")[:12]+"ab", "x").fails(t, 1, "not found in namespace")
	out := e.kiln("rmi", dgst[:len("sha256:")+12]).ok(t).Stdout
	if out != "removed docker.io/library/busybox:latest\nremoved docker.io/library/inuse:2\n" {
		t.Errorf("kiln rmi DIGEST printed %q", out)
	}
	e.kiln("rm", "inuse:2").fails(t, 1, `image "inuse:2" not found in namespace `+e.Namespace+`: list images with "kiln images"`)
}

func TestImagesErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	notFound := `image "nosuch:1" not found in namespace ` + e.Namespace + `: list images with "kiln images"`
	for _, args := range [][]string{
		{"inspect", "nosuch:1"}, {"tag", "nosuch:1", "other"}, {"push", "nosuch:1"}, {"save", "nosuch:1", "-o", filepath.Join(t.TempDir(), "x.tar")}, {"rm", "nosuch:1"},
	} {
		e.kiln(args...).fails(t, 1, notFound)
	}
	for _, args := range [][]string{
		{"inspect", "Bad:Name"}, {"tag", "busybox", "UPPER"}, {"rm", "a:b:c"}, {"pull", "bad name"}, {"push", "app:"}, {"images", "NOPE"},
		{"save", "x::y"}, {"pull", "--platform", "not/a/platform/at/all", "app"}, {"images", "--format", "yaml"},
	} {
		e.kiln(args...).fails(t, 2, "invalid")
	}
	e.kiln("inspect").fails(t, 2, "needs exactly one image name")
	e.kiln("tag", "app").fails(t, 2, "needs an image and at least one new name")

	// A registry nobody listens on, and one that wants credentials.
	e.kiln("pull", "127.0.0.1:1/team/app:1").fails(t, 1, "cannot reach registry 127.0.0.1:1 (dial tcp 127.0.0.1:1: connect: connection refused): check the address")
	e.busyboxBase(t, "busybox", "linux/"+runtime.GOARCH)
	e.kiln("tag", "busybox", "127.0.0.1:1/team/app:1").ok(t)
	e.kiln("push", "127.0.0.1:1/team/app:1").fails(t, 1, "cannot reach registry 127.0.0.1:1")
	e.kiln("pull", "registry.invalid/app:1").fails(t, 1, "cannot reach registry registry.invalid")

	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Basic realm="kiln-test"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`+"\n")
	}))
	defer auth.Close()
	host := strings.TrimPrefix(auth.URL, "http://")
	e.kiln("pull", host+"/team/app:1").fails(t, 1, "registry "+host+" refused to let kiln pull "+host+"/team/app:1")
	r := e.kiln("pull", host+"/team/app:1")
	if !strings.Contains(r.Stderr, `kiln login `+host) {
		t.Errorf("the auth error does not say how to log in: %s", r.Stderr)
	}
	e.kiln("tag", "busybox", host+"/team/app:1").ok(t)
	e.kiln("push", host+"/team/app:1").fails(t, 1, "registry "+host+" refused to let kiln push")
	for _, r := range []result{e.kiln("pull", "127.0.0.1:1/team/app:1"), e.kiln("push", host+"/team/app:1")} {
		if n := strings.Count(strings.TrimSpace(r.Stderr), "\n"); n != 0 {
			t.Errorf("%s: the error is %d lines, want one:\n%s", r.cmd, n+1, r.Stderr)
		}
	}
}
