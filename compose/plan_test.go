package compose

import (
	"context"
	"crypto/ed25519"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/kiln-build/kiln/request"
	"github.com/kiln-build/kiln/usage"
)

// project writes files (compose.yaml and whatever it refers to) into a new
// directory, "proj", and loads the project there with env as the process
// environment.
func project(t *testing.T, files map[string]string, env ...string) (*Project, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "proj")
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p, err := Load(context.Background(), LoadOptions{Files: []string{filepath.Join(dir, "compose.yaml")}, Environment: env})
	if err != nil {
		t.Fatalf("loading the project: %v", err)
	}
	return p, dir
}

func plan(t *testing.T, p *Project, o BuildOptions) *Plan {
	t.Helper()
	pl, err := p.Plan(o)
	if err != nil {
		t.Fatalf("planning: %v", err)
	}
	return pl
}

func build(t *testing.T, pl *Plan, service string) *Build {
	t.Helper()
	for _, b := range pl.Builds {
		if b.Service == service {
			return b
		}
	}
	t.Fatalf("no build of service %s in the plan (%v)", service, names(pl))
	return nil
}

func names(pl *Plan) []string {
	var out []string
	for _, b := range pl.Builds {
		out = append(out, b.Service)
	}
	return out
}

// wantUsage checks that err is a usage error containing want.
func wantUsage(t *testing.T, what string, err error, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("%s: error %v, want one containing %q", what, err, want)
		return
	}
	if !usage.Is(err) {
		t.Errorf("%s: %v is not a usage error", what, err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("%s: error %q is not one line", what, err)
	}
}

const everyKey = `
services:
  app:
    image: registry.example.com/app:1
    build:
      context: ./src
      dockerfile: build/Dockerfile.app
      args:
        PLAIN: one
        FROM_ENV:
        UNSET:
      target: runtime
      platforms: [linux/amd64, linux/arm64]
      tags: [app:extra]
      labels:
        org.example.team: core
      secrets:
        - token
        - source: apikey
          target: api
      ssh:
        - default
        - deploy=./deploy_key
      cache_from: ["type=local,src=/tmp/cache"]
      cache_to: ["type=local,dest=/tmp/cache-out"]
      additional_contexts:
        extra: ./extra
        alpine: docker-image://alpine:3
        base: service:base
      network: host
      extra_hosts:
        - db.internal=10.0.0.5
        - v6.internal=::1
      shm_size: 64m
      ulimits:
        nofile:
          soft: 1024
          hard: 2048
        nproc: 512
      no_cache: true
      no_cache_filter: [deps]
      pull: true
      privileged: true
      entitlements: [network.host]
      provenance: mode=max
  base:
    build:
      context: ./base
      platforms: [linux/amd64, linux/arm64]
secrets:
  token:
    file: ./token.txt
  apikey:
    environment: API_KEY
`

