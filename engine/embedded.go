package engine

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"

	"github.com/moby/buildkit/worker/base"

	"github.com/kiln-build/kiln/cgroup"
	"github.com/kiln-build/kiln/rootless"
	"github.com/kiln-build/kiln/snapshot"
	"github.com/kiln-build/kiln/store"
)

// embeddedBackend runs BuildKit on kiln's embedded store: the store's
// content, images, leases and snapshotter, as BuildKit's containerd worker
// takes them from a containerd, and BuildKit's runc executor, as its OCI
// worker has it, in place of containerd's tasks.
type embeddedBackend struct{ cfg Config }

// runnable requires runc, which runs every build step.
func (embeddedBackend) runnable() error {
	if _, err := exec.LookPath("runc"); err != nil {
		return fmt.Errorf("%w: %w", &RuncMissingError{}, err)
	}
	return nil
}

// open locks the state directory and opens its embedded store with the
// snapshotter chooseEmbeddedSnapshotter picks.
func (b embeddedBackend) open(ctx context.Context, stderr io.Writer) (*store.Store, error) {
	cfg := b.cfg
	unlock, err := lockRoot(ctx, cfg.Root, stderr)
	if err != nil {
		return nil, err
	}
	// Unpacking mounts layers in temporary directories in this process.
	if err := privateTempDir(cfg.Root, stderr); err != nil {
		unlock()
		return nil, err
	}
	choice, err := chooseEmbeddedSnapshotter(cfg)
	if err != nil {
		unlock()
		return nil, err
	}
	st, err := store.OpenEmbedded(ctx, store.EmbeddedOptions{
		Root:        cfg.Root,
		Namespace:   cfg.Namespace,
		Snapshotter: choice.Name,
		Release:     unlock,
	})
	if err != nil {
		unlock()
		return nil, err
	}
	return st, nil
}

// snapshotter is the one the store was opened with.
func (b embeddedBackend) snapshotter(_ context.Context, st *store.Store) (snapshot.Choice, error) {
	return snapshot.Choice{Name: st.Snapshotter(b.cfg.Snapshotter)}, nil
}

// hold has no lock to take beyond the root's, which open took; it removes
// the steps a killed kiln left with runc and moves an earlier kiln's build
// cache into place.
func (b embeddedBackend) hold(ctx context.Context, st *store.Store, stderr io.Writer) (func(), error) {
	if rootless.InUserNamespace() {
		if err := rootless.EnsureRuntimeDir(); err != nil {
			return nil, err
		}
	}
	if err := tidyRoot(ctx, st, b.cfg, store.EmbeddedID, embeddedWorkerPrefix, stderr); err != nil {
		return nil, err
	}
	return func() {}, nil
}

func (b embeddedBackend) workerOpt(st *store.Store, state, snapshotter string, budget *cgroup.Group) (base.WorkerOpt, error) {
	root := workerDir(state, embeddedWorkerPrefix, snapshotter)
	steps := stepRunc{command: "runc"}
	if b.cfg.Rootless || rootless.InUserNamespace() {
		// BuildKit's rootless mode drops cgroup paths: a budget holds
		// for the steps through runc's cgroup instead.
		command, err := wrapRunc(root, budget)
		if err != nil {
			return base.WorkerOpt{}, err
		}
		steps = stepRunc{command: command, rootless: true}
	} else {
		steps.cgroupParent = stepCgroupParent(b.cfg, budget)
	}
	return embeddedWorkerOpt(st, b.cfg.Namespace, root, snapshotter, steps)
}

// stepRunc is how the embedded store's worker runs build steps.
type stepRunc struct {
	// command is the runc to run (or the wrapper that starts it in the
	// build's cgroup).
	command string
	// rootless is BuildKit's rootless mode: no cgroup paths, no /sys.
	rootless bool
	// cgroupParent is where runc creates the steps' cgroups, as root.
	cgroupParent string
}

func (embeddedBackend) workerName() string { return "the embedded store's worker" }

// describe tells the embedded store's state directory and snapshotter
// without opening the store, which would wait for a build's lock.
func (b embeddedBackend) describe(ctx context.Context, info *Info) error {
	cfg := b.cfg
	state, err := stateDir(cfg.Root, store.EmbeddedID, cfg.Namespace)
	if err != nil {
		return err
	}
	choice, err := chooseEmbeddedSnapshotter(cfg)
	if err != nil {
		return err
	}
	runtime := "runc is not installed: install the runc package to build"
	if p, err := exec.LookPath("runc"); err == nil {
		runtime = p
	}
	cgroups := cgroupVersion() + ": build steps run under the cgroup " + cgroupParent(cfg.Root)
	if rootless.InUserNamespace() {
		cgroups = cgroupVersion() + ": build steps run without cgroup paths or limits (rootless runc in kiln's user namespace), but a budget holds in a cgroup delegated to you"
	}
	info.StoreDir = store.EmbeddedDir(cfg.Root)
	info.Runtime = runtime
	info.Snapshotter = choice.Name
	info.SnapshotterReason = choice.Reason
	info.SnapshotterChosen = choice.Chosen
	info.Snapshots = describeDisk(choice.Root)
	info.State = state
	info.Cgroups = cgroups
	info.UserNamespace = rootless.UserNamespaceMap()
	return nil
}

// chooseEmbeddedSnapshotter checks the snapshotter the user chose, or picks
// one, by mounting where the embedded store keeps its snapshots.
func chooseEmbeddedSnapshotter(cfg Config) (snapshot.Choice, error) {
	req := snapshot.EmbeddedRequest{
		Dir:           filepath.Join(store.EmbeddedDir(cfg.Root), "snapshots"),
		UserNamespace: rootless.InUserNamespace(),
	}
	if cfg.SnapshotterSet {
		req.Name = cfg.Snapshotter
	}
	return snapshot.ChooseEmbedded(req)
}
