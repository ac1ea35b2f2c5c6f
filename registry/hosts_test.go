package registry

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	digest "github.com/opencontainers/go-digest"
)

// manifest is what fakeRegistry serves for team/app:1.
var manifest = []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`)

// fakeRegistry answers /v2/ and the manifest of team/app:1 under prefix
// (default /v2), and records the requests it got.
type fakeRegistry struct {
	prefix string
	// fail, when set, answers with its status before serving.
	fail func(r *http.Request) int
	// user and password, when set, are required as basic auth.
	user, password string

	mu       sync.Mutex
	requests []string
}

func (f *fakeRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
	f.mu.Unlock()
	if f.fail != nil {
		if code := f.fail(r); code != 0 {
			w.WriteHeader(code)
			return
		}
	}
	if f.user != "" {
		if u, p, ok := r.BasicAuth(); !ok || u != f.user || p != f.password {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
	}
	prefix := f.prefix
	if prefix == "" {
		prefix = "/v2"
	}
	switch r.URL.Path {
	case prefix + "/":
	case prefix + "/team/app/manifests/1":
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.Header().Set("Docker-Content-Digest", digest.FromBytes(manifest).String())
		w.Header().Set("Content-Length", "0")
		if r.Method == http.MethodGet {
			w.Write(manifest)
		}
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeRegistry) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

// pki is a CA and certificates it signed, written to dir.
type pki struct {
	dir  string
	ca   *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kiln test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &pki{dir: t.TempDir(), ca: ca, key: key, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.write(t, "ca.crt", "CERTIFICATE", der)
	return p
}

func (p *pki) write(t *testing.T, name, kind string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue makes a certificate for 127.0.0.1 (a server's) or a client's,
// and writes NAME.cert and NAME.key.
func (p *pki) issue(t *testing.T, name string, client bool) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	p.write(t, name+".cert", "CERTIFICATE", der)
	p.write(t, name+".key", "EC PRIVATE KEY", kder)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tlsServer serves reg over TLS with a certificate of p; with clients it
// requires a client certificate p signed.
func tlsServer(t *testing.T, p *pki, reg http.Handler, clients bool) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(reg)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{p.issue(t, "server", false)}}
	if clients {
		srv.TLS.ClientAuth = tls.RequireAndVerifyClientCert
		srv.TLS.ClientCAs = p.pool
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "https://")
}

func plainServer(t *testing.T, reg http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(reg)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// hostsDir writes one hosts.toml per registry into a new hosts directory.
func hostsDir(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for host, content := range files {
		if err := os.MkdirAll(filepath.Join(root, host), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, host, "hosts.toml"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func resolve(t *testing.T, cfg Config, name string) error {
	t.Helper()
	r, err := cfg.Resolver(nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, desc, err := r.Resolve(ctx, name)
	if err == nil && desc.Digest != digest.FromBytes(manifest) {
		t.Fatalf("resolved %s to %s", name, desc.Digest)
	}
	return err
}

func noRetryDelay(t *testing.T) {
	old := retryDelay
	retryDelay = func(int, *http.Response) time.Duration { return time.Millisecond }
	t.Cleanup(func() { retryDelay = old })
}

// TestHostsCA: a registry whose certificate a private CA signed is trusted
// through the ca of its hosts.toml, and without it the error names that
// file.
func TestHostsCA(t *testing.T) {
	p := newPKI(t)
	addr := tlsServer(t, p, &fakeRegistry{}, false)
	const name = "registry.test/team/app:1"

	untrusted := Config{HostsDirs: []string{hostsDir(t, map[string]string{"registry.test": `server = "https://` + addr + `"`})}}
	err := untrusted.Explain("pull", name, resolve(t, untrusted, name))
	var ce *CertificateError
	if !errors.As(err, &ce) || ce.Server != addr || ce.HostsFile != filepath.Join(untrusted.HostsDirs[0], "registry.test", "hosts.toml") {
		t.Fatalf("without the CA: %v", err)
	}

	trusted := Config{HostsDirs: []string{hostsDir(t, map[string]string{"registry.test": `server = "https://` + addr + `"
ca = "` + filepath.Join(p.dir, "ca.crt") + `"`})}}
	if err := resolve(t, trusted, name); err != nil {
		t.Fatalf("with the CA in hosts.toml: %v", err)
	}
	skip := Config{HostsDirs: []string{hostsDir(t, map[string]string{"registry.test": `server = "https://` + addr + `"