func TestPlanMapsEveryBuildKey(t *testing.T) {
	p, dir := project(t, map[string]string{"compose.yaml": everyKey}, "FROM_ENV=env-value")
	b := build(t, plan(t, p, BuildOptions{}), "app")
	o := b.Options
	abs := func(s string) string { return filepath.Join(dir, s) }
	checks := []struct {
		key       string
		got, want any
	}{
		{"image", b.Image, "registry.example.com/app:1"},
		{"context", o.ContextDir, abs("src")},
		{"dockerfile (relative to the context)", o.Dockerfile, abs("src/build/Dockerfile.app")},
		{"args (an empty one from the environment, one unset left out)", o.BuildArgs, []string{"FROM_ENV=env-value", "PLAIN=one"}},
		{"target", o.Target, "runtime"},
		{"platforms", o.Platforms, []string{"linux/amd64", "linux/arm64"}},
		{"image and tags", o.Tags, []string{"registry.example.com/app:1", "app:extra"}},
		{"labels and compose's", o.Labels, []string{"org.example.team=core", "com.docker.compose.project=proj", "com.docker.compose.service=app"}},
		{"secrets (target is the id)", o.Secrets, []string{"id=token,src=" + abs("token.txt"), "id=api,env=API_KEY"}},
		{"ssh", o.SSH, []string{"default", "deploy=" + abs("deploy_key")}},
		{"cache_from", []string(o.CacheFrom), []string{"type=local,src=/tmp/cache"}},
		{"cache_to", []string(o.CacheTo), []string{"type=local,dest=/tmp/cache-out"}},
		{"additional_contexts", o.BuildContexts, []string{"alpine=docker-image://alpine:3", "extra=" + abs("extra")}},
		{"service: contexts", b.ServiceContexts, map[string]string{"base": "base"}},
		{"needs", b.Needs(), []string{"base"}},
		{"network", o.Network, "host"},
		{"extra_hosts", o.AddHosts, []string{"db.internal=10.0.0.5", "v6.internal=::1"}},
		{"shm_size in bytes", o.ShmSize, "67108864"},
		{"ulimits", o.Ulimits, []string{"nofile=1024:2048", "nproc=512"}},
		{"no_cache", o.NoCache, true},
		{"no_cache_filter", []string(o.NoCacheFilter), []string{"deps"}},
		{"pull", o.Pull, true},
		{"entitlements and privileged", o.Allow, []string{"network.host", "security.insecure"}},
		{"provenance", o.Provenance, "mode=max"},
		{"no nodes files: compose builds here", o.NodesFiles, []string{}},
		{"push only when asked", o.Push, false},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %#v, want %#v", c.key, c.got, c.want)
		}
	}
	base := build(t, plan(t, p, BuildOptions{}), "base")
	if base.Image != "proj-base" || base.Options.Dockerfile != abs("base/Dockerfile") || base.Options.ContextDir != abs("base") {
		t.Errorf("a build given as a path: image %q, dockerfile %q, context %q", base.Image, base.Options.Dockerfile, base.Options.ContextDir)
	}
}

// TestPlanParses checks that what the keys map to is what request.Parse
// takes, and what it makes of them: the validation is request's.
func TestPlanParses(t *testing.T) {
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		t.Fatal(err)
	}
	p, dir := project(t, map[string]string{
		"compose.yaml":               everyKey,
		"src/build/Dockerfile.app":   "FROM scratch AS runtime\n",
		"base/Dockerfile":            "FROM scratch\n",
		"src/extra/x":                "x",
		"token.txt":                  "secret",
		"deploy_key":                 string(pem.EncodeToMemory(block)),
		"src/.dockerignore":          "",
		"src/build/.keep":            "",
		"extra/.keep":                "",
		"unused/compose.ignored.txt": "",
	}, "API_KEY=k", "SSH_AUTH_SOCK=")
	t.Setenv("API_KEY", "k")
	agent := filepath.Join(t.TempDir(), "agent.sock")
	t.Setenv("SSH_AUTH_SOCK", agent)
	pl := plan(t, p, BuildOptions{})
	o := build(t, pl, "app").Options
	// The default agent needs a socket; the mapping of ssh is checked above.
	o.SSH = slices.DeleteFunc(o.SSH, func(s string) bool { return s == "default" })
	req, err := request.Parse(context.Background(), &o)
	if err != nil {
		t.Fatalf("request.Parse of the mapped options: %v", err)
	}
	defer req.Close()
	want := map[string]string{
		"target":                           "runtime",
		"platform":                         "linux/amd64,linux/arm64",
		"build-arg:PLAIN":                  "one",
		"label:com.docker.compose.service": "app",
		"force-network-mode":               "host",
		"add-hosts":                        "db.internal=10.0.0.5,v6.internal=::1",
		"shm-size":                         "67108864",
		"ulimit":                           "nofile=1024:2048,nproc=512:512",
		"no-cache":                         "",
		"context:alpine":                   "docker-image://alpine:3",
		"image-resolve-mode":               "pull",
	}
	for k, v := range want {
		if got, ok := req.FrontendAttrs[k]; !ok || got != v {
			t.Errorf("frontend attribute %s = %q (set %v), want %q", k, got, ok, v)
		}
	}
	if !slices.Equal(req.Names, []string{"registry.example.com/app:1", "docker.io/library/app:extra"}) {
		t.Errorf("names %v", req.Names)
	}
	if !slices.Contains(req.Entitlements, "security.insecure") || !slices.Contains(req.Entitlements, "network.host") {
		t.Errorf("entitlements %v", req.Entitlements)
	}
	if req.Dockerfile.Dir != filepath.Join(dir, "src/build") || req.Dockerfile.Name != "Dockerfile.app" {
		t.Errorf("dockerfile %+v", req.Dockerfile)
	}
	if len(req.Attachables) == 0 {
		t.Error("no secret or ssh provider attached")
	}
}

