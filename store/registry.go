package store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	dockerconfig "github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	units "github.com/docker/go-units"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/internal/errmsg"
)

// RegistryOptions say how kiln talks to registries. Credentials come from
// the docker config file ($DOCKER_CONFIG/config.json or
// ~/.docker/config.json) and the credential helpers it names, as docker
// login writes them. Registries on loopback addresses (localhost,
// 127.0.0.1, ::1, any port) are reached over plain HTTP.
type RegistryOptions struct {
	// Insecure allows plain HTTP and TLS certificates that do not verify
	// for every registry, not only loopback ones.
	Insecure bool
	// ConfigDir is the docker config directory; empty means the default.
	ConfigDir string
	// Warnings receives problems reading the docker config file; nil
	// discards them.
	Warnings io.Writer
}

// resolver builds a containerd resolver with kiln's registry settings.
func (o RegistryOptions) resolver() (remotes.Resolver, error) {
	creds, err := o.credentials()
	if err != nil {
		return nil, err
	}
	transport := docker.DefaultHTTPTransport(nil)
	plainHTTP := docker.MatchLocalhost
	var rt http.RoundTripper = transport
	if o.Insecure {
		transport.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the user asked for --insecure-registry
		rt = docker.NewHTTPFallback(transport)
	}
	client := &http.Client{Transport: manifestLimit{rt}}
	authorizer := docker.NewDockerAuthorizer(docker.WithAuthClient(client), docker.WithAuthCreds(creds))
	hosts := docker.ConfigureDefaultRegistries(
		docker.WithClient(client),
		docker.WithAuthorizer(authorizer),
		docker.WithPlainHTTP(plainHTTP),
	)
	return docker.NewResolver(docker.ResolverOptions{Hosts: hosts}), nil
}

// credentials returns the lookup the authorizer calls with a registry host.
func (o RegistryOptions) credentials() (func(string) (string, string, error), error) {
	warnings := o.Warnings
	if warnings == nil {
		warnings = io.Discard
	}
	var cfg *configfile.ConfigFile
	if o.ConfigDir != "" {
		var err error
		if cfg, err = dockerconfig.Load(o.ConfigDir); err != nil {
			return nil, fmt.Errorf("reading the docker config file in %s: %w", o.ConfigDir, err)
		}
	} else {
		cfg = dockerconfig.LoadDefaultConfigFile(warnings)
	}
	var mu sync.Mutex
	return func(host string) (string, string, error) {
		mu.Lock()
		defer mu.Unlock()
		return hostCredentials(cfg, host)
	}, nil
}

// hostCredentials looks up a registry host's credentials in the docker
// config (and its credential helpers). Docker Hub's are stored under its
// historical index address.
func hostCredentials(cfg *configfile.ConfigFile, host string) (string, string, error) {
	key := host
	if host == "registry-1.docker.io" || host == "index.docker.io" {
		key = "docker.io"
	}
	ac, err := cfg.GetAuthConfig(key)
	if err != nil {
		return "", "", fmt.Errorf("reading credentials for %s from the docker config (credential helper): %w", host, err)
	}
	if ac.IdentityToken != "" {
		return "", ac.IdentityToken, nil
	}
	return ac.Username, ac.Password, nil
}

// registryHost returns the registry part of a normalised name.
func registryHost(name string) string {
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return name
	}
	return reference.Domain(named)
}

// registryError turns an error from talking to a registry into one line
// that says what to do. op is "pull" or "push".
func registryError(op, name string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	host := registryHost(name)
	var large *ManifestTooLargeError
	if errors.As(err, &large) {
		return errmsg.New(fmt.Sprintf("registry %s sent a manifest for %s that kiln refuses: %s; the registry or the image is broken", host, name, large.Error()), err)
	}
	var status remoteerrors.ErrUnexpectedStatus
	hasStatus := errors.As(err, &status)
	switch {
	case errors.Is(err, docker.ErrInvalidAuthorization) || (hasStatus && (status.StatusCode == http.StatusUnauthorized || status.StatusCode == http.StatusForbidden)):
		return oneLine(fmt.Errorf("registry %s refused to let kiln %s %s (%w): log in with \"docker login %s\" (kiln reads the docker config file and its credential helpers) or check that the repository exists and you may %s it",
			host, op, name, err, host, op))
	case isTLSProblem(err):
		return &UnreachableError{Host: host, TLS: true, Err: err}
	case isNetworkProblem(err):
		loopback, _ := docker.MatchLocalhost(host)
		return &UnreachableError{Host: host, Loopback: loopback, Err: innermostNetError(err)}
	case op == "pull" && errdefs.IsNotFound(err):
		return errmsg.New(fmt.Sprintf("image %s not found in registry %s: check the name and tag", name, host), err)
	}
	return oneLine(fmt.Errorf("%sing %s (registry %s): %w", op, name, host, err))
}

