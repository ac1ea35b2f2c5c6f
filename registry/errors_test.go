package registry

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/errdefs"
	dockerconfig "github.com/docker/cli/cli/config"
)

func TestExplain(t *testing.T) {
	const name = "registry.example.com/team/app:1"
	refused := &url.Error{Op: "Head", URL: "https://registry.example.com/v2/team/app/manifests/1", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	unknownCA := &url.Error{Op: "Head", URL: "https://mirror.example.com/v2/team/app/manifests/1?ns=registry.example.com", Err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}}
	dirs := t.TempDir()
	cfg := Config{HostsDirs: []string{dirs}}
	cases := []struct {
		op   string
		err  error
		want []string
	}{
		{"pull", fmt.Errorf("failed to resolve: %w", refused), []string{"cannot reach registry registry.example.com (dial tcp: connection refused)"}},
		{"pull", &net.DNSError{Err: "no such host", Name: "registry.example.com", IsNotFound: true}, []string{"cannot reach registry registry.example.com", "no such host"}},
		{"push", fmt.Errorf("push access denied: %w", docker.ErrInvalidAuthorization), []string{"registry registry.example.com refused to let kiln push " + name}},
		{"pull", remoteerrors.ErrUnexpectedStatus{StatusCode: 401, Status: "401 Unauthorized"}, []string{"refused to let kiln pull"}},
		{"pull", fmt.Errorf("x: %w", errdefs.ErrNotFound), []string{"image " + name + " not found in registry registry.example.com: check the name and tag"}},
		{"pull", fmt.Errorf("Get: %w", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}), []string{"cannot reach registry registry.example.com over HTTPS (Get: tls: first record does not look like a TLS handshake)"}},
		{"pull", fmt.Errorf("failed to resolve: %w", unknownCA), []string{"registry registry.example.com (served by mirror.example.com) presented a TLS certificate signed by an unknown authority (x509: certificate signed by unknown authority)"}},
		{"push", errors.New("unexpected\nmultiline\tbody"), []string{"pushing " + name + " (registry registry.example.com): unexpected multiline body"}},
	}
	for i, c := range cases {
		got := cfg.Explain(c.op, name, c.err)
		if reflect.TypeOf(c.err).Comparable() && !errors.Is(got, c.err) {
			t.Errorf("case %d: %v does not wrap its cause", i, got)
		}
		if strings.ContainsAny(got.Error(), "\n\t") {
			t.Errorf("case %d: message is not one line: %q", i, got)
		}
		for _, w := range c.want {
			if !strings.Contains(got.Error(), w) {
				t.Errorf("case %d: %q does not contain %q", i, got, w)
			}
		}
	}
	var auth *AuthError
	if err := cfg.Explain("push", name, docker.ErrInvalidAuthorization); !errors.As(err, &auth) || auth.Host != "registry.example.com" || auth.Op != "push" {
		t.Errorf("a refusal is not an *AuthError for the command line's hint: %#v", err)
	}
	// What the command line's hints need to say what to do.
	hostsFile := filepath.Join(dirs, "registry.example.com", "hosts.toml")
	var ue *UnreachableError
	if err := cfg.Explain("pull", name, cases[0].err); !errors.As(err, &ue) || ue.TLS || ue.Loopback || ue.Host != "registry.example.com" || ue.HostsFile != hostsFile {
		t.Errorf("network: %v (%+v)", err, ue)
	}
	loop := cfg.Explain("pull", "127.0.0.1:1/x:1", refused)
	if !errors.As(loop, &ue) || loop.Error() != "cannot reach registry 127.0.0.1:1 (dial tcp: connection refused)" || !ue.Loopback || ue.TLS {
		t.Errorf("loopback: %v (%+v)", loop, ue)
	}
	if err := cfg.Explain("pull", name, cases[5].err); !errors.As(err, &ue) || !ue.TLS || ue.Loopback || ue.HostsFile != hostsFile {
		t.Errorf("TLS: %v (%+v)", err, ue)
	}
	var ce *CertificateError
	if err := cfg.Explain("pull", name, unknownCA); !errors.As(err, &ce) || !ce.Mirror() || ce.Server != "mirror.example.com" || ce.HostsFile != hostsFile || ce.Build {
		t.Errorf("unknown CA: %v (%+v)", err, ce)
	}
	if err := (Config{}).Explain("pull", name, unknownCA); !errors.As(err, &ce) || ce.HostsFile != "" {
		t.Errorf("without hosts directories: %v (%+v)", err, ce)
	}
}

func TestExplainMessage(t *testing.T) {
	dirs := t.TempDir()
	cfg := Config{HostsDirs: []string{dirs}}
	msg := `failed to resolve source metadata for vm:5000/base:1: failed to do request: Head "https://vm:5000/v2/base/manifests/1": tls: failed to verify certificate: x509: certificate signed by unknown authority`
	err := cfg.ExplainMessage("pull", "vm:5000/base:1", msg)
	var ce *CertificateError
	if !errors.As(err, &ce) || ce.Server != "vm:5000" || ce.Registry != "vm:5000" || ce.Mirror() || !ce.Build || ce.HostsFile != filepath.Join(dirs, "vm:5000", "hosts.toml") {
		t.Fatalf("ExplainMessage = %#v", err)
	}
	if want := `registry vm:5000 presented a TLS certificate signed by an unknown authority (x509: certificate signed by unknown authority)`; err.Error() != want {
		t.Errorf("message:\n%s\nwant\n%s", err, want)
	}
	var ae *AuthError
	if err := cfg.ExplainMessage("push", "registry.example.com/a:1", "failed to authorize: failed to fetch oauth token: unexpected status: 401 Unauthorized"); !errors.As(err, &ae) || ae.Host != "registry.example.com" {
		t.Errorf("a 401 is not an *AuthError: %#v", err)
	}
	if err := cfg.ExplainMessage("pull", "a:1", "failed to copy: no space left on device"); err != nil {
		t.Errorf("an unrelated failure was explained: %v", err)
	}
}

func TestHostCredentials(t *testing.T) {
	dir := t.TempDir()
	auth := func(u, p string) string { return base64.StdEncoding.EncodeToString([]byte(u + ":" + p)) }
	cfg := fmt.Sprintf(`{"auths":{"https://index.docker.io/v1/":{"auth":%q},"127.0.0.1:5000":{"auth":%q},"tok.example.com":{"identitytoken":"T"}}}`,
		auth("hubuser", "hubpass"), auth("local", "secret"))
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	file, err := dockerconfig.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string][2]string{
		"registry-1.docker.io": {"hubuser", "hubpass"},
		"127.0.0.1:5000":       {"local", "secret"},
		"tok.example.com":      {"", "T"},
		"other.example.com":    {"", ""},
	} {
		u, p, err := hostCredentials(file, host)
		if err != nil || u != want[0] || p != want[1] {
			t.Errorf("hostCredentials(%s) = %q, %q, %v; want %q", host, u, p, err, want)
		}
	}
	if _, err := (Config{DockerConfigDir: dir}).Resolver(nil); err != nil {
		t.Errorf("resolver with a config dir: %v", err)
	}
}
