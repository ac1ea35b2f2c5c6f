//go:build linux

package integration

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/internal/privatecontainerd"
)

// The real-world harness: a Debian base image made from hack/debian-fixtures.sh's tarballs, a
// buildkitd with its containerd worker on the package's containerd (the reference kiln's
// results are compared with), and readers that walk an image's index, manifests, configs and
// layers straight from containerd's content store.

// debianImage is the name the Debian base has in every namespace that imports it.
const debianImage = "docker.io/library/debian:bookworm"

// debianEpoch pins the base image's timestamps (and the real-world builds'), so the base has the
// same digest in every run with the same tarballs.
const debianEpoch = "1704067200" // 2024-01-01, the fixtures' SOURCE_DATE_EPOCH

// debianDockerfile turns the two tarballs into a two-platform image.
const debianDockerfile = `FROM scratch
ARG TARGETARCH
ADD rootfs-${TARGETARCH}.tar /
CMD ["bash"]
`

var debianOnce struct {
	sync.Once
	archive string // an OCI archive of debianImage, linux/amd64 and linux/arm64
	err     error
}

// debianArchive builds the two-platform Debian base once per test binary run, with kiln, from
// the fixtures' tarballs, into an OCI archive that debianBase imports wherever it is needed.
func debianArchive(t *testing.T) string {
	t.Helper()
	debianOnce.Do(func() {
		debianOnce.archive, debianOnce.err = buildDebianArchive(t)
	})
	if debianOnce.err != nil {
		t.Fatalf("the Debian base image: %v", debianOnce.err)
	}
	return debianOnce.archive
}

