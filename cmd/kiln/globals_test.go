package main

import (
	"strings"
	"testing"
)

func TestReorder(t *testing.T) {
	app := newApp()
	cases := []struct{ in, want string }{
		{"kiln build -t app .", "kiln build -t app -- ."},
		{"kiln build . -t app --platform linux/arm64", "kiln build -t app --platform linux/arm64 -- ."},
		{"kiln build . --gc=false --gc-keep-storage 1GB -q", "kiln --gc=false --gc-keep-storage 1GB build -q -- ."},
		{"kiln build . --namespace ci -q", "kiln --namespace ci build -q -- ."},
		{"kiln --address /s build . --no-cache", "kiln --address /s build --no-cache -- ."},
		{"kiln build -f - . --build-arg=A=1", "kiln build -f - --build-arg=A=1 -- ."},
		{"kiln version", "kiln version"},
		{"kiln frob . -x", "kiln frob . -x"},
	}
	for _, c := range cases {
		got := strings.Join(reorder(app, strings.Fields(c.in)), " ")
		if got != c.want {
			t.Errorf("reorder(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
