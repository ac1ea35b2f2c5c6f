package store

import (
	"errors"
	"io/fs"
	"os"

	"github.com/kiln-build/kiln/usage"
)

// The stores kiln keeps images in, as --store and KILN_STORE name them.
const (
	// KindAuto uses containerd when an address was given or its default
	// socket exists, and the embedded store otherwise.
	KindAuto = "auto"
	// KindContainerd is a running containerd.
	KindContainerd = "containerd"
	// KindEmbedded is kiln's embedded store under its state directory.
	KindEmbedded = "embedded"
)

// Selection is the store kiln uses, and why.
type Selection struct {
	// Kind is KindContainerd or KindEmbedded.
	Kind string `json:"kind"`
	// Why says what decided; the words for it name options, so kiln
	// info's are cmd/kiln's.
	Why Why `json:"why"`
	// Address is containerd's socket, which Why may be about: with
	// KubernetesFound and KubernetesAsked, a Kubernetes distribution's
	// (see FindKubernetes), used instead of the one asked for.
	Address string `json:"address"`
	// Kubernetes names the distribution whose containerd Address is.
	Kubernetes string `json:"kubernetes,omitempty"`
	// Unanswered is the socket asked for, where no containerd answered
	// (KubernetesFound).
	Unanswered string `json:"unanswered,omitempty"`
}

// Why says what decided a Selection.
type Why string

const (
	// Chosen: the store was named (KindContainerd or KindEmbedded asked
	// for).
	Chosen Why = "chosen"
	// AddressGiven: the user gave containerd's address.
	AddressGiven Why = "address-given"
	// NoSocket: no address was given and no socket is at the default one.
	NoSocket Why = "no-socket"
	// SocketFound: a socket is at the default address.
	SocketFound Why = "socket-found"
	// KubernetesFound: no containerd answers at the default address, a
	// Kubernetes distribution's does.
	KubernetesFound Why = "kubernetes-found"
	// KubernetesAsked: a Kubernetes distribution's containerd was asked
	// for (SelectKubernetes) and answers.
	KubernetesAsked Why = "kubernetes-asked"
)

// Embedded reports whether the selection is the embedded store.
func (s Selection) Embedded() bool { return s.Kind == KindEmbedded }

// Select decides between containerd and the embedded store. kind is the
// --store option (empty is KindAuto); address is containerd's socket and
// addressSet says whether the user gave it (--address or
// CONTAINERD_ADDRESS). Without a choice kiln uses containerd when an
// address was given, even one that does not answer, or when the default
// socket exists, and the embedded store otherwise. When no containerd
// answers at the default socket but a Kubernetes distribution's does (k3s,
// RKE2, MicroK8s: see FindKubernetes), kiln uses that one.
func Select(kind, address string, addressSet bool) (Selection, error) {
	switch kind {
	case KindEmbedded:
		return Selection{Kind: KindEmbedded, Why: Chosen}, nil
	case KindContainerd:
		return Selection{Kind: KindContainerd, Why: Chosen}, nil
	case KindAuto, "":
	default:
		return Selection{}, usage.Wrap(&KindError{Kind: kind})
	}
	address = TrimScheme(address)
	if addressSet {
		return Selection{Kind: KindContainerd, Why: AddressGiven, Address: address}, nil
	}
	_, err := os.Stat(address)
	missing := errors.Is(err, fs.ErrNotExist)
	if missing || !answers(address) {
		if k, ok := FindKubernetes(); ok {
			return Selection{Kind: KindContainerd, Why: KubernetesFound, Address: k.Address, Kubernetes: k.Name, Unanswered: address}, nil
		}
	}
	if missing {
		return Selection{Kind: KindEmbedded, Why: NoSocket, Address: address}, nil
	}
	return Selection{Kind: KindContainerd, Why: SocketFound, Address: address}, nil
}
