package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/config/credentials"
	"github.com/docker/cli/cli/config/types"

	"github.com/kiln-build/kiln/usage"
)

// ServerAddress returns the key docker keeps server's credentials under
// and the registry to check them against. Docker Hub (server "",
// docker.io, index.docker.io, registry-1.docker.io or its historical index
// address) is kept under https://index.docker.io/v1/ and checked at
// docker.io; any other server is reduced to HOST[:PORT], as docker login
// stores it.
func ServerAddress(server string) (key, host string) {
	host = credentials.ConvertToHostname(strings.TrimSpace(server))
	switch host {
	case "", "docker.io", "index.docker.io", "registry-1.docker.io":
		return dockerHubKey, "docker.io"
	}
	return host, host
}

// LoginError is a registry refusing the credentials given to kiln login.
type LoginError struct {
	Host, Username string
	Err            error
}

func (e *LoginError) Error() string {
	return flatten(fmt.Sprintf("registry %s refused the credentials of %s (%v): check the user name and the password or access token", e.Host, e.Username, e.Err))
}

// Unwrap returns the registry's refusal.
func (e *LoginError) Unwrap() error { return e.Err }

// Login checks username and password against server's registry, as docker
// login does, through the hosts kiln reaches it by (its hosts.toml), then
// stores them as docker does: with the credential helper the docker config
// file names for the server (credHelpers, else credsStore), or in the file
// itself, where docker's own code warns that they are unencrypted. docker,
// nerdctl and kiln then share the login. It returns where they are kept.
func (c Config) Login(ctx context.Context, server, username, password string) (string, error) {
	if username == "" {
		return "", usage.Errorf("no user name given")
	}
	if strings.TrimSpace(password) == "" {
		return "", usage.Errorf("the password is empty")
	}
	key, host := ServerAddress(server)
	if err := c.verify(ctx, host, username, password); err != nil {
		return "", err
	}
	cfg, err := c.loadDockerConfig()
	if err != nil {
		return "", err
	}
	where := credentialsPlace(cfg, key)
	ac := types.AuthConfig{Username: username, Password: password, ServerAddress: key}
	if err := cfg.GetCredentialsStore(key).Store(ac); err != nil {
		return "", fmt.Errorf("storing the credentials for %s in %s: %w", host, where, err)
	}
	return where, nil
}

// StoredLogin returns the credentials kept for server, if any: docker
// login without a user name tries them first.
func (c Config) StoredLogin(server string) (username, password string, err error) {
	cfg, err := c.loadDockerConfig()
	if err != nil {
		return "", "", err
	}
	key, host := ServerAddress(server)
	ac, err := cfg.GetCredentialsStore(key).Get(key)
	if err != nil {
		return "", "", fmt.Errorf("reading the credentials for %s from %s: %w", host, credentialsPlace(cfg, key), err)
	}
	return ac.Username, ac.Password, nil
}

// Logout removes server's credentials from where docker keeps them, under
// each name docker may have stored them by. It reports whether there were
// any; a server without credentials is not an error.
func (c Config) Logout(server string) (bool, error) {
	cfg, err := c.loadDockerConfig()
	if err != nil {
		return false, err
	}
	key, host := ServerAddress(server)
	keys := []string{key}
	if key != dockerHubKey {
		keys = append(keys, "http://"+key, "https://"+key)
	}
	found := false
	var errs []error
	for _, k := range keys {
		store := cfg.GetCredentialsStore(k)
		if ac, err := store.Get(k); err == nil && (ac.Username != "" || ac.Password != "" || ac.IdentityToken != "" || ac.Auth != "") {
			found = true
		}
		if err := store.Erase(k); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == len(keys) && found {
		return found, fmt.Errorf("removing the credentials for %s from %s: %w", host, credentialsPlace(cfg, key), errors.Join(errs...))
	}
	return found, nil
}

// credentialsPlace names where cfg keeps the credentials of key.
func credentialsPlace(cfg *configfile.ConfigFile, key string) string {
	helper := cfg.CredentialsStore
	if h, ok := cfg.CredentialHelpers[key]; ok && h != "" {
		helper = h
	}
	if key == dockerHubKey {
		if h, ok := cfg.CredentialHelpers["docker.io"]; ok && h != "" {
			helper = h
		}
	}
	if helper != "" {
		return "the credential helper docker-credential-" + helper
	}
	return cfg.Filename
}

// verify asks the registry's /v2/ endpoint with the credentials, as docker
// login does: a registry that wants none accepts any. It asks the registry
// itself, the last of its hosts, not a mirror that only serves pulls.
func (c Config) verify(ctx context.Context, host, username, password string) error {
	hosts, err := c.RegistryHosts(func(string) (string, string, error) { return username, password, nil }, nil)(host)
	if err != nil {
		return err
	}
	if len(hosts) == 0 {
		return fmt.Errorf("the hosts.toml of registry %s names no host to log in to", host)
	}
	h := hosts[len(hosts)-1]
	endpoint := h.Scheme + "://" + h.Host + path.Clean("/"+h.Path) + "/"
	get := func(authorize bool) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
		if err != nil {
			return nil, err
		}
		for k, v := range h.Header {
			req.Header[k] = v
		}
		if authorize {
			if err := h.Authorizer.Authorize(ctx, req); err != nil {
				return nil, err
			}
		}
		return h.Client.Do(req)
	}
	explain := func(err error) error {
		if errors.Is(err, docker.ErrInvalidAuthorization) || authText().MatchString(err.Error()) {
			return &LoginError{Host: host, Username: username, Err: err}
		}
		return c.explain(host, "log in", host, err)
	}
	resp, err := get(false)
	if err != nil {
		return explain(err)
	}
	drain(resp)
	if resp.StatusCode == http.StatusUnauthorized {
		if err := h.Authorizer.AddResponses(ctx, []*http.Response{resp}); err != nil {
			return explain(err)
		}
		if resp, err = get(true); err != nil {
			return explain(err)
		}
		drain(resp)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return &LoginError{Host: host, Username: username, Err: errors.New(resp.Status)}
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return fmt.Errorf("registry %s answered %s at %s: check that %s is a registry", host, resp.Status, endpoint, host)
	}
	return nil
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}
