//go:build linux

package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Registries the way containerd and nerdctl users configure them (issue
// #18): hosts.toml in a --hosts-dir, mirrors, login, and transfers that
// survive a dropped connection. Each test runs real docker-registry
// servers on loopback.

// loopbackName is a name of this host that resolves to a loopback address
// but is not "localhost" or an IP: containerd reaches localhost and
// loopback IPs over HTTPS without verifying certificates (or plain HTTP),
// so only a registry known by another name shows whether a CA is trusted.
func loopbackName(t *testing.T) string {
	t.Helper()
	name, err := os.Hostname()
	if err != nil {
		t.Skipf("no host name: %v", err)
	}
	addrs, err := net.LookupHost(name)
	if err != nil {
		t.Skipf("the host name %s does not resolve: %v", name, err)
	}
	for _, a := range addrs {
		if ip := net.ParseIP(a); ip != nil && ip.IsLoopback() && name != "localhost" {
			return name
		}
	}
	t.Skipf("the host name %s does not resolve to a loopback address (%v)", name, addrs)
	return ""
}

// registryCA writes a CA and a certificate it signed for name and
// 127.0.0.1 into dir; it returns the CA's, the certificate's and its key's
// paths.
func registryCA(t *testing.T, dir, name string) (ca, cert, key string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kiln registry test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{name}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(leafKey)
	return writePEM(t, filepath.Join(dir, "ca.crt"), "CERTIFICATE", caDER),
		writePEM(t, filepath.Join(dir, "registry.crt"), "CERTIFICATE", der),
		writePEM(t, filepath.Join(dir, "registry.key"), "EC PRIVATE KEY", keyDER)
}

// writeHostsToml writes DIR/HOST/hosts.toml.
func writeHostsToml(t *testing.T, dir, host, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, host), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, host, "hosts.toml"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// kilnEnvStdin is kilnEnv with standard input.
func (e *env) kilnEnvStdin(vars []string, stdin string, args ...string) result {
	e.t.Helper()
	full := append(append([]string{}, vars...), kilnBinary, "--address", e.Address, "--namespace", e.Namespace, "--root", e.Root)
	return runShown(e.t, stdin, strings.Join(vars, " ")+" kiln "+strings.Join(args, " "), "env", append(full, args...)...)
}

// TestRegistryHostsTOMLCA: a TLS registry whose self-signed CA this host
// does not trust is used for push, pull and a build FROM it once a
// hosts.toml in --hosts-dir names the CA; without the file the error names
// the file to write.
func TestRegistryHostsTOMLCA(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	name := loopbackName(t)
	ca, cert, key := registryCA(t, t.TempDir(), name)
	port := strings.TrimPrefix(startRegistryWith(t, registryConfig{CertFile: cert, KeyFile: key}), "127.0.0.1:")
	reg := name + ":" + port
	image := reg + "/kiln/base:1"
	e.busyboxBase(t, "busybox", "linux/"+runtime.GOARCH)
	e.kiln("tag", "busybox", image).ok(t)

	empty := t.TempDir()
	hostsFile := filepath.Join(empty, reg, "hosts.toml")
	r := e.kiln("--hosts-dir", empty, "push", image).fails(t, 1, "registry "+reg+" presented a TLS certificate signed by an unknown authority")
	if !strings.Contains(r.Stderr, `ca = "/path/to/ca.crt" in `+hostsFile) {
		t.Errorf("the error does not name the hosts.toml to write:\n%s", r.Stderr)
	}
	t.Logf("without the CA: %s", r.Stderr)

	hosts := t.TempDir()
	writeHostsToml(t, hosts, reg, `ca = "`+ca+`"`+"\n")
	e.kiln("--hosts-dir", hosts, "push", image).ok(t)
	if digest := registryManifestTLS(t, reg, ca, "kiln/base", "1"); digest == "" {
		t.Fatal("the registry has no kiln/base:1 after the push")
	}
	e.kiln("rm", image).ok(t)
	e.kiln("--hosts-dir", hosts, "pull", image).ok(t)

	// A build resolves FROM in the registry (--pull), through the same hosts.
	dir := contextDir(t, map[string]string{"Dockerfile": "FROM " + image + "\nRUN echo built > /built\n"})
	e.kiln("--hosts-dir", hosts, "build", "--pull", "-t", "fromtls:1", dir).ok(t)
	r = e.kiln("--hosts-dir", empty, "build", "--pull", "-t", "fromtls:2", dir).fails(t, 1, "presented a TLS certificate signed by an unknown authority")
	if !strings.Contains(r.Stderr, hostsFile) {
		t.Errorf("the build's error does not name the hosts.toml to write:\n%s", r.Stderr)
	}
	t.Logf("the build without the CA: %s", lastLines(r.Stderr, 3))
	// The other ways a build reaches a registry use the same hosts: --push
	// and type=registry outputs, registry caches both ways, docker-image://
	// build contexts.
	e.kiln("--hosts-dir", hosts, "build", "--pull", "-t", reg+"/kiln/out:1", "--push",
		"--cache-to", "type=registry,ref="+reg+"/kiln/cache:1", dir).ok(t)
	e.kiln("--hosts-dir", hosts, "build", "--pull", "-o", "type=registry,name="+reg+"/kiln/out:2",
		"--cache-from", "type=registry,ref="+reg+"/kiln/cache:1", dir).ok(t)
	for _, ref := range []string{"out:1", "out:2", "cache:1"} {
		repo, tag, _ := strings.Cut(ref, ":")
		if registryManifestTLS(t, reg, ca, "kiln/"+repo, tag) == "" {
			t.Errorf("the registry has no kiln/%s", ref)
		}
	}
	ctxDir := contextDir(t, map[string]string{"Dockerfile": "FROM base\nRUN echo from-context > /c\n"})
	e.kiln("--hosts-dir", hosts, "build", "--pull", "--build-context", "base=docker-image://"+image, "-t", "fromcontext:1", ctxDir).ok(t)
	e.kiln("--hosts-dir", empty, "build", "--pull", "--build-context", "base=docker-image://"+image, "-t", "fromcontext:2", ctxDir).fails(t, 1, "signed by an unknown authority")

	// KILN_HOSTS_DIR stands for --hosts-dir.
	e.kiln("rm", image).ok(t)
	e.kilnEnv([]string{"KILN_HOSTS_DIR=" + empty + ":" + hosts}, "pull", image).ok(t)
}

// registryManifestTLS returns the digest of a manifest in the registry
// at reg, over HTTPS trusting ca.
func registryManifestTLS(t *testing.T, reg, ca, repo, ref string) string {
	t.Helper()
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest(http.MethodHead, "https://"+reg+"/v2/"+repo+"/manifests/"+ref, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HEAD %s/%s:%s: %s", reg, repo, ref, resp.Status)
	}
	return resp.Header.Get("Docker-Content-Digest")
}

// TestRegistryMirrorForDockerHub: with a mirror for docker.io in
// docker.io/hosts.toml, FROM docker.io/library/NAME and kiln pull
// docker.io/library/NAME succeed with no route to Docker Hub, and --debug
// says the mirror served them.
func TestRegistryMirrorForDockerHub(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	mirror := startRegistry(t)
	e.busyboxBase(t, "busybox", "linux/"+runtime.GOARCH)
	e.kiln("tag", "busybox", mirror+"/library/kilnmirror:1").ok(t)
	e.kiln("push", mirror+"/library/kilnmirror:1").ok(t)
	e.kiln("rm", mirror+"/library/kilnmirror:1", "busybox").ok(t)

	hosts := t.TempDir()
	writeHostsToml(t, hosts, "docker.io", `server = "https://registry-1.docker.io"

[host."http://`+mirror+`"]
  capabilities = ["pull", "resolve"]
`)
	// No route to Docker Hub: every connection that is not to loopback goes
	// to a proxy nobody listens on.
	noHub := []string{"HTTPS_PROXY=http://127.0.0.1:1", "HTTP_PROXY=http://127.0.0.1:1", "NO_PROXY=", "https_proxy=", "http_proxy=", "no_proxy="}
	const hubName = "docker.io/library/kilnmirror:1"
	e.kilnEnv(noHub, "pull", hubName).fails(t, 1, "cannot reach registry docker.io")

	r := e.kilnEnv(noHub, "--hosts-dir", hosts, "--debug", "pull", hubName).ok(t)
	served := "registry docker.io: mirror HEAD http://" + mirror + "/v2/library/kilnmirror/manifests/1?ns=docker.io: 200 OK"
	if !strings.Contains(r.Stderr, served) {
		t.Errorf("--debug does not say the mirror served the pull (want %q):\n%s", served, lastLines(r.Stderr, 40))
	}
	if strings.Contains(r.Stderr, "registry-1.docker.io") {
		t.Errorf("the pull asked Docker Hub although the mirror served it:\n%s", lastLines(r.Stderr, 40))
	}
	if rows := e.imageRows(t, hubName); len(rows) != 1 || !rows[0].Complete {
		t.Errorf("after the pull through the mirror: %+v", rows)
	}
	e.kiln("rm", hubName).ok(t)

	dir := contextDir(t, map[string]string{"Dockerfile": "FROM " + hubName + "\nRUN echo mirrored > /m\n"})
	e.kilnEnv(noHub, "--hosts-dir", hosts, "build", "--pull", "-t", "frommirror:1", dir).ok(t)
	e.kilnEnv(noHub, "build", "--pull", "-t", "frommirror:2", dir).fails(t, 1, "docker.io/library/kilnmirror:1")
}

// TestRegistryLoginLogout: a registry with htpasswd auth refuses kiln
// until kiln login, is used by push, pull and a build after it, and
// refuses again after kiln logout. The credentials live where docker
// keeps them ($DOCKER_CONFIG/config.json).
func TestRegistryLoginLogout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.DefaultCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("ci:"+string(hash)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	reg := startRegistryWith(t, registryConfig{Htpasswd: htpasswd})
	dockerConfig := t.TempDir()
	vars := []string{"DOCKER_CONFIG=" + dockerConfig}
	image := reg + "/kiln/private:1"
	e.busyboxBase(t, "busybox", "linux/"+runtime.GOARCH)
	e.kiln("tag", "busybox", image).ok(t)

	e.kilnEnv(vars, "push", image).fails(t, 1, "registry "+reg+" refused to let kiln push "+image)
	if r := e.kilnEnv(vars, "push", image); !strings.Contains(r.Stderr, `log in with "kiln login `+reg+`"`) {
		t.Errorf("the refusal does not say how to log in:\n%s", r.Stderr)
	} else {
		t.Logf("before login: %s", r.Stderr)
	}
	r := e.kilnEnvStdin(vars, "wrong\n", "login", "-u", "ci", "--password-stdin", reg).fails(t, 1, "registry "+reg+" refused the credentials of ci")
	t.Logf("a wrong password: %s", r.Stderr)
	if _, err := os.Stat(filepath.Join(dockerConfig, "config.json")); err == nil {
		t.Error("refused credentials were stored")
	}
	e.kilnEnv(vars, "login", "--password-stdin", reg).fails(t, 2, "--password-stdin needs the user name too")

	r = e.kilnEnvStdin(vars, "s3cret\n", "login", "-u", "ci", "--password-stdin", reg).ok(t)
	if r.Stdout != "Login Succeeded\n" || !strings.Contains(r.Stderr, "WARNING! Your credentials are stored unencrypted in '"+filepath.Join(dockerConfig, "config.json")+"'") {
		t.Errorf("kiln login printed:\n--- stdout:\n%s--- stderr:\n%s", r.Stdout, r.Stderr)
	}
	var cfg struct {
		Auths map[string]struct{ Auth string } `json:"auths"`
	}
	b, _ := os.ReadFile(filepath.Join(dockerConfig, "config.json"))
	if err := json.Unmarshal(b, &cfg); err != nil || cfg.Auths[reg].Auth == "" {
		t.Fatalf("config.json after kiln login: %s (%v)", b, err)
	}
	// Without --username the stored credentials are tried, as docker does.
	if r := e.kilnEnv(vars, "login", reg).ok(t); r.Stdout != "Login Succeeded\n" || !strings.Contains(r.Stderr, "existing credentials") {
		t.Errorf("kiln login with stored credentials:\n%s%s", r.Stdout, r.Stderr)
	}

	e.kilnEnv(vars, "push", image).ok(t)
	e.kiln("rm", image).ok(t)
	e.kilnEnv(vars, "pull", image).ok(t)
	dir := contextDir(t, map[string]string{"Dockerfile": "FROM " + image + "\nRUN echo private > /p\n"})
	e.kilnEnv(vars, "build", "--pull", "-t", "fromprivate:1", dir).ok(t)

	if r := e.kilnEnv(vars, "logout", reg).ok(t); r.Stdout != "Removing login credentials for "+reg+"\n" {
		t.Errorf("kiln logout printed %q", r.Stdout)
	}
	if r := e.kilnEnv(vars, "logout", reg).ok(t); r.Stdout != "Not logged in to "+reg+"\n" {
		t.Errorf("a second kiln logout printed %q", r.Stdout)
	}
	e.kiln("rm", image).ok(t)
	e.kilnEnv(vars, "pull", image).fails(t, 1, "registry "+reg+" refused to let kiln pull "+image)
	r = e.kilnEnv(vars, "build", "--pull", "-t", "fromprivate:2", dir).fails(t, 1, `kiln login `+reg)
	t.Logf("the build after logout: %s", lastLines(r.Stderr, 1))
}

// dropProxy forwards TCP connections to a registry and, once, resets the
// client's connection in the middle of a blob upload, after the registry
// got part of the blob.
type dropProxy struct {
	target  string
	ln      net.Listener
	dropped atomic.Bool
	wg      sync.WaitGroup
}

func startDropProxy(t *testing.T, target string) *dropProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dropProxy{target: target, ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go p.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *dropProxy) addr() string { return p.ln.Addr().String() }

// uploadPut matches the head of a blob upload's PUT, with its size.
var uploadPut = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`PUT /v2/[^ ]*/blobs/uploads/[^ ]* HTTP/1\.1\r\n(?:[^\r\n]+\r\n)*?Content-Length: (\d+)\r\n`)
})

