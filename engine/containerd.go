package engine

import (
	"context"
	"io"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	ctd "github.com/containerd/containerd/v2/client"
	"github.com/moby/buildkit/util/network/netproviders"
	"github.com/moby/buildkit/worker/base"
	"github.com/moby/buildkit/worker/containerd"
	"google.golang.org/grpc"

	"github.com/kiln-build/kiln/cgroup"
	"github.com/kiln-build/kiln/rootless"
	"github.com/kiln-build/kiln/snapshot"
	"github.com/kiln-build/kiln/store"
)

// containerdBackend runs BuildKit on a containerd: BuildKit's containerd
// worker, with steps run by runc directly where kiln may (see stepsRunc),
// else as containerd's tasks.
type containerdBackend struct{ cfg Config }

// runnable requires, for an unprivileged user, the namespaces of their
// rootless containerd.
func (b containerdBackend) runnable() error {
	if b.cfg.Rootless {
		return rootless.RequireNamespaces()
	}
	return nil
}

func (b containerdBackend) open(ctx context.Context, _ io.Writer) (*store.Store, error) {
	return store.Open(ctx, b.cfg.Address, b.cfg.Namespace)
}

func (b containerdBackend) snapshotter(ctx context.Context, st *store.Store) (snapshot.Choice, error) {
	return chooseSnapshotter(ctx, st, b.cfg)
}

// hold takes the root's and the namespace's locks (see lockState), removes
// the step containers a killed kiln left in containerd and the steps it
// left with runc, and moves an earlier kiln's build cache into place.
func (b containerdBackend) hold(ctx context.Context, st *store.Store, stderr io.Writer) (func(), error) {
	unlock, err := lockState(ctx, b.cfg, stderr)
	if err != nil {
		return nil, err
	}
	if err := sweepContainers(st.WithNamespace(ctx), st.Client(), b.cfg.Root, stderr); err != nil {
		unlock()
		return nil, err
	}
	if err := tidyRoot(ctx, st, b.cfg, containerdWorkerPrefix+"*", containerdWorkerPrefix, stderr); err != nil {
		unlock()
		return nil, err
	}
	return unlock, nil
}

func (b containerdBackend) workerOpt(_ *store.Store, state, snapshotter string, budget *cgroup.Group) (base.WorkerOpt, error) {
	cfg := b.cfg
	var cgroupParent string
	runtime := &containerd.RuntimeInfo{Name: "io.containerd.runc.v2"}
	if cfg.Rootless {
		// BuildKit's rootless mode drops cgroup paths: a budget holds
		// for the steps through their shim's cgroup instead.
		o, err := shimCgroup(budget)
		if err != nil {
			return base.WorkerOpt{}, err
		}
		if o != nil {
			runtime.Options = o
		}
	} else {
		cgroupParent = stepCgroupParent(cfg, budget)
	}
	return newWorkerOpt(containerd.WorkerOptions{
		Root:            state,
		Address:         cfg.Address,
		SnapshotterName: snapshotter,
		Namespace:       cfg.Namespace,
		CgroupParent:    cgroupParent,
		Rootless:        cfg.Rootless,
		NetworkOpt: netproviders.Opt{
			Mode: "host",
		},
		Runtime: runtime,
	}, ctd.WithTimeout(30*time.Second), labelContainers(rootID(cfg.Root)))
}

func (containerdBackend) workerName() string { return "the containerd worker" }

// describe connects to containerd for its version, its ID (which names the
// state directory) and its snapshotters.
func (b containerdBackend) describe(ctx context.Context, info *Info) error {
	cfg := b.cfg
	st, err := store.Open(ctx, cfg.Address, cfg.Namespace)
	if err != nil {
		return err
	}
	defer st.Close()
	v := st.Version()
	choice, err := chooseSnapshotter(ctx, st, cfg)
	if err != nil {
		return err
	}
	id, err := st.ID(ctx)
	if err != nil {
		return err
	}
	if info.State, err = stateDir(cfg.Root, id, st.Namespace()); err != nil {
		return err
	}
	info.Address = st.Address()
	info.ContainerdVersion = v.Version
	info.ContainerdRevision = v.Revision
	info.Snapshotter = choice.Name
	info.SnapshotterReason = choice.Reason
	info.SnapshotterChosen = choice.Chosen
	info.Snapshots = describeDisk(choice.Root)
	info.Cgroups = stepCgroups(cfg)
	info.Runtime = stepRuntime(cfg)
	info.Rootless = rootlessInfo(cfg)
	return nil
}

