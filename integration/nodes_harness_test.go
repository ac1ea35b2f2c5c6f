//go:build linux

package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/privatecontainerd"
)

// A BuildKit node for the tests: a real buildkitd (built by hack/build-buildkit.sh at the
// version in go.mod) with the OCI worker and runc, its own root, in a network namespace of its
// own reached over a veth pair (or on loopback where namespaces cannot be made).
//
// This machine has one architecture. A node "native" for arm64 is simulated: buildkitd is
// restricted to linux/arm64 with --oci-worker-platform, so it reports linux/arm64 first, and
// runs arm64 steps through the host's QEMU binfmt_misc handler (binfmt_misc is not
// per-network-namespace). What the tests prove is where the work is done and how the results
// come back, not native speed.
type bkNode struct {
	Addr string // tcp://IP:PORT
	IP   string
	// HostIP is the address of this host as the node reaches it: the host's end of the
	// veth pair, or 127.0.0.1 on loopback.
	HostIP  string
	Root    string
	netns   string // empty on loopback
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
	tls     *nodeTLS
}

// nodeTLS are the PEM files of a TLS-authenticated node and its client.
type nodeTLS struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
}

type nodeOptions struct {
	// platform restricts the worker (--oci-worker-platform); default linux/arm64.
	platform string
	// tls makes the node require TLS with client certificates.
	tls bool
	// socket, when set, is a unix socket the node also listens on (a second --addr).
	socket string
	// config, when set, gives the node's buildkitd.toml (--config), knowing the address
	// of this host as the node reaches it.
	config func(hostIP string) string
}

var nodeCounter atomic.Int64

// startNode starts a buildkitd node and stops it (and removes its namespace and root) at
// cleanup.
func startNode(t *testing.T, opts nodeOptions) *bkNode {
	t.Helper()
	bin := filepath.Join(toolsDir, "buildkitd")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: build it with hack/build-buildkit.sh %s", bin, toolsDir)
	}
	if opts.platform == "" {
		opts.platform = "linux/arm64"
	}
	n := &bkNode{exited: make(chan struct{})}
	dir, err := os.MkdirTemp(daemon.dir, "node")
	if err != nil {
		t.Fatal(err)
	}
	n.Root = filepath.Join(dir, "root")
	n.logPath = filepath.Join(dir, "buildkitd.log")
	n.IP, n.HostIP = "127.0.0.1", "127.0.0.1"
	if ns, ip, hostIP, ok := makeNetns(t); ok {
		n.netns, n.IP, n.HostIP = ns, ip, hostIP
	} else {
		t.Logf("no network namespace for the node: it listens on loopback")
	}
	port := 1234
	if n.netns == "" {
		port = freePort(t)
	}
	n.Addr = fmt.Sprintf("tcp://%s:%d", n.IP, port)
	args := []string{bin, "--oci-worker=true", "--containerd-worker=false", "--root", n.Root,
		"--addr", n.Addr, "--oci-worker-platform", opts.platform, "--oci-worker-net", "host",
		"--oci-worker-gc=false", "--otel-socket-path", filepath.Join(dir, "otel.sock")}
	if opts.socket != "" {
		args = append(args, "--addr", "unix://"+opts.socket)
	}
	if opts.config != nil {
		path := filepath.Join(dir, "buildkitd.toml")
		if err := os.WriteFile(path, []byte(opts.config(n.HostIP)), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config", path)
	}
	if opts.tls {
		n.tls = makeTLS(t, dir, n.IP)
		args = append(args, "--tlscacert", n.tls.CA, "--tlscert", n.tls.ServerCert, "--tlskey", n.tls.ServerKey)
	}
	if n.netns != "" {
		// nsenter joins the network namespace only: "ip netns exec" would also remount /sys,
		// hiding the cgroup mounts runc needs on a cgroup v1 host.
		args = append([]string{"nsenter", "--net=/run/netns/" + n.netns, "--"}, args...)
	}
	logFile, err := os.Create(n.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	n.cmd = exec.Command(args[0], args[1:]...)
	n.cmd.Stdout, n.cmd.Stderr = logFile, logFile
	// Its own process group, so that killing the node kills runc and the steps with it.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("starting buildkitd: %v", err)
	}
	go func() { n.cmd.Wait(); close(n.exited) }()
	t.Cleanup(func() {
		n.kill()
		if t.Failed() {
			t.Logf("buildkitd log tail (%s):\n%s", n.Addr, n.logTail())
		}
		// A node killed during a step leaves the step's runc state behind
		// (its processes die with the node's process group).
		ids, _ := runcContainersUnder(n.Root)
		for _, id := range ids {
			exec.Command("runc", "delete", "--force", id).Run()
		}
		privatecontainerd.UnmountUnder(dir)
		os.RemoveAll(dir)
	})
	n.waitReady(t)
	return n
}

