package main

import (
	"strings"
	"testing"
)

func TestEmbeddedChosen(t *testing.T) {
	t.Setenv("KILN_STORE", "")
	cases := map[string]bool{
		"kiln build .":                              false,
		"kiln --store embedded build .":             true,
		"kiln --store=embedded images":              true,
		"kiln images --store embedded":              true,
		"kiln --store containerd images":            false,
		"kiln --store embedded --store auto images": false,
		"kiln build -- --store embedded":            false,
		"kiln --store":                              false,
	}
	for line, want := range cases {
		if got := embeddedChosen(strings.Fields(line)); got != want {
			t.Errorf("embeddedChosen(%q) = %v, want %v", line, got, want)
		}
	}
	t.Setenv("KILN_STORE", "embedded")
	if !embeddedChosen(strings.Fields("kiln images")) || embeddedChosen(strings.Fields("kiln --store containerd images")) {
		t.Error("KILN_STORE=embedded is not honoured, or not overridden by --store")
	}
}
