package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync/atomic"
	"time"

	introspectionapi "github.com/containerd/containerd/api/services/introspection/v1"
	"github.com/containerd/containerd/api/types"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/diff"
	"github.com/containerd/containerd/v2/core/diff/apply"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/metadata"
	"github.com/containerd/containerd/v2/core/mount"
	ctdsnapshot "github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/filters"
	"github.com/containerd/containerd/v2/pkg/gc"
	"github.com/containerd/containerd/v2/pkg/identifiers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/containerd/v2/plugins/diff/walking"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"

	"github.com/kiln-build/kiln/snapshot"
)

// EmbeddedOptions say where kiln's embedded store lives and how it is
// opened.
type EmbeddedOptions struct {
	// Root is kiln's state directory; the store lives in EmbeddedDir(Root).
	Root string
	// Namespace is the namespace images are stored in, as with containerd.
	Namespace string
	// Snapshotter is the snapshotter images are unpacked into and build
	// steps run on (see snapshot.ChooseEmbedded).
	Snapshotter string
	// Release, when set, is called by Close once the store's database is
	// closed: it releases the caller's lock on Root, which must be held
	// while the store is open (bolt allows one opener per database).
	Release func()
}

// EmbeddedDir is where the embedded store of the state directory root
// lives: containerd's content store (content/), its bolt metadata database
// of images, leases, content labels and snapshots (metadata.db), and one
// directory per snapshotter (snapshots/NAME).
func EmbeddedDir(root string) string {
	return filepath.Join(root, "store")
}

// embedded is what an embedded Store owns besides its client.
type embedded struct {
	dir          string
	namespace    string
	snapshotter  string
	db           *bolt.DB
	mdb          *metadata.DB
	snapshotters map[string]ctdsnapshot.Snapshotter
	// dirty is set when a deletion left garbage that nothing collected yet.
	dirty   atomic.Bool
	release func()
}

