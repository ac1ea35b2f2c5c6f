// Package nodes describes the remote BuildKit daemons ("nodes") kiln can
// hand platforms of a build to: their configuration in nodes.toml, the
// --node flag, connecting to them with BuildKit's own client (tcp:// with
// optional TLS, unix://, ssh:// through BuildKit's connection helper) and
// asking them what they are and which platforms they build.
package nodes

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/pelletier/go-toml/v2"

	"github.com/kiln-build/kiln/internal/safeio"
	"github.com/kiln-build/kiln/platform"
	"github.com/kiln-build/kiln/usage"
)

// SystemFile is the nodes file every user of the machine shares.
const SystemFile = "/etc/kiln/nodes.toml"

// Local is the --node target that builds platforms in the kiln process.
const Local = "local"

// Node is one remote BuildKit daemon.
type Node struct {
	// Name identifies the node in messages and the progress display: the
	// key of its table in nodes.toml, or its address when given by --node.
	Name string `json:"name"`
	// Address is where BuildKit's client reaches it: tcp://HOST:PORT,
	// unix:///PATH or ssh://[USER@]HOST[:PORT][/SOCKET].
	Address string `json:"address"`
	// Platforms, when set, are the only platforms kiln sends to the node;
	// otherwise it serves those it reports.
	Platforms []ocispecs.Platform `json:"-"`
	// TLS is the client side of a tcp:// node's TLS; zero for plain TCP.
	TLS TLS `json:"tls,omitzero"`
	// InsecurePlaintext accepts a tcp:// node without TLS for builds:
	// what a build sends it (registry credentials, secrets, ssh agents,
	// the build context) crosses the network unencrypted. Builds refuse
	// such a node without it (CheckTransport).
	InsecurePlaintext bool `json:"insecurePlaintext,omitempty"`
	// Source is the file that configured the node; empty for --node.
	Source string `json:"source,omitempty"`
}

// TLS names the files of a node's TLS configuration.
type TLS struct {
	// CA is the certificate authority the node's certificate is checked
	// against.
	CA string `toml:"ca" json:"ca,omitempty"`
	// Cert and Key are kiln's client certificate and key, for nodes that
	// require them (buildkitd --tlscacert).
	Cert string `toml:"cert" json:"cert,omitempty"`
	Key  string `toml:"key" json:"key,omitempty"`
	// ServerName is the name the node's certificate must carry, when it
	// is not the address's host.
	ServerName string `toml:"server-name" json:"serverName,omitempty"`
}

// Enabled reports whether any TLS setting is given.
func (t TLS) Enabled() bool { return t != TLS{} }

// Transports of nodes, as Node.Transport names them.
const (
	// TransportTLS is tcp:// with TLS.
	TransportTLS = "tls"
	// TransportSSH is ssh://, through the ssh client.
	TransportSSH = "ssh"
	// TransportUnix is a unix:// socket on this host.
	TransportUnix = "unix"
	// TransportPlaintext is tcp:// without TLS: unencrypted.
	TransportPlaintext = "plaintext"
)

// Transport says how kiln reaches the node: TransportTLS, TransportSSH,
// TransportUnix, or TransportPlaintext for a tcp:// address without TLS,
// whose traffic anyone on the network path can read.
func (n Node) Transport() string {
	switch {
	case strings.HasPrefix(n.Address, "ssh://"):
		return TransportSSH
	case strings.HasPrefix(n.Address, "unix://"):
		return TransportUnix
	case n.TLS.Enabled():
		return TransportTLS
	}
	return TransportPlaintext
}

// Plaintext reports whether kiln reaches the node unencrypted: tcp://
// without TLS.
func (n Node) Plaintext() bool { return n.Transport() == TransportPlaintext }

// CheckTransport refuses, as a usage error, a node that a build would
// reach unencrypted without the user's explicit consent: the session of a
// build hands the node registry credentials, secrets and ssh agents, in
// clear text on plain TCP. It says how to give the node TLS or accept the
// risk, where the node was configured.
func (n Node) CheckTransport() error {
	if !n.Plaintext() || n.InsecurePlaintext {
		return nil
	}
	const risk = "is plain tcp:// without TLS: the registry credentials, secrets and ssh agents a build hands it would cross the network unencrypted"
	if n.Source != "" {
		return usage.Errorf("node %s %s; give it TLS settings in a [node.%s.tls] table of %s (see docs/nodes.md), or accept the risk with insecure-plaintext = true in its table there", n, risk, n.Name, n.Source)
	}
	return usage.Errorf("node %s %s; give its TLS settings in --node (,tls-ca=FILE,tls-cert=FILE,tls-key=FILE), or accept the risk by adding ,insecure-plaintext=true to it", n, risk)
}

