package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/containerd/containerd/v2/core/remotes/docker"
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
	"github.com/moby/buildkit/worker"
	"github.com/moby/buildkit/worker/base"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	// BuildKit's client and controller exchange messages with its own codec.
	_ "github.com/moby/buildkit/util/grpcutil/encoding/proto"

	"github.com/kiln-build/kiln/cgroup"
	"github.com/kiln-build/kiln/layers"
	"github.com/kiln-build/kiln/registry"
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

// Config is kiln's global options: the store BuildKit runs on and images
// are kept in, where kiln's own state lives, and how the build cache is
// collected. Everything in it comes from the command line before any
// command runs; the engine decides the rest (see backend).
type Config struct {
	// Store is the --store option: auto (the default), containerd or
	// embedded (see Selection).
	Store string
	// Address is containerd's socket.
	Address string
	// AddressSet is true when the user gave Address (--address or
	// CONTAINERD_ADDRESS).
	AddressSet bool
	// Namespace is the containerd namespace images are built and stored in.
	Namespace string
	// Kubernetes is --k8s: the containerd of the Kubernetes distribution
	// on this host (unless Address is set) and its CRI's namespace, which
	// Namespace must then be (see Config.Selection).
	Kubernetes bool
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
	// one set per namespace (see state.go), and the embedded store. Nothing
	// is made, cleared or removed there before claimRoot has proved it
	// kiln's own.
	Root string
	// GC controls the garbage collection of the build cache after every
	// build (see Engine.CollectGarbage).
	GC GCOptions
	// Limits is the budget of a build: the builder sets it from the
	// build's options, kiln info from the environment's (see budget.go).
	Limits Limits
	// Registry says how builds reach registries (--hosts-dir): FROM and
	// its pulls, --push, type=registry outputs, registry caches and
	// docker-image:// contexts all use its hosts.
	Registry registry.Config
}

// Engine is BuildKit running inside this process on the store the global
// options select: its worker and, once started for a build, its controller
// with a BuildKit client connected to it over memory. It holds the state
// directory's lock (and with containerd the namespace's) until Close.
type Engine struct {
	cfg         Config
	store       *store.Store
	release     func() // what the backend's hold took
	snapshotter string
	snapshots   string        // the directory of the snapshots' data, or "" (see FullDisk)
	state       string        // BuildKit's state directory for the namespace (see stateDir)
	budget      *cgroup.Group // the build's cgroup, with its limits; nil without
	hosts       docker.RegistryHosts

	// bg lives until Close: the worker and the controller run on it, so
	// that an interrupted build still closes them in order.
	bg   context.Context
	stop context.CancelFunc

	worker     *base.Worker
	workers    *worker.Controller
	controller *control.Controller
	server     *grpc.Server
	listener   *bufconn.Listener
	client     *bkclient.Client
}