func buildDebianArchive(t *testing.T) (string, error) {
	src := filepath.Join(fixturesDir, "debian")
	dir, err := os.MkdirTemp(daemon.dir, "debian")
	if err != nil {
		return "", err
	}
	ctx := filepath.Join(dir, "ctx")
	if err := os.MkdirAll(ctx, 0o755); err != nil {
		return "", err
	}
	for _, arch := range []string{"amd64", "arm64"} {
		name := "rootfs-" + arch + ".tar"
		if _, err := os.Stat(filepath.Join(src, name)); err != nil {
			return "", fmt.Errorf("%w: make the Debian fixtures with hack/debian-fixtures.sh %s (as root; `make deps` does)", err, fixturesDir)
		}
		// A hard link where it can be (the context must hold the file itself, not a symlink).
		if err := os.Link(filepath.Join(src, name), filepath.Join(ctx, name)); err != nil {
			if out, err := exec.Command("cp", filepath.Join(src, name), filepath.Join(ctx, name)).CombinedOutput(); err != nil {
				return "", fmt.Errorf("copying %s: %v: %s", name, err, out)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(debianDockerfile), 0o644); err != nil {
		return "", err
	}
	archive := filepath.Join(dir, "debian.tar")
	start := time.Now()
	r := runShown(t, "", "kiln build (the Debian base)", kilnBinary, "--address", daemon.address,
		"--namespace", fmt.Sprintf("realworld-debian-%d", os.Getpid()), "--root", filepath.Join(dir, "root"),
		"build", "--progress", "plain", "--platform", "linux/amd64,linux/arm64", "--source-date-epoch", debianEpoch,
		"-t", debianImage, "-o", "type=oci,dest="+archive, ctx)
	if r.Code != 0 {
		return "", fmt.Errorf("%s: exit code %d:\n%s", r.cmd, r.Code, r.Stderr)
	}
	t.Logf("timing: the Debian base image built in %.1fs", time.Since(start).Seconds())
	return archive, nil
}

// debianBase imports the Debian base into namespace ns of the package's containerd, so that
// `FROM debian:bookworm` resolves locally.
func debianBase(t *testing.T, ns string) {
	t.Helper()
	archive := debianArchive(t)
	runShown(t, "", "ctr -n "+ns+" images import --all-platforms debian.tar", filepath.Join(toolsDir, "ctr"),
		"-a", daemon.address, "-n", ns, "images", "import", "--all-platforms", archive).ok(t)
}

// buildkitd is a buildkitd with its containerd worker on the package's containerd, in a
// namespace of its own, started once per test binary run and stopped before containerd.
type buildkitd struct {
	Addr      string // unix://...
	Namespace string
	daemon    *privatecontainerd.Daemon
}

var bkOnce struct {
	sync.Once
	bk  *buildkitd
	err error
}

// sharedBuildkitd starts the buildkitd (once), with the Debian base imported into its namespace.
func sharedBuildkitd(t *testing.T) *buildkitd {
	t.Helper()
	bkOnce.Do(func() {
		bkOnce.bk, bkOnce.err = startBuildkitd(t)
	})
	if bkOnce.err != nil {
		t.Fatalf("buildkitd: %v", bkOnce.err)
	}
	return bkOnce.bk
}

func startBuildkitd(t *testing.T) (*buildkitd, error) {
	bin := filepath.Join(toolsDir, "buildkitd")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%w: build it with hack/build-buildkit.sh %s", err, toolsDir)
	}
	dir, err := os.MkdirTemp(daemon.dir, "bk")
	if err != nil {
		return nil, err
	}
	b := &buildkitd{Addr: "unix://" + filepath.Join(dir, "buildkitd.sock"), Namespace: fmt.Sprintf("realworld-buildkitd-%d", os.Getpid())}
	// buildkitd's defaults, as users run it, but a config of its own (so the host's
	// /etc/buildkit/buildkitd.toml is never read) and the same containerd, snapshotter and network
	// as kiln's steps.
	config := fmt.Sprintf(`root = %q

[grpc]
  address = [%q]

[otel]
  socketPath = %q

[worker.oci]
  enabled = false

[worker.containerd]
  enabled = true
  address = %q
  namespace = %q
  snapshotter = "overlayfs"
  networkMode = "host"
`, filepath.Join(dir, "root"), b.Addr, filepath.Join(dir, "otel.sock"), daemon.address, b.Namespace)
	configPath := filepath.Join(dir, "buildkitd.toml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		return nil, err
	}
	// arm64 steps need the aarch64 handler; buildkitd also lists the platforms it can emulate
	// only at start.
	if r := runShown(t, "", "kiln emulation install linux/arm64", kilnBinary, "emulation", "install", "linux/arm64"); r.Code != 0 {
		return nil, fmt.Errorf("%s: exit code %d: %s", r.cmd, r.Code, r.Stderr)
	}
	debianBase(t, b.Namespace)
	cmd := exec.Command(bin, "--config", configPath)
	cmd.Env = privatecontainerd.ToolsFirst(toolsDir)
	b.daemon, err = privatecontainerd.StartDaemon("buildkitd", filepath.Join(dir, "buildkitd.log"), cmd)
	if err != nil {
		return nil, err
	}
	atExit(func() { b.daemon.Stop() })
	err = b.daemon.WaitFor(60*time.Second, "`buildctl debug workers`", func() error {
		return exec.Command(filepath.Join(toolsDir, "buildctl"), "--addr", b.Addr, "debug", "workers").Run()
	})
	if err != nil {
		return nil, fmt.Errorf("%w; its log:\n%s", err, tailFile(b.daemon.LogPath, 4000))
	}
	return b, nil
}

// build runs buildctl as a user reproduces a kiln build: the Dockerfile frontend, the same
// platforms, local base images, SOURCE_DATE_EPOCH as a build argument and rewrite-timestamp
// on the image exporter.
func (b *buildkitd) build(t *testing.T, ctx, name string, platforms []string, epoch string) result {
	t.Helper()
	args := []string{"--addr", b.Addr, "build", "--progress", "plain", "--frontend", "dockerfile.v0",
		"--local", "context=" + ctx, "--local", "dockerfile=" + ctx,
		"--opt", "platform=" + strings.Join(platforms, ","), "--opt", "image-resolve-mode=local",
		"--opt", "build-arg:SOURCE_DATE_EPOCH=" + epoch,
		"--output", "type=image,name=" + name + ",rewrite-timestamp=true"}
	r := runShown(t, "", "buildctl "+strings.Join(args[2:], " "), filepath.Join(toolsDir, "buildctl"), args...)
	if r.Code != 0 {
		t.Logf("buildkitd log tail:\n%s", tailFile(b.daemon.LogPath, 3000))
	}
	return r
}

// env is a view of buildkitd's namespace for ctr.
func (b *buildkitd) env(t *testing.T) *env {
	return &env{t: t, Namespace: b.Namespace, Address: daemon.address}
}

func tailFile(p string, n int) string {
	data, _ := os.ReadFile(p)
	if len(data) > n {
		data = data[len(data)-n:]
	}
	return string(data)
}

var atExitFuncs struct {
	sync.Mutex
	fns []func()
}

// atExit registers fn to run after every test, before containerd stops (last registered first).
func atExit(fn func()) {
	atExitFuncs.Lock()
	defer atExitFuncs.Unlock()
	atExitFuncs.fns = append(atExitFuncs.fns, fn)
}

func runAtExit() {
	atExitFuncs.Lock()
	fns := atExitFuncs.fns
	atExitFuncs.fns = nil
	atExitFuncs.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// openBlob opens a blob of the package's containerd content store (shared by its namespaces on
// disk), read directly: layers of hundreds of megabytes stream, with no ctr process.
func openBlob(dgst string) (*os.File, error) {
	algo, hexPart, ok := strings.Cut(dgst, ":")
	if !ok {
		return nil, fmt.Errorf("invalid digest %q", dgst)
	}
	return os.Open(filepath.Join(daemon.dir, "root", "io.containerd.content.v1.content", "blobs", algo, hexPart))
}

// readBlobBytes reads a whole blob of the package's containerd.
func readBlobBytes(dgst string) ([]byte, error) {
	f, err := openBlob(dgst)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

func readBlobJSON(dgst string, v any) ([]byte, error) {
	b, err := readBlobBytes(dgst)
	if err != nil {
		return nil, err
	}
	return b, json.Unmarshal(b, v)
}

// storedIndex is an image index and, by platform, its manifests and raw configs.
type storedIndex struct {
	Digest    string
	Index     ocispecs.Index
	Manifests map[string]ocispecs.Manifest
	Configs   map[string][]byte
}

// readIndex reads the index dgst and every platform's manifest and config from the content store.
func readIndex(dgst string) (*storedIndex, error) {
	s := &storedIndex{Digest: dgst, Manifests: map[string]ocispecs.Manifest{}, Configs: map[string][]byte{}}
	if _, err := readBlobJSON(dgst, &s.Index); err != nil {
		return nil, fmt.Errorf("index %s: %w", dgst, err)
	}
	for _, d := range s.Index.Manifests {
		if d.Platform == nil {
			return nil, fmt.Errorf("index %s: manifest %s has no platform", dgst, d.Digest)
		}
		p := d.Platform.OS + "/" + d.Platform.Architecture
		var m ocispecs.Manifest
		if _, err := readBlobJSON(d.Digest.String(), &m); err != nil {
			return nil, fmt.Errorf("%s manifest %s: %w", p, d.Digest, err)
		}
		var cfg any
		raw, err := readBlobJSON(m.Config.Digest.String(), &cfg)
		if err != nil {
			return nil, fmt.Errorf("%s config %s: %w", p, m.Config.Digest, err)
		}
		s.Manifests[p], s.Configs[p] = m, raw
	}
	return s, nil
}

// layerEntry is what the comparison sees of one tar entry of a layer.
type layerEntry struct {
	Type     byte
	Mode     int64
	UID, GID int
	Size     int64
	SHA256   string // of the content, for regular files
	Linkname string
	Xattrs   string // "name=hexvalue" pairs, sorted
	ModTime  int64
	Dev      string // major:minor of devices
}

func (e layerEntry) String() string {
	s := fmt.Sprintf("type %q mode %o uid %d gid %d", e.Type, e.Mode, e.UID, e.GID)
	if e.Type == tar.TypeReg {
		s += fmt.Sprintf(" size %d sha256 %.16s", e.Size, e.SHA256)
	}
	if e.Linkname != "" {
		s += " link " + e.Linkname
	}
	if e.Xattrs != "" {
		s += " xattrs " + e.Xattrs
	}
	if e.Dev != "" {
		s += " dev " + e.Dev
	}
	return s + fmt.Sprintf(" mtime %d", e.ModTime)
}

// readLayer streams a layer blob (gzip, zstd or uncompressed) into its entries by path (no
// leading slash).
func readLayer(dgst string) (map[string]layerEntry, error) {
	f, err := openBlob(dgst)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	magic, _ := br.Peek(4)
	var r io.Reader = br
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		r = zr
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		r = zr
	}
	out := map[string]layerEntry{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", dgst, err)
		}
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		e := layerEntry{Type: h.Typeflag, Mode: h.Mode, UID: h.Uid, GID: h.Gid, Size: h.Size, Linkname: h.Linkname, ModTime: h.ModTime.Unix()}
		if h.Typeflag == tar.TypeChar || h.Typeflag == tar.TypeBlock {
			e.Dev = fmt.Sprintf("%d:%d", h.Devmajor, h.Devminor)
		}
		var xattrs []string
		for k, v := range h.PAXRecords {
			if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				xattrs = append(xattrs, x+"="+hex.EncodeToString([]byte(v)))
			}
		}
		sort.Strings(xattrs)
		e.Xattrs = strings.Join(xattrs, ",")
		if h.Typeflag == tar.TypeReg {
			sum := sha256.New()
			if _, err := io.Copy(sum, tr); err != nil {
				return nil, fmt.Errorf("layer %s: %s: %w", dgst, name, err)
			}
			e.SHA256 = hex.EncodeToString(sum.Sum(nil))
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("layer %s holds %s twice", dgst, name)
		}
		out[name] = e
	}
}

