package store

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/kiln-build/kiln/usage"
)

// fakeKubernetes points the known places at sockets in a temporary
// directory: k3s's answers, MicroK8s's too, RKE2's marker is missing.
func fakeKubernetes(t *testing.T, k3sAnswers bool) (k3s, microk8s string) {
	t.Helper()
	dir, sock := listeningSocket(t)
	_, micro := listeningSocket(t)
	k3s = filepath.Join(dir, "missing.sock")
	if k3sAnswers {
		k3s = sock
	}
	old := kubernetesCandidates
	t.Cleanup(func() { kubernetesCandidates = old })
	kubernetesCandidates = []kubernetesCandidate{
		{"RKE2", k3s, filepath.Join(dir, "no-rke2")},
		{"k3s", k3s, ""},
		{"MicroK8s", micro, ""},
	}
	return k3s, micro
}

func TestFindKubernetes(t *testing.T) {
	k3s, micro := fakeKubernetes(t, true)
	k, ok := FindKubernetes()
	if !ok || k.Name != "k3s" || k.Address != k3s {
		t.Errorf("FindKubernetes = %+v, %v; want k3s at %s", k, ok, k3s)
	}
	// With RKE2's data directory the same socket is RKE2's.
	marker := kubernetesCandidates[0].marker
	os.Mkdir(marker, 0o755)
	if k, _ := FindKubernetes(); k.Name != "RKE2" {
		t.Errorf("with %s: %+v, want RKE2", marker, k)
	}
	os.Remove(marker)

	_, micro = fakeKubernetes(t, false)
	if k, ok := FindKubernetes(); !ok || k.Name != "MicroK8s" || k.Address != micro {
		t.Errorf("FindKubernetes without k3s = %+v, %v; want MicroK8s at %s", k, ok, micro)
	}
}

func TestSelectFindsKubernetes(t *testing.T) {
	k3s, _ := fakeKubernetes(t, true)
	dir := t.TempDir()
	// No containerd at the default socket: k3s's is used, and said so.
	sel, err := Select(KindAuto, filepath.Join(dir, "containerd.sock"), false)
	if err != nil || sel.Kind != KindContainerd || sel.Address != k3s || sel.Kubernetes != "k3s" || sel.Why != KubernetesFound || sel.Unanswered != filepath.Join(dir, "containerd.sock") {
		t.Errorf("Select = %+v, %v; want k3s's containerd", sel, err)
	}
	// A socket file nobody listens on does not answer either.
	stale := filepath.Join(dir, "stale.sock")
	os.WriteFile(stale, nil, 0o600)
	if sel, _ := Select(KindAuto, stale, false); sel.Address != k3s {
		t.Errorf("Select with a stale default socket = %+v, want k3s's", sel)
	}
	// A containerd that answers at the default socket wins.
	_, sock := listeningSocket(t)
	if sel, _ := Select(KindAuto, sock, false); sel.Address != sock || sel.Kubernetes != "" {
		t.Errorf("Select with a containerd at the default socket = %+v, want that one", sel)
	}
	// An address the user gave is kept.
	if sel, _ := Select(KindAuto, filepath.Join(dir, "x.sock"), true); sel.Address != filepath.Join(dir, "x.sock") || sel.Kubernetes != "" {
		t.Errorf("Select with --address = %+v, want the address given", sel)
	}
}

func TestSelectKubernetes(t *testing.T) {
	k3s, _ := fakeKubernetes(t, true)
	sel, err := SelectKubernetes(KindAuto, DefaultAddress, false)
	if err != nil || sel.Address != k3s || sel.Why != KubernetesAsked || sel.Kubernetes != "k3s" {
		t.Errorf("SelectKubernetes = %+v, %v; want k3s's containerd", sel, err)
	}
	if sel, err := SelectKubernetes(KindAuto, "unix:///x/containerd.sock", true); err != nil || sel.Address != "/x/containerd.sock" {
		t.Errorf("SelectKubernetes with --address = %+v, %v", sel, err)
	}
	if _, err := SelectKubernetes(KindEmbedded, DefaultAddress, false); err == nil || !usage.Is(err) {
		t.Errorf("--k8s --store embedded = %v, want a usage error", err)
	}
	kubernetesCandidates = []kubernetesCandidate{{"k3s", filepath.Join(t.TempDir(), "none.sock"), ""}}
	if _, err := SelectKubernetes(KindAuto, DefaultAddress, false); err == nil || !strings.Contains(err.Error(), "found no Kubernetes containerd") {
		t.Errorf("SelectKubernetes without any = %v", err)
	}
}

func TestImageFsMountpoints(t *testing.T) {
	id := protowire.AppendTag(nil, 1, protowire.BytesType)
	id = protowire.AppendString(id, "/var/lib/rancher/k3s/agent/containerd/io.containerd.snapshotter.v1.overlayfs")
	usage := protowire.AppendTag(nil, 1, protowire.VarintType)
	usage = protowire.AppendVarint(usage, 1700000000)
	usage = protowire.AppendTag(usage, 2, protowire.BytesType)
	usage = protowire.AppendBytes(usage, id)
	resp := protowire.AppendTag(nil, 1, protowire.BytesType)
	resp = protowire.AppendBytes(resp, usage)
	// container_filesystems (2) are not images'.
	resp = protowire.AppendTag(resp, 2, protowire.BytesType)
	resp = protowire.AppendBytes(resp, usage)
	got := imageFsMountpoints(resp)
	if len(got) != 1 || !strings.HasSuffix(got[0], "io.containerd.snapshotter.v1.overlayfs") {
		t.Errorf("imageFsMountpoints = %q", got)
	}
	if got := imageFsMountpoints([]byte{0xff, 0xff}); len(got) != 0 {
		t.Errorf("a malformed message gave %q", got)
	}
}
