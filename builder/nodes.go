package builder

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/containerd/platforms"
	bkclient "github.com/moby/buildkit/client"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/emulation"
	"github.com/kiln-build/kiln/nodes"
	"github.com/kiln-build/kiln/platform"
	"github.com/kiln-build/kiln/request"
)

// nodePlan says where each platform of a build is solved: in this process
// or on a remote BuildKit node.
type nodePlan struct {
	// local are the platforms built in this process, in the order asked.
	local []ocispecs.Platform
	// remote are the nodes with the platforms each builds.
	remote []*nodeGroup
	// order is every platform of the build in the order asked.
	order []ocispecs.Platform
}

// nodeGroup is one node and the platforms it builds.
type nodeGroup struct {
	node      nodes.Node
	client    *bkclient.Client
	platforms []ocispecs.Platform
}

// close disconnects from the nodes.
func (p *nodePlan) close() {
	for _, g := range p.remote {
		if g.client != nil {
			g.client.Close()
		}
	}
}

// describe is the line kiln prints before a build on nodes: which
// platforms build where.
func (p *nodePlan) describe() string {
	var parts []string
	if len(p.local) > 0 {
		parts = append(parts, platform.FormatList(p.local)+" here")
	}
	for _, g := range p.remote {
		parts = append(parts, fmt.Sprintf("%s on node %s", platform.FormatList(g.platforms), g.node))
	}
	return "building " + strings.Join(parts, ", ")
}

// planNodes decides where each platform builds, from --node and the nodes
// files, and connects to the nodes chosen. It returns nil when every
// platform builds here: the build then takes the ordinary path. A node
// that does not answer (or does not build a platform sent to it) fails the
// build here, before any work starts, unless --node-fallback=emulate moves
// its platforms to this process.
func planNodes(ctx context.Context, req *request.Request) (*nodePlan, error) {
	assigned, configured := req.Nodes.Assigned, req.Nodes.Configured
	if len(assigned) == 0 && len(configured) == 0 {
		return nil, nil
	}
	want := req.Platforms
	if len(want) == 0 {
		want = []ocispecs.Platform{emulation.HostPlatform()}
	}
	plan := &nodePlan{order: want}
	groups := map[string]*nodeGroup{}
	addRemote := func(n nodes.Node, p ocispecs.Platform) {
		key := n.Name + "\x00" + n.Address
		g, ok := groups[key]
		if !ok {
			g = &nodeGroup{node: n}
			groups[key] = g
			plan.remote = append(plan.remote, g)
		}
		g.platforms = append(g.platforms, p)
	}
	host := platforms.Only(emulation.HostPlatform())
	var unrestricted []nodes.Status // probed lazily, once
	probed := false
	for _, p := range want {
		key := platforms.Format(p)
		if a, ok := assigned[key]; ok {
			if a.Local {
				plan.local = append(plan.local, p)
			} else {
				addRemote(a.Node, p)
			}
			continue
		}
		if n, ok := restrictedTo(configured, p); ok {
			addRemote(n, p)
			continue
		}
		if host.Match(p) {
			plan.local = append(plan.local, p)
			continue
		}
		// A node without configured platforms takes the platform it runs
		// natively; the others it reports it would emulate, as this
		// process can.
		if !probed {
			probed = true
			unrestricted = probeUnrestricted(ctx, configured)
		}
		if st, ok := nativeFor(unrestricted, p); ok {
			addRemote(st.Node, p)
			continue
		}
		plan.local = append(plan.local, p)
	}
	for _, st := range unrestricted {
		if st.Reachable {
			continue
		}
		fmt.Fprintf(req.Stderr, "node %s does not answer (%s): not using it\n", st.Node, st.Error)
	}
	// A build hands its nodes registry credentials, secrets and ssh
	// agents: none goes to a node in clear text unless the user said so.
	// Asking a node what it builds (above) sends nothing of the build.
	for _, g := range plan.remote {
		if err := g.node.CheckTransport(); err != nil {
			return nil, err
		}
	}
	if err := plan.connect(ctx, req.Nodes.Fallback, req.Stderr); err != nil {
		plan.close()
		return nil, err
	}
	if len(plan.remote) == 0 {
		return nil, nil
	}
	if err := req.CheckNodeOptions(); err != nil {
		plan.close()
		return nil, err
	}
	return plan, nil
}

func platformIn(p ocispecs.Platform, list []ocispecs.Platform) bool {
	for _, q := range list {
		if platforms.Format(q) == platforms.Format(p) {
			return true
		}
	}
	return false
}

// restrictedTo returns the first configured node (by name) whose
// configured platforms include p.
func restrictedTo(configured []nodes.Node, p ocispecs.Platform) (nodes.Node, bool) {
	for _, n := range configured {
		if platformIn(p, n.Platforms) {
			return n, true
		}
	}
	return nodes.Node{}, false
}

func probeUnrestricted(ctx context.Context, configured []nodes.Node) []nodes.Status {
	var ns []nodes.Node
	for _, n := range configured {
		if len(n.Platforms) == 0 {
			ns = append(ns, n)
		}
	}
	return nodes.ProbeAll(ctx, ns)
}

func nativeFor(sts []nodes.Status, p ocispecs.Platform) (nodes.Status, bool) {
	for _, st := range sts {
		if st.Reachable && st.IsNative(p) {
			return st, true
		}
	}
	return nodes.Status{}, false
}

// connect opens a client to each node and asks it what it builds. A node
// that does not answer, or does not build a platform sent to it, fails
// the plan, or with the emulate fallback gives its platforms to this
// process.
func (p *nodePlan) connect(ctx context.Context, fallback string, stderr io.Writer) error {
	var kept []*nodeGroup
	for _, g := range p.remote {
		problem := ""
		c, err := nodes.Connect(ctx, g.node)
		if err != nil {
			return err
		}
		g.client = c
		st := nodes.ProbeClient(ctx, c, g.node)
		if !st.Reachable {
			problem = fmt.Sprintf("node %s does not answer: %s", g.node, st.Error)
		} else {
			var missing []ocispecs.Platform
			for _, pl := range g.platforms {
				if !st.Serves(pl) {
					missing = append(missing, pl)
				}
			}
			if len(missing) > 0 {
				problem = fmt.Sprintf("node %s does not build %s: it builds %s", g.node, platform.FormatList(missing), strings.Join(st.Platforms, ", "))
			}
		}
		if problem == "" {
			kept = append(kept, g)
			continue
		}
		if fallback != request.FallbackEmulate {
			return fmt.Errorf("%s; check that buildkitd runs there and listens on that address, or build %s here with --node-fallback=emulate", problem, platform.FormatList(g.platforms))
		}
		fmt.Fprintf(stderr, "%s: building %s here instead (--node-fallback=emulate)\n", problem, platform.FormatList(g.platforms))
		c.Close()
		g.client = nil
		p.local = append(p.local, g.platforms...)
	}
	p.remote = kept
	// Local platforms keep the order the build asked for.
	var local []ocispecs.Platform
	for _, pl := range p.order {
		if platformIn(pl, p.local) {
			local = append(local, pl)
		}
	}
	p.local = local
	return nil
}
