//go:build linux

package integration

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// composeProject is three services: base for two platforms, app built
// FROM base's image through additional_contexts service:base, and vault,
// whose build reads a secret. network_mode none keeps nerdctl compose from
// asking for a CNI network.
const composeProject = `
name: kilnc
services:
  base:
    network_mode: none
    build:
      context: ./base
      platforms: [linux/amd64, linux/arm64]
  app:
    network_mode: none
    build:
      context: ./app
      additional_contexts:
        base: service:base
      args:
        GREETING: ${GREETING:-unset}
  vault:
    image: example.org/kilnc/vault:1
    network_mode: none
    build:
      context: ./vault
      dockerfile: vault.Dockerfile
      secrets: [token]
      labels:
        org.example.role: vault
secrets:
  token:
    file: ./token.txt
`

func composeDir(t *testing.T) string {
	t.Helper()
	return contextDir(t, map[string]string{
		"compose.yaml":    composeProject,
		".env":            "GREETING=from-dotenv\n",
		"token.txt":       "s3cret",
		"base/Dockerfile": "FROM busybox\nRUN uname -m > /arch\n",
		"app/Dockerfile":  "FROM base\nARG GREETING\nRUN cat /arch > /from-base && echo $GREETING > /greeting\n",
		"vault/vault.Dockerfile": "FROM busybox\n" +
			"RUN --mount=type=secret,id=token test \"$(cat /run/secrets/token)\" = s3cret && echo ok > /secret-ok\n",
	})
}

func TestComposeBuild(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.busyboxBase(t, "busybox")
	dir := composeDir(t)
	file := filepath.Join(dir, "compose.yaml")

	records := len(strings.Fields(e.kiln("history", "ls", "-q").ok(t).Stdout))
	// A nodes file's node takes no part (nor is it contacted), and kiln says so: base has arm64.
	nodesFile := nodesConfig(t, "[node.lab]\naddress = \"tcp://192.0.2.1:1234\"\ninsecure-plaintext = true\n")
	r := e.kilnEnv([]string{nodesFile}, "compose", "-f", file, "build", "--progress", "plain").ok(t)
	if !strings.Contains(r.Stderr, "warning: kiln compose build builds every platform on this host, linux/arm64 under QEMU: the nodes of the nodes files (lab) are for kiln build only") {
		t.Errorf("no warning that the nodes file's node is not used:\n%s", r.Stderr)
	}
	for _, svc := range []string{"base", "app", "vault"} {
		if !strings.Contains(r.Stderr, "built service "+svc+": ") {
			t.Errorf("no line saying service %s was built:\n%s", svc, r.Stderr)
		}
	}
	// Each service's build is recorded in the build history.
	if refs := strings.Fields(e.kiln("history", "ls", "-q").ok(t).Stdout); len(refs) != records+3 {
		t.Errorf("kiln history ls -q lists %v, want %d records more: the builds of the 3 services", refs, 3)
	}

	// Names as docker compose and nerdctl compose give them; base holds
	// both platforms, the others this host's.
	base := e.image(t, "docker.io/library/kilnc-base:latest")
	if base.MediaType != ocispecs.MediaTypeImageIndex {
		t.Fatalf("base: media type %s, want an index", base.MediaType)
	}
	if got := indexPlatforms(base.Index); len(got) != 2 || !contains(got, "linux/amd64") || !contains(got, "linux/arm64") {
		t.Errorf("base platforms %v, want linux/amd64 and linux/arm64", got)
	}
	for _, c := range []struct{ platform, machine string }{{"linux/amd64", "x86_64"}, {"linux/arm64", "aarch64"}} {
		out := e.ctr("run", "--rm", "--platform", c.platform, "docker.io/library/kilnc-base:latest", "base-"+strings.ReplaceAll(c.platform, "/", "-"), "cat", "/arch").ok(t).Stdout
		if strings.TrimSpace(out) != c.machine {
			t.Errorf("base for %s has /arch %q, want %s", c.platform, out, c.machine)
		}
	}
	// nerdctl compose up to 2.3 looks for PROJECT_SERVICE: the same image.
	if legacy := e.image(t, "docker.io/library/kilnc_base:latest"); legacy.Digest != base.Digest {
		t.Errorf("kilnc_base is %s, kilnc-base %s: want one image under both names", legacy.Digest, base.Digest)
	}
	app := e.image(t, "docker.io/library/kilnc-app:latest")
	if app.MediaType != ocispecs.MediaTypeImageManifest {
		t.Errorf("app: media type %s, want one platform's manifest", app.MediaType)
	}
	// app is built FROM the base image just built, with .env interpolated.
	out := e.ctr("run", "--rm", "docker.io/library/kilnc-app:latest", "app-1", "cat", "/from-base", "/greeting").ok(t).Stdout
	if out != "x86_64\nfrom-dotenv\n" {
		t.Errorf("app holds %q, want base's /arch and the .env greeting", out)
	}
	cfg := e.config(t, app.Manifest.Config.Digest.String())
	if cfg.Config.Labels["com.docker.compose.project"] != "kilnc" || cfg.Config.Labels["com.docker.compose.service"] != "app" {
		t.Errorf("app labels %v, want compose's project and service labels", cfg.Config.Labels)
	}
	vault := e.image(t, "example.org/kilnc/vault:1")
	out = e.ctr("run", "--rm", "example.org/kilnc/vault:1", "vault-1", "cat", "/secret-ok").ok(t).Stdout
	if strings.TrimSpace(out) != "ok" {
		t.Errorf("vault's build did not see the secret: %q", out)
	}
	if cfg := e.config(t, vault.Manifest.Config.Digest.String()); cfg.Config.Labels["org.example.role"] != "vault" {
		t.Errorf("vault labels %v, want org.example.role=vault", cfg.Config.Labels)
	}

	// The second build reuses every step of every service.
	again := e.kiln("compose", "-f", file, "build", "--progress", "plain").ok(t)
	steps := regexp.MustCompile(`(?m)^#(\d+) \[(base|app|vault)\] \[[^\]]*\] (RUN|COPY|FROM) `).FindAllStringSubmatch(again.Stderr, -1)
	cached := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#(\d+) CACHED$`).FindAllStringSubmatch(again.Stderr, -1) {
		cached[m[1]] = true
	}
	seen := map[string]bool{}
	for _, s := range steps {
		seen[s[2]] = true
		if s[3] != "FROM" && !cached[s[1]] {
			t.Errorf("second build ran step #%s of %s again, want it CACHED", s[1], s[2])
		}
	}
	if len(seen) != 3 {
		t.Errorf("second build shows steps of %v, want base, app and vault:\n%s", seen, again.Stderr)
	}
	if t.Failed() {
		t.Logf("second build:\n%s", again.Stderr)
	}
	for _, name := range []string{"docker.io/library/kilnc-base:latest", "docker.io/library/kilnc-app:latest", "example.org/kilnc/vault:1"} {
		if e.image(t, name).Digest == "" {
			t.Errorf("%s lost", name)
		}
	}
	if e.image(t, "docker.io/library/kilnc-app:latest").Digest != app.Digest {
		t.Error("the cached rebuild of app gave another image")
	}

	composeNerdctl(t, e, file)
}