func TestPlanDockerfileInline(t *testing.T) {
	p, _ := project(t, map[string]string{"compose.yaml": `
services:
  web:
    build:
      context: .
      dockerfile_inline: |
        FROM scratch
        COPY compose.yaml /
`})
	o := build(t, plan(t, p, BuildOptions{}), "web").Options
	if o.Dockerfile != "-" || o.Stdin == nil {
		t.Fatalf("dockerfile_inline: Dockerfile %q, Stdin %v; want \"-\" and the content", o.Dockerfile, o.Stdin)
	}
	dt, _ := io.ReadAll(o.Stdin)
	if string(dt) != "FROM scratch\nCOPY compose.yaml /\n" {
		t.Errorf("inline Dockerfile %q", dt)
	}
}

func TestImageNames(t *testing.T) {
	files := map[string]string{"compose.yaml": `
services:
  web:
    build: .
  api:
    image: example/api:2
    build: .
  db:
    image: postgres
`}
	p, _ := project(t, files)
	pl := plan(t, p, BuildOptions{})
	if got := names(pl); !slices.Equal(got, []string{"api", "web"}) {
		t.Errorf("services built: %v (db has no build section)", got)
	}
	// docker compose v2 and nerdctl compose name an image PROJECT-SERVICE.
	if got := build(t, pl, "web").Image; got != "proj-web" {
		t.Errorf("default image name %q, want proj-web", got)
	}
	// nerdctl compose up to 2.3 looks for PROJECT_SERVICE: the image has
	// both names.
	if got := build(t, pl, "web").Options.Tags; !slices.Equal(got, []string{"proj-web", "proj_web"}) {
		t.Errorf("default names %v, want proj-web and proj_web", got)
	}
	if got := build(t, pl, "api").Options.Tags; !slices.Equal(got, []string{"example/api:2"}) {
		t.Errorf("an image: name is the only name: %v", got)
	}
	if got := build(t, pl, "api").Image; got != "example/api:2" {
		t.Errorf("image: name %q", got)
	}

	// The project name from -p, $COMPOSE_PROJECT_NAME or name:.
	dir := filepath.Dir(p.Files()[0])
	for _, c := range []struct {
		opts LoadOptions
		want string
	}{
		{LoadOptions{ProjectName: "shop"}, "shop"},
		{LoadOptions{Environment: []string{"COMPOSE_PROJECT_NAME=fromenv"}}, "fromenv"},
	} {
		c.opts.Files = []string{filepath.Join(dir, "compose.yaml")}
		p, err := Load(context.Background(), c.opts)
		if err != nil {
			t.Fatal(err)
		}
		if got := build(t, plan(t, p, BuildOptions{}), "web").Image; got != c.want+"-web" {
			t.Errorf("project %+v: image %q, want %s-web", c.opts, got, c.want)
		}
	}
	named, _ := project(t, map[string]string{"compose.yaml": "name: Named_1\nservices:\n  web:\n    build: .\n"})
	if got := build(t, plan(t, named, BuildOptions{}), "web").Image; got != "named_1-web" {
		t.Errorf("name: gives image %q, want named_1-web", got)
	}
}

