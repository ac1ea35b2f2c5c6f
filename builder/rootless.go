package builder

import (
	"context"
	"os"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	ctd "github.com/containerd/containerd/v2/client"
	"google.golang.org/grpc"

	"github.com/kiln-build/kiln/rootless"
	"github.com/kiln-build/kiln/snapshot"
	"github.com/kiln-build/kiln/store"
)

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
	}
	if cfg.Rootless && rootless.Child() {
		req.ProbeOverlay = func() error { return snapshot.ProbeOverlay(cfg.Root) }
	}
	return snapshot.Choose(plugins, req)
}

// RootlessInfo describes the rootless containerd kiln builds with.
type RootlessInfo struct {
	// StateDir is RootlessKit's state directory.
	StateDir string `json:"stateDir"`
	// ChildPID is the RootlessKit child whose namespaces kiln joined.
	ChildPID int `json:"childPid"`
	// Network is the network namespace build steps use.
	Network string `json:"network"`
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

// cgroupVersion reports the host's cgroup hierarchy: "v2" (unified), "v1"
// or "v1 (hybrid)".
func cgroupVersion() string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return "v2"
	}
	if _, err := os.Stat("/sys/fs/cgroup/unified"); err == nil {
		return "v1 (hybrid)"
	}
	return "v1"
}

// stepCgroups says where build steps' cgroups go, for kiln info.
func stepCgroups(cfg Config) string {
	v := cgroupVersion()
	if cfg.Rootless {
		note := "build steps run without cgroup paths or limits (BuildKit's rootless mode)"
		if v != "v2" {
			note += "; rootless runc cannot create cgroups on cgroup v1"
		}
		return v + ": " + note
	}
	return v + ": build steps run under the cgroup " + cgroupParent(cfg.Root)
}
