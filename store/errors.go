package store

import "fmt"

// The errors below say what is wrong and carry the data a next step needs;
// the next step itself names kiln commands and flags, so cmd/kiln adds it
// (its hints.go).

// DigestError reports an argument that starts like a digest but is not one
// images can be found by.
type DigestError struct {
	// Arg is the argument as given.
	Arg string
}

func (e *DigestError) Error() string {
	return fmt.Sprintf("invalid digest %q: give \"sha256:\" and at least 12 hex digits", e.Arg)
}

// ExistsError reports a name CreateManifest does not overwrite.
type ExistsError struct {
	// Name is the stored name.
	Name string
}

func (e *ExistsError) Error() string {
	return fmt.Sprintf("image %s already exists", FamiliarName(e.Name))
}

// NotListError reports an image that is a single manifest where a manifest
// list (an index) is needed.
type NotListError struct {
	// Name is the stored name; Given the name as the user gave it.
	Name, Given string
	// Action is "annotate" or "remove".
	Action string
}

func (e *NotListError) Error() string {
	return fmt.Sprintf("image %s is a single manifest, not a manifest list", FamiliarName(e.Name))
}

// ArchiveError reports an archive that is not an image archive kiln reads.
type ArchiveError struct{ Err error }

func (e *ArchiveError) Error() string { return fmt.Sprintf("loading the image archive: %v", e.Err) }

func (e *ArchiveError) Unwrap() error { return e.Err }

// StateDirError reports a file or directory in kiln's state directory
// that cannot be created or opened (the embedded store's, the engine's):
// the state directory is the user's choice.
type StateDirError struct {
	// Doing says what failed, e.g. "creating kiln's embedded store in".
	Doing string
	Path  string
	// IsRoot: Path is the state directory itself.
	IsRoot bool
	Err    error
}

func (e *StateDirError) Error() string { return fmt.Sprintf("%s %s: %v", e.Doing, e.Path, e.Err) }

func (e *StateDirError) Unwrap() error { return e.Err }

// SnapshotterError reports a snapshotter that fails when asked whether an
// image's layers are unpacked in it.
type SnapshotterError struct {
	Snapshotter string
	Err         error
}

func (e *SnapshotterError) Error() string {
	return fmt.Sprintf("checking whether layers are unpacked in snapshotter %q: %v", e.Snapshotter, e.Err)
}

func (e *SnapshotterError) Unwrap() error { return e.Err }

// KindError reports a store kind kiln does not know.
type KindError struct{ Kind string }

func (e *KindError) Error() string {
	return fmt.Sprintf("invalid store kind %q: use %s, %s or %s", e.Kind, KindAuto, KindContainerd, KindEmbedded)
}

// KubernetesError reports a Kubernetes distribution's containerd asked for
// (SelectKubernetes) that kiln cannot use.
type KubernetesError struct {
	// Embedded: the embedded store was asked for too, which is no
	// Kubernetes node's.
	Embedded bool
	// Sockets are where kiln looked when no distribution's containerd
	// answers (see KubernetesSockets).
	Sockets string
}

func (e *KubernetesError) Error() string {
	if e.Embedded {
		return "a Kubernetes node's containerd and the embedded store exclude each other"
	}
	return fmt.Sprintf("found no Kubernetes containerd: none answers at %s (k3s, RKE2, MicroK8s)", e.Sockets)
}

// SocketError reports a containerd address with no socket to connect to.
type SocketError struct {
	Address string
	// Missing: nothing is at Address; otherwise something that is not a
	// socket is.
	Missing bool
}

func (e *SocketError) Error() string {
	if e.Missing {
		return fmt.Sprintf("containerd is not running at %s (no such socket)", e.Address)
	}
	return fmt.Sprintf("containerd address %s is not a socket", e.Address)
}

// PermissionError reports a containerd socket kiln may not connect to.
type PermissionError struct {
	Address string
	// Rootless: kiln runs for an unprivileged user, who has a rootless
	// containerd of their own.
	Rootless bool
}

func (e *PermissionError) Error() string {
	return fmt.Sprintf("cannot reach containerd at %s: permission denied", e.Address)
}
