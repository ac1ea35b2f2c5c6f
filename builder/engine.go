package builder

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	ctd "github.com/containerd/containerd/v2/client"
	"github.com/moby/buildkit/cache/remotecache"
	inlineremotecache "github.com/moby/buildkit/cache/remotecache/inline"
	localremotecache "github.com/moby/buildkit/cache/remotecache/local"
	registryremotecache "github.com/moby/buildkit/cache/remotecache/registry"
	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/cmd/buildkitd/config"
	"github.com/moby/buildkit/control"
	"github.com/moby/buildkit/frontend"
	dockerfile "github.com/moby/buildkit/frontend/dockerfile/builder"
	"github.com/moby/buildkit/frontend/gateway/forwarder"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/solver"
	"github.com/moby/buildkit/solver/bboltcachestorage"
	"github.com/moby/buildkit/util/db/boltutil"
	"github.com/moby/buildkit/util/grpcerrors"
	"github.com/moby/buildkit/util/network/netproviders"
	"github.com/moby/buildkit/util/resolver"
	"github.com/moby/buildkit/worker"
	"github.com/moby/buildkit/worker/base"
	"github.com/moby/buildkit/worker/containerd"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	// BuildKit's client and controller exchange messages with its own codec.
	_ "github.com/moby/buildkit/util/grpcutil/encoding/proto"

	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/version"
)

// maxMsgSize matches buildkitd's defaults, so large build contexts and
// results pass through the in-memory connection as they would over a socket.
const maxMsgSize = 16 << 20

// bufSize is the ring buffer of each direction of the in-memory connection.
// BuildKit streams files through it in chunks of 32 KiB or less and the
// other side reads them at once, so a larger ring only holds more memory: a
// 256 MB build context transfers as fast as with 4 MiB rings, with 11 MB
// less resident.
const bufSize = 256 << 10

// Config says which containerd kiln talks to and where its own state lives.
type Config struct {
	// Store is the --store option: auto (the default), containerd or
	// embedded (see store.Select).
	Store string
	// Address is containerd's socket.
	Address string
	// AddressSet is true when the user gave Address (--address or
	// CONTAINERD_ADDRESS).
	AddressSet bool
	// Namespace is the containerd namespace images are built and stored in.
	Namespace string
	// Snapshotter is the containerd snapshotter steps run on.
	Snapshotter string
	// SnapshotterSet is true when the user chose Snapshotter; otherwise
	// kiln checks it against containerd and may choose another (see
	// package snapshot).
	SnapshotterSet bool
	// Rootless is set when kiln builds for an unprivileged user, inside the
	// namespaces of their rootless containerd: BuildKit's worker then runs
	// in rootless mode and steps get no cgroup paths or limits.
	Rootless bool
	// Root holds kiln's own state: BuildKit's metadata and cache databases,
	// one set per namespace (see state.go), and the embedded store.
	Root string
	// Platforms, when set, replaces the platforms the worker reports; the
	// build sets it from what emulation found runnable.
	Platforms []ocispecs.Platform
	// GC controls the build cache's garbage collection after a build.
	GC GCOptions

	// state is BuildKit's state directory for the namespace (see stateDir).
	state        string
	cgroupParent string
	// containerLabel marks the step containers of this state directory so
	// that a later kiln recognises those a killed one left (see sweep.go).
	containerLabel string
	// embedded is the embedded store a build runs on; nil with containerd.
	embedded *store.Store
}

// engine is BuildKit's controller and containerd worker running inside this
// process, with a BuildKit client connected to it over memory.
type engine struct {
	client     *bkclient.Client
	controller *control.Controller
	workers    *worker.Controller
	server     *grpc.Server
	listener   *bufconn.Listener
	stop       context.CancelFunc
}

// newEngine assembles the worker and controller as buildkitd does, but
// serves them on an in-memory listener instead of a socket.
func newEngine(ctx context.Context, cfg Config) (*engine, error) {
	if err := os.MkdirAll(cfg.state, 0o700); err != nil {
		return nil, fmt.Errorf("creating kiln's build state directory %s: %w", cfg.state, err)
	}
	ctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	e := &engine{stop: stop}
	ok := false
	defer func() {
		if !ok {
			e.Close()
		}
	}()

	sessionManager, err := session.NewManager()
	if err != nil {
		return nil, fmt.Errorf("starting BuildKit's session manager: %w", err)
	}
	w, err := newWorker(ctx, cfg)
	if err != nil {
		return nil, err
	}
	e.workers = &worker.Controller{}
	if err := e.workers.Add(w); err != nil {
		return nil, err
	}
	ctrl, err := newController(ctx, cfg, sessionManager, e.workers, w)
	if err != nil {
		return nil, err
	}
	e.controller = ctrl

	e.listener = bufconn.Listen(bufSize)
	// The error interceptors carry BuildKit's typed errors (failed step,
	// exit code, Dockerfile location) to the client as status details.
	e.server = grpc.NewServer(
		grpc.ChainUnaryInterceptor(grpcerrors.UnaryServerInterceptor),
		grpc.StreamInterceptor(grpcerrors.StreamServerInterceptor),
		grpc.MaxRecvMsgSize(maxMsgSize), grpc.MaxSendMsgSize(maxMsgSize))
	ctrl.Register(e.server)
	go e.server.Serve(e.listener) //nolint:errcheck // ends when the listener closes

	dial := func(ctx context.Context, _ string) (net.Conn, error) { return e.listener.DialContext(ctx) }
	c, err := bkclient.New(ctx, "",
		bkclient.WithContextDialer(dial),
		bkclient.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		bkclient.WithGRPCDialOption(grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize), grpc.MaxCallSendMsgSize(maxMsgSize))),
	)
	if err != nil {
		return nil, fmt.Errorf("connecting to the embedded BuildKit: %w", err)
	}
	e.client = c
	ok = true
	return e, nil
}

