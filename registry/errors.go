package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/errdefs"

	"github.com/kiln-build/kiln/internal/errmsg"
)

// AuthError is a registry refusing kiln: it wants credentials, or refused
// the ones the docker config file gave. The command line adds how to log
// in.
type AuthError struct {
	// Host is the registry, Op "pull" or "push", Name the image.
	Host, Op, Name string
	Err            error
}

func (e *AuthError) Error() string {
	return flatten(fmt.Sprintf("registry %s refused to let kiln %s %s (%v)", e.Host, e.Op, e.Name, e.Err))
}

// Unwrap returns the registry's refusal.
func (e *AuthError) Unwrap() error { return e.Err }

// CertificateError is a registry (or one of its mirrors) whose TLS
// certificate is signed by an authority this host does not trust. The
// command line adds how to trust it, in HostsFile when there is one.
type CertificateError struct {
	// Registry is the registry of the image; Server the host whose
	// certificate failed, the registry itself or a mirror of it.
	Registry, Server string
	// HostsFile is the hosts.toml that configures Registry (see
	// Config.HostsFile); "" when kiln reads no hosts directory.
	HostsFile string
	// Build says that a build failed on it (BuildKit's message), not an
	// image command.
	Build bool
	Err   error
}

func (e *CertificateError) Error() string {
	who := "registry " + e.Registry
	if e.Mirror() {
		who += " (served by " + e.Server + ")"
	}
	return flatten(fmt.Sprintf("%s presented a TLS certificate signed by an unknown authority (%s)", who, lastCause(e.Err.Error())))
}

// Mirror says that the certificate is a mirror's, not the registry's own.
func (e *CertificateError) Mirror() bool { return e.Server != e.Registry }

// Unwrap returns the TLS error.
func (e *CertificateError) Unwrap() error { return e.Err }

// UnreachableError is a registry that does not answer, or not over HTTPS.
// The command line adds what to check and how to allow plain HTTP.
type UnreachableError struct {
	Host string
	// TLS: the problem is HTTPS (the registry may serve plain HTTP);
	// otherwise the network.
	TLS bool
	// Loopback: Host is on this machine, where kiln tries HTTPS, then
	// plain HTTP, already.
	Loopback bool
	// HostsFile is the hosts.toml that configures Host (see
	// Config.HostsFile); "" when kiln reads no hosts directory.
	HostsFile string
	Err       error
}

// Error is one line, whatever the cause says.
func (e *UnreachableError) Error() string {
	if e.TLS {
		return flatten(fmt.Sprintf("cannot reach registry %s over HTTPS (%v)", e.Host, e.Err))
	}
	return flatten(fmt.Sprintf("cannot reach registry %s (%v)", e.Host, e.Err))
}

// Unwrap returns the network's or TLS's error.
func (e *UnreachableError) Unwrap() error { return e.Err }

// Explain turns an error from talking to the registry of image name into
// one line that says what to do. op is "pull" or "push". An error it does
// not recognise is returned with the operation and name around it.
func (c Config) Explain(op, name string, err error) error {
	return c.explain(Host(name), op, name, err)
}

// explain is Explain with the registry host given.
func (c Config) explain(host, op, name string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var status remoteerrors.ErrUnexpectedStatus
	hasStatus := errors.As(err, &status)
	switch {
	case errors.Is(err, docker.ErrInvalidAuthorization) || (hasStatus && (status.StatusCode == http.StatusUnauthorized || status.StatusCode == http.StatusForbidden)):
		return &AuthError{Host: host, Op: op, Name: name, Err: err}
	case unknownAuthority(err):
		return &CertificateError{Registry: host, Server: serverOf(err, host), HostsFile: c.HostsFile(host), Err: err}
	case isTLSProblem(err):
		return &UnreachableError{Host: host, TLS: true, HostsFile: c.HostsFile(host), Err: err}
	case isNetworkProblem(err):
		return &UnreachableError{Host: host, Loopback: docker.IsLocalhost(host), HostsFile: c.HostsFile(host), Err: innermostNetError(err)}
	case op == "pull" && errdefs.IsNotFound(err):
		return errmsg.New(fmt.Sprintf("image %s not found in registry %s: check the name and tag", name, host), err)
	}
	if op == "log in" {
		return oneLine(fmt.Errorf("logging in to registry %s: %w", host, err))
	}
	return oneLine(fmt.Errorf("%sing %s (registry %s): %w", op, name, host, err))
}

// ExplainMessage is Explain for a failure known only by its message, as
// BuildKit's errors reach kiln through gRPC. It returns nil when msg shows
// neither a refusal nor an untrusted certificate.
func (c Config) ExplainMessage(op, name, msg string) error {
	host := Host(name)
	cause := errors.New(lastCause(msg))
	switch {
	case unknownAuthorityText().MatchString(msg):
		server := host
		if m := requestURL().FindStringSubmatch(msg); m != nil {
			server = m[1]
		}
		if server == "registry-1.docker.io" {
			server = host
		}
		return &CertificateError{Registry: host, Server: server, HostsFile: c.HostsFile(host), Build: true, Err: cause}
	case authText().MatchString(msg):
		return &AuthError{Host: host, Op: op, Name: name, Err: cause}
	}
	return nil
}

var (
	unknownAuthorityText = errmsg.Pattern(`x509: certificate signed by unknown authority|certificate is not trusted`)
	authText             = errmsg.Pattern(`(?i)\b401 Unauthorized|\b403 Forbidden|authorization failed|authentication required|insufficient_scope|no basic auth credentials|(?:pull|push) access denied`)
	requestURL           = errmsg.Pattern(`https://([^/"\s]+)/`)
)

func unknownAuthority(err error) bool {
	var ua x509.UnknownAuthorityError
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) {
		if errors.As(cv.Err, &ua) {
			return true
		}
	}
	return errors.As(err, &ua) || unknownAuthorityText().MatchString(err.Error())
}

// serverOf is the host of the request that failed, else the registry.
func serverOf(err error, registry string) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil && u.Host != "" && u.Host != "registry-1.docker.io" {
			return u.Host
		}
	}
	return registry
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
	if !strings.ContainsAny(msg, "\r\n\t") {
		return err
	}
	return errmsg.New(flatten(msg), err)
}

func flatten(s string) string {
	if !strings.ContainsAny(s, "\r\n\t") {
		return s
	}
	return strings.Join(strings.Fields(s), " ")
}

// lastCause is the innermost part of a chain of "doing x: doing y: cause",
// keeping x509's own "x509: ..." whole.
func lastCause(msg string) string {
	if i := strings.Index(msg, "x509: "); i >= 0 {
		return msg[i:]
	}
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return msg
}