// chooseSnapshotter checks the snapshotter the user chose against
// containerd, or picks one (see package snapshot). In rootless mode kiln
// tries an overlayfs mount in its state directory, inside RootlessKit's
// namespaces, where the steps' snapshots will be mounted.
func chooseSnapshotter(ctx context.Context, st *store.Store, cfg Config) (snapshot.Choice, error) {
	plugins, err := snapshot.Plugins(ctx, st.Client())
	if err != nil {
		return snapshot.Choice{}, err
	}
	req := snapshot.Request{
		Rootless:      cfg.Rootless,
		Kernel:        snapshot.KernelRelease(),
		FuseInstalled: snapshot.FuseInstalled(),
	}
	if cfg.SnapshotterSet {
		req.Name = cfg.Snapshotter
	} else if st.Namespace() == store.KubernetesNamespace {
		// Without a CRI plugin (or one that does not say) kiln chooses as
		// in any namespace.
		req.CRI, _ = st.CRISnapshotter(ctx)
	}
	if cfg.Rootless && rootless.Child() {
		req.ProbeOverlay = func() error { return snapshot.ProbeOverlay(cfg.Root) }
	}
	return snapshot.Choose(plugins, req)
}

// containerLabelKey is the label kiln puts on every step container, with
// rootID of its state directory as the value. BuildKit gives its containers
// no labels and, in rootless mode, no cgroup path either, so this label is
// how a later kiln recognises the containers a killed one left behind
// (sweepContainers), and only those of its own state directory. No other
// tool sets it.
const containerLabelKey = "kiln.root"

// labelContainers returns a containerd client option that adds the label
// containerLabelKey=value to every container the client creates: BuildKit's
// containerd executor creates its step containers through that client, and
// the interceptor sees the request before it leaves the process.
func labelContainers(value string) ctd.Opt {
	intercept := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if r, ok := req.(*containersapi.CreateContainerRequest); ok && value != "" && r.Container != nil {
			if r.Container.Labels == nil {
				r.Container.Labels = map[string]string{}
			}
			r.Container.Labels[containerLabelKey] = value
		}
		return invoke(ctx, method, req, reply, cc, opts...)
	}
	return ctd.WithExtraDialOpts([]grpc.DialOption{grpc.WithChainUnaryInterceptor(intercept)})
}

// stepRuntime describes what runs the build steps on containerd.
func stepRuntime(cfg Config) string {
	if p := stepsRunc(cfg.Rootless); p != "" {
		return p
	}
	return "containerd tasks (io.containerd.runc.v2)"
}

// stepCgroups says where build steps' cgroups go, for kiln info.
func stepCgroups(cfg Config) string {
	v := cgroupVersion()
	if cfg.Rootless {
		note := "build steps run without cgroup paths or limits (BuildKit's rootless mode)"
		if v != "v2" {
			note += "; rootless runc cannot create cgroups on cgroup v1"
		}
		note += "; a budget holds in a cgroup delegated to you"
		return v + ": " + note
	}
	return v + ": build steps run under the cgroup " + cgroupParent(cfg.Root)
}

// rootlessInfo describes RootlessKit for kiln info; nil when not rootless.
func rootlessInfo(cfg Config) *RootlessInfo {
	if !cfg.Rootless {
		return nil
	}
	kit, err := rootless.Find()
	if err != nil {
		return &RootlessInfo{StateDir: rootless.StateDir(), Network: "unknown: " + err.Error()}
	}
	return &RootlessInfo{StateDir: kit.StateDir, ChildPID: kit.ChildPID, Network: kit.Network()}
}
