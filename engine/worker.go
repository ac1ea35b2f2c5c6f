package engine

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	ctd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/pkg/gc"
	"github.com/containerd/platforms"
	"github.com/moby/buildkit/cache/metadata"
	"github.com/moby/buildkit/executor"
	"github.com/moby/buildkit/executor/containerdexecutor"
	"github.com/moby/buildkit/executor/resources"
	containerdsnapshot "github.com/moby/buildkit/snapshot/containerd"
	"github.com/moby/buildkit/solver/pb"
	"github.com/moby/buildkit/util/leaseutil"
	"github.com/moby/buildkit/util/network"
	"github.com/moby/buildkit/util/network/netproviders"
	"github.com/moby/buildkit/util/network/proxyprovider"
	"github.com/moby/buildkit/util/winlayers"
	"github.com/moby/buildkit/worker/base"
	"github.com/moby/buildkit/worker/containerd"
	wlabel "github.com/moby/buildkit/worker/label"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// newWorkerOpt is BuildKit's containerd.NewWorkerOpt (worker/containerd,
// v0.34) made cheap for a process that starts once per build; the worker it
// describes is the same. The differences:
//
//   - with host networking, BuildKit's proxy network provider is created when
//     a build first asks for a proxied network, not at every start: its
//     constructor generates a 2048-bit RSA CA, 50-300 ms of CPU that a
//     build without a proxied network never uses;
//
//   - the proxy's network namespaces live under the worker's root when no
//     CNI root is given (BuildKit would use the working directory);
//
//   - containerd's two introspection calls run side by side.
//
//   - as root, build steps run with runc directly (see stepsRunc), as
//     in BuildKit's OCI worker, instead of as containerd tasks.
//
// Other network modes go through BuildKit's own netproviders.Providers.
func newWorkerOpt(workerOpts containerd.WorkerOptions, opts ...ctd.Opt) (base.WorkerOpt, error) {
	if strings.Contains(workerOpts.SnapshotterName, "/") {
		return base.WorkerOpt{}, fmt.Errorf("bad snapshotter name %q", workerOpts.SnapshotterName)
	}
	opts = append(opts, ctd.WithDefaultNamespace(workerOpts.Namespace))
	client, err := ctd.New(workerOpts.Address, opts...)
	if err != nil {
		return base.WorkerOpt{}, fmt.Errorf("connecting to containerd at %s: %w", workerOpts.Address, err)
	}
	root := workerDir(workerOpts.Root, containerdWorkerPrefix, workerOpts.SnapshotterName)
	if err := os.MkdirAll(root, 0o700); err != nil {
		return base.WorkerOpt{}, fmt.Errorf("creating %s: %w", root, err)
	}
	id, err := base.ID(root)
	if err != nil {
		return base.WorkerOpt{}, err
	}

	var uuid string
	var ps []ocispecs.Platform
	var eg errgroup.Group
	eg.Go(func() error {
		info, err := client.IntrospectionService().Server(context.TODO())
		if err != nil {
			return fmt.Errorf("asking containerd for its identity: %w", err)
		}
		uuid = info.UUID
		return nil
	})
	eg.Go(func() error {
		resp, err := client.IntrospectionService().Plugins(context.TODO(), "type==io.containerd.runtime.v1", "type==io.containerd.runtime.v2")
		if err != nil {
			return fmt.Errorf("listing containerd's runtime plugins: %w", err)
		}
		if len(resp.Plugins) == 0 {
			return fmt.Errorf("containerd has no runtime plugin")
		}
		for _, plugin := range resp.Plugins {
			for _, p := range plugin.Platforms {
				ps = append(ps, platforms.Normalize(ocispecs.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}))
			}
		}
		return nil
	})
	if err := eg.Wait(); err != nil {
		return base.WorkerOpt{}, err
	}

	np, proxy, mode, err := networkProviders(workerOpts)
	if err != nil {
		return base.WorkerOpt{}, err
	}
	exe, monitor, executorName, err := stepExecutor(workerOpts, client, root, np, proxy)
	if err != nil {
		return base.WorkerOpt{}, err
	}
	hostname, err := os.Hostname()
	if err != nil {
		hostname = "unknown"
	}
	labels := map[string]string{
		wlabel.Executor:            executorName,
		wlabel.Snapshotter:         workerOpts.SnapshotterName,
		wlabel.Hostname:            hostname,
		wlabel.Network:             mode,
		wlabel.SELinuxEnabled:      strconv.FormatBool(workerOpts.Selinux),
		wlabel.ContainerdNamespace: workerOpts.Namespace,
		wlabel.ContainerdUUID:      uuid,
	}
	if workerOpts.ApparmorProfile != "" {
		labels[wlabel.ApparmorProfile] = workerOpts.ApparmorProfile
	}
	maps.Copy(labels, workerOpts.Labels)

	lm := leaseutil.WithNamespace(client.LeasesService(), workerOpts.Namespace)
	cs := containerdsnapshot.NewContentStore(client.ContentStore(), workerOpts.Namespace)
	md, err := metadata.NewStore(filepath.Join(root, "metadata_v2.db"), workerOpts.Compaction...)
	if err != nil {
		return base.WorkerOpt{}, err
	}
	df := client.DiffService()
	return base.WorkerOpt{
		ID:               id,
		Root:             root,
		Labels:           labels,
		MetadataStore:    md,
		NetworkProviders: np,
		ProxyProvider:    proxy,
		Executor:         exe,
		ResourceMonitor:  monitor,
		Snapshotter:      containerdsnapshot.NewSnapshotter(workerOpts.SnapshotterName, client.SnapshotService(workerOpts.SnapshotterName), workerOpts.Namespace, nil),
		ContentStore:     cs,
		Applier:          winlayers.NewFileSystemApplierWithWindows(cs, df),
		Differ:           winlayers.NewWalkingDiffWithWindows(cs, df),
		ImageStore:       client.ImageService(),
		Platforms:        ps,
		LeaseManager:     lm,
		// Deleting a lease synchronously makes containerd collect garbage.
		GarbageCollect: func(ctx context.Context) (gc.Stats, error) {
			l, err := lm.Create(ctx)
			if err != nil {
				return nil, nil
			}
			return nil, lm.Delete(ctx, leases.Lease{ID: l.ID}, leases.SynchronousDelete)
		},
		ParallelismSem: workerOpts.ParallelismSem,
		MountPoolRoot:  filepath.Join(root, "cachemounts"),
		CDIManager:     workerOpts.CDIManager,
	}, nil
}

