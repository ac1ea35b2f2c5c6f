//go:build linux

package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	units "github.com/docker/go-units"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

const archDockerfile = `FROM busybox
RUN uname -m > /arch
CMD ["sh", "-c", "echo built=$(cat /arch) running=$(uname -m)"]
`

// image reads what containerd stores under name: the top-level descriptor's
// media type and digest, and the index or manifest it points at.
type storedImage struct {
	MediaType string
	Digest    string
	Index     ocispecs.Index
	Manifest  ocispecs.Manifest
}

func (e *env) image(t *testing.T, name string) storedImage {
	t.Helper()
	out := e.ctr("images", "ls").ok(t).Stdout
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == name {
			img := storedImage{MediaType: f[1], Digest: f[2]}
			blob := e.ctr("content", "get", img.Digest).ok(t).Stdout
			if strings.Contains(img.MediaType, "index") {
				mustJSON(t, blob, &img.Index)
			} else {
				mustJSON(t, blob, &img.Manifest)
			}
			return img
		}
	}
	t.Fatalf("image %s not in namespace %s:\n%s", name, e.Namespace, out)
	return storedImage{}
}

// config reads an image config blob.
func (e *env) config(t *testing.T, digest string) ocispecs.Image {
	t.Helper()
	var img ocispecs.Image
	mustJSON(t, e.ctr("content", "get", digest).ok(t).Stdout, &img)
	return img
}

func mustJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("decoding %q: %v", s, err)
	}
}

func indexPlatforms(idx ocispecs.Index) []string {
	var out []string
	for _, m := range idx.Manifests {
		if m.Platform != nil {
			p := m.Platform.OS + "/" + m.Platform.Architecture
			if m.Platform.Variant != "" {
				p += "/" + m.Platform.Variant
			}
			out = append(out, p)
		}
	}
	return out
}

func TestBuildTwoPlatformsRunsEach(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.busyboxBase(t, "busybox")
	dir := contextDir(t, map[string]string{"Dockerfile": archDockerfile})
	e.kiln("build", "--platform", "linux/amd64,linux/arm64", "-t", "hello", dir).ok(t)

	img := e.image(t, "docker.io/library/hello:latest")
	if img.MediaType != ocispecs.MediaTypeImageIndex {
		t.Fatalf("media type %s, want an OCI index", img.MediaType)
	}
	got := indexPlatforms(img.Index)
	if len(got) != 2 || !contains(got, "linux/amd64") || !contains(got, "linux/arm64") {
		t.Fatalf("index platforms %v, want linux/amd64 and linux/arm64", got)
	}
	for _, c := range []struct{ platform, machine string }{{"linux/amd64", "x86_64"}, {"linux/arm64", "aarch64"}} {
		out := e.ctr("run", "--rm", "--platform", c.platform, "docker.io/library/hello:latest", "run-"+strings.ReplaceAll(c.platform, "/", "-")).ok(t).Stdout
		want := "built=" + c.machine + " running=" + c.machine
		if strings.TrimSpace(out) != want {
			t.Errorf("%s printed %q, want %q", c.platform, out, want)
		}
	}
	// Nothing of kiln's is left where a user would trip over it.
	if out := e.ctr("containers", "ls", "-q").ok(t).Stdout; strings.TrimSpace(out) != "" {
		t.Errorf("containers left in the namespace: %s", out)
	}
	if out := e.ctr("namespaces", "ls", "-q").ok(t).Stdout; strings.Contains(out, e.Namespace+"_history") {
		t.Errorf("a history namespace was created: %s", out)
	}
}

func TestBuildSinglePlatformIsPlainManifest(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.busyboxBase(t, "busybox", "linux/amd64")
	dir := contextDir(t, map[string]string{"Dockerfile": "FROM busybox\nARG GREETING\nLABEL greeting=$GREETING\nRUN echo $GREETING > /greeting\n"})
	e.kiln("build", dir, "-t", "me/plain:1", "--build-arg", "GREETING=hi,there", "--label", "team=edge").ok(t)
	img := e.image(t, "docker.io/me/plain:1")
	if img.MediaType != ocispecs.MediaTypeImageManifest {
		t.Fatalf("media type %s, want a plain OCI manifest for one platform", img.MediaType)
	}
	cfg := e.config(t, img.Manifest.Config.Digest.String())
	if cfg.Config.Labels["greeting"] != "hi,there" || cfg.Config.Labels["team"] != "edge" {
		t.Errorf("labels %v, want greeting=hi,there and team=edge", cfg.Config.Labels)
	}
}