// ignoredPath is one path (a path.Match pattern, no leading slash) whose content may differ
// between two builds of the same Dockerfile, and why.
type ignoredPath struct {
	Pattern string
	Why     string
}

// image names one builder's image for compareImages.
type image struct {
	Who    string // "kiln", "buildkitd", "kiln again": for messages
	Digest string // its index
}

// comparison is what compareImages found.
type comparison struct {
	Diffs []string // the differences, one line each
	// Ignored are the ignore patterns that matched a path which differed.
	Ignored map[string]bool
}

// compareImages compares image a with b. Equal digests end it. Otherwise, with deterministic
// set, every difference is reported; without, the platforms, configs (but for the layers'
// diff_ids) and layers are compared as file trees, entry by entry, except the contents of the
// ignored paths (which must still be in both, with the same type, mode, owner, xattrs and time).
func compareImages(a, b image, deterministic bool, ignore []ignoredPath) (comparison, error) {
	c := comparison{Ignored: map[string]bool{}}
	if a.Digest == b.Digest {
		return c, nil
	}
	// Both names padded to one width, so that the two lines of a difference align.
	w := max(len(a.Who), len(b.Who))
	an, bn := fmt.Sprintf("%-*s", w, a.Who), fmt.Sprintf("%-*s", w, b.Who)
	if deterministic {
		c.Diffs = append(c.Diffs, fmt.Sprintf("index digests differ: %s %s, %s %s", a.Who, a.Digest, b.Who, b.Digest))
	}
	ia, err := readIndex(a.Digest)
	if err != nil {
		return c, fmt.Errorf("%s's image: %w", a.Who, err)
	}
	ib, err := readIndex(b.Digest)
	if err != nil {
		return c, fmt.Errorf("%s's image: %w", b.Who, err)
	}
	if ka, kb := keys(ia.Manifests), keys(ib.Manifests); !slices.Equal(ka, kb) {
		c.Diffs = append(c.Diffs, fmt.Sprintf("platforms differ: %s %v, %s %v", a.Who, ka, b.Who, kb))
		return c, nil
	}
	if deterministic {
		if ja, jb := indexShape(ia.Index), indexShape(ib.Index); ja != jb {
			c.Diffs = append(c.Diffs, fmt.Sprintf("index (but for manifest digests) differs:\n  %s %s\n  %s %s", an, ja, bn, jb))
		}
	}
	for _, p := range keys(ia.Manifests) {
		ma, mb := ia.Manifests[p], ib.Manifests[p]
		ca, cb := configWithout(ia.Configs[p], !deterministic), configWithout(ib.Configs[p], !deterministic)
		if ca != cb {
			c.Diffs = append(c.Diffs, fmt.Sprintf("%s: configs differ:\n  %s %s\n  %s %s", p, an, ca, bn, cb))
		}
		if len(ma.Layers) != len(mb.Layers) {
			c.Diffs = append(c.Diffs, fmt.Sprintf("%s: %s's image has %d layers, %s's %d", p, a.Who, len(ma.Layers), b.Who, len(mb.Layers)))
			continue
		}
		for i := range ma.Layers {
			la, lb := ma.Layers[i], mb.Layers[i]
			if la.Digest == lb.Digest {
				continue
			}
			if la.MediaType != lb.MediaType {
				c.Diffs = append(c.Diffs, fmt.Sprintf("%s: layer %d media types differ: %s %s, %s %s", p, i, a.Who, la.MediaType, b.Who, lb.MediaType))
			}
			ta, err := readLayer(la.Digest.String())
			if err != nil {
				return c, err
			}
			tb, err := readLayer(lb.Digest.String())
			if err != nil {
				return c, err
			}
			n := len(c.Diffs)
			for _, name := range keys(unionKeys(ta, tb)) {
				ea, inA := ta[name]
				eb, inB := tb[name]
				if inA && inB && ea == eb {
					continue
				}
				// An ignored path may differ in content (and so size), nothing else.
				if pattern, ok := ignored(name, ignore); ok && inA && inB && sameButContent(ea, eb) {
					c.Ignored[pattern] = true
					continue
				}
				var d string
				switch {
				case !inA:
					d = fmt.Sprintf("/%s only in %s's (%s)", name, b.Who, eb)
				case !inB:
					d = fmt.Sprintf("/%s only in %s's (%s)", name, a.Who, ea)
				default:
					d = fmt.Sprintf("/%s differs:\n    %s %s\n    %s %s", name, an, ea, bn, eb)
				}
				c.Diffs = append(c.Diffs, fmt.Sprintf("%s: layer %d: %s", p, i, d))
			}
			if deterministic && len(c.Diffs) == n {
				c.Diffs = append(c.Diffs, fmt.Sprintf("%s: layer %d: the same files, but blobs %s (%s, %d bytes) and %s (%s, %d bytes) differ: tar order, headers or compression",
					p, i, la.Digest, a.Who, la.Size, lb.Digest, b.Who, lb.Size))
			}
		}
	}
	return c, nil
}

