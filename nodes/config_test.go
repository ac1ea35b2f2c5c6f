package nodes

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kiln-build/kiln/usage"
)

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "ca.pem", "x")
	sys := write(t, dir, "system.toml", `
[node.pi]
address = "tcp://10.0.0.5:1234"
platforms = ["arm64", "linux/arm/v7"]

[node.graviton]
address = "ssh://me@graviton"
`)
	user := write(t, dir, "user.toml", `
[node.pi]
address = "tcp://10.0.0.6:1234"
platforms = ["linux/arm64"]

[node.pi.tls]
ca = "ca.pem"
server-name = "pi.local"
`)
	ns, err := Load(t.Context(), sys, user, filepath.Join(dir, "missing.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 2 || ns[0].Name != "graviton" || ns[1].Name != "pi" {
		t.Fatalf("nodes = %+v", ns)
	}
	pi := ns[1]
	if pi.Address != "tcp://10.0.0.6:1234" || pi.Source != user || strings.Join(pi.Restricted(), ",") != "linux/arm64" {
		t.Fatalf("the user's pi does not replace the system's: %+v", pi)
	}
	if pi.TLS.CA != filepath.Join(dir, "ca.pem") || pi.TLS.ServerName != "pi.local" {
		t.Fatalf("TLS = %+v, want paths relative to the file", pi.TLS)
	}
	if got := pi.String(); got != "pi (tcp://10.0.0.6:1234)" {
		t.Fatalf("String() = %q", got)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "ca.pem", "x")
	for content, want := range map[string]string{
		"[node.pi]\naddres = \"tcp://h:1\"\n":                                    "unknown setting node.pi.addres",
		"[node.pi]\naddress = \"tcp://h\"\n":                                     "give the host and port",
		"[node.pi]\naddress = \"http://h:1\"\n":                                  `unknown scheme "http"`,
		"[node.pi]\n":                                                            "node pi: no address",
		"[node.pi]\naddress = \"tcp://h:1\"\nplatforms = [\"linux/nope!\"]\n":    "invalid platform",
		"[node.local]\naddress = \"tcp://h:1\"\n":                                `"local" is reserved`,
		"[node.pi]\naddress = \"tcp://h:1\"\n[node.pi.tls]\ncert = \"c.pem\"\n":  "give both a client certificate",
		"[node.pi]\naddress = \"unix:///s\"\n[node.pi.tls]\nca = \"c.pem\"\n":    "TLS settings apply to tcp:// addresses only",
		"[node.pi]\naddress = \"tcp://h:1\"\n[node.pi.tls]\nca = \"none.pem\"\n": "cannot read TLS file",
		"[node.pi\n": "line 1",
		"[node.pi]\naddress = \"unix:///s\"\ninsecure-plaintext = true\n":                                 "insecure-plaintext applies to tcp:// addresses without TLS only, not unix:///s",
		"[node.pi]\naddress = \"tcp://h:1\"\ninsecure-plaintext = true\n[node.pi.tls]\nca = \"ca.pem\"\n": "not one with TLS settings",
		"[node.pi]\naddress = \"tcp://h:1\"\ninsecure-plaintext = \"yes\"\n":                              "line 3",
	} {
		p := write(t, dir, "nodes.toml", content)
		_, err := Load(t.Context(), p)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), p) {
			t.Errorf("Load(%q) = %v, want an error naming the file and containing %q", content, err, want)
		}
	}
}

