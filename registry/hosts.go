package registry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/distribution/reference"
	"github.com/pelletier/go-toml/v2"

	"github.com/kiln-build/kiln/internal/safeio"
)

// Config says how kiln reaches registries. The zero value reads no hosts
// directory and the default docker config file.
type Config struct {
	// HostsDirs are searched in order for a registry's directory, laid out
	// as containerd and nerdctl read it: a directory named after the
	// registry (HOST, HOST:PORT or HOST_PORT_) holding a hosts.toml
	// (mirrors and their capabilities, ca, client, skip_verify, plain-HTTP
	// hosts, override_path, server), or docker's certs.d files (*.crt CA
	// certificates, *.cert and *.key client pairs). A directory named
	// _default serves registries that have none of their own.
	HostsDirs []string
	// Insecure (--insecure-registry) allows plain HTTP and certificates
	// that do not verify for every registry.
	Insecure bool
	// DockerConfigDir is the docker config directory credentials are read
	// from and stored in; empty means $DOCKER_CONFIG or ~/.docker.
	DockerConfigDir string
	// Warnings receives problems reading the docker config file; nil
	// discards them.
	Warnings io.Writer
}

// defaultHostsDir is a hosts directory's fallback for registries without
// a directory of their own, as containerd names it.
const defaultHostsDir = "_default"

// DefaultHostsDirs are the hosts directories nerdctl reads when none are
// given: containerd's and docker's under /etc, and for an unprivileged
// user first their own under configHome ($XDG_CONFIG_HOME).
func DefaultHostsDirs(rootless bool, configHome string) []string {
	dirs := []string{"/etc/containerd/certs.d", "/etc/docker/certs.d"}
	if rootless {
		return append([]string{filepath.Join(configHome, "containerd", "certs.d")}, dirs...)
	}
	return dirs
}

// hostDir finds the directory that configures host: the first of
// HostsDirs naming it, else the first _default. containerd's
// HostDirFromRoot looks in one root and takes its _default before the next
// root is asked; across several roots, a registry's own directory must win
// over another root's _default.
func (c Config) hostDir(host string) (string, error) {
	fallback := ""
	for _, root := range c.HostsDirs {
		dir, err := config.HostDirFromRoot(root)(host)
		switch {
		case errdefs.IsNotFound(err):
		case err != nil:
			return "", fmt.Errorf("looking for the hosts directory of %s in %s: %w", host, root, err)
		case filepath.Base(dir) == defaultHostsDir:
			if fallback == "" {
				fallback = dir
			}
		default:
			return dir, nil
		}
	}
	if fallback != "" {
		return fallback, nil
	}
	return "", errdefs.ErrNotFound
}

// HostsFile is the hosts.toml that configures registry host: the one kiln
// reads for it, or where the first hosts directory would hold one. It is
// "" when kiln reads no hosts directory.
func (c Config) HostsFile(host string) string {
	if dir, err := c.hostDir(host); err == nil && filepath.Base(dir) != defaultHostsDir {
		return filepath.Join(dir, "hosts.toml")
	}
	if len(c.HostsDirs) == 0 {
		return ""
	}
	return filepath.Join(c.HostsDirs[0], host, "hosts.toml")
}

// RegistryHosts returns the hosts that serve each registry, mirrors first,
// for containerd's resolver and for BuildKit's worker alike: containerd's
// config.ConfigureHosts over HostsDirs. Each host's client logs what it
// served (seen with --debug); the registry's own host, the last one,
// retries requests a bad network broke (see retryTransport), while a
// mirror that fails gives way to the next host at once, as containerd
// falls back. creds looks credentials up by host; nil leaves them to an
// authorizer the caller sets (BuildKit brings its own from the build's
// session). wrap, when set, wraps each host's transport innermost.
func (c Config) RegistryHosts(creds func(host string) (string, string, error), wrap func(http.RoundTripper) http.RoundTripper) docker.RegistryHosts {
	opts := config.HostOptions{HostDir: c.hostDir, Credentials: creds}
	if c.Insecure {
		// As nerdctl's --insecure-registry: skip verification, and where
		// the protocol is not given try HTTPS, then plain HTTP.
		opts.DefaultTLS = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the user asked for --insecure-registry
		opts.DefaultScheme = "http"
	}
	configure := config.ConfigureHosts(context.Background(), opts)
	return func(registry string) ([]docker.RegistryHost, error) {
		if dir, err := c.hostDir(registry); err == nil {
			if err := checkHostsFile(dir); err != nil {
				return nil, err
			}
		}
		hosts, err := configure(registry)
		if err != nil {
			return nil, fmt.Errorf("configuring the hosts of registry %s: %w", registry, err)
		}
		for i := range hosts {
			h := &hosts[i]
			client := *h.Client
			base := client.Transport
			if base == nil {
				base = http.DefaultTransport
			}
			if wrap != nil {
				base = wrap(base)
			}
			role := "mirror"
			if i == len(hosts)-1 {
				role = "registry"
			}
			client.Transport = &hostTransport{base: base, registry: registry, role: role, retry: role == "registry"}
			h.Client = &client
		}
		return hosts, nil
	}
}

