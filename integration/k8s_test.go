//go:build linux

package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/privatecontainerd"
)

// criSandboxImage is the pod sandbox image of the CRI-enabled containerd:
// kiln builds it, nothing is pulled.
const criSandboxImage = "docker.io/library/kiln-pause:1"

// criEnv is a private containerd with its CRI plugin, and kiln and crictl
// pointed at it.
type criEnv struct {
	t      *testing.T
	d      *containerd
	root   string // kiln's --root
	crictl string
}

// newCRIEnv starts a containerd whose CRI plugin unpacks and runs images
// with snapshotter, for pods with the host's network (no CNI).
func newCRIEnv(t *testing.T, snapshotter string) *criEnv {
	t.Helper()
	crictl := os.Getenv("KILN_CRICTL")
	if crictl == "" {
		crictl = filepath.Join(toolsDir, "crictl")
	}
	if _, err := os.Stat(crictl); err != nil {
		t.Fatalf("crictl is missing (%v): build it with hack/build-crictl.sh (make deps), or set KILN_CRICTL", err)
	}
	bin := os.Getenv("KILN_CONTAINERD_CRI")
	if bin == "" {
		bin = filepath.Join(toolsDir, "containerd-cri")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("containerd with its CRI plugin is missing (%v): build it with hack/build-containerd.sh (make deps), or set KILN_CONTAINERD_CRI", err)
	}
	d, err := startContainerdWith(nil, &privatecontainerd.CRI{Binary: bin, SandboxImage: criSandboxImage, Snapshotter: snapshotter})
	if err != nil {
		t.Fatalf("starting containerd with its CRI plugin: %v", err)
	}
	root, err := os.MkdirTemp(d.dir, "k")
	if err != nil {
		t.Fatal(err)
	}
	c := &criEnv{t: t, d: d, root: root, crictl: crictl}
	t.Cleanup(func() {
		// Pods first: the CRI stops their containers and sandboxes.
		c.run("crictl rmp", crictl, c.crictlArgs("rmp", "--all", "--force")...)
		if t.Failed() {
			d.printLogTail(os.Stderr, 40)
		}
		if err := d.stop(); err != nil {
			t.Errorf("stopping containerd: %v", err)
		}
	})
	return c
}

func (c *criEnv) run(line, name string, args ...string) result {
	c.t.Helper()
	return runShown(c.t, "", line, name, args...)
}

// kiln runs kiln with --root and, unless args set it, --address of the
// CRI containerd.
func (c *criEnv) kiln(args ...string) result {
	c.t.Helper()
	full := append([]string{"--root", c.root, "--address", c.d.address}, args...)
	return c.run("kiln "+strings.Join(args, " "), kilnBinary, full...)
}

