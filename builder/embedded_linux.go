package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	runc "github.com/containerd/go-runc"
	"github.com/containerd/platforms"
	"github.com/moby/buildkit/cache/metadata"
	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/executor/oci"
	"github.com/moby/buildkit/executor/resources"
	"github.com/moby/buildkit/executor/runcexecutor"
	containerdsnapshot "github.com/moby/buildkit/snapshot/containerd"
	"github.com/moby/buildkit/util/leaseutil"
	"github.com/moby/buildkit/util/network/netproviders"
	"github.com/moby/buildkit/util/resolver"
	"github.com/moby/buildkit/util/winlayers"
	"github.com/moby/buildkit/worker/base"
	"github.com/moby/buildkit/worker/containerd"
	wlabel "github.com/moby/buildkit/worker/label"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/rootless"
	"github.com/kiln-build/kiln/version"
)

// newEmbeddedWorker assembles BuildKit's worker for the embedded store: the
// store's content, images, leases and snapshotter, as BuildKit's containerd
// worker takes them from a containerd, and BuildKit's runc executor, as its
// OCI worker has it, in place of containerd's tasks.
func newEmbeddedWorker(ctx context.Context, cfg Config) (*base.Worker, error) {
	opt, err := embeddedWorkerOpt(cfg)
	if err != nil {
		return nil, fmt.Errorf("starting the embedded store's worker: %w", err)
	}
	opt.BuildkitVersion = bkclient.BuildkitVersion{Package: "github.com/kiln-build/kiln", Version: version.Version, Revision: "kiln"}
	opt.RegistryHosts = resolver.NewRegistryConfig(nil)
	if len(cfg.Platforms) > 0 {
		opt.Platforms = cfg.Platforms
	}
	w, err := base.NewWorker(ctx, opt)
	if err != nil {
		if opt.MetadataStore != nil {
			opt.MetadataStore.Close()
		}
		return nil, fmt.Errorf("starting the embedded store's worker: %w", err)
	}
	return w, nil
}

func embeddedWorkerOpt(cfg Config) (opt base.WorkerOpt, err error) {
	st := cfg.embedded
	c := st.Client()
	name := cfg.Snapshotter
	root := embeddedWorkerRoot(cfg)
	if err := os.MkdirAll(root, 0o700); err != nil {
		return opt, fmt.Errorf("creating %s: %w", root, err)
	}
	id, err := base.ID(root)
	if err != nil {
		return opt, err
	}
	np, proxy, mode, err := networkProviders(containerd.WorkerOptions{Root: root, NetworkOpt: netproviders.Opt{Mode: "host"}})
	if err != nil {
		return opt, err
	}
	monitor, err := resources.NewMonitor()
	if err != nil {
		return opt, err
	}
	// In kiln's own user namespace runc runs rootless: BuildKit then drops
	// the steps' cgroup paths and limits, which an unprivileged runc
	// cannot set up on cgroup v1.
	inUserNS := cfg.Rootless || rootless.InUserNamespace()
	exe, err := runcexecutor.New(runcexecutor.Opt{
		Root:                filepath.Join(root, "executor"),
		Rootless:            inUserNS,
		ProcessMode:         oci.ProcessSandbox,
		DefaultCgroupParent: cfg.cgroupParent,
		ResourceMonitor:     monitor,
		ProxyProvider:       proxy,
	}, np)
	if err != nil {
		return opt, fmt.Errorf("starting BuildKit's runc executor: %w", err)
	}
	md, err := metadata.NewStore(filepath.Join(root, "metadata_v2.db"))
	if err != nil {
		return opt, fmt.Errorf("opening the build cache metadata in %s: %w", root, err)
	}
	hostname, err := os.Hostname()
	if err != nil {
		hostname = "unknown"
	}
	cs := containerdsnapshot.NewContentStore(c.ContentStore(), cfg.Namespace)
	df := c.DiffService()
	return base.WorkerOpt{
		ID:   id,
		Root: root,
		Labels: map[string]string{
			wlabel.Executor:       "oci",
			wlabel.Snapshotter:    name,
			wlabel.Hostname:       hostname,
			wlabel.Network:        mode,
			wlabel.OCIProcessMode: oci.ProcessSandbox.String(),
		},
		MetadataStore:    md,
		NetworkProviders: np,
		ProxyProvider:    proxy,
		Executor:         exe,
		Snapshotter:      containerdsnapshot.NewSnapshotter(name, c.SnapshotService(name), cfg.Namespace, nil),
		ContentStore:     cs,
		Applier:          winlayers.NewFileSystemApplierWithWindows(cs, df),
		Differ:           winlayers.NewWalkingDiffWithWindows(cs, df),
		ImageStore:       c.ImageService(),
		Platforms:        []ocispecs.Platform{platforms.Normalize(platforms.DefaultSpec())},
		LeaseManager:     leaseutil.WithNamespace(c.LeasesService(), cfg.Namespace),
		GarbageCollect:   st.CollectGarbage,
		MountPoolRoot:    filepath.Join(root, "cachemounts"),
		ResourceMonitor:  monitor,
	}, nil
}