func TestBuildFromLocalBaseWithNoNetwork(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.busyboxBase(t, "localbase:1", "linux/amd64", "linux/arm64")
	dir := contextDir(t, map[string]string{"Dockerfile": "FROM localbase:1\nRUN echo ok > /ok\n"})
	// A network namespace with nothing but a loopback that is down: any
	// registry contact fails, while containerd's socket still answers.
	args := append([]string{"-n", kilnBinary, "--address", e.Address, "--namespace", e.Namespace, "--root", e.Root},
		"build", "--platform", "linux/amd64,linux/arm64", "-t", "offline", dir)
	runShown(t, "", "unshare -n kiln build (offline)", "unshare", args...).ok(t)
	e.image(t, "docker.io/library/offline:latest")

	// The same build for a platform the local base lacks names the image and
	// the platform instead of failing on DNS.
	args[len(args)-4] = "linux/s390x"
	r := runShown(t, "", "unshare -n kiln build (missing platform)", "unshare", args...)
	r.fails(t, 1, "base image docker.io/library/localbase:1 is in the local store but has no content for linux/s390x (it has linux/amd64, linux/arm64)")

	// --pull always asks the registry, which this namespace cannot reach.
	args[len(args)-4] = "linux/amd64"
	args = append(args[:len(args)-1], "--pull", dir)
	r = runShown(t, "", "unshare -n kiln build --pull", "unshare", args...)
	r.fails(t, 1, "cannot fetch base image docker.io/library/localbase:1: the registry is not reachable")
}

func TestBuildCachedRebuildRunsNoStep(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.busyboxBase(t, "busybox")
	dir := contextDir(t, map[string]string{"Dockerfile": "FROM busybox\nRUN cat /proc/sys/kernel/random/uuid > /stamp\nCOPY Dockerfile /\n"})
	build := func() (string, string) {
		iid := filepath.Join(t.TempDir(), "iid")
		r := e.kiln("build", "--progress", "plain", "--platform", "linux/amd64,linux/arm64", "--iidfile", iid, "-t", "cached", dir).ok(t)
		dgst, err := os.ReadFile(iid)
		if err != nil {
			t.Fatal(err)
		}
		return string(dgst), r.Stderr
	}
	first, _ := build()
	second, progress := build()
	if first != second {
		t.Errorf("rebuild gave %s, first build %s: a step ran again", second, first)
	}
	// Every RUN and COPY of the second build must be reported CACHED.
	steps := regexp.MustCompile(`(?m)^(#\d+) \[linux/\w+ [23]/3\]`).FindAllStringSubmatch(progress, -1)
	if len(steps) != 4 {
		t.Fatalf("expected 4 step headers in the progress output, got %d:\n%s", len(steps), progress)
	}
	for _, s := range steps {
		if !strings.Contains(progress, s[1]+" CACHED") {
			t.Errorf("step %s was not cached:\n%s", s[0], progress)
		}
	}
}

func TestBuildOutputsAndStdin(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.busyboxBase(t, "busybox", "linux/amd64")
	dir := contextDir(t, map[string]string{"Dockerfile": "FROM scratch\n"})
	meta := filepath.Join(t.TempDir(), "meta.json")
	df := "# syntax=docker/dockerfile:1.7\nFROM busybox AS base\nRUN echo base > /stage\nFROM base AS test\nRUN echo test > /stage\nFROM base\n"
	r := e.kilnStdin(df, "build", "-q", "-f", "-", "--target", "test", "--metadata-file", meta, "-t", "quiet", dir).ok(t)
	digest := strings.TrimSpace(r.Stdout)
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(digest) {
		t.Fatalf("-q printed %q, want only the image digest", r.Stdout)
	}
	if !strings.Contains(r.Stderr, `warning: ignoring syntax "docker/dockerfile:1.7"`) || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
		t.Errorf("want exactly one warning line about the syntax directive, got stderr:\n%s", r.Stderr)
	}
	if img := e.image(t, "docker.io/library/quiet:latest"); img.Digest != digest {
		t.Errorf("stored digest %s, -q printed %s", img.Digest, digest)
	}
	var m map[string]any
	dt, err := os.ReadFile(meta)
	if err != nil {
		t.Fatal(err)
	}
	mustJSON(t, string(dt), &m)
	if m["containerimage.digest"] != digest {
		t.Errorf("metadata file has digest %v, want %s", m["containerimage.digest"], digest)
	}
	// --target test means the image holds the test stage's file.
	out := e.ctr("run", "--rm", "docker.io/library/quiet:latest", "target-check", "cat", "/stage").ok(t).Stdout
	if strings.TrimSpace(out) != "test" {
		t.Errorf("/stage is %q, want \"test\" from --target test", out)
	}
}

func TestBuildErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.busyboxBase(t, "busybox", "linux/amd64")
	good := contextDir(t, map[string]string{"Dockerfile": "FROM busybox\n"})
	file := filepath.Join(good, "Dockerfile")
	notSocket := filepath.Join(t.TempDir(), "not-a-socket")
	os.WriteFile(notSocket, nil, 0o600)

	cases := []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stderr string
	}{
		{"no containerd", "", []string{"--address", "/nonexistent/containerd.sock", "build", good}, 1, "containerd is not running at /nonexistent/containerd.sock"},
		{"address not a socket", "", []string{"--address", notSocket, "build", good}, 1, "is not a socket"},
		// Checked before any connection: the bad address is never reached.
		{"unknown architecture", "", []string{"--address", "/nonexistent.sock", "build", "--platform", "linux/arm65", good}, 2, `unknown architecture "arm65"`},
		{"other os", "", []string{"build", "--platform", "windows/amd64", good}, 2, "kiln builds Linux images only"},
		{"empty platform", "", []string{"build", "--platform", "linux/amd64,", good}, 2, `invalid platform ""`},
		{"invalid tag", "", []string{"--address", "/nonexistent.sock", "build", "-t", "Bad:Tag:x", good}, 2, `invalid tag: invalid image name "Bad:Tag:x"`},
		{"missing context", "", []string{"build", "/nonexistent/ctx"}, 2, "build context /nonexistent/ctx does not exist"},
		{"context is a file", "", []string{"build", file}, 2, "is a file, not a directory"},
		{"no context", "", []string{"build"}, 2, "needs exactly one build context directory"},
		{"missing Dockerfile", "", []string{"build", t.TempDir()}, 2, "no Dockerfile in build context"},
		{"missing -f", "", []string{"build", "-f", "/nonexistent/Dockerfile", good}, 2, "Dockerfile /nonexistent/Dockerfile does not exist"},
		{"empty Dockerfile", "  \n", []string{"build", "-f", "-", good}, 2, "is empty"},
		{"bad progress", "", []string{"build", "--progress", "fancy", good}, 2, `invalid --progress "fancy"`},
		{"syntax error", "FROM busybox\nFROBNICATE x\n", []string{"build", "-f", "-", good}, 1, "Dockerfile (stdin):2: unknown instruction: FROBNICATE"},
		// stdout and stderr reach the log on separate streams, so only
		// their presence is checked below, not their order.
		{"failing RUN", "FROM busybox\nRUN echo first; echo second >&2; exit 3\n", []string{"build", "-f", "-", good}, 1, "step [2/2] RUN echo first; echo second >&2; exit 3 failed with exit code 3\nlast output:\n  "},
		{"unknown flag", "", []string{"build", "--frobnicate", good}, 2, "flag provided but not defined: -frobnicate"},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			r := runShown(t, c.stdin, "kiln "+strings.Join(c.args, " "), kilnBinary, append([]string{"--namespace", e.Namespace, "--root", e.Root, "--address", e.Address}, c.args...)...)
			r.fails(t, c.code, c.stderr)
			if c.name == "failing RUN" && (!strings.Contains(r.Stderr, "\n  first") || !strings.Contains(r.Stderr, "\n  second")) {
				t.Errorf("the last output lines of the step are missing:\n%s", r.Stderr)
			}
			if lines := strings.Count(strings.TrimSpace(r.Stderr), "\n") + 1; c.name != "failing RUN" && c.name != "syntax error" && lines > 1 {
				t.Errorf("want a one-line error, got %d lines:\n%s", lines, r.Stderr)
			}
		})
	}
}