func newWorker(ctx context.Context, cfg Config) (*base.Worker, error) {
	if cfg.embedded != nil {
		return newEmbeddedWorker(ctx, cfg)
	}
	opt, err := newWorkerOpt(containerd.WorkerOptions{
		Root:            cfg.state,
		Address:         cfg.Address,
		SnapshotterName: cfg.Snapshotter,
		Namespace:       cfg.Namespace,
		CgroupParent:    cfg.cgroupParent,
		Rootless:        cfg.Rootless,
		NetworkOpt: netproviders.Opt{
			Mode: "host",
		},
		Runtime: &containerd.RuntimeInfo{Name: "io.containerd.runc.v2"},
	}, ctd.WithTimeout(30*time.Second), labelContainers(cfg.containerLabel))
	if err != nil {
		return nil, fmt.Errorf("starting the containerd worker: %w", err)
	}
	return startWorker(ctx, cfg, opt, "the containerd worker")
}

// startWorker completes a worker's options with what every kiln worker
// shares (its version, registry hosts, the requested platforms) and starts
// it; what names the worker in errors. On failure the worker's metadata
// database is closed again, so that it stays usable.
func startWorker(ctx context.Context, cfg Config, opt base.WorkerOpt, what string) (*base.Worker, error) {
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
		return nil, fmt.Errorf("starting %s: %w", what, err)
	}
	return w, nil
}

func newController(ctx context.Context, cfg Config, sm *session.Manager, wc *worker.Controller, w *base.Worker) (*control.Controller, error) {
	cacheStorage, err := bboltcachestorage.NewStore(filepath.Join(cfg.state, "cache.db"))
	if err != nil {
		return nil, fmt.Errorf("opening the build cache database in %s: %w", cfg.state, err)
	}
	// kiln keeps no build history (MaxEntries below): what BuildKit writes
	// to this database during a build is deleted at its end, so nothing in
	// it needs to reach the disk. Without syncs (and with the free list
	// written by every commit, so that closing needs no checkpoint) this
	// saves four fsyncs per build.
	historyDB, err := boltutil.SafeOpen(filepath.Join(cfg.state, "history.db"), 0o600, &bolt.Options{
		FreelistType: bolt.FreelistMapType,
		NoSync:       true,
		NoGrowSync:   true,
	})
	if err != nil {
		return nil, fmt.Errorf("opening the build history database in %s: %w", cfg.state, err)
	}
	// solver.NewCacheManager starts by sweeping the cache keys for results
	// that no longer exist, looking every one up in the worker: buildkitd
	// does that once, a kiln process would do it for every build, and it
	// grows with the cache. Lookups during a build skip and drop such keys
	// anyway, and BuildKit sweeps after every prune (kiln prune) and garbage
	// collection, so the sweep at start is left out.
	keys := &sweepAfterStart{CacheKeyStorage: cacheStorage}
	cacheManager := solver.NewCacheManager(ctx, "local", keys, worker.NewCacheResultStorage(wc))
	keys.started.Store(true)
	hosts := resolver.NewRegistryConfig(nil)
	// Zero entries turns build history off: a one-shot process has nobody
	// to show it to, and recording it would create a "<ns>_history"
	// namespace in the user's containerd.
	noHistory := int64(0)
	frontends := map[string]frontend.Frontend{
		"dockerfile.v0": forwarder.NewGatewayForwarder(wc.Infos(), dockerfile.Build),
	}
	return control.NewController(control.Opt{
		SessionManager:   sm,
		WorkerController: wc,
		Frontends:        frontends,
		ResolveCacheExporterFuncs: map[string]remotecache.ResolveCacheExporterFunc{
			"registry": registryremotecache.ResolveCacheExporterFunc(sm, hosts),
			"local":    localremotecache.ResolveCacheExporterFunc(sm),
			"inline":   inlineremotecache.ResolveCacheExporterFunc(),
		},
		ResolveCacheImporterFuncs: map[string]remotecache.ResolveCacheImporterFunc{
			"registry": registryremotecache.ResolveCacheImporterFunc(sm, w.ContentStore(), hosts),
			"local":    localremotecache.ResolveCacheImporterFunc(sm),
		},
		CacheManager:   cacheManager,
		HistoryDB:      historyDB,
		CacheStore:     cacheStorage,
		LeaseManager:   w.LeaseManager(),
		ContentStore:   w.ContentStore(),
		HistoryConfig:  &config.HistoryConfig{MaxEntries: &noHistory},
		GarbageCollect: w.GarbageCollect,
		GracefulStop:   ctx.Done(),
		// Granted per build only when --allow asks, as buildkitd does.
		Entitlements: []string{"network.host", "security.insecure"},
	})
}

// sweepAfterStart is the build cache's key storage with Walk, which only
// the solver cache manager's sweep uses, doing nothing until started is set.
type sweepAfterStart struct {
	solver.CacheKeyStorage
	started atomic.Bool
}

func (s *sweepAfterStart) Walk(fn func(id string) error) error {
	if !s.started.Load() {
		return nil
	}
	return s.CacheKeyStorage.Walk(fn)
}

// Close stops the in-memory server and releases BuildKit's databases, so
// the next kiln process can open them.
func (e *engine) Close() error {
	if e.client != nil {
		e.client.Close()
	}
	if e.server != nil {
		e.server.Stop()
	}
	if e.listener != nil {
		e.listener.Close()
	}
	// The controller closes its workers; close them directly only when the
	// controller never came up.
	var err error
	if e.controller != nil {
		err = e.controller.Close()
	} else if e.workers != nil {
		err = e.workers.Close()
	}
	e.stop()
	return err
}
