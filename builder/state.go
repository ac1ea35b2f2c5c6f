package builder

import (
	"fmt"
	"path/filepath"

	"github.com/containerd/containerd/v2/pkg/identifiers"
)

// BuildKit's state (its worker's directory with the cache metadata, the
// solver's cache.db and history.db) refers to content, snapshots and leases
// that containerd keeps per namespace, so it is only valid with the one
// namespace of the one store it was made with. Under --root it lives in
//
//	buildkit/<store ID>/<namespace>/
//
// where the store ID is "containerd-<UUID>" or "embedded" (see store.ID).
// Everything else under --root is shared: kiln.lock, tmp/ and the embedded
// store's store/, which keeps every namespace's images as a containerd does.
const stateSubdir = "buildkit"

// The worker directory of snapshotter NAME is containerd-NAME with a
// containerd and runc-NAME with the embedded store, as BuildKit's containerd
// and OCI workers name theirs. kiln versions before the state was kept per
// namespace had them, cache.db and history.db directly in --root (the
// legacy layout), shared by every namespace.
const (
	containerdWorkerPrefix = "containerd-"
	embeddedWorkerPrefix   = "runc-"
)

// stateDir is the directory of BuildKit's state for namespace of the store
// with the given ID, under root.
func stateDir(root, storeID, namespace string) (string, error) {
	if err := identifiers.Validate(namespace); err != nil {
		return "", fmt.Errorf("invalid namespace %q: use letters, digits, '.', '_' and '-': %w", namespace, err)
	}
	if err := identifiers.Validate(storeID); err != nil {
		return "", fmt.Errorf("invalid store ID %q: %w", storeID, err)
	}
	return filepath.Join(root, stateSubdir, storeID, namespace), nil
}

// workerDir is the directory of BuildKit's worker for snapshotter in the
// state directory state; prefix is containerdWorkerPrefix or
// embeddedWorkerPrefix.
func workerDir(state, prefix, snapshotter string) string {
	return filepath.Join(state, prefix+snapshotter)
}