// Start connects to the store the global options select, takes the state
// directory's locks, cleans what a killed kiln process left, moves an
// earlier kiln's build cache into its namespace's state directory, and
// starts BuildKit on the namespace's state: its worker and controller, and
// a client connected to them over memory. platforms, when set, replace the
// platforms the worker reports; a build sets them from what emulation found
// runnable. Messages (waiting for a lock, what was cleaned) go to stderr.
func Start(ctx context.Context, cfg Config, platforms []ocispecs.Platform, stderr io.Writer) (*Engine, error) {
	e, err := open(ctx, cfg, platforms, stderr)
	if err != nil {
		return nil, err
	}
	if err := e.serve(); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// open does what every use of the engine needs, whichever the backend: it
// opens the store, chooses the snapshotter, takes the locks, cleans what a
// killed kiln left and starts BuildKit's worker on the namespace's state
// directory. kiln du needs no more; kiln prune adds the controller
// (startController) and a build the client as well (serve).
func open(ctx context.Context, cfg Config, platforms []ocispecs.Platform, stderr io.Writer) (*Engine, error) {
	b, _, err := cfg.backend()
	if err != nil {
		return nil, err
	}
	if err := b.runnable(); err != nil {
		return nil, err
	}
	if cfg, err = cfg.withClaimedRoot(); err != nil {
		return nil, err
	}
	b, _, _ = cfg.backend() // the same choice, on the root's real path
	st, err := b.open(ctx, stderr)
	if err != nil {
		return nil, err
	}
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	// One set of registry hosts for the worker (FROM, pulls, pushes) and
	// the remote caches. BuildKit sets each host's authorizer from the
	// build's session, which reads the docker config file.
	e := &Engine{cfg: cfg, store: st, bg: bg, stop: stop, hosts: cfg.Registry.RegistryHosts(nil, nil)}
	ok := false
	defer func() {
		if !ok {
			e.Close()
		}
	}()
	choice, err := b.snapshotter(ctx, st)
	if err != nil {
		return nil, err
	}
	e.snapshotter, e.snapshots = choice.Name, choice.Root
	id, err := st.ID(ctx)
	if err != nil {
		return nil, err
	}
	if e.state, err = stateDir(cfg.Root, id, cfg.Namespace); err != nil {
		return nil, err
	}
	if e.release, err = b.hold(ctx, st, stderr); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(e.state, 0o700); err != nil {
		return nil, fmt.Errorf("creating kiln's build state directory %s: %w", e.state, err)
	}
	if e.budget, err = openBudget(cfg); err != nil {
		return nil, err
	}
	opt, err := b.workerOpt(st, e.state, e.snapshotter, e.budget)
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", b.workerName(), err)
	}
	opt.ParallelismSem = cfg.Limits.parallelism()
	if e.worker, err = startWorker(bg, opt, e.hosts, platforms, b.workerName()); err != nil {
		return nil, err
	}
	e.workers = &worker.Controller{}
	// BuildKit's worker with kiln's image exporters: new gzip layers
	// compressed on every core, epoch rewrites reused (package layers).
	if err := e.workers.Add(layers.Worker{Worker: e.worker}); err != nil {
		return nil, err
	}
	ok = true
	return e, nil
}

// Client returns the BuildKit client connected to the engine.
func (e *Engine) Client() *bkclient.Client { return e.client }

// Store returns the store the engine runs on; Close closes it.
func (e *Engine) Store() *store.Store { return e.store }

// Snapshotter returns the snapshotter build steps run on.
func (e *Engine) Snapshotter() string { return e.snapshotter }

// serve starts the controller, serves it on an in-memory listener instead
// of a socket, as buildkitd does on one, and connects a client to it.
func (e *Engine) serve() error {
	sessionManager, err := session.NewManager()
	if err != nil {
		return fmt.Errorf("starting BuildKit's session manager: %w", err)
	}
	if err := e.startController(sessionManager); err != nil {
		return err
	}
	e.listener = bufconn.Listen(bufSize)
	// The error interceptors carry BuildKit's typed errors (failed step,
	// exit code, Dockerfile location) to the client as status details.
	e.server = grpc.NewServer(
		grpc.ChainUnaryInterceptor(grpcerrors.UnaryServerInterceptor),
		grpc.StreamInterceptor(grpcerrors.StreamServerInterceptor),
		grpc.MaxRecvMsgSize(maxMsgSize), grpc.MaxSendMsgSize(maxMsgSize))
	e.controller.Register(e.server)
	go e.server.Serve(e.listener) //nolint:errcheck // ends when the listener closes

	dial := func(ctx context.Context, _ string) (net.Conn, error) { return e.listener.DialContext(ctx) }
	c, err := bkclient.New(e.bg, "",
		bkclient.WithContextDialer(dial),
		bkclient.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())),
		bkclient.WithGRPCDialOption(grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize), grpc.MaxCallSendMsgSize(maxMsgSize))),
	)
	if err != nil {
		return fmt.Errorf("connecting to the embedded BuildKit: %w", err)
	}
	e.client = c
	return nil
}

