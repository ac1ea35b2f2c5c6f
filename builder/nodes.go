package builder

import (
	"context"
	"fmt"
	"strings"

	"github.com/containerd/platforms"
	bkclient "github.com/moby/buildkit/client"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/emulation"
	"github.com/kiln-build/kiln/nodes"
	"github.com/kiln-build/kiln/platform"
	"github.com/kiln-build/kiln/usage"
)

// Values of --node-fallback.
const (
	// FallbackFail fails a build whose node does not answer.
	FallbackFail = "fail"
	// FallbackEmulate builds the platforms of a node that does not answer
	// in the kiln process instead, under emulation when foreign.
	FallbackEmulate = "emulate"
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
func planNodes(ctx context.Context, req *request) (*nodePlan, error) {
	o := req.opts
	fallback := o.NodeFallback
	switch fallback {
	case "", FallbackFail:
		fallback = FallbackFail
	case FallbackEmulate:
	default:
		return nil, usage.Errorf("invalid --node-fallback %q: use fail or emulate", o.NodeFallback)
	}
	files := o.NodesFiles
	if files == nil {
		files = nodes.DefaultFiles()
	}
	configured, err := nodes.Load(files...)
	if err != nil {
		return nil, err
	}
	if len(o.Nodes) == 0 && len(configured) == 0 {
		return nil, nil
	}
	want := req.platforms
	if len(want) == 0 {
		want = []ocispecs.Platform{emulation.HostPlatform()}
	}
	assigned, err := parseAssignments(o.Nodes, configured, want)
	if err != nil {
		return nil, err
	}
	for _, a := range assigned {
		if !a.Local {
			// Refuse what nodes cannot do before contacting any.
			if err := req.checkNodeOptions(); err != nil {
				return nil, err
			}
			break
		}
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
			unrestricted = probeUnrestricted(ctx, configured, o)
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
		fmt.Fprintf(o.Stderr, "node %s does not answer (%s): not using it\n", st.Node, st.Error)
	}
	if err := plan.connect(ctx, fallback, o); err != nil {
		plan.close()
		return nil, err
	}
	if len(plan.remote) == 0 {
		return nil, nil
	}
	if err := req.checkNodeOptions(); err != nil {
		plan.close()
		return nil, err
	}
	return plan, nil
}

// parseAssignments parses --node values, keyed by platform; every platform
// named must be one the build targets.
func parseAssignments(values []string, configured []nodes.Node, want []ocispecs.Platform) (map[string]nodes.Assignment, error) {
	out := map[string]nodes.Assignment{}
	for _, v := range values {
		a, err := nodes.ParseAssignment(v, configured)
		if err != nil {
			return nil, err
		}
		for _, p := range a.Platforms {
			key := platforms.Format(p)
			if !platformIn(p, want) {
				return nil, usage.Errorf("--node %s names %s, which this build does not target (%s): add it to --platform", v, key, platform.FormatList(want))
			}
			if _, dup := out[key]; dup {
				return nil, usage.Errorf("--node names %s twice: give one place to build each platform", key)
			}
			out[key] = a
		}
	}
	return out, nil
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

func probeUnrestricted(ctx context.Context, configured []nodes.Node, o *Options) []nodes.Status {
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
func (p *nodePlan) connect(ctx context.Context, fallback string, o *Options) error {
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
		if fallback != FallbackEmulate {
			return fmt.Errorf("%s; check that buildkitd runs there and listens on that address, or build %s here with --node-fallback=emulate", problem, platform.FormatList(g.platforms))
		}
		fmt.Fprintf(o.Stderr, "%s: building %s here instead (--node-fallback=emulate)\n", problem, platform.FormatList(g.platforms))
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

// checkNodeOptions refuses what a build on nodes cannot do yet: results
// come back into containerd's content store and are named there, so the
// outputs are the image store (with --push), and exported cache would be
// written by several builders at once.
func (r *request) checkNodeOptions() error {
	for _, o := range r.outputs {
		if o.Type != "image" {
			return usage.Errorf("--output type=%s is not supported when platforms build on nodes: the image goes to containerd's store (add --push to push it), and \"kiln save\" or \"kiln push\" export it from there", o.Type)
		}
	}
	for _, c := range r.cacheExports {
		if c.Type != "inline" {
			return usage.Errorf("--cache-to type=%s is not supported when platforms build on nodes: each node keeps its own cache; use type=inline", c.Type)
		}
	}
	return nil
}
