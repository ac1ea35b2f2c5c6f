package store

import (
	"errors"
	"fmt"
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
	// Reason says why, for kiln info.
	Reason string `json:"reason"`
	// Address, when set, is the containerd socket to use instead of the
	// one asked for: a Kubernetes distribution's (see FindKubernetes).
	Address string `json:"address,omitempty"`
	// Kubernetes names the distribution whose containerd Address is.
	Kubernetes string `json:"kubernetes,omitempty"`
}

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
		return Selection{Kind: KindEmbedded, Reason: "chosen with --store embedded or KILN_STORE"}, nil
	case KindContainerd:
		return Selection{Kind: KindContainerd, Reason: "chosen with --store containerd or KILN_STORE"}, nil
	case KindAuto, "":
	default:
		return Selection{}, usage.Errorf("invalid --store %q: use auto, containerd or embedded", kind)
	}
	address = TrimScheme(address)
	if addressSet {
		return Selection{Kind: KindContainerd, Reason: "--address or CONTAINERD_ADDRESS names containerd's socket " + address}, nil
	}
	_, err := os.Stat(address)
	missing := errors.Is(err, fs.ErrNotExist)
	if missing || !answers(address) {
		if k, ok := FindKubernetes(); ok {
			return Selection{Kind: KindContainerd, Address: k.Address, Kubernetes: k.Name,
				Reason: fmt.Sprintf("no containerd answers at %s; %s's does at %s", address, k.Name, k.Address)}, nil
		}
	}
	if missing {
		return Selection{Kind: KindEmbedded, Reason: "no containerd socket at " + address + " and no --address or CONTAINERD_ADDRESS given"}, nil
	}
	return Selection{Kind: KindContainerd, Reason: "containerd's socket is at " + address}, nil
}
