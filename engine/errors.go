package engine

import (
	"fmt"

	"github.com/kiln-build/kiln/store"
)

// The errors below say what is wrong and carry the data a next step needs;
// the next step names kiln's options, so cmd/kiln adds it (its hints.go).

// RuncMissingError reports that runc, which runs the embedded store's
// build steps, is not installed. Its message is the fact and the fix that
// names no option; the cause follows it.
type RuncMissingError struct{}

func (*RuncMissingError) Error() string {
	return "kiln's embedded store runs build steps with runc, which is not installed: install the runc package"
}

// KeepStorageError reports a garbage collection keep-storage value kiln
// cannot read.
type KeepStorageError struct {
	// Value is the value as given; Problem says what is wrong with it.
	Value, Problem string
}

func (e *KeepStorageError) Error() string {
	return fmt.Sprintf("invalid garbage collection keep-storage %q: %s; give a size such as 10GB or a percentage of the disk such as 10%%", e.Value, e.Problem)
}

// KubernetesNamespaceError reports a namespace other than the CRI's for a
// Kubernetes node's containerd (Config.Kubernetes), whose kubelet sees only
// the images in store.KubernetesNamespace.
type KubernetesNamespaceError struct{ Namespace string }

func (e *KubernetesNamespaceError) Error() string {
	return fmt.Sprintf("the kubelet runs images of the namespace %s only, not of %q", store.KubernetesNamespace, e.Namespace)
}