func TestParseAssignment(t *testing.T) {
	configured := []Node{
		{Name: "pi", Address: "tcp://10.0.0.5:1234", TLS: TLS{ServerName: "pi.local"}, Source: "/etc/kiln/nodes.toml"},
	}
	a, err := ParseAssignment("linux/arm64,arm/v7=tcp://10.0.0.7:1234", configured)
	if err != nil || len(a.Platforms) != 2 || a.Node.Address != "tcp://10.0.0.7:1234" || a.Node.Name != "tcp://10.0.0.7:1234" {
		t.Fatalf("address: %+v %v", a, err)
	}
	if a.Node.String() != "tcp://10.0.0.7:1234" {
		t.Fatalf("String() = %q", a.Node.String())
	}
	a, err = ParseAssignment("arm64=pi", configured)
	if err != nil || a.Node.Name != "pi" || a.Node.TLS.ServerName != "pi.local" {
		t.Fatalf("name: %+v %v", a, err)
	}
	a, err = ParseAssignment("arm64=tcp://10.0.0.5:1234", configured)
	if err != nil || a.Node.Name != "pi" {
		t.Fatalf("a configured address takes the node's name and TLS: %+v %v", a, err)
	}
	a, err = ParseAssignment("linux/amd64=local", configured)
	if err != nil || !a.Local {
		t.Fatalf("local: %+v %v", a, err)
	}
	for in, want := range map[string]string{
		"linux/arm64":                                  "use PLATFORM=ADDRESS",
		"=tcp://h:1":                                   "use PLATFORM=ADDRESS",
		"linux/nope!=tcp://h:1":                        "invalid platform",
		"arm64=graviton":                               `"graviton" is neither an address`,
		"arm64=tcp://h":                                "give the host and port",
		"arm64=ftp://h:1":                              `unknown scheme "ftp"`,
		"arm64=tcp://h:1,bogus=1":                      `unknown option "bogus"`,
		"arm64=tcp://h:1,tls-cert=c.pem":               "give both a client certificate",
		"arm64=tcp://h:1,tls-ca=/nonexistent/ca.pem":   "cannot read TLS file",
		"arm64=local,tls-ca=x":                         "do not apply to local",
		"arm64=pi,tls-ca=x":                            "takes its TLS settings from /etc/kiln/nodes.toml",
		"arm64=unix:///run/b.sock,tls-server-name=pi":  "apply to tcp:// addresses only",
		"arm64=ssh://me@h?socket=/run/b.sock":          "give the node's socket as the path",
		"arm64=ssh://me@h/run/b.sock#x":                "takes no query or fragment",
		"arm64=ssh://me:pw@h":                          "takes no password",
		"arm64=tcp://h:1,insecure-plaintext=maybe":     "insecure-plaintext must be true or false",
		"arm64=unix:///b.sock,insecure-plaintext=true": "not unix:///b.sock",
		"arm64=pi,insecure-plaintext=true":             "not one with TLS settings",
		"arm64=local,insecure-plaintext=true":          "do not apply to local",
	} {
		_, err := ParseAssignment(in, configured)
		if err == nil || !strings.Contains(err.Error(), want) || !usage.Is(err) {
			t.Errorf("ParseAssignment(%q) = %v, want a usage error containing %q", in, err, want)
		}
	}
	a, err = ParseAssignment("arm64=ssh://me@h:2222/run/b.sock", nil)
	if err != nil || a.Node.Address != "ssh://me@h:2222/run/b.sock" {
		t.Fatalf("ssh with a port and socket: %+v %v", a, err)
	}
	if _, err := ParseAssignment("arm64=pi", nil); err == nil || !strings.Contains(err.Error(), "none is configured") {
		t.Errorf("no nodes file: %v", err)
	}
}

func TestFind(t *testing.T) {
	configured := []Node{{Name: "pi", Address: "tcp://h:1"}}
	if n, err := Find(configured, "pi"); err != nil || n.Name != "pi" {
		t.Fatalf("Find: %+v %v", n, err)
	}
	_, err := Find(configured, "graviton")
	if err == nil || !strings.Contains(err.Error(), "the configured nodes are pi") || !usage.Is(err) {
		t.Fatalf("Find missing: %v", err)
	}
}

func TestExplain(t *testing.T) {
	err := errors.New(`rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: dial tcp 10.0.0.5:1234: connect: connection refused"`)
	if got := Explain(err); got != "dial tcp 10.0.0.5:1234: connect: connection refused" {
		t.Fatalf("Explain = %q", got)
	}
}

