package builder

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/containerd/platforms"

	"github.com/kiln-build/kiln/rootless"
	"github.com/kiln-build/kiln/snapshot"
	"github.com/kiln-build/kiln/store"
)

// OpenStore opens the store the global options select (see store.Select):
// the containerd at cfg.Address, which never waits, or the embedded store
// under cfg.Root, whose lock it takes first, waiting (and saying so on
// stderr) while another kiln process uses that state directory. Closing
// the store releases the lock.
func OpenStore(ctx context.Context, cfg Config, stderr io.Writer) (*store.Store, error) {
	sel, err := store.Select(cfg.Store, cfg.Address, cfg.AddressSet)
	if err != nil {
		return nil, err
	}
	if sel.Embedded() {
		return openEmbedded(ctx, cfg, stderr)
	}
	return store.Open(ctx, cfg.Address, cfg.Namespace)
}

// openEmbedded locks the state directory and opens its embedded store with
// the snapshotter chooseEmbeddedSnapshotter picks.
func openEmbedded(ctx context.Context, cfg Config, stderr io.Writer) (*store.Store, error) {
	if err := os.MkdirAll(cfg.Root, 0o700); err != nil {
		return nil, fmt.Errorf("creating kiln's state directory %s: %w (choose another with --root)", cfg.Root, err)
	}
	unlock, err := lockFile(ctx, filepath.Join(cfg.Root, "kiln.lock"), cfg.Root, false, stderr)
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

// startEmbedded is start for the embedded store: it locks the state
// directory, opens the store, cleans what a killed kiln process left and
// starts BuildKit with a worker that runs steps with runc.
func startEmbedded(ctx context.Context, cfg Config, stderr io.Writer) (*instance, error) {
	if _, err := exec.LookPath("runc"); err != nil {
		return nil, fmt.Errorf("kiln's embedded store runs build steps with runc, which is not installed: install the runc package, or use a containerd with --store containerd: %w", err)
	}
	st, err := openEmbedded(ctx, cfg, stderr)
	if err != nil {
		return nil, err
	}
	in := &instance{store: st}
	if rootless.InUserNamespace() {
		if err := rootless.EnsureRuntimeDir(); err != nil {
			in.Close()
			return nil, err
		}
	}
	cfg.embedded = st
	cfg.Snapshotter = st.Snapshotter(cfg.Snapshotter)
	if cfg.state, err = stateDir(cfg.Root, store.EmbeddedID, cfg.Namespace); err != nil {
		in.Close()
		return nil, err
	}
	if err := tidyRoot(ctx, st, cfg, store.EmbeddedID, embeddedWorkerPrefix, stderr); err != nil {
		in.Close()
		return nil, err
	}
	if !cfg.Rootless && !rootless.InUserNamespace() {
		cfg.cgroupParent = cgroupParent(cfg.Root)
	}
	if in.engine, err = newEngine(ctx, cfg); err != nil {
		in.Close()
		return nil, err
	}
	return in, nil
}

// embeddedWorkerRoot is the directory of BuildKit's worker for the embedded
// store in the namespace's state directory: its cache metadata, the runc
// executor's bundles and cache mounts, one per snapshotter as BuildKit's OCI
// worker has it.
func embeddedWorkerRoot(cfg Config) string {
	return workerDir(cfg.state, embeddedWorkerPrefix, cfg.Snapshotter)
}

// embeddedInfo describes the embedded store for kiln info without opening
// it, so that it answers during a build.
func embeddedInfo(ctx context.Context, cfg Config, sel store.Selection) (*Info, error) {
	state, err := stateDir(cfg.Root, store.EmbeddedID, cfg.Namespace)
	if err != nil {
		return nil, err
	}
	choice, err := chooseEmbeddedSnapshotter(cfg)
	if err != nil {
		return nil, err
	}
	ps, installable, err := buildablePlatforms(ctx)
	if err != nil {
		return nil, err
	}
	runtime := "runc is not installed: install the runc package to build"
	if p, err := exec.LookPath("runc"); err == nil {
		runtime = p
	}
	cgroups := cgroupVersion() + ": build steps run under the cgroup " + cgroupParent(cfg.Root)
	if rootless.InUserNamespace() {
		cgroups = cgroupVersion() + ": build steps run without cgroup paths or limits (rootless runc in kiln's user namespace)"
	}
	return &Info{
		Store:             sel.Kind,
		StoreReason:       sel.Reason,
		StoreDir:          store.EmbeddedDir(cfg.Root),
		Runtime:           runtime,
		Namespace:         cfg.Namespace,
		Snapshotter:       choice.Name,
		SnapshotterReason: choice.Reason,
		Root:              cfg.Root,
		HostPlatform:      platforms.Format(platforms.DefaultSpec()),
		Platforms:         ps,
		Installable:       installable,
		State:             state,
		Cgroups:           cgroups,
		UserNamespace:     rootless.UserNamespaceMap(),
	}, nil
}