func (p *dropProxy) serve(client net.Conn) {
	defer p.wg.Done()
	defer client.Close()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	go func() {
		io.Copy(client, up)
		client.Close()
	}()
	const after = 512 << 10 // bytes of the upload's body that pass first
	var tail []byte
	armed, passed := false, 0
	buf := make([]byte, 32<<10)
	for {
		n, err := client.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if !armed && !p.dropped.Load() {
				window := append(tail, chunk...)
				// Only an upload of a large blob, so that the reset comes
				// in the middle of its body. The window keeps the end of
				// the previous chunk, where a request's head may start.
				for _, m := range uploadPut().FindAllSubmatch(window, -1) {
					if size, _ := strconv.Atoi(string(m[1])); size >= 2<<20 {
						armed = true
					}
				}
				tail = append([]byte(nil), window[max(0, len(window)-256):]...)
			}
			if armed {
				passed += n
				if passed >= after && p.dropped.CompareAndSwap(false, true) {
					up.Write(chunk)
					client.(*net.TCPConn).SetLinger(0) // a reset, not a clean close
					return
				}
			}
			if _, werr := up.Write(chunk); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestRegistryPushSurvivesADroppedConnection: a connection reset in the
// middle of a layer's upload, once, does not fail the push: the upload
// starts again and the registry ends up with the whole image.
func TestRegistryPushSurvivesADroppedConnection(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reg := startRegistry(t)
	proxy := startDropProxy(t, reg)
	e.busyboxBase(t, "busybox", "linux/"+runtime.GOARCH)
	big := make([]byte, 3<<20)
	rand.Read(big)
	dir := contextDir(t, map[string]string{"Dockerfile": "FROM busybox\nCOPY big.bin /big.bin\n", "big.bin": string(big)})
	image := proxy.addr() + "/kiln/dropped:1"
	e.kiln("build", "-t", image, dir).ok(t)

	r := e.kiln("push", image).ok(t)
	if !proxy.dropped.Load() {
		t.Fatal("the proxy never dropped the upload")
	}
	if !strings.Contains(r.Stderr, "again (attempt 2 of 5)") || !strings.Contains(r.Stderr, "pushed   layer") {
		t.Errorf("the push's progress does not show the upload starting again:\n%s", r.Stderr)
	}
	pushed := strings.TrimSpace(r.Stdout)
	_, digest, _ := strings.Cut(pushed, "@")
	if got, _ := registryManifest(t, reg, "kiln/dropped", "1"); got != digest {
		t.Errorf("the registry holds %s under kiln/dropped:1, want %s", got, digest)
	}
	// The registry took the manifest, which it does only when every blob it
	// names is there, each checked against its digest.
	t.Logf("push progress:\n%s", r.Stderr)
}
