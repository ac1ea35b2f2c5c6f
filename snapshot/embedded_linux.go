package snapshot

import (
	"fmt"
	"strings"

	ctdsnapshot "github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/plugins/snapshots/native"
	"github.com/containerd/containerd/v2/plugins/snapshots/overlay"
	"github.com/containerd/containerd/v2/plugins/snapshots/overlay/overlayutils"
	fuseoverlayfs "github.com/containerd/fuse-overlayfs-snapshotter/v2"

	"github.com/kiln-build/kiln/usage"
)

// EmbeddedRequest says what ChooseEmbedded chooses for: kiln's embedded
// store, which runs containerd's snapshotters as libraries in the kiln
// process rather than asking a containerd which it has.
type EmbeddedRequest struct {
	// Name is the snapshotter the user asked for; empty lets kiln pick.
	Name string
	// Dir is where the store keeps its snapshots; the checks mount there.
	Dir string
	// UserNamespace is set when kiln runs in a user namespace of its own
	// (an unprivileged user's kiln), for the reasons.
	UserNamespace bool
}

// Embedded lists the snapshotters the embedded store can run, in the order
// kiln prefers them.
var Embedded = []string{Overlayfs, FuseOverlayfs, Native}

// checks are the tests ChooseEmbedded runs; tests replace them.
var checks = map[string]func(dir string) error{
	Overlayfs:     overlayutils.Supported,
	FuseOverlayfs: fuseoverlayfs.Supported,
	Native:        func(string) error { return nil },
}

// ChooseEmbedded picks the embedded store's snapshotter, or checks the one
// the user asked for, by trying each where the snapshots live: overlayfs
// when the kernel mounts it there (in a user namespace: Linux 5.11 or
// newer), else fuse-overlayfs when it is installed and works, else native,
// which copies files. Root is req.Dir, where every one of them keeps its data.
func ChooseEmbedded(req EmbeddedRequest) (Choice, error) {
	c, err := chooseEmbedded(req)
	if err != nil {
		return c, err
	}
	c.Root = req.Dir
	return c, nil
}

func chooseEmbedded(req EmbeddedRequest) (Choice, error) {
	where := "in " + req.Dir
	if req.UserNamespace {
		where += " inside kiln's user namespace"
	}
	if req.Name != "" {
		check, ok := checks[req.Name]
		if !ok {
			return Choice{}, usage.Wrap(&ChoiceError{Name: req.Name, Embedded: true, Have: Embedded})
		}
		if err := check(req.Dir); err != nil {
			return Choice{}, &ChoiceError{Name: req.Name, Embedded: true, Have: Embedded, Err: err, Where: where}
		}
		return Choice{Name: req.Name, Chosen: true}, nil
	}
	var why []string
	oerr := checks[Overlayfs](req.Dir)
	if oerr == nil {
		return Choice{Name: Overlayfs, Reason: "the kernel mounts overlayfs " + where}, nil
	}
	why = append(why, fmt.Sprintf("overlayfs cannot be mounted %s (%v)", where, oerr))
	ferr := checks[FuseOverlayfs](req.Dir)
	if ferr == nil {
		return Choice{Name: FuseOverlayfs, Reason: strings.Join(why, "; ") + "; fuse-overlayfs works"}, nil
	}
	why = append(why, fmt.Sprintf("fuse-overlayfs does not work (%v)", ferr))
	return Choice{Name: Native, Reason: strings.Join(why, "; ") + "; native copies every layer, which is slower and takes more space"}, nil
}

// NewEmbedded creates the snapshotter name of the embedded store, with its
// data in dir.
func NewEmbedded(name, dir string) (ctdsnapshot.Snapshotter, error) {
	var (
		sn  ctdsnapshot.Snapshotter
		err error
	)
	switch name {
	case Overlayfs:
		sn, err = overlay.NewSnapshotter(dir, overlay.AsynchronousRemove)
	case FuseOverlayfs:
		sn, err = fuseoverlayfs.NewSnapshotter(dir)
	case Native:
		sn, err = native.NewSnapshotter(dir)
	default:
		return nil, usage.Errorf("the embedded store has no snapshotter %q: choose %s", name, strings.Join(Embedded, ", "))
	}
	if err != nil {
		return nil, fmt.Errorf("opening the %s snapshotter in %s: %w", name, dir, err)
	}
	return sn, nil
}
