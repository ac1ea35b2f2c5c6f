package request

import (
	"context"
	"slices"

	"github.com/containerd/platforms"
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

// Nodes say where platforms of a build may go besides this process: the
// remote BuildKit nodes of the nodes files and of --node. Which node gets
// which platform is decided when the build starts, by asking them.
type Nodes struct {
	// Configured are the nodes of the nodes files, by name.
	Configured []nodes.Node
	// Assigned are the --node values by platform (platforms.Format); every
	// platform is one the build targets.
	Assigned map[string]nodes.Assignment
	// Fallback is what happens when a node does not answer before the
	// build: FallbackFail or FallbackEmulate.
	Fallback string
}

// resolveNodes reads the nodes files and checks --node and --node-fallback.
func (r *Request) resolveNodes(ctx context.Context, o *Options) error {
	fallback := o.NodeFallback
	switch fallback {
	case "", FallbackFail:
		fallback = FallbackFail
	case FallbackEmulate:
	default:
		return usage.Errorf("invalid --node-fallback %q: use fail or emulate", o.NodeFallback)
	}
	files := o.NodesFiles
	if files == nil {
		files = nodes.DefaultFiles()
	}
	configured, err := nodes.Load(ctx, files...)
	if err != nil {
		return err
	}
	r.Nodes = Nodes{Configured: configured, Fallback: fallback}
	if len(o.Nodes) == 0 {
		return nil
	}
	want := r.Platforms
	if len(want) == 0 {
		want = []ocispecs.Platform{emulation.HostPlatform()}
	}
	if r.Nodes.Assigned, err = parseAssignments(o.Nodes, configured, want); err != nil {
		return err
	}
	for _, a := range r.Nodes.Assigned {
		if !a.Local {
			// Refuse what nodes cannot do before contacting any.
			return r.CheckNodeOptions()
		}
	}
	return nil
}

// parseAssignments parses --node values, keyed by platform; every platform
// named must be one the build targets.
func parseAssignments(values []string, configured []nodes.Node, want []ocispecs.Platform) (map[string]nodes.Assignment, error) {
	out := map[string]nodes.Assignment{}
	for _, v := range values {
		a, err := nodes.ParseAssignment(v, configured)
		if err != nil {
			return nil, usage.Errorf("invalid --node %q: %w", v, err)
		}
		for _, p := range a.Platforms {
			key := platforms.Format(p)
			if !slices.ContainsFunc(want, func(q ocispecs.Platform) bool { return platforms.Format(q) == key }) {
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

// CheckNodeOptions refuses what a build on nodes cannot do yet: results
// come back into containerd's content store and are named there, so the
// outputs are the image store (with --push), and exported cache would be
// written by several builders at once.
func (r *Request) CheckNodeOptions() error {
	for _, o := range r.Outputs {
		if o.Type != "image" {
			return usage.Errorf("--output type=%s is not supported when platforms build on nodes: the image goes to containerd's store (add --push to push it), and \"kiln save\" or \"kiln push\" export it from there", o.Type)
		}
	}
	for _, c := range r.CacheExports {
		if c.Type != "inline" {
			return usage.Errorf("--cache-to type=%s is not supported when platforms build on nodes: each node keeps its own cache; use type=inline", c.Type)
		}
	}
	return nil
}