// Restricted lists the node's configured platforms as strings.
func (n Node) Restricted() []string {
	return platform.Strings(n.Platforms)
}

// String is how messages name the node: "pi (tcp://10.0.0.5:1234)", or
// the address alone for a node given by address.
func (n Node) String() string {
	if n.Name == "" || n.Name == n.Address {
		return n.Address
	}
	return fmt.Sprintf("%s (%s)", n.Name, n.Address)
}

// file is nodes.toml as written.
type file struct {
	Node map[string]fileNode `toml:"node"`
}

type fileNode struct {
	Address           string   `toml:"address"`
	Platforms         []string `toml:"platforms"`
	TLS               TLS      `toml:"tls"`
	InsecurePlaintext bool     `toml:"insecure-plaintext"`
}

// DefaultFiles are the nodes files kiln reads, in order: the system's,
// then the user's ($XDG_CONFIG_HOME/kiln/nodes.toml), whose nodes replace
// the system's of the same name.
func DefaultFiles() []string {
	files := []string{SystemFile}
	if dir, err := os.UserConfigDir(); err == nil {
		files = append(files, filepath.Join(dir, "kiln", "nodes.toml"))
	}
	return files
}

// maxFileSize bounds a nodes file: a few hundred nodes fit in a fraction
// of it, and a FIFO or /dev/zero at the path must not hang or fill memory.
const maxFileSize = 1 << 20

// LoadDefault reads the default nodes files; missing files are skipped.
func LoadDefault(ctx context.Context) ([]Node, error) { return Load(ctx, DefaultFiles()...) }