// startWorker completes a worker's options with what every kiln worker
// shares (its version, registry hosts, the requested platforms) and starts
// it; what names the worker in errors. On failure the worker's metadata
// database is closed again, so that it stays usable.
func startWorker(ctx context.Context, opt base.WorkerOpt, hosts docker.RegistryHosts, platforms []ocispecs.Platform, what string) (*base.Worker, error) {
	opt.BuildkitVersion = bkclient.BuildkitVersion{Package: "github.com/kiln-build/kiln", Version: version.Version, Revision: "kiln"}
	opt.RegistryHosts = hosts
	if len(platforms) > 0 {
		opt.Platforms = platforms
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

// startController starts BuildKit's controller on the worker, as
// buildkitd's newController does. With the session manager sm it can solve
// builds: the Dockerfile frontend and the remote caches are registered.
// Without one (kiln prune) it only answers for the build cache: pruning
// through the controller also drops the solver's cache keys of the records
// it frees, as buildkitd does.
func (e *Engine) startController(sm *session.Manager) error {
	cacheStorage, err := bboltcachestorage.NewStore(filepath.Join(e.state, "cache.db"))
	if err != nil {
		return fmt.Errorf("opening the build cache database in %s: %w", e.state, err)
	}
	// kiln keeps no build history (MaxEntries below): what BuildKit writes
	// to this database during a build is deleted at its end, so nothing in
	// it needs to reach the disk. Without syncs (and with the free list
	// written by every commit, so that closing needs no checkpoint) this
	// saves four fsyncs per build.
	historyDB, err := boltutil.SafeOpen(filepath.Join(e.state, "history.db"), 0o600, &bolt.Options{
		FreelistType: bolt.FreelistMapType,
		NoSync:       true,
		NoGrowSync:   true,
	})
	if err != nil {
		cacheStorage.Close()
		return fmt.Errorf("opening the build history database in %s: %w", e.state, err)
	}
	// solver.NewCacheManager starts by sweeping the cache keys for results
	// that no longer exist, looking every one up in the worker: buildkitd
	// does that once, a kiln process would do it for every build, and it
	// grows with the cache. Lookups during a build skip and drop such keys
	// anyway, and BuildKit sweeps after every prune (kiln prune) and garbage
	// collection, so the sweep at start is left out.
	keys := &sweepAfterStart{CacheKeyStorage: cacheStorage}
	cacheManager := solver.NewCacheManager(e.bg, "local", keys, worker.NewCacheResultStorage(e.workers))
	keys.started.Store(true)
	// Zero entries turns build history off: a one-shot process has nobody
	// to show it to, and recording it would create a "<ns>_history"
	// namespace in the user's containerd.
	noHistory := int64(0)
	opt := control.Opt{
		SessionManager:   sm,
		WorkerController: e.workers,
		CacheManager:     cacheManager,
		HistoryDB:        historyDB,
		CacheStore:       cacheStorage,
		LeaseManager:     e.worker.LeaseManager(),
		ContentStore:     e.worker.ContentStore(),
		HistoryConfig:    &config.HistoryConfig{MaxEntries: &noHistory},
		GarbageCollect:   e.worker.GarbageCollect,
		GracefulStop:     e.bg.Done(),
		// Granted per build only when --allow asks, as buildkitd does.
		Entitlements: []string{"network.host", "security.insecure"},
	}
	if sm != nil {
		hosts := e.hosts
		opt.Frontends = map[string]frontend.Frontend{
			"dockerfile.v0": forwarder.NewGatewayForwarder(e.workers.Infos(), dockerfile.Build),
		}
		opt.ResolveCacheExporterFuncs = map[string]remotecache.ResolveCacheExporterFunc{
			"registry": registryremotecache.ResolveCacheExporterFunc(sm, hosts),
			"local":    localremotecache.ResolveCacheExporterFunc(sm),
			"inline":   inlineremotecache.ResolveCacheExporterFunc(),
		}
		opt.ResolveCacheImporterFuncs = map[string]remotecache.ResolveCacheImporterFunc{
			"registry": registryremotecache.ResolveCacheImporterFunc(sm, e.worker.ContentStore(), hosts),
			"local":    localremotecache.ResolveCacheImporterFunc(sm),
		}
	}
	ctrl, err := control.NewController(opt)
	if err != nil {
		historyDB.Close()
		cacheStorage.Close()
		return err
	}
	e.controller = ctrl
	return nil
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

// Close stops the in-memory server and BuildKit, drops the temporary
// leases BuildKit kept, then releases the locks and the store, so that the
// next kiln process can open them.
func (e *Engine) Close() error {
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
	// The steps have ended with the controller: their cgroups can go.
	// One that cannot is removed by the next build on this root.
	e.budget.Remove()
	if e.worker != nil {
		releaseTemporaryLeases(e.store)
	}
	if e.release != nil {
		e.release()
	}
	return errors.Join(err, e.store.Close())
}
