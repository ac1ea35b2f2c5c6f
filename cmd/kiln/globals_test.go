package main

import (
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
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

func TestHostsDirs(t *testing.T) {
	run := func(args ...string) []string {
		var got []string
		app := newApp()
		app.Before = nil
		app.Commands = []*cli.Command{{Name: "x", Action: func(c *cli.Context) error {
			got = engineConfig(c).Registry.HostsDirs
			return nil
		}}}
		if err := app.Run(append([]string{"kiln"}, append(args, "x")...)); err != nil {
			t.Fatal(err)
		}
		return got
	}
	t.Setenv("KILN_HOSTS_DIR", "")
	if got := run(); len(got) < 2 || got[len(got)-2] != "/etc/containerd/certs.d" || got[len(got)-1] != "/etc/docker/certs.d" {
		t.Errorf("defaults: %v", got)
	}
	if got := run("--hosts-dir", "/a", "--hosts-dir", "/b"); strings.Join(got, ",") != "/a,/b" {
		t.Errorf("--hosts-dir twice: %v", got)
	}
	t.Setenv("KILN_HOSTS_DIR", "/e1:/e2")
	if got := run(); strings.Join(got, ",") != "/e1,/e2" {
		t.Errorf("KILN_HOSTS_DIR: %v", got)
	}
	if got := run("--hosts-dir", "/a"); strings.Join(got, ",") != "/a" {
		t.Errorf("--hosts-dir over KILN_HOSTS_DIR: %v", got)
	}
}