// OpenEmbedded opens the embedded store under opts.Root: containerd's
// content store, metadata database and snapshotters run as libraries in
// this process, behind a containerd client, so every image command works on
// it as on a containerd. The caller must hold the state directory's lock.
func OpenEmbedded(ctx context.Context, opts EmbeddedOptions) (*Store, error) {
	if err := identifiers.Validate(opts.Namespace); err != nil {
		return nil, fmt.Errorf("invalid namespace %q: use letters, digits, '.', '_' and '-': %w", opts.Namespace, err)
	}
	dir := EmbeddedDir(opts.Root)
	if err := os.MkdirAll(filepath.Join(dir, "snapshots"), 0o700); err != nil {
		return nil, &StateDirError{Doing: "creating kiln's embedded store in", Path: dir, Err: err}
	}
	e := &embedded{dir: dir, namespace: opts.Namespace, snapshotter: opts.Snapshotter, snapshotters: map[string]ctdsnapshot.Snapshotter{}}
	ok := false
	defer func() {
		if !ok {
			e.close(ctx)
		}
	}()

	cs, err := local.NewStore(filepath.Join(dir, "content"))
	if err != nil {
		return nil, fmt.Errorf("opening the embedded store's content in %s: %w", dir, err)
	}
	if err := e.openSnapshotters(); err != nil {
		return nil, err
	}
	dbPath := filepath.Join(dir, "metadata.db")
	// The state directory's lock keeps other kiln processes out; the
	// timeout only guards against anything else holding the database.
	e.db, err = bolt.Open(dbPath, 0o600, &bolt.Options{Timeout: 10 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening the embedded store's database %s: %w", dbPath, err)
	}
	e.mdb = metadata.NewDB(e.db, cs, e.snapshotters)
	if err := e.mdb.Init(ctx); err != nil {
		return nil, fmt.Errorf("initialising the embedded store's database %s: %w", dbPath, err)
	}
	e.mdb.RegisterMutationCallback(func(dirty bool) {
		if dirty {
			e.dirty.Store(true)
		}
	})

	mcs := e.mdb.ContentStore()
	sns := map[string]ctdsnapshot.Snapshotter{}
	for name := range e.snapshotters {
		sns[name] = e.mdb.Snapshotter(name)
	}
	c, err := containerd.New("",
		containerd.WithDefaultNamespace(opts.Namespace),
		containerd.WithServices(
			containerd.WithContentStore(mcs),
			containerd.WithImageStore(imageStore{metadata.NewImageStore(e.mdb), e}),
			containerd.WithLeasesService(leaseManager{metadata.NewLeaseManager(e.mdb), e}),
			containerd.WithSnapshotters(sns),
			containerd.WithContainerStore(metadata.NewContainerStore(e.mdb)),
			containerd.WithNamespaceService(namespaceStore{e.mdb}),
			containerd.WithDiffService(diffService{apply.NewFileSystemApplier(mcs), walking.NewWalkingDiff(mcs), e}),
			containerd.WithIntrospectionService(introspection{e}),
		))
	if err != nil {
		return nil, fmt.Errorf("opening kiln's embedded store in %s: %w", dir, err)
	}
	e.release, ok = opts.Release, true
	return &Store{client: c, namespace: opts.Namespace, embedded: e}, nil
}

// openSnapshotters opens the chosen snapshotter and every other one that
// has data in the store, so that garbage collection reaches all of them
// and images unpacked with another snapshotter still show as unpacked.
func (e *embedded) openSnapshotters() error {
	names := []string{e.snapshotter}
	entries, _ := os.ReadDir(filepath.Join(e.dir, "snapshots"))
	for _, ent := range entries {
		if ent.IsDir() && ent.Name() != e.snapshotter {
			names = append(names, ent.Name())
		}
	}
	for _, name := range names {
		sn, err := snapshot.NewEmbedded(name, filepath.Join(e.dir, "snapshots", name))
		if err != nil {
			if name == e.snapshotter {
				return err
			}
			continue // a directory of something else, or one that no longer opens
		}
		e.snapshotters[name] = sn
	}
	return nil
}

// collectGarbage removes content and snapshots that no image, lease or
// other reference holds, as containerd's garbage collector does after
// deletions.
func (e *embedded) collectGarbage(ctx context.Context) (gc.Stats, error) {
	e.dirty.Store(false)
	return e.mdb.GarbageCollect(ctx)
}

// close collects the garbage deletions left (no daemon will later), then
// closes the snapshotters and the database and releases the caller's lock.
func (e *embedded) close(ctx context.Context) error {
	var errs []error
	if e.mdb != nil && e.dirty.Load() {
		if _, err := e.collectGarbage(context.WithoutCancel(ctx)); err != nil {
			errs = append(errs, fmt.Errorf("collecting the embedded store's garbage: %w", err))
		}
	}
	for _, sn := range e.snapshotters {
		if err := sn.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if e.db != nil {
		if err := e.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing the embedded store's database: %w", err))
		}
	}
	if e.release != nil {
		e.release()
		e.release = nil
	}
	return errors.Join(errs...)
}

// Embedded reports whether the store is kiln's embedded store rather than
// a containerd.
func (s *Store) Embedded() bool { return s.embedded != nil }

// Dir returns the embedded store's directory; "" for a containerd.
func (s *Store) Dir() string {
	if s.embedded == nil {
		return ""
	}
	return s.embedded.dir
}

// Snapshotter returns the snapshotter the embedded store was opened with,
// or fallback for a containerd, which has several.
func (s *Store) Snapshotter(fallback string) string {
	if s.embedded == nil {
		return fallback
	}
	return s.embedded.snapshotter
}

// snapshotterName is the snapshotter to unpack into or check: the one
// given, except that the embedded store, which was opened with the
// snapshotter the user chose or kiln picked (see snapshot.ChooseEmbedded),
// replaces a name it does not run, the default of --snapshotter, with its
// own.
func (s *Store) snapshotterName(name string) string {
	if s.embedded == nil || name == "" {
		return name
	}
	if _, ok := s.embedded.snapshotters[name]; ok {
		return name
	}
	return s.embedded.snapshotter
}

// CollectGarbage removes the embedded store's unreferenced content and
// snapshots at once; a containerd collects its own.
func (s *Store) CollectGarbage(ctx context.Context) (gc.Stats, error) {
	if s.embedded == nil {
		return nil, nil
	}
	return s.embedded.collectGarbage(ctx)
}

// withNamespace sets the store's namespace on ctx unless it has one, as a
// containerd client does for every request: BuildKit calls the image store
// and the diff service without one.
func (e *embedded) withNamespace(ctx context.Context) context.Context {
	if _, ok := namespaces.Namespace(ctx); ok {
		return ctx
	}
	return namespaces.WithNamespace(ctx, e.namespace)
}

// imageStore is containerd's metadata image store in the store's namespace
// by default, collecting garbage before a synchronous delete returns, as
// containerd's images service does.
type imageStore struct {
	images.Store
	e *embedded
}

func (s imageStore) Get(ctx context.Context, name string) (images.Image, error) {
	return s.Store.Get(s.e.withNamespace(ctx), name)
}

func (s imageStore) List(ctx context.Context, fs ...string) ([]images.Image, error) {
	return s.Store.List(s.e.withNamespace(ctx), fs...)
}

func (s imageStore) Create(ctx context.Context, img images.Image) (images.Image, error) {
	return s.Store.Create(s.e.withNamespace(ctx), img)
}

func (s imageStore) Update(ctx context.Context, img images.Image, fieldpaths ...string) (images.Image, error) {
	return s.Store.Update(s.e.withNamespace(ctx), img, fieldpaths...)
}

func (s imageStore) Delete(ctx context.Context, name string, opts ...images.DeleteOpt) error {
	ctx = s.e.withNamespace(ctx)
	if err := s.Store.Delete(ctx, name, opts...); err != nil {
		return err
	}
	return afterDelete(ctx, s.e, opts, func(do images.DeleteOptions) bool { return do.Synchronous })
}

// afterDelete finishes a delete as containerd's services do: when opts
// ask for a synchronous delete, garbage is collected before it returns.
func afterDelete[D any, O ~func(context.Context, *D) error](ctx context.Context, e *embedded, opts []O, synchronous func(D) bool) error {
	var do D
	for _, o := range opts {
		if err := o(ctx, &do); err != nil {
			return err
		}
	}
	if !synchronous(do) {
		return nil
	}
	_, err := e.collectGarbage(ctx)
	return err
}

// leaseManager is containerd's metadata lease manager in the store's
// namespace by default, collecting garbage before a synchronous delete
// returns, as containerd's leases service does.
type leaseManager struct {
	m leases.Manager
	e *embedded
}

func (l leaseManager) Create(ctx context.Context, opts ...leases.Opt) (leases.Lease, error) {
	return l.m.Create(l.e.withNamespace(ctx), opts...)
}

func (l leaseManager) List(ctx context.Context, fs ...string) ([]leases.Lease, error) {
	return l.m.List(l.e.withNamespace(ctx), fs...)
}

func (l leaseManager) AddResource(ctx context.Context, lease leases.Lease, r leases.Resource) error {
	return l.m.AddResource(l.e.withNamespace(ctx), lease, r)
}

func (l leaseManager) DeleteResource(ctx context.Context, lease leases.Lease, r leases.Resource) error {
	return l.m.DeleteResource(l.e.withNamespace(ctx), lease, r)
}

func (l leaseManager) ListResources(ctx context.Context, lease leases.Lease) ([]leases.Resource, error) {
	return l.m.ListResources(l.e.withNamespace(ctx), lease)
}

func (l leaseManager) Delete(ctx context.Context, lease leases.Lease, opts ...leases.DeleteOpt) error {
	ctx = l.e.withNamespace(ctx)
	if err := l.m.Delete(ctx, lease, opts...); err != nil {
		return err
	}
	return afterDelete(ctx, l.e, opts, func(do leases.DeleteOptions) bool { return do.Synchronous })
}

// diffService applies and computes layers in this process, in the store's
// namespace by default.
type diffService struct {
	applier  diff.Applier
	comparer diff.Comparer
	e        *embedded
}

func (d diffService) Apply(ctx context.Context, desc ocispecs.Descriptor, mounts []mount.Mount, opts ...diff.ApplyOpt) (ocispecs.Descriptor, error) {
	return d.applier.Apply(d.e.withNamespace(ctx), desc, mounts, opts...)
}

func (d diffService) Compare(ctx context.Context, lower, upper []mount.Mount, opts ...diff.Opt) (ocispecs.Descriptor, error) {
	return d.comparer.Compare(d.e.withNamespace(ctx), lower, upper, opts...)
}

// namespaceStore is containerd's metadata namespace store, one bolt
// transaction per call.
type namespaceStore struct{ db *metadata.DB }

func (n namespaceStore) Create(ctx context.Context, namespace string, labels map[string]string) error {
	return n.db.Update(func(tx *bolt.Tx) error { return metadata.NewNamespaceStore(tx).Create(ctx, namespace, labels) })
}

func (n namespaceStore) Labels(ctx context.Context, namespace string) (map[string]string, error) {
	var out map[string]string
	err := n.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = metadata.NewNamespaceStore(tx).Labels(ctx, namespace)
		return err
	})
	return out, err
}

