package builder

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/platforms"
	"github.com/moby/buildkit/cache/metadata"
	"github.com/moby/buildkit/executor/oci"
	"github.com/moby/buildkit/executor/runcexecutor"
	containerdsnapshot "github.com/moby/buildkit/snapshot/containerd"
	"github.com/moby/buildkit/util/leaseutil"
	"github.com/moby/buildkit/util/network/netproviders"
	"github.com/moby/buildkit/util/winlayers"
	"github.com/moby/buildkit/worker/base"
	"github.com/moby/buildkit/worker/containerd"
	wlabel "github.com/moby/buildkit/worker/label"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/rootless"
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
	return startWorker(ctx, cfg, opt, "the embedded store's worker")
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
	// In kiln's own user namespace runc runs rootless: BuildKit then drops
	// the steps' cgroup paths and limits, which an unprivileged runc
	// cannot set up on cgroup v1.
	exe, monitor, err := newRuncExecutor(root, runcexecutor.Opt{
		Rootless:            cfg.Rootless || rootless.InUserNamespace(),
		DefaultCgroupParent: cfg.cgroupParent,
	}, np, proxy)
	if err != nil {
		return opt, err
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