func TestPlanCommandLineOptions(t *testing.T) {
	p, _ := project(t, map[string]string{"compose.yaml": `
services:
  web:
    build:
      context: .
      args:
        A: from-file
        B: from-file
      platforms: [linux/arm64]
  api:
    image: registry.example.com/api
    build: .
`}, "FROM_ENV=e")
	pl := plan(t, p, BuildOptions{
		NoCache: true, Pull: true, Push: true, Quiet: true, Progress: "plain",
		BuildArgs: []string{"B=cli", "FROM_ENV", "NOT_SET"},
		Platforms: []string{"linux/amd64,linux/riscv64"},
	})
	web, api := build(t, pl, "web").Options, build(t, pl, "api").Options
	if !slices.Equal(web.BuildArgs, []string{"A=from-file", "B=cli", "FROM_ENV=e"}) {
		t.Errorf("--build-arg wins and a bare one takes the project's environment: %v", web.BuildArgs)
	}
	if !slices.Equal(web.Platforms, []string{"linux/amd64,linux/riscv64"}) || !slices.Equal(api.Platforms, web.Platforms) {
		t.Errorf("--platform replaces every service's platforms: %v %v", web.Platforms, api.Platforms)
	}
	if !web.NoCache || !web.Pull || web.Progress != "quiet" {
		t.Errorf("--no-cache, --pull, -q: %+v", web)
	}
	if web.Push || !api.Push {
		t.Errorf("--push pushes only services with an image: name: web %v, api %v", web.Push, api.Push)
	}
}

func TestPlanPlatforms(t *testing.T) {
	files := map[string]string{"compose.yaml": `
services:
  one:
    platform: linux/arm64
    build: .
  both:
    platform: linux/arm64
    build:
      context: .
      platforms: [linux/amd64, linux/arm64]
  none:
    build: .
`}
	p, _ := project(t, files)
	pl := plan(t, p, BuildOptions{})
	for svc, want := range map[string][]string{"one": {"linux/arm64"}, "both": {"linux/amd64", "linux/arm64"}, "none": nil} {
		if got := build(t, pl, svc).Options.Platforms; !slices.Equal(got, want) {
			t.Errorf("%s: platforms %v, want %v", svc, got, want)
		}
	}
	p, _ = project(t, files, "DOCKER_DEFAULT_PLATFORM=linux/amd64")
	if got := build(t, plan(t, p, BuildOptions{Services: []string{"none"}}), "none").Options.Platforms; !slices.Equal(got, []string{"linux/amd64"}) {
		t.Errorf("$DOCKER_DEFAULT_PLATFORM: %v", got)
	}
	bad, _ := project(t, map[string]string{"compose.yaml": `
services:
  x:
    build:
      context: .
      platforms: [linux/amd64]
`}, "DOCKER_DEFAULT_PLATFORM=linux/arm64")
	_, err := bad.Plan(BuildOptions{})
	wantUsage(t, "a platform outside build.platforms", err, "service x: platform linux/arm64 is not one of build.platforms (linux/amd64)")
}

const graphProject = `
services:
  base:
    build: ./base
  app:
    build:
      context: .
      additional_contexts:
        base: service:base
    depends_on: [db, cache]
  db:
    image: postgres
  cache:
    build: ./cache
  tool:
    build: .
    profiles: [tools]
  debug:
    profiles: [debug]
    build:
      context: .
      additional_contexts:
        b: service:hidden
  hidden:
    profiles: [never]
    build: .
`