func (n namespaceStore) SetLabel(ctx context.Context, namespace, key, value string) error {
	return n.db.Update(func(tx *bolt.Tx) error { return metadata.NewNamespaceStore(tx).SetLabel(ctx, namespace, key, value) })
}

func (n namespaceStore) List(ctx context.Context) ([]string, error) {
	var out []string
	err := n.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = metadata.NewNamespaceStore(tx).List(ctx)
		return err
	})
	return out, err
}

func (n namespaceStore) Delete(ctx context.Context, namespace string, opts ...namespaces.DeleteOpts) error {
	return n.db.Update(func(tx *bolt.Tx) error { return metadata.NewNamespaceStore(tx).Delete(ctx, namespace, opts...) })
}

// introspection answers containerd's plugin queries for the embedded
// store: its snapshotters, which unpack the host's platform.
type introspection struct{ e *embedded }

func (in introspection) Plugins(ctx context.Context, fs ...string) (*introspectionapi.PluginsResponse, error) {
	filter, err := filters.ParseAll(fs...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	}
	host := platforms.DefaultSpec()
	var names []string
	for name := range in.e.snapshotters {
		names = append(names, name)
	}
	sort.Strings(names)
	resp := &introspectionapi.PluginsResponse{}
	for _, name := range names {
		p := &introspectionapi.Plugin{
			Type:      "io.containerd.snapshotter.v1",
			ID:        name,
			Platforms: []*types.Platform{{OS: host.OS, Architecture: host.Architecture, Variant: host.Variant}},
		}
		adaptor := filters.AdapterFunc(func(path []string) (string, bool) {
			switch {
			case len(path) == 0:
				return "", false
			case path[0] == "type":
				return p.Type, true
			case path[0] == "id":
				return p.ID, true
			}
			return "", false
		})
		if filter.Match(adaptor) {
			resp.Plugins = append(resp.Plugins, p)
		}
	}
	return resp, nil
}

func (introspection) Server(context.Context) (*introspectionapi.ServerResponse, error) {
	return nil, fmt.Errorf("kiln's embedded store is not a containerd server: %w", errdefs.ErrNotImplemented)
}

func (introspection) PluginInfo(context.Context, string, string, any) (*introspectionapi.PluginInfoResponse, error) {
	return nil, fmt.Errorf("kiln's embedded store has no plugin information: %w", errdefs.ErrNotImplemented)
}