// composeNerdctl checks that nerdctl compose finds every image kiln
// built: creating the containers with --no-build and --pull never fails
// for any image missing.
func composeNerdctl(t *testing.T, e *env, file string) {
	t.Helper()
	nerdctl, err := filepath.Abs("../../shared/tools/nerdctl")
	if err == nil {
		_, err = os.Stat(nerdctl)
	}
	if err != nil {
		t.Logf("skipping the nerdctl compose check: no nerdctl at ../../shared/tools/nerdctl")
		return
	}
	data := t.TempDir()
	run := func(args ...string) result {
		full := append([]string{"--address", e.Address, "--namespace", e.Namespace, "--data-root", data}, args...)
		return runShown(t, "", "nerdctl "+strings.Join(args, " "), nerdctl, full...)
	}
	run("compose", "-f", file, "create", "--no-build", "--pull", "never").ok(t)
	t.Cleanup(func() { run("compose", "-f", file, "rm", "-f") })
	out := run("compose", "-f", file, "images").ok(t).Stdout
	// One container per service, from the image kiln built: nerdctl up to
	// 2.3 names it kilnc_base, later ones (and docker compose) kilnc-base.
	repos := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 3 {
			repos[f[0]] = f[1]
		}
	}
	for svc, want := range map[string][]string{
		"base":  {"kilnc-base", "kilnc_base"},
		"app":   {"kilnc-app", "kilnc_app"},
		"vault": {"example.org/kilnc/vault"},
	} {
		if got := repos["kilnc-"+svc+"-1"]; !contains(want, got) {
			t.Errorf("nerdctl compose images: the container of %s runs %q, want one of %v:\n%s", svc, got, want, out)
		}
	}
}

func TestComposeBuildErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, c := range []struct {
		name, compose string
		code          int
		want          string
	}{
		{"unknown key", "services:\n  web:\n    build:\n      context: .\n      dockerfil: x\n", 2,
			"services.web.build has no key 'dockerfil': check its spelling and indentation"},
		{"missing context", "services:\n  web:\n    build: ./nowhere\n", 2,
			"service web: build context "},
		{"cycle", "services:\n  a:\n    build:\n      context: .\n      additional_contexts: {x: \"service:b\"}\n" +
			"  b:\n    build:\n      context: .\n      additional_contexts: {y: \"service:a\"}\n", 2,
			"services depend on each other's images through additional_contexts: a -> b -> a"},
		{"git context", "services:\n  web:\n    build: https://github.com/example/app.git\n", 2,
			"is a git repository or URL: kiln builds local directories only"},
		{"unknown service", "services:\n  web:\n    build: .\n", 2, "no such service: nope"},
	} {
		dir := contextDir(t, map[string]string{"compose.yaml": c.compose, "Dockerfile": "FROM busybox\n"})
		args := []string{"compose", "-f", filepath.Join(dir, "compose.yaml"), "build"}
		if c.name == "unknown service" {
			args = append(args, "nope")
		}
		r := e.kiln(args...).fails(t, c.code, c.want)
		if lines := strings.Split(strings.TrimSpace(r.Stderr), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "error: ") {
			t.Errorf("%s: stderr is not one error line:\n%s", c.name, r.Stderr)
		}
	}
	// A compose file that is a named pipe is refused, not waited on.
	fifo := filepath.Join(t.TempDir(), "compose.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	e.kiln("compose", "-f", fifo, "build").fails(t, 2, "error: compose file "+fifo+" is a named pipe (FIFO): name a regular file")
}