func TestPlanSelection(t *testing.T) {
	p, _ := project(t, map[string]string{"compose.yaml": graphProject})
	for _, c := range []struct {
		opts BuildOptions
		want []string
	}{
		{BuildOptions{}, []string{"base", "app", "cache"}},
		{BuildOptions{Services: []string{"app"}}, []string{"base", "app"}},
		{BuildOptions{Services: []string{"app"}, WithDependencies: true}, []string{"base", "app", "cache"}},
		{BuildOptions{Services: []string{"cache"}}, []string{"cache"}},
		// A service named is built even when its profile is off, with the
		// service its service: context names.
		{BuildOptions{Services: []string{"tool"}}, []string{"tool"}},
		{BuildOptions{Services: []string{"debug"}}, []string{"hidden", "debug"}},
	} {
		if got := names(plan(t, p, c.opts)); !slices.Equal(got, c.want) {
			t.Errorf("%+v: builds %v, want %v", c.opts, got, c.want)
		}
	}
	_, err := p.Plan(BuildOptions{Services: []string{"nope"}})
	wantUsage(t, "an unknown service", err, "no such service: nope")
	_, err = p.Plan(BuildOptions{Services: []string{"db"}})
	wantUsage(t, "a service without build", err, "service db has no build section")

	// --profile enables services.
	dir := filepath.Dir(p.Files()[0])
	withTools, err := Load(context.Background(), LoadOptions{Files: []string{filepath.Join(dir, "compose.yaml")}, Profiles: []string{"tools"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(plan(t, withTools, BuildOptions{})); !slices.Contains(got, "tool") {
		t.Errorf("--profile tools: builds %v, want tool among them", got)
	}
}

func TestPlanOrderAndCycles(t *testing.T) {
	p, _ := project(t, map[string]string{"compose.yaml": `
services:
  c:
    build:
      context: .
      additional_contexts: {b: "service:b"}
  b:
    build:
      context: .
      additional_contexts: {a: "service:a"}
  a:
    build: .
`})
	if got := names(plan(t, p, BuildOptions{})); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("order %v, want a, b, c", got)
	}
	cyc, _ := project(t, map[string]string{"compose.yaml": `
services:
  a:
    build:
      context: .
      additional_contexts: {x: "service:b"}
  b:
    build:
      context: .
      additional_contexts: {y: "service:a"}
`})
	_, err := cyc.Plan(BuildOptions{})
	wantUsage(t, "a cycle", err, "services depend on each other's images through additional_contexts: a -> b -> a")
	self, _ := project(t, map[string]string{"compose.yaml": `
services:
  a:
    build:
      context: .
      additional_contexts: {x: "service:a"}
`})
	_, err = self.Plan(BuildOptions{})
	wantUsage(t, "a service using its own image", err, "service a: additional context x is service:a, the service itself")
}

func TestPlanRefuses(t *testing.T) {
	for _, c := range []struct{ name, compose, want string }{
		{"git context", "services:\n  a:\n    build: https://github.com/example/app.git\n",
			"service a: build context https://github.com/example/app.git is a git repository or URL: kiln builds local directories only"},
		{"git@ context", "services:\n  a:\n    build: git@github.com:example/app.git\n", "is a git repository or URL"},
		{"URL additional context", "services:\n  a:\n    build:\n      context: .\n      additional_contexts:\n        x: https://example.com/x.tar\n",
			"service a: additional context x=https://example.com/x.tar is not supported"},
		{"sbom", "services:\n  a:\n    build:\n      context: .\n      sbom: \"true\"\n", "service a: build.sbom is not supported"},
		{"external secret", "services:\n  a:\n    build:\n      context: .\n      secrets: [s]\nsecrets:\n  s:\n    external: true\n",
			`service a: secret "s" is external`},
	} {
		p, _ := project(t, map[string]string{"compose.yaml": c.compose})
		_, err := p.Plan(BuildOptions{})
		wantUsage(t, c.name, err, c.want)
	}
}

func TestLoadErrors(t *testing.T) {
	for _, c := range []struct{ name, compose, want string }{
		{"unknown build key", "services:\n  web:\n    build:\n      context: .\n      dockerfil: x\n",
			"services.web.build has no key 'dockerfil': check its spelling and indentation"},
		{"unknown service key", "services:\n  web:\n    build: .\n    bogus: 1\n", "services.web.bogus is not a compose key"},
		{"bad yaml", "services:\n  web:\n    build: [\n", "compose.yaml: yaml: "},
		{"depends_on cycle", "services:\n  a:\n    build: .\n    depends_on: [b]\n  b:\n    build: .\n    depends_on: [a]\n", "dependency cycle detected: a -> b -> a"},
		{"unknown service context", "services:\n  a:\n    build:\n      context: .\n      additional_contexts:\n        x: service:zz\n", `declares unknown service "zz"`},
		{"required variable", "services:\n  a:\n    build: ${CTX?set CTX to the context}\n", "required variable CTX is missing a value: set CTX to the context"},
	} {
		dir := t.TempDir()
		file := filepath.Join(dir, "compose.yaml")
		os.WriteFile(file, []byte(c.compose), 0o644)
		_, err := Load(context.Background(), LoadOptions{Files: []string{file}})
		wantUsage(t, c.name, err, c.want)
	}
	dir := t.TempDir()
	_, err := Load(context.Background(), LoadOptions{WorkingDir: dir})
	wantUsage(t, "no compose file", err, "no compose file found in "+dir+" or its parents: pass one with -f")
	_, err = Load(context.Background(), LoadOptions{Files: []string{filepath.Join(dir, "missing.yaml")}})
	wantUsage(t, "a missing file", err, "missing.yaml: no such file or directory")
}

func TestLoadAsDockerCompose(t *testing.T) {
	p, dir := project(t, map[string]string{
		"compose.yaml": `
include:
  - inc/compose.yaml
services:
  web:
    extends:
      file: common.yaml
      service: common
    build:
      args:
        TAG: ${TAG:-default}
        DOTENV: ${FROM_DOTENV}
        OS: ${FROM_OS}
`,
		"common.yaml": `
services:
  common:
    build:
      context: ./web
      target: common-target
`,
		"inc/compose.yaml": `
services:
  included:
    build: .
`,
		".env":      "FROM_DOTENV=dotenv\nFROM_OS=dotenv-loses\nTAG=from-dotenv\n",
		"other.env": "TAG=from-env-file\nFROM_DOTENV=x\n",
	}, "FROM_OS=os-wins")
	pl := plan(t, p, BuildOptions{})
	web := build(t, pl, "web").Options
	if !slices.Equal(web.BuildArgs, []string{"DOTENV=dotenv", "OS=os-wins", "TAG=from-dotenv"}) {
		t.Errorf("interpolation from .env and the environment: %v", web.BuildArgs)
	}
	if web.Target != "common-target" || web.ContextDir != filepath.Join(dir, "web") {
		t.Errorf("extends: target %q, context %q", web.Target, web.ContextDir)
	}
	if inc := build(t, pl, "included").Options; inc.ContextDir != filepath.Join(dir, "inc") {
		t.Errorf("include: context %q, want the included file's directory", inc.ContextDir)
	}
	p2, err := Load(context.Background(), LoadOptions{Files: []string{filepath.Join(dir, "compose.yaml")}, EnvFiles: []string{filepath.Join(dir, "other.env")}})
	if err != nil {
		t.Fatal(err)
	}
	if got := build(t, plan(t, p2, BuildOptions{}), "web").Options.BuildArgs; !slices.Contains(got, "TAG=from-env-file") {
		t.Errorf("--env-file replaces .env: %v", got)
	}
}

func TestPlanContextPlatforms(t *testing.T) {
	p, _ := project(t, map[string]string{"compose.yaml": `
services:
  base:
    build:
      context: .
      platforms: [linux/amd64]
  app:
    build:
      context: .
      platforms: [linux/amd64, arm64]
      additional_contexts: {base: "service:base"}
`})
	_, err := p.Plan(BuildOptions{})
	wantUsage(t, "a platform the context's service does not build", err,
		"service app builds for linux/arm64, but service base, whose image is its additional context base, builds only for linux/amd64: add linux/arm64 to the platforms of base")
	// --platform gives both the same platforms.
	plan(t, p, BuildOptions{Platforms: []string{"linux/arm64"}})
}