// Load reads nodes files in order; a later file's node replaces an
// earlier one of the same name. Missing files are skipped; anything but a
// regular file of at most 1 MiB is refused. The nodes are returned sorted
// by name.
func Load(ctx context.Context, paths ...string) ([]Node, error) {
	byName := map[string]Node{}
	for _, path := range paths {
		data, err := safeio.ReadFile(ctx, path, maxFileSize)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading the nodes file %s: %w", path, err)
		}
		ns, err := parseFile(path, data)
		if err != nil {
			return nil, err
		}
		for _, n := range ns {
			byName[n.Name] = n
		}
	}
	out := make([]Node, 0, len(byName))
	for _, n := range byName {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// parseFile decodes one nodes file; unknown keys are errors, so that a
// misspelt setting is not silently ignored.
func parseFile(path string, data []byte) ([]Node, error) {
	var f file
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		var sm *toml.StrictMissingError
		if errors.As(err, &sm) {
			return nil, fmt.Errorf("invalid nodes file %s: unknown setting %s; a node takes address, platforms, insecure-plaintext and a [node.NAME.tls] table with ca, cert, key and server-name", path, strings.Join(missingKeys(sm), ", "))
		}
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return nil, fmt.Errorf("invalid nodes file %s, line %d column %d: %w", path, row, col, err)
		}
		return nil, fmt.Errorf("invalid nodes file %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	var out []Node
	for name, fn := range f.Node {
		if !validName.MatchString(name) {
			return nil, fmt.Errorf("invalid nodes file %s: node name %q: use letters, digits, '.', '_' and '-'", path, name)
		}
		if name == Local {
			return nil, fmt.Errorf("invalid nodes file %s: %q is reserved for building in the kiln process; name the node otherwise", path, name)
		}
		n := Node{Name: name, Address: fn.Address, TLS: fn.TLS, InsecurePlaintext: fn.InsecurePlaintext, Source: path}
		if err := checkAddress(n.Address); err != nil {
			return nil, fmt.Errorf("invalid nodes file %s: node %s: %w", path, name, err)
		}
		if len(fn.Platforms) > 0 {
			ps, err := platform.ParseList(fn.Platforms)
			if err != nil {
				return nil, fmt.Errorf("invalid nodes file %s: node %s: %w", path, name, err)
			}
			n.Platforms = ps
		}
		n.TLS = resolveTLS(dir, n.TLS)
		if err := checkTLS(n); err != nil {
			return nil, fmt.Errorf("invalid nodes file %s: node %s: %w", path, name, err)
		}
		if n.InsecurePlaintext && !n.Plaintext() {
			return nil, fmt.Errorf("invalid nodes file %s: node %s: insecure-plaintext applies to tcp:// addresses without TLS only, not %s", path, name, describeTransport(n))
		}
		out = append(out, n)
	}
	return out, nil
}

func missingKeys(sm *toml.StrictMissingError) []string {
	var keys []string
	for _, e := range sm.Errors {
		keys = append(keys, strings.Join(e.Key(), "."))
	}
	return keys
}

// resolveTLS makes relative paths relative to the nodes file's directory.
func resolveTLS(dir string, t TLS) TLS {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	t.CA, t.Cert, t.Key = abs(t.CA), abs(t.Cert), abs(t.Key)
	return t
}

// schemes are the address schemes kiln connects to: BuildKit's own and
// its ssh connection helper.
var schemes = []string{"tcp", "unix", "ssh"}

func hasPassword(u *url.Userinfo) bool { _, ok := u.Password(); return ok }

// checkAddress accepts the addresses BuildKit's client does.
func checkAddress(addr string) error {
	if addr == "" {
		return fmt.Errorf("no address: give one like tcp://HOST:1234, unix:///run/buildkit/buildkitd.sock or ssh://USER@HOST")
	}
	u, err := url.Parse(addr)
	if err != nil || u.Scheme == "" {
		return fmt.Errorf("invalid address %q: give one like tcp://HOST:1234, unix:///run/buildkit/buildkitd.sock or ssh://USER@HOST", addr)
	}
	known := false
	for _, s := range schemes {
		known = known || u.Scheme == s
	}
	switch {
	case !known:
		return fmt.Errorf("invalid address %q: unknown scheme %q; use tcp://, unix:// or ssh://", addr, u.Scheme)
	case u.Scheme == "tcp" && (u.Hostname() == "" || u.Port() == ""):
		return fmt.Errorf("invalid address %q: give the host and port, e.g. tcp://10.0.0.5:1234", addr)
	case u.Scheme == "unix" && u.Path == "":
		return fmt.Errorf("invalid address %q: give the socket's path, e.g. unix:///run/buildkit/buildkitd.sock", addr)
	case u.Scheme == "ssh" && u.Hostname() == "":
		return fmt.Errorf("invalid address %q: give the host, e.g. ssh://user@host", addr)
	case u.Scheme == "ssh" && (u.RawQuery != "" || u.Fragment != "" || u.ForceQuery):
		// The socket comes from the path only.
		return fmt.Errorf("invalid address %q: ssh:// takes no query or fragment; give the node's socket as the path, e.g. ssh://user@host/run/buildkit/buildkitd.sock", addr)
	case u.Scheme == "ssh" && u.User != nil && hasPassword(u.User):
		return fmt.Errorf("invalid address %q: ssh:// takes no password; use a key (ssh-agent or ~/.ssh/config)", addr)
	case u.Scheme == "ssh":
		if _, err := parseSSH(u); err != nil {
			return fmt.Errorf("invalid address %q: %w", addr, err)
		}
	}
	return nil
}

func checkTLS(n Node) error {
	if !n.TLS.Enabled() {
		return nil
	}
	if !strings.HasPrefix(n.Address, "tcp://") {
		return fmt.Errorf("TLS settings apply to tcp:// addresses only, not %s", n.Address)
	}
	if (n.TLS.Cert == "") != (n.TLS.Key == "") {
		return fmt.Errorf("give both a client certificate (cert) and its key (key), or neither")
	}
	for _, p := range []string{n.TLS.CA, n.TLS.Cert, n.TLS.Key} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("cannot read TLS file %s: %w", p, err)
		}
	}
	return nil
}

// describeTransport names what a node is reached by, for messages.
func describeTransport(n Node) string {
	if n.Transport() == TransportTLS {
		return "one with TLS settings"
	}
	return n.Address
}

// Assignment is one --node value: platforms and where they build.
type Assignment struct {
	// Platforms are the platforms assigned.
	Platforms []ocispecs.Platform
	// Local is set for PLATFORM=local: build them in the kiln process.
	Local bool
	// Node is the node they build on, when not Local.
	Node Node
}