skip_verify = true`})}}
	if err := resolve(t, skip, name); err != nil {
		t.Fatalf("with skip_verify: %v", err)
	}
}

// TestHostsClientCertificate: a registry that asks for a client
// certificate gets the client pair of its hosts.toml.
func TestHostsClientCertificate(t *testing.T) {
	p := newPKI(t)
	addr := tlsServer(t, p, &fakeRegistry{}, true)
	p.issue(t, "client", true)
	const name = "registry.test/team/app:1"
	base := `server = "https://` + addr + `"
ca = "` + filepath.Join(p.dir, "ca.crt") + `"
`
	without := Config{HostsDirs: []string{hostsDir(t, map[string]string{"registry.test": base})}}
	if err := resolve(t, without, name); err == nil {
		t.Fatal("a registry that wants a client certificate accepted none")
	}
	with := Config{HostsDirs: []string{hostsDir(t, map[string]string{"registry.test": base +
		`client = [["` + filepath.Join(p.dir, "client.cert") + `", "` + filepath.Join(p.dir, "client.key") + `"]]`})}}
	if err := resolve(t, with, name); err != nil {
		t.Fatalf("with the client pair: %v", err)
	}
}

// TestHostsMirrors: mirrors are asked first, for the registry's namespace;
// one that fails gives way to the next host at once, without retries.
func TestHostsMirrors(t *testing.T) {
	noRetryDelay(t)
	upstream := &fakeRegistry{}
	up := plainServer(t, upstream)
	mirror := &fakeRegistry{}
	good := plainServer(t, mirror)
	broken := &fakeRegistry{fail: func(*http.Request) int { return http.StatusInternalServerError }}
	bad := plainServer(t, broken)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	const name = "registry.test/team/app:1"

	cfg := Config{HostsDirs: []string{hostsDir(t, map[string]string{"registry.test": `server = "http://` + up + `"
[host."http://` + dead + `"]
  capabilities = ["pull", "resolve"]
[host."http://` + bad + `"]
  capabilities = ["pull", "resolve"]
[host."http://` + good + `"]
  capabilities = ["pull", "resolve"]
`})}}
	if err := resolve(t, cfg, name); err != nil {
		t.Fatal(err)
	}
	if got := mirror.got(); len(got) != 1 || got[0] != "HEAD /v2/team/app/manifests/1?ns=registry.test" {
		t.Errorf("the working mirror got %v", got)
	}
	if got := broken.got(); len(got) > 2 {
		t.Errorf("the failing mirror was retried: %v", got)
	}
	if got := upstream.got(); len(got) != 0 {
		t.Errorf("the registry was asked although a mirror served: %v", got)
	}

	// A mirror that may only pull does not resolve tags: the registry does.
	pullOnly := Config{HostsDirs: []string{hostsDir(t, map[string]string{"registry.test": `server = "http://` + up + `"
[host."http://` + good + `"]
  capabilities = ["pull"]
`})}}
	if err := resolve(t, pullOnly, name); err != nil {
		t.Fatal(err)
	}
	if got := upstream.got(); len(got) != 1 {
		t.Errorf("the registry got %v, want the tag resolved there", got)
	}
}

// TestHostsOverridePath: a host whose API root is its URL's path.
func TestHostsOverridePath(t *testing.T) {
	reg := &fakeRegistry{prefix: "/custom/api"}
	addr := plainServer(t, reg)
	cfg := Config{HostsDirs: []string{hostsDir(t, map[string]string{"registry.test": `[host."http://` + addr + `/custom/api"]
  capabilities = ["pull", "resolve"]
  override_path = true