// TestPlaintextNodes: a tcp:// node without TLS is refused for builds,
// with one line saying how to give it TLS or accept the risk where it was
// configured, unless nodes.toml or --node accepts it by name of the risk.
func TestPlaintextNodes(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "ca.pem", "x")
	file := write(t, dir, "nodes.toml", `
[node.plain]
address = "tcp://10.0.0.5:1234"

[node.accepted]
address = "tcp://10.0.0.6:1234"
insecure-plaintext = true

[node.secure]
address = "tcp://10.0.0.7:1234"
[node.secure.tls]
ca = "ca.pem"

[node.sock]
address = "unix:///run/buildkit/buildkitd.sock"

[node.tunnel]
address = "ssh://me@graviton"
`)
	ns, err := Load(t.Context(), file)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Node{}
	for _, n := range ns {
		byName[n.Name] = n
	}
	for name, want := range map[string]string{"plain": TransportPlaintext, "accepted": TransportPlaintext, "secure": TransportTLS, "sock": TransportUnix, "tunnel": TransportSSH} {
		if got := byName[name].Transport(); got != want {
			t.Errorf("node %s: Transport() = %q, want %q", name, got, want)
		}
		if st := newStatus(byName[name]); st.Transport != want {
			t.Errorf("node %s: Status.Transport = %q, want %q", name, st.Transport, want)
		}
	}
	err = byName["plain"].CheckTransport()
	if err == nil || !usage.Is(err) || strings.Contains(err.Error(), "\n") ||
		!strings.Contains(err.Error(), "node plain (tcp://10.0.0.5:1234) is plain tcp:// without TLS") ||
		!strings.Contains(err.Error(), "insecure-plaintext = true") || !strings.Contains(err.Error(), file) {
		t.Errorf("CheckTransport of a plain configured node = %v", err)
	}
	for _, name := range []string{"accepted", "secure", "sock", "tunnel"} {
		if err := byName[name].CheckTransport(); err != nil {
			t.Errorf("CheckTransport of %s = %v, want nil", name, err)
		}
	}

	// On the command line: refused unless the value accepts it.
	a, err := ParseAssignment("arm64=tcp://10.0.0.9:1234", ns)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Node.CheckTransport(); err == nil || !usage.Is(err) || !strings.Contains(err.Error(), ",insecure-plaintext=true") {
		t.Errorf("CheckTransport of a plain --node address = %v", err)
	}
	for _, v := range []string{"arm64=tcp://10.0.0.9:1234,insecure-plaintext=true", "arm64=plain,insecure-plaintext=true", "arm64=accepted"} {
		a, err := ParseAssignment(v, ns)
		if err != nil || !a.Node.InsecurePlaintext || a.Node.CheckTransport() != nil {
			t.Errorf("ParseAssignment(%q) = %+v, %v: want the plain node accepted", v, a.Node, err)
		}
	}
	// false withdraws what the file accepts, for one build.
	a, err = ParseAssignment("arm64=accepted,insecure-plaintext=false", ns)
	if err != nil || a.Node.CheckTransport() == nil {
		t.Errorf("insecure-plaintext=false: %+v %v, want the node refused", a.Node, err)
	}
}

// A nodes file that is not a regular file (a FIFO nobody writes to) or is
// larger than any real one is refused at once, naming the file.
func TestLoadRefusesWhatIsNotANodesFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.toml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(t.Context(), fifo); err == nil || !strings.Contains(err.Error(), fifo) || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Load(fifo) = %v, want a refusal naming %s", err, fifo)
	}
	big := write(t, dir, "big.toml", "# "+strings.Repeat("x", maxFileSize)+"\n")
	if _, err := Load(t.Context(), big); err == nil || !strings.Contains(err.Error(), big) {
		t.Errorf("Load(big) = %v, want a refusal naming %s", err, big)
	}
}
