package request

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/usage"
)

// parse is Parse without the host's nodes files.
func parse(o *Options) (*Request, error) {
	if o.NodesFiles == nil {
		o.NodesFiles = []string{}
	}
	return Parse(context.Background(), o)
}

func writeContext(t *testing.T, dockerfile string) string {
	t.Helper()
	dir := t.TempDir()
	if dockerfile != "" {
		if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestPrepareAttrs(t *testing.T) {
	dir := writeContext(t, "FROM scratch\n")
	t.Setenv("FROM_ENV", "env-value")
	o := &Options{
		ContextDir: dir,
		Tags:       []string{"app", "me/app:1", "app"},
		Platforms:  []string{"arm64,linux/amd64"},
		BuildArgs:  []string{"A=1,2", "FROM_ENV", "UNSET_IN_ENV", "EMPTY="},
		Labels:     []string{"team=edge"},
		Target:     "final",
		NoCache:    true,
		Pull:       true,
	}
	r, err := parse(o)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := strings.Join(r.Names, " "); got != "docker.io/library/app:latest docker.io/me/app:1" {
		t.Errorf("names %s", got)
	}
	want := map[string]string{
		"filename":           "Dockerfile",
		"platform":           "linux/arm64,linux/amd64",
		"build-arg:A":        "1,2",
		"build-arg:FROM_ENV": "env-value",
		"build-arg:EMPTY":    "",
		"label:team":         "edge",
		"target":             "final",
		"no-cache":           "",
		"image-resolve-mode": "pull",
		"cmdline":            "",
	}
	for k, v := range want {
		if got, ok := r.FrontendAttrs[k]; !ok || got != v {
			t.Errorf("attr %s = %q (set %v), want %q", k, got, ok, v)
		}
	}
	if _, ok := r.FrontendAttrs["build-arg:UNSET_IN_ENV"]; ok {
		t.Error("a bare build arg missing from the environment must be dropped, as docker does")
	}
}

func TestPrepareDefaultsResolveLocally(t *testing.T) {
	r, err := parse(&Options{ContextDir: writeContext(t, "FROM scratch\n")})
	if err != nil {
		t.Fatal(err)
	}
	if r.FrontendAttrs["image-resolve-mode"] != "local" {
		t.Errorf("image-resolve-mode %q, want local so local base images need no registry", r.FrontendAttrs["image-resolve-mode"])
	}
	if _, ok := r.FrontendAttrs["platform"]; ok {
		t.Error("no --platform must leave the platform to the worker's default")
	}
}

func TestPrepareStdinDockerfile(t *testing.T) {
	r, err := parse(&Options{ContextDir: t.TempDir(), Dockerfile: "-", Stdin: strings.NewReader("# syntax=docker/dockerfile:1\nFROM scratch\n")})
	if err != nil {
		t.Fatal(err)
	}
	dt, err := os.ReadFile(filepath.Join(r.Dockerfile.Dir, r.Dockerfile.Name))
	if err != nil || !strings.Contains(string(dt), "FROM scratch") {
		t.Fatalf("stdin Dockerfile not stored: %v %q", err, dt)
	}
	if df := r.Dockerfile; !df.FromStdin || df.Display != "Dockerfile (stdin)" {
		t.Errorf("stdin Dockerfile %+v", df)
	}
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], `"docker/dockerfile:1"`) {
		t.Errorf("syntax warning %q", r.Warnings)
	}
	r.Close()
	if _, err := os.Stat(r.Dockerfile.Dir); !os.IsNotExist(err) {
		t.Errorf("Close left %s", r.Dockerfile.Dir)
	}
}

func TestPrepareErrors(t *testing.T) {
	ctx := writeContext(t, "FROM scratch\n")
	file := filepath.Join(ctx, "Dockerfile")
	cases := []struct {
		name string
		o    Options
		want string
	}{
		{"no context", Options{}, "no build context given"},
		{"missing context", Options{ContextDir: "/nonexistent"}, "does not exist"},
		{"file context", Options{ContextDir: file}, "is a file, not a directory"},
		{"url context", Options{ContextDir: "https://example.com/repo.git"}, "is not supported"},
		{"no Dockerfile", Options{ContextDir: t.TempDir()}, "no Dockerfile in build context"},
		{"missing -f", Options{ContextDir: ctx, Dockerfile: "/nonexistent/Dockerfile"}, "does not exist"},
		{"directory -f", Options{ContextDir: ctx, Dockerfile: ctx}, "is a directory"},
		{"empty Dockerfile", Options{ContextDir: writeContext(t, " \n\t\n")}, "is empty"},
		{"bad tag", Options{ContextDir: ctx, Tags: []string{"UPPER"}}, `invalid image name "UPPER"`},
		{"bad progress", Options{ContextDir: ctx, Progress: "loud"}, `invalid --progress "loud"`},
		{"bad build arg", Options{ContextDir: ctx, BuildArgs: []string{"=x"}}, "invalid --build-arg"},
		{"bad label", Options{ContextDir: ctx, Labels: []string{"=x"}}, "invalid --label"},
		{"bad platform", Options{ContextDir: ctx, Platforms: []string{"linux/arm65"}}, "unknown architecture"},
	}
	for _, c := range cases {
		_, err := parse(&c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
			continue
		}
		if !usage.Is(err) {
			t.Errorf("%s: %v is not a usage error", c.name, err)
		}
	}
}
