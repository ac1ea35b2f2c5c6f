package engine

import (
	"context"
	"io"

	"github.com/moby/buildkit/worker/base"

	"github.com/kiln-build/kiln/cgroup"
	"github.com/kiln-build/kiln/snapshot"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/usage"
)

// backend is the store BuildKit runs on: a containerd (containerdBackend)
// or kiln's embedded store (embeddedBackend). Config.backend chooses one,
// once; what differs between the two is behind these methods, and the
// lifecycle around them (open, Close, the state directory, the build cache
// commands, kiln info) is written once, as BuildKit's containerd and OCI
// workers each produce a WorkerOpt for one base.NewWorker.
type backend interface {
	// runnable fails when build steps cannot run on the backend here.
	runnable() error
	// open opens the store. The embedded store takes the state
	// directory's lock first (waiting, and saying so on stderr, while
	// another kiln holds it); closing the store releases it.
	open(ctx context.Context, stderr io.Writer) (*store.Store, error)
	// snapshotter checks the snapshotter the user chose, or picks one.
	snapshotter(ctx context.Context, st *store.Store) (snapshot.Choice, error)
	// hold takes what a process running BuildKit on the open store holds
	// besides what open took, and removes what a killed kiln left there;
	// release gives back what hold took.
	hold(ctx context.Context, st *store.Store, stderr io.Writer) (release func(), err error)
	// workerOpt describes BuildKit's worker on the store, with its state
	// in the namespace's state directory state and steps on snapshotter,
	// inside the build's budget when it has one.
	workerOpt(st *store.Store, state, snapshotter string, budget *cgroup.Group) (base.WorkerOpt, error)
	// workerName names the worker in errors.
	workerName() string
	// describe fills in what kiln info says about the store, the
	// snapshotter and the state directory. It takes no lock, so that it
	// answers during a build.
	describe(ctx context.Context, info *Info) error
}

// Selection says which store the options select, and why: containerd or
// the embedded store (see store.Select). It is the one place kiln decides;
// every command that opens a store or starts BuildKit goes through it.
func (c Config) Selection() (store.Selection, error) {
	if c.Kubernetes {
		if c.Namespace != store.KubernetesNamespace {
			return store.Selection{}, usage.Wrap(&KubernetesNamespaceError{Namespace: c.Namespace})
		}
		return store.SelectKubernetes(c.Store, c.Address, c.AddressSet)
	}
	return store.Select(c.Store, c.Address, c.AddressSet)
}

// backend returns the backend of the store the options select.
func (c Config) backend() (backend, store.Selection, error) {
	sel, err := c.Selection()
	if err != nil {
		return nil, sel, err
	}
	if sel.Embedded() {
		return embeddedBackend{cfg: c}, sel, nil
	}
	if sel.Address != "" {
		// The socket chosen, which may be a Kubernetes distribution's
		// in place of the one asked for (see store.Select).
		c.Address = sel.Address
	}
	return containerdBackend{cfg: c}, sel, nil
}

// OpenStore opens the store the global options select, for the image
// commands: the containerd at cfg.Address, which never waits, or the
// embedded store under cfg.Root, whose lock it takes first, waiting (and
// saying so on stderr) while another kiln process uses that state
// directory. Closing the store releases the lock.
func OpenStore(ctx context.Context, cfg Config, stderr io.Writer) (*store.Store, error) {
	b, sel, err := cfg.backend()
	if err != nil {
		return nil, err
	}
	if sel.Embedded() {
		if cfg, err = cfg.withClaimedRoot(); err != nil {
			return nil, err
		}
		b, _, _ = cfg.backend() // the same choice, on the root's real path
	}
	return b.open(ctx, stderr)
}

// withClaimedRoot returns c with Root checked to be kiln's own (see
// claimRoot), created when missing, and replaced by its real path, which
// every later step uses. Every command that writes under Root goes through
// it first.
func (c Config) withClaimedRoot() (Config, error) {
	real, err := claimRoot(c.Root)
	if err != nil {
		return c, err
	}
	c.Root = real
	return c, nil
}

// UnpackSnapshotter returns the snapshotter that images stored in st, of
// the store cfg selects, are unpacked into: the one builds run on, or
// cfg.Snapshotter when that cannot be told.
func UnpackSnapshotter(ctx context.Context, cfg Config, st *store.Store) string {
	b, _, err := cfg.backend()
	if err != nil {
		return cfg.Snapshotter
	}
	choice, err := b.snapshotter(ctx, st)
	if err != nil {
		return cfg.Snapshotter
	}
	return choice.Name
}