// Resolver returns containerd's resolver for the image commands: the hosts
// of RegistryHosts with the credentials of the docker config file. wrap is
// as for RegistryHosts.
func (c Config) Resolver(wrap func(http.RoundTripper) http.RoundTripper) (remotes.Resolver, error) {
	creds, err := c.credentials()
	if err != nil {
		return nil, err
	}
	return docker.NewResolver(docker.ResolverOptions{Hosts: c.RegistryHosts(creds, wrap)}), nil
}

// hostsFile is what kiln checks of a hosts.toml before containerd reads
// it: containerd drops a whole file it cannot parse, with only a log line,
// and then uses the directory's certificate files instead, so a typo would
// silently send kiln to the registry itself.
type hostsFile struct {
	Server       string               `toml:"server"`
	Capabilities []string             `toml:"capabilities"`
	DialTimeout  string               `toml:"dial_timeout"`
	Host         map[string]hostEntry `toml:"host"`
}

type hostEntry struct {
	Capabilities []string `toml:"capabilities"`
	DialTimeout  string   `toml:"dial_timeout"`
}

// hostsFileLimit bounds the hosts.toml kiln reads: a few hosts take a few
// hundred bytes.
const hostsFileLimit = 1 << 20

// checkHostsFile reports what in dir's hosts.toml containerd would reject.
// It reads only a regular file, bounded, so that a named pipe there cannot
// hang kiln (containerd would block reading it).
func checkHostsFile(dir string) error {
	path := filepath.Join(dir, "hosts.toml")
	b, err := safeio.ReadFile(context.Background(), path, hostsFileLimit)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	var f hostsFile
	if err := toml.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("%s is not valid: %s: fix the file (see containerd's docs/hosts.md)", path, strings.Join(strings.Fields(err.Error()), " "))
	}
	check := func(where string, caps []string, timeout string) error {
		for _, c := range caps {
			switch strings.ToLower(c) {
			case "pull", "resolve", "push", "referrers":
			default:
				return fmt.Errorf("%s: unknown capability %q%s: use pull, resolve, push or referrers", path, c, where)
			}
		}
		if timeout != "" {
			if _, err := time.ParseDuration(timeout); err != nil {
				return fmt.Errorf("%s: dial_timeout %q%s is not a duration such as \"5s\"", path, timeout, where)
			}
		}
		return nil
	}
	if err := check("", f.Capabilities, f.DialTimeout); err != nil {
		return err
	}
	for name, h := range f.Host {
		if err := check(fmt.Sprintf(" for host %q", name), h.Capabilities, h.DialTimeout); err != nil {
			return err
		}
		if err := checkServerURL(name); err != nil {
			return fmt.Errorf("%s: host %q: %w", path, name, err)
		}
	}
	if f.Server != "" {
		if err := checkServerURL(f.Server); err != nil {
			return fmt.Errorf("%s: server %q: %w", path, f.Server, err)
		}
	}
	return nil
}

func checkServerURL(s string) error {
	if !strings.HasPrefix(s, "http") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Host == "" {
		return fmt.Errorf("no host in it: write https://HOST[:PORT] or http://HOST[:PORT]")
	}
	return nil
}

// Host returns the registry of an image name as docker normalises it:
// "docker.io" for "app", "registry.example.com:5000" for
// "registry.example.com:5000/team/app:1". A name that does not parse is
// returned as it is.
func Host(name string) string {
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return name
	}
	return reference.Domain(named)
}

// hostTransport is one host's transport: it logs each request with the
// host that served it, and for the registry's own host retries requests a
// bad network broke.
type hostTransport struct {
	base     http.RoundTripper
	registry string
	role     string // "mirror" or "registry"
	retry    bool
}

func (t *hostTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	attempts := 1
	if t.retry && replayable(req) {
		attempts += maxRetries
	}
	for i := 0; ; i++ {
		resp, err := t.base.RoundTrip(req)
		t.log(req, resp, err)
		if i+1 >= attempts || !retryableResponse(resp, err) {
			return resp, err
		}
		wait := retryDelay(i, resp)
		if resp != nil {
			// Drained, so that the connection is reused.
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		log.G(req.Context()).Debugf("registry %s: retrying %s %s in %v", t.registry, req.Method, req.URL.Redacted(), wait)
		select {
		case <-req.Context().Done():
			return nil, req.Context().Err()
		case <-time.After(wait):
		}
		if req.Body != nil && req.Body != http.NoBody {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
	}
}

// log says, with --debug, which host served a request of which registry.
func (t *hostTransport) log(req *http.Request, resp *http.Response, err error) {
	outcome, u := "", req.URL
	if err != nil {
		outcome = err.Error()
	} else {
		outcome = resp.Status
		if resp.Request != nil && resp.Request.URL != nil {
			u = resp.Request.URL // where an HTTPS-then-HTTP fallback went
		}
	}
	log.G(req.Context()).Debugf("registry %s: %s %s %s: %s", t.registry, t.role, req.Method, u.Redacted(), outcome)
}