func isTLSProblem(err error) bool {
	var rh tls.RecordHeaderError
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &rh) || errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci) ||
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") ||
		strings.Contains(err.Error(), "tls: ")
}

func isNetworkProblem(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	var ue *url.Error
	return errors.As(err, &op) || errors.As(err, &dns) || (errors.As(err, &ue) && ue.Timeout()) || os.IsTimeout(err)
}

// innermostNetError keeps "dial tcp 127.0.0.1:1: connect: connection
// refused" of a long URL error; it still wraps the whole error.
func innermostNetError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return errmsg.New(op.Error(), err)
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return errmsg.New(dns.Error(), err)
	}
	return err
}

// oneLine flattens an error's message to one line (registries put JSON
// bodies with newlines in theirs) and keeps it unwrappable.
func oneLine(err error) error {
	msg := err.Error()
	if flat := flatten(msg); flat != msg {
		return errmsg.New(flat, err)
	}
	return err
}

// progress writes one line per blob event, safe for concurrent use.
type progress struct {
	mu sync.Mutex
	w  io.Writer
}

func newProgress(w io.Writer) *progress {
	if w == nil {
		w = io.Discard
	}
	return &progress{w: w}
}

func (p *progress) blob(verb string, d ocispecs.Descriptor) {
	p.printf("%-8s %-9s %s  %s\n", verb, blobKind(d.MediaType), shortBlobDigest(blobOf(d)), units.HumanSizeWithPrecision(float64(d.Size), 3))
}

func (p *progress) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

// progressFetcher reports each download as it starts.
type progressFetcher struct {
	remotes.Fetcher
	p       *progress
	started sync.Map // digest.Digest -> true
}

func (f *progressFetcher) Fetch(ctx context.Context, desc ocispecs.Descriptor) (io.ReadCloser, error) {
	f.started.Store(desc.Digest, true)
	f.p.blob("pulling", desc)
	return f.Fetcher.Fetch(ctx, desc)
}

// fetchHandler fetches a blob unless it is present and reports the
// downloads that finished.
func (f *progressFetcher) fetchHandler(ingester content.Ingester) func(context.Context, ocispecs.Descriptor) ([]ocispecs.Descriptor, error) {
	inner := remotes.FetchHandler(ingester, f)
	return func(ctx context.Context, desc ocispecs.Descriptor) ([]ocispecs.Descriptor, error) {
		children, err := inner(ctx, desc)
		if err == nil {
			if _, ok := f.started.LoadAndDelete(desc.Digest); ok {
				f.p.blob("pulled", desc)
			}
		}
		return children, err
	}
}

// progressPusher reports each upload as it starts and ends, and blobs
// the registry already has.
type progressPusher struct {
	remotes.Pusher
	p *progress
}

func (pp progressPusher) Push(ctx context.Context, desc ocispecs.Descriptor) (content.Writer, error) {
	w, err := pp.Pusher.Push(ctx, desc)
	if errdefs.IsAlreadyExists(err) {
		pp.p.blob("exists", desc)
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	pp.p.blob("pushing", desc)
	return &progressWriter{Writer: w, done: func() { pp.p.blob("pushed", desc) }}, nil
}

type progressWriter struct {
	content.Writer
	done func()
}

func (w *progressWriter) Commit(ctx context.Context, size int64, expected digest.Digest, opts ...content.Opt) error {
	err := w.Writer.Commit(ctx, size, expected, opts...)
	if err == nil || errdefs.IsAlreadyExists(err) {
		w.done()
	}
	return err
}