// buildctl runs BuildKit's client against the node.
func (n *bkNode) buildctl(t *testing.T, args ...string) result {
	t.Helper()
	full := []string{"--addr", n.Addr}
	if n.tls != nil {
		full = append(full, "--tlscacert", n.tls.CA, "--tlscert", n.tls.ClientCert, "--tlskey", n.tls.ClientKey)
	}
	return runShown(t, "", "buildctl "+strings.Join(args, " "), filepath.Join(toolsDir, "buildctl"), append(full, args...)...)
}

func (n *bkNode) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-n.exited:
			t.Fatalf("buildkitd exited:\n%s", n.logTail())
		default:
		}
		if strings.Contains(n.logTail(), "running server on") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("buildkitd did not start within 30s:\n%s", n.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kill ends the node at once, with the steps it runs.
func (n *bkNode) kill() {
	select {
	case <-n.exited:
		return
	default:
	}
	syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	<-n.exited
}

func (n *bkNode) logTail() string {
	data, _ := os.ReadFile(n.logPath)
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return string(data)
}

// makeNetns creates a network namespace joined to the host by a veth pair, and returns its
// name and the addresses of its end and the host's; ok is false when namespaces cannot be
// made here.
func makeNetns(t *testing.T) (name, nodeIP, hostIP string, ok bool) {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		return "", "", "", false
	}
	pid, k := os.Getpid(), nodeCounter.Add(1)
	name = fmt.Sprintf("kiln-node-%d-%d", pid, k)
	host, peer := fmt.Sprintf("kn%dh%d", pid, k), fmt.Sprintf("kn%dn%d", pid, k)
	if len(host) > 15 {
		host, peer = fmt.Sprintf("kn%dh%d", pid%100000, k), fmt.Sprintf("kn%dn%d", pid%100000, k)
	}
	// A /30 per node in 10.213.0.0/16, chosen by the test process and a counter.
	hostIP = fmt.Sprintf("10.213.%d.%d", pid%256, (int(k)*4)%256+1)
	nodeIP = fmt.Sprintf("10.213.%d.%d", pid%256, (int(k)*4)%256+2)
	run := func(args ...string) error {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := run("netns", "add", name); err != nil {
		t.Logf("%v", err)
		return "", "", "", false
	}
	t.Cleanup(func() { run("netns", "del", name) })
	steps := [][]string{
		{"link", "add", host, "type", "veth", "peer", "name", peer},
		{"link", "set", peer, "netns", name},
		{"addr", "add", hostIP + "/30", "dev", host},
		{"link", "set", host, "up"},
		{"-n", name, "addr", "add", nodeIP + "/30", "dev", peer},
		{"-n", name, "link", "set", peer, "up"},
		{"-n", name, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			t.Logf("%v", err)
			run("link", "del", host)
			return "", "", "", false
		}
	}
	t.Cleanup(func() { run("link", "del", host) })
	return name, nodeIP, hostIP, true
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// makeTLS writes a CA, a server certificate for ip and a client certificate, as PEM files.
func makeTLS(t *testing.T, dir, ip string) *nodeTLS {
	t.Helper()
	out := &nodeTLS{}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kiln test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	out.CA = writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage, ips []net.IP) (string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der),
			writePEM(t, filepath.Join(dir, name+"-key.pem"), "EC PRIVATE KEY", keyDER)
	}
	out.ServerCert, out.ServerKey = leaf("server", 2, x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP(ip)})
	out.ClientCert, out.ClientKey = leaf("client", 3, x509.ExtKeyUsageClientAuth, nil)
	return out
}

func writePEM(t *testing.T, path, kind string, der []byte) string {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// kilnEnv runs kiln with e's global flags and extra environment variables.
func (e *env) kilnEnv(vars []string, args ...string) result {
	e.t.Helper()
	full := append(append([]string{}, vars...), kilnBinary, "--address", e.Address, "--namespace", e.Namespace, "--root", e.Root)
	return runShown(e.t, "", strings.Join(vars, " ")+" kiln "+strings.Join(args, " "), "env", append(full, args...)...)
}

// nodesConfig writes a nodes.toml under a new XDG_CONFIG_HOME and returns the variable to
// pass to kiln.
func nodesConfig(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "kiln"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kiln", "nodes.toml"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return "XDG_CONFIG_HOME=" + dir
}
