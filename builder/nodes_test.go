package builder

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/platforms"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/emulation"
	"github.com/kiln-build/kiln/nodes"
	"github.com/kiln-build/kiln/request"
	"github.com/kiln-build/kiln/usage"
)

// deadAddress is a loopback address nothing listens on.
func deadAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "tcp://" + addr
}

// plan parses o and plans it; stderr collects the notices.
func plan(t *testing.T, o *request.Options) (*nodePlan, string, error) {
	t.Helper()
	var stderr bytes.Buffer
	o.Stderr = &stderr
	if o.ContextDir == "" {
		o.ContextDir = t.TempDir()
		if err := os.WriteFile(filepath.Join(o.ContextDir, "Dockerfile"), []byte("FROM scratch\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if o.NodesFiles == nil {
		o.NodesFiles = []string{}
	}
	r, err := request.Parse(context.Background(), o)
	if err != nil {
		return nil, stderr.String(), err
	}
	defer r.Close()
	p, err := planNodes(context.Background(), r)
	if p != nil {
		p.close()
	}
	return p, stderr.String(), err
}

func nodesFile(t *testing.T, content string) []string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "nodes.toml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{p}
}

// foreignPlatform is a platform this host does not run natively.
func foreignPlatform() string {
	if platforms.Only(emulation.HostPlatform()).Match(ocispecs.Platform{OS: "linux", Architecture: "arm64"}) {
		return "linux/amd64"
	}
	return "linux/arm64"
}

func TestPlanNodesLocal(t *testing.T) {
	foreign := foreignPlatform()
	dead := deadAddress(t)
	// No --node and no nodes file: the ordinary path.
	if p, _, err := plan(t, &request.Options{Platforms: []string{foreign}}); p != nil || err != nil {
		t.Fatalf("no nodes: %+v %v", p, err)
	}
	// PLATFORM=local overrides a node the file restricts to it, without contacting it.
	files := nodesFile(t, "[node.board]\naddress = \""+dead+"\"\nplatforms = [\""+foreign+"\"]\n")
	if p, _, err := plan(t, &request.Options{Platforms: []string{foreign}, Nodes: []string{foreign + "=local"}, NodesFiles: files}); p != nil || err != nil {
		t.Fatalf("PLATFORM=local: %+v %v", p, err)
	}
	// The host's platform builds here even when an unrestricted node is configured, and
	// nothing is contacted for it.
	files = nodesFile(t, "[node.board]\naddress = \""+dead+"\"\n")
	host := platforms.Format(emulation.HostPlatform())
	p, stderr, err := plan(t, &request.Options{Platforms: []string{host}, NodesFiles: files})
	if p != nil || err != nil || stderr != "" {
		t.Fatalf("host platform: %+v %v %q", p, err, stderr)
	}
	// An unrestricted node that does not answer is skipped for a foreign platform.
	p, stderr, err = plan(t, &request.Options{Platforms: []string{host, foreign}, NodesFiles: files})
	if p != nil || err != nil || !strings.Contains(stderr, "node board ("+dead+") does not answer") || !strings.Contains(stderr, "not using it") {
		t.Fatalf("unrestricted dead node: %+v %v %q", p, err, stderr)
	}
}

func TestPlanNodesFailures(t *testing.T) {
	foreign := foreignPlatform()
	host := platforms.Format(emulation.HostPlatform())
	dead := deadAddress(t)
	files := nodesFile(t, "[node.board]\naddress = \""+dead+"\"\nplatforms = [\""+foreign+"\"]\ninsecure-plaintext = true\n")

	// A restricted node that does not answer fails the plan, naming it.
	_, _, err := plan(t, &request.Options{Platforms: []string{host, foreign}, NodesFiles: files})
	if err == nil || !strings.Contains(err.Error(), "node board ("+dead+") does not answer") || !strings.Contains(err.Error(), "--node-fallback=emulate") || usage.Is(err) {
		t.Fatalf("dead node: %v", err)
	}
	// With the emulate fallback its platform builds here, with a notice.
	p, stderr, err := plan(t, &request.Options{Platforms: []string{host, foreign}, NodesFiles: files, NodeFallback: request.FallbackEmulate})
	if p != nil || err != nil || !strings.Contains(stderr, "building "+foreign+" here instead (--node-fallback=emulate)") {
		t.Fatalf("fallback: %+v %v %q", p, err, stderr)
	}
}

func TestNodePlanDescribe(t *testing.T) {
	p := &nodePlan{
		local:  []ocispecs.Platform{{OS: "linux", Architecture: "amd64"}},
		remote: []*nodeGroup{{node: nodes.Node{Name: "pi", Address: "tcp://h:1"}, platforms: []ocispecs.Platform{{OS: "linux", Architecture: "arm64"}, {OS: "linux", Architecture: "arm", Variant: "v7"}}}},
	}
	if got, want := p.describe(), "building linux/amd64 here, linux/arm64,linux/arm/v7 on node pi (tcp://h:1)"; got != want {
		t.Fatalf("describe() = %q, want %q", got, want)
	}
}

// TestPlanNodesPlaintext: a plain tcp:// node a build would use is refused
// before anything is sent to it, as a usage error saying how to accept it;
// accepted, it is contacted.
func TestPlanNodesPlaintext(t *testing.T) {
	foreign := foreignPlatform()
	host := platforms.Format(emulation.HostPlatform())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// A listener that counts connections: a refused node is never dialled.
	dialled := make(chan struct{}, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			dialled <- struct{}{}
			c.Close()
		}
	}()
	addr := "tcp://" + l.Addr().String()

	_, _, err = plan(t, &request.Options{Platforms: []string{host, foreign}, Nodes: []string{foreign + "=" + addr}})
	if err == nil || !usage.Is(err) || !strings.Contains(err.Error(), "is plain tcp:// without TLS") || !strings.Contains(err.Error(), ",insecure-plaintext=true") {
		t.Fatalf("plain --node address: %v", err)
	}
	files := nodesFile(t, "[node.board]\naddress = \""+addr+"\"\nplatforms = [\""+foreign+"\"]\n")
	_, _, err = plan(t, &request.Options{Platforms: []string{host, foreign}, NodesFiles: files})
	if err == nil || !usage.Is(err) || !strings.Contains(err.Error(), "node board ("+addr+") is plain tcp:// without TLS") || !strings.Contains(err.Error(), "insecure-plaintext = true") {
		t.Fatalf("plain configured node: %v", err)
	}
	// --node-fallback=emulate is for nodes that do not answer, not for this.
	_, _, err = plan(t, &request.Options{Platforms: []string{host, foreign}, NodesFiles: files, NodeFallback: request.FallbackEmulate})
	if err == nil || !usage.Is(err) {
		t.Fatalf("plain configured node with the emulate fallback: %v", err)
	}
	select {
	case <-dialled:
		t.Fatal("kiln connected to a plain node it refused")
	default:
	}

	// Accepted by the option named for the risk, the node is contacted
	// (it is no BuildKit, so it does not answer).
	_, _, err = plan(t, &request.Options{Platforms: []string{host, foreign}, Nodes: []string{foreign + "=" + addr + ",insecure-plaintext=true"}})
	if err == nil || usage.Is(err) || !strings.Contains(err.Error(), "does not answer") {
		t.Fatalf("accepted plain node: %v", err)
	}
	select {
	case <-dialled:
	default:
		t.Fatal("the accepted plain node was not contacted")
	}
}
