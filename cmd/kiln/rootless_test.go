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
