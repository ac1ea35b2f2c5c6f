// Package store owns where kiln's images live: the connection to containerd,
// its namespace, and the naming of images in it.
package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/identifiers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
)

// DefaultAddress is containerd's socket as nerdctl and ctr use it.
const DefaultAddress = "/run/containerd/containerd.sock"

// DefaultNamespace is the containerd namespace nerdctl and ctr use.
const DefaultNamespace = "default"

// connectTimeout bounds how long kiln waits for containerd to answer, so a
// wrong address fails fast instead of hanging a script.
const connectTimeout = 10 * time.Second

// Store is an open connection to a containerd image store in one namespace.
type Store struct {
	client    *containerd.Client
	address   string
	namespace string
	version   containerd.Version
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
	return &Store{client: c, address: address, namespace: namespace, version: v}, nil
}

// TrimScheme removes a unix:// prefix, which nerdctl accepts in addresses.
func TrimScheme(address string) string {
	return strings.TrimPrefix(address, "unix://")
}

func checkSocket(address string) error {
	fi, err := os.Stat(address)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("containerd is not running at %s (no such socket): start it (for example \"systemctl start containerd\") or point --address / CONTAINERD_ADDRESS at its socket", address)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("cannot reach containerd at %s: permission denied: run kiln as root, or as a member of the socket's group", address)
	case err != nil:
		return fmt.Errorf("cannot reach containerd at %s: %w", address, err)
	case fi.Mode()&fs.ModeSocket == 0:
		return fmt.Errorf("containerd address %s is not a socket: point --address / CONTAINERD_ADDRESS at containerd's socket (usually %s)", address, DefaultAddress)
	}
	return nil
}

func unreachable(address string, err error) error {
	return fmt.Errorf("containerd at %s does not answer: check that it is running (\"systemctl status containerd\"): %w", address, err)
}

// Client returns the containerd client; its default namespace is the store's.
func (s *Store) Client() *containerd.Client { return s.client }

// Address returns the containerd socket path.
func (s *Store) Address() string { return s.address }

// Namespace returns the containerd namespace images are stored in.
func (s *Store) Namespace() string { return s.namespace }

// Version returns the version containerd reported when the store was opened.
func (s *Store) Version() containerd.Version { return s.version }

// WithNamespace returns ctx set to the store's namespace.
func (s *Store) WithNamespace(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, s.namespace)
}

// Close closes the connection to containerd.
func (s *Store) Close() error { return s.client.Close() }
