package nodes

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/containerd/platforms"
	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/util/grpcerrors"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/platform"
)

// Timeout bounds how long kiln waits for a node to answer before a build,
// so a node that is down fails the build at once rather than hanging it.
const Timeout = 10 * time.Second

// Connect returns a BuildKit client for n. It does not contact the node;
// Probe does.
func Connect(ctx context.Context, n Node) (*bkclient.Client, error) {
	var opts []bkclient.ClientOpt
	if n.TLS.Enabled() {
		opts = append(opts, bkclient.WithServerConfig(n.TLS.ServerName, n.TLS.CA))
		if n.TLS.Cert != "" {
			opts = append(opts, bkclient.WithCredentials(n.TLS.Cert, n.TLS.Key))
		}
	}
	if strings.HasPrefix(n.Address, "ssh://") {
		dial, err := sshDialer(n.Address)
		if err != nil {
			return nil, err
		}
		opts = append(opts, bkclient.WithContextDialer(dial))
	}
	c, err := bkclient.New(ctx, n.Address, opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to node %s: %w", n, err)
	}
	return c, nil
}

// Worker is one of a node's BuildKit workers.
type Worker struct {
	ID        string            `json:"id"`
	Platforms []string          `json:"platforms"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// Status is what a node said when asked.
type Status struct {
	Node Node `json:"node"`
	// Transport is how kiln reaches the node (Node.Transport):
	// "plaintext" for a tcp:// node without TLS, which builds refuse
	// unless Node.InsecurePlaintext accepts it.
	Transport string `json:"transport"`
	// Reachable is true when the node answered.
	Reachable bool `json:"reachable"`
	// Error says why it did not, as one line.
	Error string `json:"error,omitempty"`
	// BuildKit is the node's BuildKit version.
	BuildKit string `json:"buildkit,omitempty"`
	// Workers are the node's workers, each with the platforms it reports
	// (its native one first).
	Workers []Worker `json:"workers,omitempty"`
	// Native is the node's own platform: the first its first worker
	// reports. The others it reports it builds under emulation.
	Native string `json:"native,omitempty"`
	// Reported are the platforms the node's workers report, native first.
	Reported []ocispecs.Platform `json:"-"`
	// Platforms are those the node serves: its configured ones, or else
	// what it reports.
	Platforms []string `json:"platforms,omitempty"`
	// Restricted is set when the platforms come from the configuration.
	Restricted bool `json:"restricted"`

	err error
}

// Err returns why the node did not answer, wrapped for callers that want
// the cause; nil when it did.
func (s Status) Err() error { return s.err }

// Serves reports whether the node builds p: one of its configured
// platforms, or one it reports when none are configured.
func (s Status) Serves(p ocispecs.Platform) bool {
	list := s.Reported
	if len(s.Node.Platforms) > 0 {
		list = s.Node.Platforms
	}
	for _, q := range list {
		if platforms.OnlyStrict(q).Match(p) {
			return true
		}
	}
	return false
}

// IsNative reports whether p is the node's native platform: the first one
// its first worker reports.
func (s Status) IsNative(p ocispecs.Platform) bool {
	return len(s.Reported) > 0 && platforms.OnlyStrict(s.Reported[0]).Match(p)
}

// Probe asks a node for its version and workers, within Timeout. A node
// that does not answer gives a Status with Reachable false and the reason.
func Probe(ctx context.Context, n Node) Status {
	st := newStatus(n)
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	c, err := Connect(ctx, n)
	if err != nil {
		return st.failed(err)
	}
	defer c.Close()
	return probeClient(ctx, c, st)
}

// ProbeClient is Probe over an open client, which the caller keeps.
func ProbeClient(ctx context.Context, c *bkclient.Client, n Node) Status {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	return probeClient(ctx, c, newStatus(n))
}

func newStatus(n Node) Status {
	return Status{Node: n, Transport: n.Transport(), Restricted: len(n.Platforms) > 0}
}

func probeClient(ctx context.Context, c *bkclient.Client, st Status) Status {
	ws, err := c.ListWorkers(ctx)
	if err != nil {
		return st.failed(err)
	}
	if info, err := c.Info(ctx); err == nil {
		st.BuildKit = info.BuildkitVersion.Version
	}
	st.Reachable = true
	seen := map[string]bool{}
	for _, w := range ws {
		wk := Worker{ID: w.ID, Labels: w.Labels}
		for _, p := range w.Platforms {
			p = platforms.Normalize(p)
			key := platform.Format(p)
			wk.Platforms = append(wk.Platforms, key)
			if !seen[key] {
				seen[key] = true
				st.Reported = append(st.Reported, p)
			}
		}
		st.Workers = append(st.Workers, wk)
	}
	if len(st.Reported) > 0 {
		st.Native = platform.Format(st.Reported[0])
	}
	if st.Restricted {
		st.Platforms = st.Node.Restricted()
	} else {
		st.Platforms = platform.Strings(st.Reported)
	}
	return st
}

func (st Status) failed(err error) Status {
	st.err = err
	st.Error = Explain(err) + tlsHint(st.Node, err)
	return st
}

// tlsMismatch matches what a TLS server does to a client without the
// certificate it wants, and what a plain client sees of a TLS server.
var tlsMismatch = regexp.MustCompile(`broken pipe|connection reset|server preface|EOF|certificate required|bad certificate|first record does not look like a TLS handshake`)

// tlsHint suggests the TLS setting a refusal may come from.
func tlsHint(n Node, err error) string {
	if !tlsMismatch.MatchString(err.Error()) {
		return ""
	}
	switch {
	case !n.TLS.Enabled() && strings.HasPrefix(n.Address, "tcp://"):
		return " (if the node requires TLS, give its CA and a client certificate: tls-ca, tls-cert and tls-key)"
	case n.TLS.Enabled() && n.TLS.Cert == "":
		return " (if the node requires client certificates, give tls-cert and tls-key)"
	}
	return ""
}

// ProbeAll probes nodes side by side and returns their statuses in order.
func ProbeAll(ctx context.Context, ns []Node) []Status {
	out := make([]Status, len(ns))
	var wg sync.WaitGroup
	for i, n := range ns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = Probe(ctx, n)
		}()
	}
	wg.Wait()
	return out
}

var (
	grpcPrefix = regexp.MustCompile(`rpc error: code = \w+ desc = `)
	dialPrefix = regexp.MustCompile(`(?:connection error: desc = )?"?(?:transport: (?:Error while dialing: |authentication handshake failed: )?)?`)
	codePrefix = regexp.MustCompile(`\b(?:Unavailable|Unknown|Internal|Canceled|Unauthenticated|PermissionDenied): |failed to list workers: `)
)

// Explain turns a failed call to a node into one line without gRPC's
// wrapping: "dial tcp 10.0.0.5:1234: connect: connection refused".
func Explain(err error) string {
	if errors.Is(err, context.DeadlineExceeded) || grpcerrors.Code(err).String() == "DeadlineExceeded" {
		return fmt.Sprintf("no answer within %s", Timeout)
	}
	msg := grpcerrors.FromGRPC(err).Error()
	msg = grpcPrefix.ReplaceAllString(msg, "")
	msg = dialPrefix.ReplaceAllString(msg, "")
	msg = codePrefix.ReplaceAllString(msg, "")
	msg = strings.TrimSuffix(strings.TrimSpace(msg), `"`)
	return msg
}
