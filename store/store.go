// Package store owns where kiln's images live: the connection to containerd,
// its namespace, and the naming of images in it.
package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/identifiers"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/kiln-build/kiln/rootless"
)

// DefaultAddress is containerd's socket as nerdctl and ctr use it.
const DefaultAddress = "/run/containerd/containerd.sock"

// DefaultNamespace is the containerd namespace nerdctl and ctr use.
const DefaultNamespace = "default"

// connectTimeout bounds how long kiln waits for containerd to answer, so a
// wrong address fails fast instead of hanging a script.
const connectTimeout = 10 * time.Second

// Store is an open connection to a containerd image store in one namespace,
// or kiln's embedded store (see OpenEmbedded).
type Store struct {
	client    *containerd.Client
	address   string
	namespace string
	version   containerd.Version
	embedded  *embedded
}

// Open connects to the containerd at address and checks that it answers.
// The error says what the user can do when it does not.
func Open(ctx context.Context, address, namespace string) (*Store, error) {
	address = TrimScheme(address)
	if err := checkSocket(address); err != nil {
		return nil, err
	}
	if err := identifiers.Validate(namespace); err != nil {
		return nil, fmt.Errorf("invalid containerd namespace %q: use letters, digits, '.', '_' and '-': %w", namespace, err)
	}
	c, err := containerd.New(address, containerd.WithDefaultNamespace(namespace), containerd.WithTimeout(connectTimeout))
	if err != nil {
		return nil, unreachable(address, err)
	}
	vctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	v, err := c.Version(vctx)
	if err != nil {
		c.Close()
		return nil, unreachable(address, err)
	}
	if err := checkVersion(address, v.Version); err != nil {
		c.Close()
		return nil, err
	}
	return &Store{client: c, address: address, namespace: namespace, version: v}, nil
}

// minVersion is the oldest containerd kiln works with: BuildKit's worker
// needs the leases, transfer-free content and introspection APIs of 1.6.
var minVersion = [2]int{1, 6}

// checkVersion refuses a containerd older than minVersion. Versions that do
// not parse (development builds) are given the benefit of the doubt.
func checkVersion(address, version string) error {
	major, minor, ok := parseVersion(version)
	if !ok {
		return nil
	}
	if major < minVersion[0] || major == minVersion[0] && minor < minVersion[1] {
		return fmt.Errorf("containerd %s at %s is too old: kiln needs containerd %d.%d or newer; upgrade it", version, address, minVersion[0], minVersion[1])
	}
	return nil
}

func parseVersion(v string) (major, minor int, ok bool) {
	v = strings.TrimPrefix(v, "v")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	var err1, err2 error
	major, err1 = strconv.Atoi(parts[0])
	minor, err2 = strconv.Atoi(strings.TrimRightFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	return major, minor, err1 == nil && err2 == nil
}

// TrimScheme removes a unix:// prefix, which nerdctl accepts in addresses.
func TrimScheme(address string) string {
	return strings.TrimPrefix(address, "unix://")
}

func checkSocket(address string) error {
	fi, err := os.Stat(address)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// An unprivileged user's kiln explains what is missing of their
		// rootless containerd.
		if rerr := rootless.SocketMissing(address); rerr != nil {
			return rerr
		}
		return &SocketError{Address: address, Missing: true}
	case errors.Is(err, fs.ErrPermission):
		return &PermissionError{Address: address, Rootless: rootless.Enabled()}
	case err != nil:
		return fmt.Errorf("cannot reach containerd at %s: %w", address, err)
	case fi.Mode()&fs.ModeSocket == 0:
		return &SocketError{Address: address}
	}
	return nil
}

func unreachable(address string, err error) error {
	if strings.Contains(err.Error(), "permission denied") {
		return &PermissionError{Address: address}
	}
	// A socket left by a rootless containerd that is gone.
	if rerr := rootless.NotRunning(address); rerr != nil {
		return rerr
	}
	return fmt.Errorf("containerd at %s does not answer: check that it is running (\"systemctl status containerd\"): %w", address, err)
}

// Client returns the containerd client; its default namespace is the store's.
func (s *Store) Client() *containerd.Client { return s.client }

// Address returns the containerd socket path; "" for the embedded store.
func (s *Store) Address() string { return s.address }

// Namespace returns the containerd namespace images are stored in.
func (s *Store) Namespace() string { return s.namespace }

// Version returns the version containerd reported when the store was opened.
func (s *Store) Version() containerd.Version { return s.version }

// EmbeddedID is the ID of kiln's embedded store (see Store.ID).
const EmbeddedID = "embedded"

// ID names the store for state kept about it outside it, such as BuildKit's
// cache records, which are only valid with the store's own content and
// snapshots. A containerd is named by the UUID it keeps in its root,
// "containerd-<UUID>": two sockets of one containerd give one ID, and a
// containerd whose root was wiped gives a new one, as a socket path would
// not. The embedded store is EmbeddedID. The ID is a valid path component.
func (s *Store) ID(ctx context.Context) (string, error) {
	if s.embedded != nil {
		return EmbeddedID, nil
	}
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	info, err := s.client.IntrospectionService().Server(ctx)
	if err != nil {
		return "", fmt.Errorf("asking containerd at %s for its UUID: %w", s.address, err)
	}
	id := "containerd-" + info.UUID
	if info.UUID == "" || identifiers.Validate(id) != nil {
		return "", fmt.Errorf("containerd at %s reports the UUID %q, which kiln cannot name its build cache after: kiln needs a containerd 1.6 or newer", s.address, info.UUID)
	}
	return id, nil
}

// WithNamespace returns ctx set to the store's namespace.
func (s *Store) WithNamespace(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, s.namespace)
}

// withLease returns ctx set to the store's namespace and holding a new
// containerd lease, so that content a pull, push, load or copy writes is not
// garbage collected before an image names it. release drops the lease; it
// works even after ctx is cancelled, so defer it at once.
func (s *Store) withLease(ctx context.Context) (_ context.Context, release func(), _ error) {
	ctx, done, err := s.client.WithLease(s.WithNamespace(ctx))
	if err != nil {
		return nil, nil, err
	}
	return ctx, func() { _ = done(context.WithoutCancel(ctx)) }, nil
}

// Close closes the connection to containerd, or the embedded store.
func (s *Store) Close() error {
	err := s.client.Close()
	if s.embedded != nil {
		err = errors.Join(err, s.embedded.close(context.Background()))
	}
	return err
}