// sameButContent reports whether two entries differ at most in their content and size.
func sameButContent(a, b layerEntry) bool {
	a.SHA256, a.Size, b.SHA256, b.Size = "", 0, "", 0
	return a == b
}

func unionKeys(a, b map[string]layerEntry) map[string]bool {
	out := map[string]bool{}
	for n := range a {
		out[n] = true
	}
	for n := range b {
		out[n] = true
	}
	return out
}

// ignored returns the first ignore pattern that matches name.
func ignored(name string, ignore []ignoredPath) (string, bool) {
	for _, ig := range ignore {
		if ok, _ := path.Match(ig.Pattern, name); ok {
			return ig.Pattern, true
		}
	}
	return "", false
}

// configWithout is the config as compact JSON, without rootfs.diff_ids when dropDiffIDs (they
// name the layers, which a tree comparison compares itself).
func configWithout(raw []byte, dropDiffIDs bool) string {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return "invalid JSON: " + err.Error()
	}
	if rootfs, ok := m["rootfs"].(map[string]any); ok && dropDiffIDs {
		delete(rootfs, "diff_ids")
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// indexShape is the index as JSON with the manifests' digests and sizes left out.
func indexShape(idx ocispecs.Index) string {
	for i := range idx.Manifests {
		idx.Manifests[i].Digest, idx.Manifests[i].Size = "", 0
	}
	b, _ := json.Marshal(idx)
	return string(b)
}