// sweepEmbedded removes what a killed kiln process left in the embedded
// store's worker directory root: the runc containers of the step bundles
// there, their state, and mounts under it (step root filesystems, cache
// mounts). The caller holds the state directory's lock, so no live kiln
// process uses them.
func sweepEmbedded(ctx context.Context, root string, stderr io.Writer) error {
	abs, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	if resolved, err := filepath.EvalSymlinks(abs); err == nil {
		abs = resolved
	}
	// BuildKit's runc executor names each step's bundle directory after its
	// container; the directory outlives a killed kiln.
	bundles := filepath.Join(abs, "executor")
	entries, _ := os.ReadDir(bundles)
	var ids []string
	for _, ent := range entries {
		switch {
		case ent.IsDir():
			ids = append(ids, ent.Name())
		case strings.HasPrefix(ent.Name(), "hosts."):
			// A step's /etc/hosts with --add-host entries.
			os.Remove(filepath.Join(bundles, ent.Name()))
		}
	}
	n := 0
	r := &runc.Runc{Command: "runc"}
	for _, id := range ids {
		r.Kill(ctx, id, int(syscall.SIGKILL), &runc.KillOpts{All: true})
		if err := r.Delete(ctx, id, &runc.DeleteOpts{Force: true}); err == nil {
			n++
		}
	}
	m, err := unmountUnder(abs)
	if err != nil {
		return fmt.Errorf("removing the mounts an interrupted kiln left under %s: %w; unmount them (\"umount -R %s\") and retry", abs, err, abs)
	}
	if m > 0 {
		fmt.Fprintf(stderr, "removed %d mount(s) left by an interrupted kiln\n", m)
	}
	for _, id := range ids {
		// runc leaves a state directory without state.json (at most its
		// exec.fifo) when it dies while creating the container.
		state := filepath.Join(runcStateDir(), id)
		if _, err := os.Stat(filepath.Join(state, "state.json")); errors.Is(err, fs.ErrNotExist) {
			os.RemoveAll(state)
		}
		if err := os.RemoveAll(filepath.Join(bundles, id)); err != nil {
			return fmt.Errorf("removing the build step bundle %s left by an interrupted kiln: %w", filepath.Join(bundles, id), err)
		}
	}
	if n > 0 {
		fmt.Fprintf(stderr, "removed %d build step container(s) left by an interrupted kiln\n", n)
	}
	return nil
}

// runcStateDir is where runc keeps its containers' state when run without
// --root, as BuildKit's executor runs it: $XDG_RUNTIME_DIR/runc in a user
// namespace (as an unprivileged user), /run/runc otherwise.
func runcStateDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" && rootless.InUserNamespace() {
		return filepath.Join(d, "runc")
	}
	return "/run/runc"
}