// TestComposeBuildFailure: a failing service names itself, the services
// that need its image are not built, and the others' images are stored.
func TestComposeBuildFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.busyboxBase(t, "busybox", "linux/amd64")
	dir := contextDir(t, map[string]string{
		"compose.yaml": `
name: kilnf
services:
  broken:
    build: ./broken
  needs:
    build:
      context: ./needs
      additional_contexts: {b: "service:broken"}
  fine:
    build: ./fine
`,
		"broken/Dockerfile": "FROM busybox\nRUN echo going wrong && false\n",
		"needs/Dockerfile":  "FROM b\n",
		"fine/Dockerfile":   "FROM busybox\nRUN echo fine > /fine\n",
	})
	r := e.kiln("compose", "-f", filepath.Join(dir, "compose.yaml"), "build", "--progress", "plain").fails(t, 1, "error: service broken: ")
	for _, want := range []string{
		"failed with exit code 1",
		"going wrong",
		"service needs: not built: it needs the image of service broken, which was not built",
		"built service fine: docker.io/library/kilnf-fine:latest",
		"error: 2 of 3 services not built: broken, needs",
	} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.Stderr)
		}
	}
	e.image(t, "docker.io/library/kilnf-fine:latest")
	if out := e.ctr("images", "ls", "-q").ok(t).Stdout; strings.Contains(out, "kilnf-broken") || strings.Contains(out, "kilnf-needs") {
		t.Errorf("images of services that failed: %s", out)
	}
}

// TestComposeBuildEmbedded: with kiln's embedded store a service builds
// FROM another's image too (read from the embedded store's content).
func TestComposeBuildEmbedded(t *testing.T) {
	t.Parallel()
	e := newEmbeddedEnv(t)
	e.busyboxBase(t, "busybox")
	dir := contextDir(t, map[string]string{
		"compose.yaml": `
name: kilne
services:
  base:
    build:
      context: ./base
      platforms: [linux/amd64, linux/arm64]
  app:
    build:
      context: ./app
      platforms: [linux/amd64, linux/arm64]
      additional_contexts:
        base: service:base
`,
		"base/Dockerfile": "FROM busybox\nRUN uname -m > /arch\n",
		"app/Dockerfile":  "FROM base\nRUN cp /arch /from-base\n",
	})
	if r := e.kiln("compose", "-f", filepath.Join(dir, "compose.yaml"), "build", "-q").ok(t); r.Stdout != "" || r.Stderr != "" {
		t.Errorf("-q printed something:\n--- stdout:\n%s\n--- stderr:\n%s", r.Stdout, r.Stderr)
	}
	out := e.kiln("images", "--platforms", "kilne-app").ok(t).Stdout
	for _, want := range []string{"linux/amd64", "linux/arm64"} {
		if !strings.Contains(out, want) {
			t.Errorf("kilne-app lacks %s:\n%s", want, out)
		}
	}
	e.kiln("inspect", "kilne-base").ok(t)
}

// TestComposeBuildPush: --push pushes the services that name their image,
// as docker compose does, and stores every image.
func TestComposeBuildPush(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.busyboxBase(t, "busybox", "linux/amd64")
	reg := startRegistry(t)
	dir := contextDir(t, map[string]string{
		"compose.yaml": `
name: kilnp
services:
  named:
    image: ${REG}/kilnp/named:1
    build: .
  unnamed:
    build: .
`,
		".env":       "REG=" + reg + "\n",
		"Dockerfile": "FROM busybox\nRUN echo pushed > /pushed\n",
	})
	e.kiln("compose", "-f", filepath.Join(dir, "compose.yaml"), "build", "--push").ok(t)
	resp, err := http.Get("http://" + reg + "/v2/_catalog")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var catalog struct{ Repositories []string }
	if err := json.NewDecoder(resp.Body).Decode(&catalog); err != nil {
		t.Fatal(err)
	}
	if len(catalog.Repositories) != 1 || catalog.Repositories[0] != "kilnp/named" {
		t.Errorf("registry holds %v, want only kilnp/named", catalog.Repositories)
	}
	e.image(t, reg+"/kilnp/named:1")
	e.image(t, "docker.io/library/kilnp-unnamed:latest")
}
