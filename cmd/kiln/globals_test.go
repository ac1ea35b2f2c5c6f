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
		{"kiln emulation ls --format json", "kiln emulation ls --format json"},
		// compose's own options before build stay its own, also after build.
		{"kiln compose -f a.yaml -p p build web -q", "kiln compose -f a.yaml -p p build -q -- web"},
		{"kiln compose build web -f a.yaml --profile x --no-cache", "kiln compose -f a.yaml --profile x build --no-cache -- web"},
		{"kiln compose --namespace ci -f a.yaml build", "kiln --namespace ci compose -f a.yaml build"},
		{"kiln compose build --namespace ci", "kiln --namespace ci compose build"},
		{"kiln compose --bogus build", "kiln compose --bogus build"},
	}
	for _, c := range cases {
		got := strings.Join(reorder(app, strings.Fields(c.in)), " ")
		if got != c.want {
			t.Errorf("reorder(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
