//go:build !linux

package snapshot

import (
	"errors"

	ctdsnapshot "github.com/containerd/containerd/v2/core/snapshots"
)

// EmbeddedRequest says what ChooseEmbedded chooses for.
type EmbeddedRequest struct {
	Name          string
	Dir           string
	UserNamespace bool
}

// Embedded lists the snapshotters the embedded store can run: none off Linux.
var Embedded []string

// ChooseEmbedded fails off Linux, where the embedded store cannot mount snapshots.
func ChooseEmbedded(req EmbeddedRequest) (Choice, error) {
	return Choice{}, errors.New("kiln's embedded store needs Linux")
}

// NewEmbedded fails off Linux.
func NewEmbedded(name, dir string) (ctdsnapshot.Snapshotter, error) {
	return nil, errors.New("kiln's embedded store needs Linux")
}
