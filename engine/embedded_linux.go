package engine

import (
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

	"github.com/kiln-build/kiln/store"
)

// embeddedWorkerOpt describes BuildKit's worker for the embedded store st
// in the worker directory root: the store's content, images, leases and
// snapshotter, as BuildKit's containerd worker takes them from a
// containerd, and BuildKit's runc executor, as its OCI worker has it, in
// place of containerd's tasks, as steps says.
func embeddedWorkerOpt(st *store.Store, namespace, root, name string, steps stepRunc) (opt base.WorkerOpt, err error) {
	c := st.Client()
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
	// cannot set up on cgroup v1; a budget's cgroup holds through the
	// runc wrapper instead (see wrapRunc).
	exe, monitor, err := newRuncExecutor(root, runcexecutor.Opt{
		CommandCandidates:   []string{steps.command},
		Rootless:            steps.rootless,
		DefaultCgroupParent: steps.cgroupParent,
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
	cs := containerdsnapshot.NewContentStore(c.ContentStore(), namespace)
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
		Snapshotter:      containerdsnapshot.NewSnapshotter(name, c.SnapshotService(name), namespace, nil),
		ContentStore:     cs,
		Applier:          winlayers.NewFileSystemApplierWithWindows(cs, df),
		Differ:           winlayers.NewWalkingDiffWithWindows(cs, df),
		ImageStore:       c.ImageService(),
		Platforms:        []ocispecs.Platform{platforms.Normalize(platforms.DefaultSpec())},
		LeaseManager:     leaseutil.WithNamespace(c.LeasesService(), namespace),
		GarbageCollect:   st.CollectGarbage,
		MountPoolRoot:    filepath.Join(root, "cachemounts"),
		ResourceMonitor:  monitor,
	}, nil
}
