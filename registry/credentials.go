package registry

import (
	"fmt"
	"io"
	"sync"

	dockerconfig "github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
)

// dockerHubKey is the key docker stores Docker Hub's credentials under,
// its historical index address.
const dockerHubKey = "https://index.docker.io/v1/"

// loadDockerConfig reads the docker config file of c.DockerConfigDir, or
// the default one ($DOCKER_CONFIG/config.json or ~/.docker/config.json).
func (c Config) loadDockerConfig() (*configfile.ConfigFile, error) {
	if c.DockerConfigDir != "" {
		cfg, err := dockerconfig.Load(c.DockerConfigDir)
		if err != nil {
			return nil, fmt.Errorf("reading the docker config file in %s: %w", c.DockerConfigDir, err)
		}
		return cfg, nil
	}
	warnings := c.Warnings
	if warnings == nil {
		warnings = io.Discard
	}
	return dockerconfig.LoadDefaultConfigFile(warnings), nil
}

// credentials returns the lookup containerd's authorizer calls with a
// registry host: the docker config file and the credential helpers it
// names, as docker login writes them.
func (c Config) credentials() (func(string) (string, string, error), error) {
	cfg, err := c.loadDockerConfig()
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	return func(host string) (string, string, error) {
		mu.Lock()
		defer mu.Unlock()
		return hostCredentials(cfg, host)
	}, nil
}

// hostCredentials looks up a registry host's credentials in the docker
// config (and its credential helpers). Docker Hub's hosts share the
// credentials of docker.io.
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