// stepExecutor returns what runs the build steps and BuildKit's name for it:
// runc driven by kiln where stepsRunc allows it (steps under
// root/executor), else containerd's tasks.
func stepExecutor(workerOpts containerd.WorkerOptions, client *ctd.Client, root string, np map[pb.NetMode]network.Provider, proxy network.ProxyProvider) (executor.Executor, *resources.Monitor, string, error) {
	if stepsRunc(workerOpts.Rootless) != "" {
		exe, monitor, err := newRuncStepExecutor(workerOpts, root, np, proxy)
		return exe, monitor, "oci", err
	}
	return containerdexecutor.New(containerdexecutor.ExecutorOptions{
		Client:           client,
		Root:             root,
		CgroupParent:     workerOpts.CgroupParent,
		ApparmorProfile:  workerOpts.ApparmorProfile,
		DNSConfig:        workerOpts.DNS,
		Selinux:          workerOpts.Selinux,
		TraceSocket:      workerOpts.TraceSocket,
		Rootless:         workerOpts.Rootless,
		Runtime:          workerOpts.Runtime,
		CDIManager:       workerOpts.CDIManager,
		NetworkProviders: np,
		ProxyProvider:    proxy,
		HyperVIsolation:  workerOpts.HyperVIsolation,
	}), nil, "containerd", nil
}

// networkProviders returns the worker's network providers. Host networking
// is assembled here with a lazily created proxy provider; other modes are
// BuildKit's.
func networkProviders(workerOpts containerd.WorkerOptions) (map[pb.NetMode]network.Provider, network.ProxyProvider, string, error) {
	opt := workerOpts.NetworkOpt
	if opt.CNI.Root == "" {
		opt.CNI.Root = workerOpts.Root
	}
	if opt.Mode != "host" || !proxyprovider.Supported() {
		return netproviders.Providers(opt)
	}
	host := network.NewHostProvider()
	providers := map[pb.NetMode]network.Provider{
		pb.NetMode_UNSET: host,
		pb.NetMode_HOST:  host,
		pb.NetMode_NONE:  network.NewNoneProvider(),
	}
	proxy := &lazyProxy{opt: proxyprovider.Opt{
		Root:            opt.CNI.Root,
		PoolSize:        opt.CNI.PoolSize,
		EgressProviders: map[pb.NetMode]network.Provider{pb.NetMode_UNSET: host, pb.NetMode_HOST: host},
	}}
	return providers, proxy, "host", nil
}

// lazyProxy creates BuildKit's proxy network provider on first use.
type lazyProxy struct {
	opt  proxyprovider.Opt
	once sync.Once
	p    network.ProxyProvider
	err  error
}

// NewProxy creates the provider if this is the first proxied network, then
// asks it for one.
func (l *lazyProxy) NewProxy(ctx context.Context, cfg *network.ProxyConfig) (network.ProxyNamespace, error) {
	l.once.Do(func() { l.p, l.err = proxyprovider.New(l.opt) })
	if l.err != nil {
		return nil, l.err
	}
	return l.p.NewProxy(ctx, cfg)
}

// Close closes the provider if it was created, and prevents its creation
// afterwards.
func (l *lazyProxy) Close() error {
	l.once.Do(func() { l.err = fmt.Errorf("the proxy network provider is closed") })
	if l.p != nil {
		return l.p.Close()
	}
	return nil
}
