package depcheck

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The libraries whose messages must name no kiln command and no flag: they
// say what is wrong and return data; cmd/kiln says which command or flag
// fixes it (cmd/kiln/hints.go). builder and request are the build's own
// rooms and name the build's flags.
var quietLibraries = []string{"store", "nodes", "emulation", "rootless", "snapshot", "engine", "history", "registry", "compose", "cgroup", "layers"}

// allowed are string literals of those libraries that may keep a flag,
// each with why: none is a kiln flag, and none tells a user what to type
// to kiln. A literal is matched whole, in the file named.
var allowed = map[string]string{
	// buildctl's flag, in the command line kiln runs on an ssh:// node.
	"nodes/ssh.go: --addr ": "an argument to the node's buildctl",
	// nsenter's flags, in the command line kiln re-executes itself with.
	"rootless/join_linux.go:--preserve-credentials": "an argument to nsenter",
	// How to join the namespaces by hand: nsenter's flags, then any kiln
	// command; it names no kiln command or flag.
	`rootless/rootlesskit.go:kiln runs as %s outside the namespaces of the rootless containerd (state in %s): run it again, or join them with "nsenter -U --preserve-credentials -m -t $(cat %s/child_pid) kiln ..."`: "nsenter's flags",
	// RootlessKit's network mode, which kiln reports.
	"rootless/rootlesskit.go:the host's (RootlessKit runs with --net=host)": "RootlessKit's flag",
	// The first line of the state directory's marker file, for a person
	// who finds it: a comment, not an error.
	"engine/root.go:# kiln's state directory (--root): kiln creates, clears and removes files in it. See SECURITY.md.\n": "a comment in kiln's marker file",
	// The refusal of a plain-text node: the --node option syntax is the
	// nodes package's own (it parses it), like nodes.toml's keys.
	"nodes/config.go:node %s %s; give its TLS settings in --node (,tls-ca=FILE,tls-cert=FILE,tls-key=FILE), or accept the risk by adding ,insecure-plaintext=true to it": "the --node syntax nodes parses",
	// usermod's flags: the root-only fix for missing subordinate IDs.
	`rootless/check_linux.go:as root, run "usermod --add-subuids %d-%d --add-subgids %d-%d %s"`:                                                                                                                                                                                                          "usermod's flags",
	"cgroup/delegate.go:%w: this process runs in %s, which is systemd's: start kiln in a delegated scope of its own (systemd-run --user --scope -p Delegate=yes)":                                                                                                                                        "systemd-run's flags",
	"cgroup/delegate.go:%w: the cgroup %s that kiln runs in is shared with other processes (%s), and cgroup v2 lets a cgroup hand controllers down only when no process runs in it: run kiln alone there (exec kiln from a shell in that scope, or systemd-run --user --scope -p Delegate=yes kiln ...)": "systemd-run's flags",
}

// TestLibraryMessagesNameNoCommand fails when a string in the libraries'
// code names a kiln command ("kiln images") or a flag ("--force"), so that
// hints stay in cmd/kiln, where commands and flags are known.
func TestLibraryMessagesNameNoCommand(t *testing.T) {
	root := moduleRoot(t)
	commands := kilnCommands(t, filepath.Join(root, "cmd", "kiln"))
	if len(commands) < 10 {
		t.Fatalf("found only the commands %v in cmd/kiln: the test cannot see them", commands)
	}
	command := regexp.MustCompile(`\bkiln (` + strings.Join(commands, "|") + `)\b`)
	flag := regexp.MustCompile(`(^|[^-\w])--[a-z]`)
	used := map[string]bool{}
	for _, lib := range quietLibraries {
		files, err := filepath.Glob(filepath.Join(root, lib, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			rel := filepath.ToSlash(strings.TrimPrefix(file, root+string(filepath.Separator)))
			for _, lit := range stringLiterals(t, file) {
				if !command.MatchString(lit.text) && !flag.MatchString(lit.text) {
					continue
				}
				key := rel + ":" + lit.text
				if _, ok := allowed[key]; ok {
					used[key] = true
					continue
				}
				t.Errorf("%s:%d: %q names a kiln command or a flag: return a typed error and add the hint in cmd/kiln/hints.go", rel, lit.line, lit.text)
			}
		}
	}
	for key := range allowed {
		if !used[key] {
			t.Errorf("allowed string %q is no longer in the code: remove it from the list", key)
		}
	}
}

type literal struct {
	text string
	line int
}

// stringLiterals returns the strings in the code of file (not its
// comments).
func stringLiterals(t *testing.T, file string) []literal {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	var out []literal
	ast.Inspect(f, func(n ast.Node) bool {
		if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatalf("%s: %v", fset.Position(lit.Pos()), err)
			}
			out = append(out, literal{s, fset.Position(lit.Pos()).Line})
		}
		return true
	})
	return out
}

// kilnCommands returns the names and aliases of kiln's commands and
// subcommands: the Name and Aliases of every cli.Command literal in dir.
func kilnCommands(t *testing.T, dir string) []string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, file := range files {
		f, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			cl, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			if sel, ok := cl.Type.(*ast.SelectorExpr); !ok || sel.Sel.Name != "Command" {
				return true
			}
			for _, e := range cl.Elts {
				kv, ok := e.(*ast.KeyValueExpr)
				if !ok {
					continue
				}
				switch key, _ := kv.Key.(*ast.Ident); {
				case key == nil:
				case key.Name == "Name":
					addString(seen, kv.Value)
				case key.Name == "Aliases":
					if l, ok := kv.Value.(*ast.CompositeLit); ok {
						for _, a := range l.Elts {
							addString(seen, a)
						}
					}
				}
			}
			return true
		})
	}
	out := make([]string, 0, len(seen))
	for c := range seen {
		out = append(out, regexp.QuoteMeta(c))
	}
	sort.Strings(out)
	return out
}

func addString(set map[string]bool, e ast.Expr) {
	if lit, ok := e.(*ast.BasicLit); ok && lit.Kind == token.STRING {
		if s, err := strconv.Unquote(lit.Value); err == nil {
			set[s] = true
		}
	}
}

// moduleRoot is the directory of kiln's go.mod, two levels above this one.
func moduleRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(filepath.Dir(wd))
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod two levels above %s: %v", wd, err)
	}
	return root
}
