package store

import (
	"net"
	"os"
	"strings"
	"time"

	"github.com/kiln-build/kiln/usage"
)

// KubernetesNamespace is the containerd namespace of Kubernetes' CRI: the
// images the kubelet runs are there.
const KubernetesNamespace = "k8s.io"

// KubernetesContainerd is the containerd of a Kubernetes distribution.
type KubernetesContainerd struct {
	// Name is the distribution: k3s, RKE2 or MicroK8s.
	Name string `json:"name"`
	// Address is its containerd's socket.
	Address string `json:"address"`
}

// kubernetesCandidate is where a distribution keeps its containerd's
// socket; marker, when set, is a directory only that distribution makes,
// which tells it from another using the same socket.
type kubernetesCandidate struct {
	name, address, marker string
}

// kubernetesCandidates are the known places, in the order kiln tries them.
// RKE2 runs k3s's agent and so its containerd at k3s's socket; its data
// directory tells them apart.
var kubernetesCandidates = []kubernetesCandidate{
	{"RKE2", "/run/k3s/containerd/containerd.sock", "/var/lib/rancher/rke2"},
	{"k3s", "/run/k3s/containerd/containerd.sock", ""},
	{"MicroK8s", "/var/snap/microk8s/common/run/containerd.sock", ""},
}

// KubernetesSockets describes the places FindKubernetes looks, for
// messages.
func KubernetesSockets() string {
	var parts []string
	seen := map[string]bool{}
	for _, c := range kubernetesCandidates {
		if !seen[c.address] {
			seen[c.address] = true
			parts = append(parts, c.address)
		}
	}
	return strings.Join(parts, " and ")
}

// answers reports whether something accepts connections on the unix
// socket address: a socket file without a listener (a stopped containerd)
// and one the user may not connect to do not.
func answers(address string) bool {
	c, err := net.DialTimeout("unix", address, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// FindKubernetes returns the containerd of the first Kubernetes
// distribution whose socket answers here: k3s's or RKE2's, then
// MicroK8s's.
func FindKubernetes() (KubernetesContainerd, bool) {
	for _, c := range kubernetesCandidates {
		if c.marker != "" {
			if fi, err := os.Stat(c.marker); err != nil || !fi.IsDir() {
				continue
			}
		}
		if answers(c.address) {
			return KubernetesContainerd{Name: c.name, Address: c.address}, true
		}
	}
	return KubernetesContainerd{}, false
}

// SelectKubernetes is Select for --k8s: the containerd at address when the
// user gave one, else the Kubernetes distribution's that answers here.
func SelectKubernetes(kind, address string, addressSet bool) (Selection, error) {
	if kind == KindEmbedded {
		return Selection{}, usage.Wrap(&KubernetesError{Embedded: true})
	}
	if kind != KindAuto && kind != "" && kind != KindContainerd {
		return Select(kind, address, addressSet)
	}
	if addressSet {
		return Selection{Kind: KindContainerd, Why: AddressGiven, Address: TrimScheme(address)}, nil
	}
	k, ok := FindKubernetes()
	if !ok {
		return Selection{}, &KubernetesError{Sockets: KubernetesSockets()}
	}
	return Selection{Kind: KindContainerd, Why: KubernetesAsked, Address: k.Address, Kubernetes: k.Name}, nil
}