func (c *criEnv) crictlArgs(args ...string) []string {
	ep := "unix://" + c.d.address
	return append([]string{"--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "60s"}, args...)
}

func (c *criEnv) crictlRun(args ...string) result {
	c.t.Helper()
	return c.run("crictl "+strings.Join(args, " "), c.crictl, c.crictlArgs(args...)...)
}

func (c *criEnv) ctr(args ...string) result {
	c.t.Helper()
	full := append([]string{"-a", c.d.address, "-n", "k8s.io"}, args...)
	return c.run("ctr -n k8s.io "+strings.Join(args, " "), filepath.Join(toolsDir, "ctr"), full...)
}

// criImage is an image as crictl images -o json lists it.
type criImage struct {
	ID          string   `json:"id"`
	RepoTags    []string `json:"repoTags"`
	RepoDigests []string `json:"repoDigests"`
	Pinned      bool     `json:"pinned"`
}

func (c *criEnv) images() []criImage {
	c.t.Helper()
	out := c.crictlRun("images", "-o", "json").ok(c.t).Stdout
	var list struct {
		Images []criImage `json:"images"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		c.t.Fatalf("crictl images -o json: %v\n%s", err, out)
	}
	return list.Images
}

// An image kiln builds with --k8s is the kubelet's at once: crictl lists it
// under its name, digest and config ID, every platform is kept, the host's
// is unpacked with the CRI's snapshotter (native here, not kiln's own
// choice, overlayfs) and survives containerd's garbage collection, and a
// pod with the host's network runs it, with a sandbox image kiln built too,
// without any registry.
func TestKubernetesCRI(t *testing.T) {
	c := newCRIEnv(t, "native")
	ctxs := map[string]string{}
	bb := contextDir(t, map[string]string{"Dockerfile": busyboxDockerfile})
	if out, err := exec.Command("cp", "-a", filepath.Join(fixturesDir, "rootfs"), bb).CombinedOutput(); err != nil {
		t.Fatalf("copying fixtures rootfs: %v: %s", err, out)
	}
	ctxs["pause"] = contextDir(t, map[string]string{"Dockerfile": "FROM busybox\nCMD [\"sleep\", \"2147483647\"]\n"})
	ctxs["app"] = contextDir(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo built by kiln > /msg\nCMD [\"sh\", \"-c\", \"cat /msg; uname -m\"]\n"})

	info := c.kiln("--k8s", "info").ok(t).Stdout
	for _, want := range []string{"namespace:", "k8s.io", "snapshotter:        native (the snapshotter of containerd's CRI plugin"} {
		if !strings.Contains(info, want) {
			t.Errorf("kiln --k8s info does not say %q:\n%s", want, info)
		}
	}
	c.kiln("--k8s", "build", "--platform", "linux/amd64,linux/arm64", "-t", "busybox", bb).ok(t)
	c.kiln("--k8s", "build", "-t", criSandboxImage, ctxs["pause"]).ok(t)
	iid := filepath.Join(t.TempDir(), "iid")
	c.kiln("--k8s", "build", "--platform", "linux/amd64,linux/arm64", "--iidfile", iid, "-t", "kiln-app:1", ctxs["app"]).ok(t)
	digest, err := os.ReadFile(iid)
	if err != nil {
		t.Fatal(err)
	}

	// The host's config digest is the image ID the CRI gives it.
	var manifest struct {
		Config struct {
			Digest string `json:"digest"`
		} `json:"config"`
	}
	raw := c.kiln("--k8s", "inspect", "--platform", "linux/amd64", "--raw", "kiln-app:1").ok(t).Stdout
	if err := json.Unmarshal([]byte(raw), &manifest); err != nil || manifest.Config.Digest == "" {
		t.Fatalf("kiln inspect --platform linux/amd64 --raw: %v\n%s", err, raw)
	}
	want := criImage{ID: manifest.Config.Digest,
		RepoTags:    []string{"docker.io/library/kiln-app:1"},
		RepoDigests: []string{"docker.io/library/kiln-app@" + string(digest)}}
	var found *criImage
	for _, img := range c.images() {
		if img.ID == want.ID {
			found = &img
		}
	}
	if found == nil || !slices.Equal(found.RepoTags, want.RepoTags) || !slices.Equal(found.RepoDigests, want.RepoDigests) {
		t.Fatalf("crictl images lists %+v, want %+v", found, want)
	}
	table := c.crictlRun("images", "--digests").ok(t).Stdout
	if !strings.Contains(table, "docker.io/library/kiln-app") || !strings.Contains(table, strings.TrimPrefix(string(digest), "sha256:")[:13]) {
		t.Errorf("crictl images --digests does not show kiln-app with its digest:\n%s", table)
	}

	// Every platform is kept, the host's unpacked with the CRI's
	// snapshotter, and the references the CRI makes for a pull are there,
	// with its label.
	rows := c.kiln("--k8s", "images", "--platforms", "kiln-app:1").ok(t).Stdout
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		if !strings.Contains(rows, p) {
			t.Errorf("kiln images --platforms kiln-app:1 has no %s:\n%s", p, rows)
		}
	}
	refs := c.ctr("images", "ls").ok(t).Stdout
	for _, ref := range []string{"docker.io/library/kiln-app:1", "docker.io/library/kiln-app@" + string(digest), manifest.Config.Digest} {
		line := lineWith(refs, ref+" ")
		if !strings.Contains(line, "io.cri-containerd.image=managed") {
			t.Errorf("ctr images ls: %s is missing or not labelled io.cri-containerd.image=managed:\n%s", ref, refs)
		}
	}
	labels := lineWith(c.ctr("content", "ls").ok(t).Stdout, "\n"+manifest.Config.Digest+"\t")
	if !strings.Contains(labels, "containerd.io/gc.ref.snapshot.native=") {
		t.Fatalf("the config of the host's platform has no native snapshot: the host's platform was not unpacked with the CRI's snapshotter:\n%s", labels)
	}

	// containerd's garbage collection keeps it, as it keeps the CRI's own
	// pulls: deleting a lease synchronously runs a collection.
	lease := strings.Fields(c.ctr("leases", "create").ok(t).Stdout)[0]
	c.ctr("leases", "delete", "--sync", lease).ok(t)
	if after := c.images(); !slices.ContainsFunc(after, func(i criImage) bool { return i.ID == want.ID }) {
		t.Fatalf("after garbage collection crictl no longer lists kiln-app: %+v", after)
	}

	// A pod with the host's network runs it; nothing is pulled.
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	os.MkdirAll(logs, 0o755)
	pod := filepath.Join(dir, "pod.json")
	ctr := filepath.Join(dir, "container.json")
	writeJSON(t, pod, map[string]any{
		"metadata":      map[string]any{"name": "kiln-pod", "namespace": "default", "uid": "kiln-pod-" + fmt.Sprint(os.Getpid()), "attempt": 0},
		"log_directory": logs,
		"linux":         map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"network": 2}}},
	})
	writeJSON(t, ctr, map[string]any{
		"metadata": map[string]any{"name": "app"},
		"image":    map[string]any{"image": "docker.io/library/kiln-app:1"},
		"log_path": "app.log",
		"linux":    map[string]any{},
	})
	podID := strings.TrimSpace(c.crictlRun("runp", pod).ok(t).Stdout)
	ctrID := strings.TrimSpace(c.crictlRun("create", "--no-pull", podID, ctr, pod).ok(t).Stdout)
	c.crictlRun("start", ctrID).ok(t)
	deadline := time.Now().Add(time.Minute)
	for {
		state := c.crictlRun("inspect", "-o", "go-template", "--template", "{{.status.state}}", ctrID).ok(t).Stdout
		if strings.Contains(state, "EXITED") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container did not exit within a minute: %s", state)
		}
		time.Sleep(200 * time.Millisecond)
	}
	out := c.crictlRun("logs", ctrID).ok(t)
	if got := out.Stdout + out.Stderr; !strings.Contains(got, "built by kiln") || !strings.Contains(got, "x86_64") {
		t.Errorf("the pod's log is %q, want the file kiln's build wrote and x86_64", got)
	}
}

// lineWith returns the line of text that contains s, or "". s may start
// with a newline, to match the start of a line.
func lineWith(text, s string) string {
	text = "\n" + text
	i := strings.Index(text, s)
	if i < 0 {
		return ""
	}
	start := strings.LastIndex(text[:i+1], "\n") + 1
	end := strings.Index(text[i+len(s):], "\n")
	if end < 0 {
		return text[start:]
	}
	return text[start : i+len(s)+end]
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	dt, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, dt, 0o644); err != nil {
		t.Fatal(err)
	}
}

// kiln itself gives images in the namespace k8s.io what the CRI gives its
// pulls (the label io.cri-containerd.image=managed, the image ID and
// NAME@DIGEST references), on a build and on kiln tag, so the kubelet
// finds them even when the CRI is not running to notice them: this
// containerd has no CRI plugin.
func TestKubernetesLabelsWithoutCRI(t *testing.T) {
	e := newEnv(t)
	e.Namespace = "k8s.io"
	t.Cleanup(func() { sweepNamespace(e.Address, "k8s.io", t.Logf) })
	e.busyboxBase(t, "busybox", "linux/amd64")
	dir := contextDir(t, map[string]string{"Dockerfile": "FROM busybox\nRUN echo hi > /hi\n"})
	iid := filepath.Join(t.TempDir(), "iid")
	e.kiln("build", "--iidfile", iid, "-t", "labelled:1", dir).ok(t)
	e.kiln("tag", "labelled:1", "labelled:2").ok(t)
	digest, _ := os.ReadFile(iid)
	refs := e.ctr("images", "ls").ok(t).Stdout
	for _, ref := range []string{"docker.io/library/labelled:1", "docker.io/library/labelled:2", "docker.io/library/labelled@" + string(digest)} {
		if line := lineWith(refs, "\n"+ref+" "); !strings.Contains(line, "io.cri-containerd.image=managed") {
			t.Errorf("%s is missing or not labelled for the CRI:\n%s", ref, refs)
		}
	}
	// The image ID: the config digest of the only platform.
	var ids int
	for _, l := range strings.Split(refs, "\n") {
		if strings.HasPrefix(l, "sha256:") && strings.Contains(l, "io.cri-containerd.image=managed") {
			ids++
		}
	}
	if ids != 2 { // busybox's and labelled's
		t.Errorf("want the image IDs of busybox and labelled, found %d:\n%s", ids, refs)
	}
	// Another namespace gets none of it.
	o := newEnv(t)
	o.busyboxBase(t, "busybox", "linux/amd64")
	if strings.Contains(o.ctr("images", "ls").ok(t).Stdout, "io.cri-containerd") {
		t.Errorf("an image outside k8s.io got the CRI's label")
	}
}

// On a host whose only containerd is k3s's, at /run/k3s/containerd/
// containerd.sock, kiln uses it, says so in kiln info, and --k8s builds
// into its namespace k8s.io. The test gives kiln a mount namespace of its
// own with a /run where k3s's socket is the CRI containerd's.
func TestKubernetesFindsK3s(t *testing.T) {
	c := newCRIEnv(t, "")
	script := `set -e
mount --make-rprivate /
mount -t tmpfs tmpfs /run
mkdir -p /run/k3s/containerd
ln -s "$SOCK" /run/k3s/containerd/containerd.sock
exec "$@"`
	in := func(args ...string) result {
		t.Helper()
		full := append([]string{"--mount", "sh", "-c", script, "sh", kilnBinary, "--root", c.root}, args...)
		return runEnv(t, append(os.Environ(), "SOCK="+c.d.address), "(k3s host) kiln "+strings.Join(args, " "), "unshare", full...)
	}
	info := in("info").ok(t).Stdout
	for _, want := range []string{"no containerd answers at /run/containerd/containerd.sock; k3s's does at /run/k3s/containerd/containerd.sock",
		"kubernetes:         k3s: build with --k8s"} {
		if !strings.Contains(info, want) {
			t.Errorf("kiln info does not say %q:\n%s", want, info)
		}
	}
	info = in("--k8s", "info").ok(t).Stdout
	if !strings.Contains(info, "namespace:          k8s.io") || !strings.Contains(info, "images built here are the kubelet's") {
		t.Errorf("kiln --k8s info:\n%s", info)
	}
	in("--k8s", "--namespace", "other", "info").fails(t, 2, "--k8s builds into the namespace k8s.io")
	dir := contextDir(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY Dockerfile /\n"})
	in("--k8s", "build", "-t", "found:1", dir).ok(t)
	if !strings.Contains(c.crictlRun("images").ok(t).Stdout, "docker.io/library/found") {
		t.Error("the image built through k3s's socket is not the CRI's")
	}
}
