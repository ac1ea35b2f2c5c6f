package depcheck

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/kiln-build/kiln"

// rule forbids the packages matching pkg (a path below the module, "..."
// for a whole subtree) to depend on any of deny, directly or not.
type rule struct {
	pkg  string
	deny []string
	why  string
}

// The "does not" column of docs/architecture.md.
var rules = []rule{
	{"platform", []string{"builder", "engine", "request", "cmd/kiln", "store", "nodes", "emulation", "rootless", "snapshot"}, "platform is the leaf every package parses platforms with"},
	{"usage", []string{"..."}, "usage is a leaf"},
	{"internal/errmsg", []string{"..."}, "errmsg is a leaf"},
	{"internal/owned", []string{"..."}, "owned is a leaf: the checks of what is the user's own, for the engine and host policy alike"},
	{"internal/safeio", []string{"..."}, "safeio is a leaf"},
	{"store", []string{"builder", "engine", "request", "cmd/kiln"}, "store returns data to whoever asks"},
	{"registry", []string{"store", "builder", "engine", "request", "cmd/kiln", "nodes", "emulation", "rootless", "snapshot", "history"}, "registry is how store and engine reach registries, below both"},
	{"nodes", []string{"store", "builder", "engine", "request", "cmd/kiln"}, "nodes owns node addresses only"},
	{"emulation", []string{"builder", "engine", "request", "cmd/kiln", "store"}, "emulation is host policy"},
	{"rootless", []string{"builder", "engine", "request", "cmd/kiln", "store"}, "rootless is host policy"},
	{"snapshot", []string{"builder", "engine", "request", "cmd/kiln", "store"}, "snapshot is host policy"},
	{"cgroup", []string{"..."}, "cgroup is host policy, a leaf"},
	{"request", []string{"engine", "builder", "cmd/kiln"}, "a build request is data, parsed before any engine starts"},
	{"compose", []string{"engine", "builder", "cmd/kiln"}, "a compose project is data: the builds it maps to, parsed before any engine starts"},
	{"engine", []string{"builder", "request", "cmd/kiln"}, "the engine knows nothing of flags or one build's options"},
	{"layers", []string{"..."}, "layers is how the engine's exporters write layers: BuildKit and containerd, nothing of kiln"},
	{"builder", []string{"cmd/kiln"}, "builder orchestrates; presentation is cmd/kiln's"},
	{"history", []string{"builder", "engine", "request", "cmd/kiln", "store", "nodes", "emulation", "rootless", "snapshot", "cgroup"}, "history keeps build records as data; the engine names their directory, cmd/kiln shows them"},
}

// The engine's BuildKit: a request must not pull it in.
var engineOnly = []string{
	"github.com/moby/buildkit/control",
	"github.com/moby/buildkit/worker",
	"github.com/moby/buildkit/solver",
	"github.com/moby/buildkit/executor",
	"github.com/moby/buildkit/cache",
}

// The wire types BuildKit's client itself carries (LLB definitions and
// results): a request may reach them through the client, not the engine.
var clientWire = []string{
	"github.com/moby/buildkit/solver/pb",
	"github.com/moby/buildkit/solver/result",
	"github.com/moby/buildkit/solver/errdefs",
}

// presentation may be imported only by cmd/kiln.
var presentation = []string{"text/tabwriter", "text/template"}

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, ee.Stderr)
		}
		t.Fatalf("go list %s: %v", strings.Join(args, " "), err)
	}
	return strings.Fields(string(out))
}

func TestImportRules(t *testing.T) {
	for _, r := range rules {
		deps := goList(t, "-deps", module+"/"+r.pkg)
		for _, dep := range deps {
			if dep == module+"/"+r.pkg || !strings.HasPrefix(dep, module+"/") {
				continue
			}
			for _, d := range r.deny {
				if d == "..." || dep == module+"/"+d || strings.HasPrefix(dep, module+"/"+d+"/") {
					t.Errorf("%s imports %s: %s", r.pkg, strings.TrimPrefix(dep, module+"/"), r.why)
				}
			}
		}
	}
}

func TestRequestImportsNoEngine(t *testing.T) {
	for _, dep := range goList(t, "-deps", module+"/request", module+"/compose") {
		if slices.Contains(clientWire, dep) {
			continue
		}
		for _, e := range engineOnly {
			if dep == e || strings.HasPrefix(dep, e+"/") {
				t.Errorf("request or compose imports %s: a build request is parsed without BuildKit's engine", dep)
			}
		}
	}
}

func TestPresentationOnlyInCmd(t *testing.T) {
	lines := goList(t, "-f", `{{.ImportPath}}:{{join .Imports ","}}`, module+"/...")
	for _, line := range lines {
		pkg, imports, _ := strings.Cut(line, ":")
		if pkg == module+"/cmd/kiln" {
			continue
		}
		for _, imp := range strings.Split(imports, ",") {
			for _, p := range presentation {
				if imp == p {
					t.Errorf("%s imports %s: tables and templates are drawn in cmd/kiln only", strings.TrimPrefix(pkg, module+"/"), p)
				}
			}
		}
	}
}