// ParseAssignment parses a --node value:
// PLATFORM[,PLATFORM...]=TARGET[,tls-ca=FILE,tls-cert=FILE,tls-key=FILE,tls-server-name=NAME][,insecure-plaintext=true]
// where TARGET is an address (tcp://, unix://, ssh://), the name of a
// configured node, or "local". An address that a configured node has
// takes that node's name and TLS settings, unless the value gives its own.
// insecure-plaintext=true accepts a plain tcp:// node for this build, as
// the key of that name does in nodes.toml.
func ParseAssignment(s string, configured []Node) (Assignment, error) {
	left, right, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(left) == "" || strings.TrimSpace(right) == "" {
		return Assignment{}, usage.Errorf("use PLATFORM=ADDRESS, e.g. linux/arm64=tcp://10.0.0.5:1234, or PLATFORM=NAME of a node in nodes.toml")
	}
	ps, err := platform.ParseList([]string{left})
	if err != nil {
		return Assignment{}, usage.Wrap(err)
	}
	fields, err := csv.NewReader(strings.NewReader(right)).Read()
	if err != nil || len(fields) == 0 {
		return Assignment{}, usage.Errorf("use PLATFORM=ADDRESS[,tls-ca=FILE,tls-cert=FILE,tls-key=FILE]")
	}
	a := Assignment{Platforms: ps}
	target := strings.TrimSpace(fields[0])
	var tlsSet TLS
	var plaintext, plaintextSet bool
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(f, "=")
		switch k = strings.TrimSpace(k); {
		case !ok:
			return Assignment{}, usage.Errorf("%q is not KEY=VALUE", f)
		case k == "tls-ca":
			tlsSet.CA = v
		case k == "tls-cert":
			tlsSet.Cert = v
		case k == "tls-key":
			tlsSet.Key = v
		case k == "tls-server-name":
			tlsSet.ServerName = v
		case k == "insecure-plaintext":
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				return Assignment{}, usage.Errorf("insecure-plaintext must be true or false, not %q", v)
			}
			plaintext, plaintextSet = b, true
		default:
			return Assignment{}, usage.Errorf("unknown option %q; use tls-ca, tls-cert, tls-key, tls-server-name or insecure-plaintext", k)
		}
	}
	a.Node, err = assignmentTarget(s, target, tlsSet, configured)
	if err != nil {
		return Assignment{}, err
	}
	if a.Node.Name == "" {
		if tlsSet.Enabled() || plaintextSet {
			return Assignment{}, usage.Errorf("TLS and insecure-plaintext options do not apply to local")
		}
		a.Local = true
		return a, nil
	}
	if plaintextSet {
		if plaintext && !a.Node.Plaintext() {
			return Assignment{}, usage.Errorf("insecure-plaintext applies to tcp:// addresses without TLS only, not %s", describeTransport(a.Node))
		}
		a.Node.InsecurePlaintext = plaintext
	}
	return a, nil
}

// assignmentTarget resolves the TARGET of a --node value to a node; the
// zero Node for local.
func assignmentTarget(s, target string, tlsSet TLS, configured []Node) (Node, error) {
	if target == Local {
		return Node{}, nil
	}
	if !strings.Contains(target, "://") {
		for _, n := range configured {
			if n.Name == target {
				if tlsSet.Enabled() {
					return Node{}, usage.Errorf("node %s takes its TLS settings from %s", n.Name, n.Source)
				}
				return n, nil
			}
		}
		if len(configured) == 0 {
			return Node{}, usage.Errorf("%q is neither an address (tcp://HOST:PORT, unix://PATH, ssh://USER@HOST) nor a node of a nodes file (none is configured: see %s)", target, strings.Join(DefaultFiles(), " or "))
		}
		return Node{}, usage.Errorf("%q is neither an address (tcp://HOST:PORT, unix://PATH, ssh://USER@HOST) nor a configured node (%s)", target, strings.Join(names(configured), ", "))
	}
	if err := checkAddress(target); err != nil {
		return Node{}, usage.Errorf("%w", err)
	}
	node := Node{Name: target, Address: target, TLS: tlsSet}
	for _, n := range configured {
		if n.Address == target && !tlsSet.Enabled() {
			node = n
			break
		}
	}
	if err := checkTLS(node); err != nil {
		return Node{}, usage.Errorf("%w", err)
	}
	return node, nil
}

func names(ns []Node) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.Name
	}
	return out
}

// Find returns the configured node called name.
func Find(configured []Node, name string) (Node, error) {
	for _, n := range configured {
		if n.Name == name {
			return n, nil
		}
	}
	if len(configured) == 0 {
		return Node{}, usage.Errorf("no node %q: none is configured; add nodes to %s", name, strings.Join(DefaultFiles(), " or "))
	}
	return Node{}, usage.Errorf("no node %q: the configured nodes are %s", name, strings.Join(names(configured), ", "))
}

// Lookup returns the configured node called name, or for an address
// (tcp://, unix://, ssh://) the configured node with that address or an
// unconfigured one.
func Lookup(configured []Node, name string) (Node, error) {
	if !strings.Contains(name, "://") {
		return Find(configured, name)
	}
	if err := checkAddress(name); err != nil {
		return Node{}, usage.Wrap(err)
	}
	for _, n := range configured {
		if n.Address == name {
			return n, nil
		}
	}
	return Node{Name: name, Address: name}, nil
}
