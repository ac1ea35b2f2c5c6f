package registry

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestServerAddress(t *testing.T) {
	for in, want := range map[string][2]string{
		"":                             {dockerHubKey, "docker.io"},
		"docker.io":                    {dockerHubKey, "docker.io"},
		"https://index.docker.io/v1/":  {dockerHubKey, "docker.io"},
		"registry-1.docker.io":         {dockerHubKey, "docker.io"},
		"registry.example.com":         {"registry.example.com", "registry.example.com"},
		"https://127.0.0.1:5000/":      {"127.0.0.1:5000", "127.0.0.1:5000"},
		"registry.example.com:5000/v2": {"registry.example.com:5000", "registry.example.com:5000"},
	} {
		if k, h := ServerAddress(in); k != want[0] || h != want[1] {
			t.Errorf("ServerAddress(%q) = %q, %q; want %q", in, k, h, want)
		}
	}
}

// TestLoginLogout: kiln login checks the credentials against the registry
// and stores them as docker does; the image commands then use them;
// logout removes them.
func TestLoginLogout(t *testing.T) {
	reg := &fakeRegistry{user: "ci", password: "s3cret"}
	addr := plainServer(t, reg)
	dir := t.TempDir()
	cfg := Config{DockerConfigDir: dir}
	ctx := context.Background()
	name := addr + "/team/app:1"

	if err := resolve(t, cfg, name); err == nil {
		t.Fatal("the registry let an anonymous client in")
	}
	_, err := cfg.Login(ctx, addr, "ci", "wrong")
	var le *LoginError
	if !errors.As(err, &le) || le.Host != addr {
		t.Fatalf("Login with a wrong password = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err == nil {
		t.Fatal("refused credentials were stored")
	}
	where, err := cfg.Login(ctx, "http://"+addr, "ci", "s3cret")
	if err != nil || where != filepath.Join(dir, "config.json") {
		t.Fatalf("Login = %q, %v", where, err)
	}
	var file struct {
		Auths map[string]struct{ Auth string } `json:"auths"`
	}
	b, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	if err := json.Unmarshal(b, &file); err != nil || file.Auths[addr].Auth == "" {
		t.Fatalf("config.json after login: %s (%v)", b, err)
	}
	if u, p, err := cfg.StoredLogin(addr); u != "ci" || p != "s3cret" || err != nil {
		t.Errorf("StoredLogin = %q, %q, %v", u, p, err)
	}
	if err := resolve(t, cfg, name); err != nil {
		t.Fatalf("after login: %v", err)
	}
	if found, err := cfg.Logout(addr); !found || err != nil {
		t.Fatalf("Logout = %v, %v", found, err)
	}
	if found, err := cfg.Logout(addr); found || err != nil {
		t.Fatalf("second Logout = %v, %v", found, err)
	}
	err = cfg.Explain("pull", name, resolve(t, cfg, name))
	var ae *AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("after logout: %v, want the registry's refusal", err)
	}

	// A registry that wants no credentials takes any, as with docker.
	open := plainServer(t, &fakeRegistry{})
	if _, err := cfg.Login(ctx, open, "anyone", "x"); err != nil {
		t.Errorf("login to an open registry: %v", err)
	}
}
