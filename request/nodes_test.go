package request

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParseNodes(t *testing.T) {
	ctx := writeContext(t, "FROM scratch\n")
	const node = "tcp://127.0.0.1:1" // never contacted by Parse
	file := filepath.Join(t.TempDir(), "nodes.toml")
	if err := os.WriteFile(file, []byte("[node.board]\naddress = \""+node+"\"\nplatforms = [\"linux/arm64\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := parse(&Options{ContextDir: ctx, Platforms: []string{"linux/amd64,linux/arm64"}, Nodes: []string{"arm64=board", "linux/amd64=local"}, NodesFiles: []string{file}})
	if err != nil {
		t.Fatal(err)
	}
	n := r.Nodes
	if len(n.Configured) != 1 || n.Fallback != FallbackFail || n.Assigned["linux/arm64"].Node.Name != "board" || !n.Assigned["linux/amd64"].Local {
		t.Errorf("nodes %+v", n)
	}

	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{Platforms: []string{"linux/amd64"}, Nodes: []string{"linux/arm64=" + node}}, "which this build does not target"},
		{Options{Nodes: []string{"linux/s390x=" + node}}, "which this build does not target"},
		{Options{Platforms: []string{"linux/arm64"}, Nodes: []string{"linux/arm64=" + node, "linux/arm64=local"}}, "twice"},
		{Options{NodeFallback: "later"}, "invalid --node-fallback"},
		{Options{Platforms: []string{"linux/arm64"}, Nodes: []string{"linux/arm64=" + node}, Outputs: []string{"type=local,dest=out"}}, "--output type=local is not supported"},
		{Options{Platforms: []string{"linux/arm64"}, Nodes: []string{"linux/arm64=" + node}, CacheTo: []string{"type=local,dest=cache"}}, "--cache-to type=local is not supported"},
		{Options{Platforms: []string{"linux/arm64"}, Nodes: []string{"linux/arm64=board"}}, `invalid --node "linux/arm64=board": "board" is neither an address`},
		{Options{Platforms: []string{"linux/arm64"}, Nodes: []string{"linux/arm64"}}, `invalid --node "linux/arm64": use PLATFORM=ADDRESS, e.g.`},
	} {
		c.o.ContextDir = ctx
		_, err := parse(&c.o)
		wantUsage(t, c.want, err, c.want)
	}
	// Building a platform here needs none of what nodes cannot do.
	if _, err := parse(&Options{ContextDir: ctx, Platforms: []string{"linux/arm64"}, Nodes: []string{"linux/arm64=local"}, Outputs: []string{"type=local,dest=out"}}); err != nil {
		t.Errorf("PLATFORM=local with a local output: %v", err)
	}
}
