package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/engine"
	"github.com/kiln-build/kiln/usage"
)

func TestGCFlags(t *testing.T) {
	cases := []struct {
		args string
		env  map[string]string
		want engine.GCOptions
	}{
		{"kiln", nil, engine.GCOptions{}},
		{"kiln --gc=false", nil, engine.GCOptions{Disabled: true}},
		{"kiln --gc --gc-keep-storage 10GB", nil, engine.GCOptions{KeepStorage: "10GB"}},
		{"kiln", map[string]string{"KILN_GC": "false", "KILN_GC_KEEP_STORAGE": "20%"}, engine.GCOptions{Disabled: true, KeepStorage: "20%"}},
		{"kiln --gc=true --gc-keep-storage=1GB", map[string]string{"KILN_GC": "false", "KILN_GC_KEEP_STORAGE": "20%"}, engine.GCOptions{KeepStorage: "1GB"}},
	}
	for _, c := range cases {
		t.Run(c.args, func(t *testing.T) {
			for _, k := range []string{"KILN_GC", "KILN_GC_KEEP_STORAGE"} {
				t.Setenv(k, "") // restored at the end
				os.Unsetenv(k)  // an empty KILN_GC would read as false
			}
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			var got engine.GCOptions
			app := &cli.App{Flags: globalFlags(), Action: func(c *cli.Context) error {
				got = gcOptions(c)
				return nil
			}}
			if err := app.Run(strings.Fields(c.args)); err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

// TestGCUsageErrors runs kiln build with bad garbage collection values:
// each is a usage error (exit 2), found before kiln connects to anything.
func TestGCUsageErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	unreachable := filepath.Join(dir, "no-containerd.sock")
	for _, args := range [][]string{
		{"kiln", "--address", unreachable, "--gc-keep-storage", "lots", "build", dir},
		{"kiln", "--address", unreachable, "build", dir, "--gc-keep-storage=0"},
		{"kiln", "--address", unreachable, "build", "--gc=maybe", dir},
	} {
		if code := run(args); code != usage.ExitCode {
			t.Errorf("%s: exit code %d, want %d", strings.Join(args, " "), code, usage.ExitCode)
		}
	}
}
