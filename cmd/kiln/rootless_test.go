package main

import (
	"strings"
	"testing"
)

func TestJoinsNamespaces(t *testing.T) {
	app := newApp()
	for in, want := range map[string]bool{
		"kiln build -t app .":             true,
		"kiln --namespace ci images":      true,
		"kiln --root /x emulation ls":     true,
		"kiln -a /s info --format json":   true,
		"kiln version":                    false,
		"kiln":                            false,
		"kiln --help":                     false,
		"kiln build --help":               false,
		"kiln -v":                         false,
		"kiln frob":                       false,
		"kiln build -t app -- --help":     true,
		"kiln --namespace version images": true,
	} {
		if got := joinsNamespaces(app, strings.Fields(in)); got != want {
			t.Errorf("joinsNamespaces(%q) = %v, want %v", in, got, want)
		}
	}
}

// TestCommandNamespaces: every command says where it runs for an
// unprivileged user, and the two lists differ only where they should.
func TestCommandNamespaces(t *testing.T) {
	for _, c := range newApp().Commands {
		if _, ok := commandNamespaces[c.Name]; !ok {
			t.Errorf("command %s is missing from commandNamespaces", c.Name)
		}
	}
	for name, use := range commandNamespaces {
		if findCommand(newApp().Commands, name) == nil {
			t.Errorf("commandNamespaces names %s, which is no command", name)
		}
		if use.ownNamespaces && !use.joinsContainerd {
			t.Errorf("%s runs in kiln's own namespaces but not in the rootless containerd's", name)
		}
	}
	if use := commandNamespaces["emulation"]; !use.joinsContainerd || use.ownNamespaces {
		t.Errorf("emulation: %+v, want it to join the rootless containerd's namespaces only", use)
	}
}