`})}}
	if err := resolve(t, cfg, "registry.test/team/app:1"); err != nil {
		t.Fatal(err)
	}
	if got := reg.got(); len(got) == 0 || !strings.HasPrefix(got[0], "HEAD /custom/api/team/app/manifests/1") {
		t.Errorf("requests: %v", got)
	}
}

// TestHostsRetries: the registry's own host is asked again after a 503 and
// after a connection dropped before its answer.
func TestHostsRetries(t *testing.T) {
	noRetryDelay(t)
	var n int
	var mu sync.Mutex
	reg := &fakeRegistry{fail: func(r *http.Request) int {
		mu.Lock()
		defer mu.Unlock()
		n++
		return map[int]int{1: http.StatusServiceUnavailable, 2: http.StatusServiceUnavailable, 3: -1}[n]
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reg.ServeHTTP(&dropper{ResponseWriter: w}, r)
	}))
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")
	cfg := Config{HostsDirs: []string{hostsDir(t, map[string]string{"registry.test": `server = "http://` + addr + `"`})}}
	if err := resolve(t, cfg, "registry.test/team/app:1"); err != nil {
		t.Fatal(err)
	}
	if got := reg.got(); len(got) < 4 {
		t.Errorf("requests: %v, want three failures and a success", got)
	}
}

// dropper closes the connection when the fake registry answers -1.
type dropper struct{ http.ResponseWriter }

func (d *dropper) WriteHeader(code int) {
	if code == -1 {
		conn, _, err := d.ResponseWriter.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	d.ResponseWriter.WriteHeader(code)
}

func TestHostDirOrder(t *testing.T) {
	first, second := t.TempDir(), t.TempDir()
	for _, d := range []string{filepath.Join(first, "_default"), filepath.Join(second, "registry.test:5000"), filepath.Join(second, "other.test")} {
		os.MkdirAll(d, 0o755)
	}
	cfg := Config{HostsDirs: []string{first, second}}
	for host, want := range map[string]string{
		"registry.test:5000": filepath.Join(second, "registry.test:5000"),
		"other.test":         filepath.Join(second, "other.test"),
		"third.test":         filepath.Join(first, "_default"),
	} {
		if got, err := cfg.hostDir(host); err != nil || got != want {
			t.Errorf("hostDir(%s) = %s, %v; want %s", host, got, err, want)
		}
	}
	if got := cfg.HostsFile("third.test"); got != filepath.Join(first, "third.test", "hosts.toml") {
		t.Errorf("HostsFile of a registry without a directory = %s", got)
	}
	if got := (Config{}).HostsFile("x"); got != "" {
		t.Errorf("HostsFile without hosts directories = %q", got)
	}
	if got := DefaultHostsDirs(true, "/home/u/.config"); strings.Join(got, ",") != "/home/u/.config/containerd/certs.d,/etc/containerd/certs.d,/etc/docker/certs.d" {
		t.Errorf("rootless defaults: %v", got)
	}
}

// TestHostsFileChecked: what containerd would drop silently is an error.
func TestHostsFileChecked(t *testing.T) {
	for content, want := range map[string]string{
		`server = "https://x`: "is not valid",
		`[host."https://m"]` + "\n" + `capabilities = ["pul"]`: `unknown capability "pul" for host "https://m"`,
		`dial_timeout = "5"`:  `dial_timeout "5" is not a duration`,
		`server = "https://"`: "no host in it",
	} {
		cfg := Config{HostsDirs: []string{hostsDir(t, map[string]string{"registry.test": content})}}
		_, err := cfg.RegistryHosts(nil, nil)("registry.test")
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "hosts.toml") {
			t.Errorf("%q: %v, want %q", content, err, want)
		}
	}
}

// TestHostsFileNotRegular: a named pipe in place of hosts.toml is refused
// at once; containerd would block reading it.
func TestHostsFileNotRegular(t *testing.T) {
	dirs := t.TempDir()
	dir := filepath.Join(dirs, "registry.test")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "hosts.toml"), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := Config{HostsDirs: []string{dirs}}.RegistryHosts(nil, nil)("registry.test")
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "hosts.toml is a named pipe (FIFO), not a regular file") {
			t.Errorf("a named pipe as hosts.toml: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reading a named pipe as hosts.toml hangs")
	}
}

func TestInsecure(t *testing.T) {
	p := newPKI(t)
	addr := tlsServer(t, p, &fakeRegistry{}, false)
	// The default host of a registry without a hosts.toml, not on loopback
	// by name: verified unless --insecure-registry.
	cfg := Config{HostsDirs: []string{hostsDir(t, map[string]string{"registry.test": `server = "https://` + addr + `"`})}}
	if err := resolve(t, cfg, "registry.test/team/app:1"); err == nil {
		t.Fatal("an unverified certificate was accepted")
	}
	cfg.Insecure = true
	if err := resolve(t, cfg, "registry.test/team/app:1"); err != nil {
		t.Fatalf("with --insecure-registry: %v", err)
	}
	if !docker.IsLocalhost(addr) {
		t.Fatal("the test server is not on loopback")
	}
}