func TestCacheCommandsAndInfo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.busyboxBase(t, "busybox", "linux/amd64")
	dir := contextDir(t, map[string]string{"Dockerfile": "FROM busybox\nRUN dd if=/dev/zero of=/blob bs=1M count=4\n"})
	e.kiln("build", "-t", "du", dir).ok(t)

	du := e.kiln("du").ok(t).Stdout
	if !regexp.MustCompile(`total:\s+[1-9][\d.]*\s*[kMG]?B`).MatchString(du) {
		t.Fatalf("kiln du after a build shows no usage:\n%s", du)
	}
	// What each prune frees (issue #21): kiln prune frees "reclaimable", and
	// after it only what --all would free is left.
	f := duFigures(t, du)
	if f["reclaimable"] > f["reclaimable with --all"] || f["reclaimable with --all"] == 0 || f["shared"] > f["total"] || f["private"] > f["total"] {
		t.Fatalf("kiln du figures do not add up:\n%s", du)
	}
	e.kiln("rmi-not-a-command").fails(t, 2, `unknown command "rmi-not-a-command"`)
	e.kiln("prune").ok(t)
	pruned := e.kiln("du").ok(t).Stdout
	if g := duFigures(t, pruned); g["reclaimable"] != 0 || g["reclaimable with --all"] == 0 {
		t.Errorf("after kiln prune, du should show nothing reclaimable but what --all frees:\n%s", pruned)
	}
	e.kiln("prune", "--all").ok(t)
	after := e.kiln("du").ok(t).Stdout
	if !strings.Contains(after, "records:     0") && !regexp.MustCompile(`total:\s+0B`).MatchString(after) {
		t.Errorf("kiln du after prune --all still shows cache:\n%s", after)
	}

	info := e.kiln("info", "--format", "json").ok(t).Stdout
	var m map[string]any
	mustJSON(t, info, &m)
	if m["address"] != e.Address || m["namespace"] != e.Namespace || m["containerdVersion"] == "" {
		t.Errorf("kiln info: %s", info)
	}
	// The file system the steps write to is containerd's overlayfs snapshotter's, as it says.
	disk, _ := m["snapshots"].(map[string]any)
	if dir, _ := disk["dir"].(string); filepath.Base(dir) != "io.containerd.snapshotter.v1.overlayfs" || !isDir(dir) {
		t.Errorf("kiln info names %v as the snapshots' directory, want containerd's overlayfs snapshotter's", disk["dir"])
	}
	if free, size := disk["free"].(float64), disk["size"].(float64); size == 0 || free > size {
		t.Errorf("kiln info gives the snapshots' file system %v bytes free of %v", disk["free"], disk["size"])
	}
	if text := e.kiln("info").ok(t).Stdout; !regexp.MustCompile(`(?m)^snapshots:\s+/\S+ \(\S+ free of \S+\)$`).MatchString(text) {
		t.Errorf("kiln info shows no snapshots line:\n%s", text)
	}
	// As root kiln runs the steps with runc itself.
	if runc, err := exec.LookPath("runc"); err != nil || m["runtime"] != runc {
		t.Errorf("kiln info names %v as the step runtime, want %s (%v)", m["runtime"], runc, err)
	}
	if v := e.kiln("version").ok(t).Stdout; !strings.Contains(v, "BuildKit v0.34.2") {
		t.Errorf("kiln version does not name the embedded BuildKit:\n%s", v)
	}
}

// isDir reports whether path is a directory.
func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// duFigures reads kiln du's summary lines ("reclaimable:  1.2MB ...") as bytes.
func duFigures(t *testing.T, out string) map[string]int64 {
	t.Helper()
	m := map[string]int64{}
	for _, l := range strings.Split(out, "\n") {
		name, rest, ok := strings.Cut(l, ":")
		f := strings.Fields(rest)
		if !ok || len(f) == 0 || name == "records" {
			continue
		}
		n, err := units.FromHumanSize(f[0])
		if err != nil {
			t.Fatalf("kiln du: %q: %v", l, err)
		}
		m[name] = n
	}
	for _, k := range []string{"shared", "private", "reclaimable", "reclaimable with --all", "total"} {
		if _, ok := m[k]; !ok {
			t.Fatalf("kiln du shows no %q line:\n%s", k, out)
		}
	}
	return m
}
