package builder

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd/v2/core/content"
	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/session"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/usage"
)

// Progress modes accepted by --progress.
var progressModes = []string{"auto", "plain", "tty", "quiet", "rawjson"}

// Options are the options of one `kiln build`, as given on the command line.
type Options struct {
	// ContextDir is the build context directory.
	ContextDir string
	// Dockerfile is the Dockerfile's path, relative to the working directory
	// as in buildx; empty means ContextDir/Dockerfile and "-" reads Stdin.
	Dockerfile string
	// Tags are the names to store the image under, as the user wrote them.
	Tags []string
	// Platforms are --platform values; each may list several, comma-separated.
	Platforms []string
	// BuildArgs are KEY=VALUE pairs; a bare KEY takes its value from the
	// environment and is dropped when the environment lacks it.
	BuildArgs []string
	// Labels are KEY=VALUE pairs added to the image config.
	Labels []string
	// Target is the stage to build; empty builds the last one.
	Target string
	// NoCache rebuilds every step.
	NoCache bool
	// Pull always asks the registry for base images, even local ones.
	Pull bool
	// Progress is the progress display: auto, plain, tty, quiet or rawjson.
	Progress string
	// Quiet prints nothing but the image digest.
	Quiet bool
	// IIDFile, when set, receives the image digest.
	IIDFile string
	// MetadataFile, when set, receives the build result's metadata as JSON.
	MetadataFile string
	// Outputs are -o/--output values in docker's syntax; none means the
	// containerd image store.
	Outputs []string
	// Push also pushes the image to its registry.
	Push bool
	// NoAutoEmulation fails instead of registering QEMU handlers for
	// platforms this host cannot run.
	NoAutoEmulation bool

	// Secrets are --secret values: id=ID,src=FILE or id=ID,env=VARIABLE.
	Secrets []string
	// SSH are --ssh values: default (the agent at $SSH_AUTH_SOCK) or
	// ID=PATH[,PATH...] with agent sockets or private key files.
	SSH []string
	// BuildContexts are --build-context values: NAME=DIR,
	// NAME=docker-image://REF or NAME=oci-layout://PATH[:TAG][@DIGEST].
	BuildContexts []string
	// CacheFrom and CacheTo are --cache-from and --cache-to values of type
	// local, registry (and, for CacheTo, inline).
	CacheFrom, CacheTo []string
	// NoCacheFilter are stages to rebuild without cache.
	NoCacheFilter []string
	// Network is the network of RUN steps: default, none or host.
	Network string
	// AddHosts are HOST:IP entries added to /etc/hosts of RUN steps.
	AddHosts []string
	// ShmSize is the size of /dev/shm in RUN steps, e.g. 64m.
	ShmSize string
	// Ulimits are NAME=SOFT[:HARD] resource limits of RUN steps.
	Ulimits []string
	// Allow are entitlements granted to the build: network.host,
	// security.insecure.
	Allow []string
	// SourceDateEpoch, when set (or $SOURCE_DATE_EPOCH), pins every
	// timestamp of the image to these seconds since 1970.
	SourceDateEpoch string
	// Attest are --attest values: type=provenance[,mode=min|max].
	Attest []string
	// Provenance is buildx's --provenance shorthand: true, false or
	// mode=min|max.
	Provenance string
	// Annotations are [TYPE[PLATFORM]:]KEY=VALUE annotations of the image.
	Annotations []string
	// Compression is the layer compression: gzip, zstd, estargz or
	// uncompressed; CompressionLevel its level.
	Compression, CompressionLevel string

	// Nodes are --node values, PLATFORM[,PLATFORM]=ADDRESS|NAME|local:
	// where those platforms build (see package nodes and nodes.go).
	Nodes []string
	// NodeFallback is what happens when a node does not answer before the
	// build: "fail" (the default) or "emulate" (build its platforms here).
	NodeFallback string
	// NodesFiles are the nodes files to read; nil reads
	// nodes.DefaultFiles().
	NodesFiles []string

	// Stdin, Stdout and Stderr are the streams the build reads and writes.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// request is a validated build: everything a user can get wrong has been
// checked before kiln connects to anything.
type request struct {
	contextDir    string
	dockerfileDir string
	dockerfile    string // base name inside dockerfileDir
	content       []byte
	tempDir       string // holds a Dockerfile read from stdin
	names         []string
	platforms     []ocispecs.Platform
	frontendAttrs map[string]string
	outputs       []Output
	progress      string
	opts          *Options

	// exportAttrs go to every exporter that writes an image.
	exportAttrs  map[string]string
	attachables  []session.Attachable // secrets and ssh agents
	contextDirs  map[string]string    // --build-context directories by session key
	ociStores    map[string]content.Store
	cacheImports []bkclient.CacheOptionsEntry
	cacheExports []bkclient.CacheOptionsEntry
	entitlements []string
	warnings     []string
}

// prepare validates the options and resolves paths, names and platforms.
func (o *Options) prepare() (*request, error) {
	r := &request{opts: o, frontendAttrs: map[string]string{}, exportAttrs: map[string]string{},
		contextDirs: map[string]string{}, ociStores: map[string]content.Store{}}
	if err := r.resolveContext(o.ContextDir); err != nil {
		return nil, err
	}
	if err := r.resolveDockerfile(o.Dockerfile, o.Stdin); err != nil {
		return nil, err
	}
	names, err := store.NormalizeNames(o.Tags)
	if err != nil {
		return nil, usage.Wrap(fmt.Errorf("invalid tag: %w", err))
	}
	r.names = names
	if r.platforms, err = ParsePlatforms(o.Platforms); err != nil {
		return nil, err
	}
	if err := r.resolveOutputs(); err != nil {
		return nil, err
	}
	if err := r.resolveProgress(); err != nil {
		return nil, err
	}
	if err := r.setAttrs(); err != nil {
		return nil, err
	}
	for _, step := range []func() error{r.setRunAttrs, r.setExportAttrs, r.resolveContexts, r.resolveCache, r.resolveSecrets} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func (r *request) resolveContext(dir string) error {
	if dir == "" {
		return usage.Errorf("no build context given: pass a directory, for example \"kiln build .\"")
	}
	if dir == "-" || strings.Contains(dir, "://") {
		return usage.Errorf("build context %q is not supported: pass a local directory", dir)
	}
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return usage.Errorf("build context %s does not exist: pass an existing directory", dir)
	}
	if err != nil {
		return usage.Errorf("cannot read build context %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return usage.Errorf("build context %s is a file, not a directory: pass the directory that holds your sources", dir)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("resolving build context %s: %w", dir, err)
	}
	r.contextDir = abs
	return nil
}

func (r *request) resolveDockerfile(file string, stdin io.Reader) error {
	if file == "-" {
		if stdin == nil {
			stdin = os.Stdin
		}
		data, err := io.ReadAll(stdin)
		if err != nil {
			return fmt.Errorf("reading the Dockerfile from standard input: %w", err)
		}
		tmp, err := os.MkdirTemp("", "kiln-dockerfile-")
		if err != nil {
			return fmt.Errorf("storing the Dockerfile from standard input: %w", err)
		}
		r.tempDir = tmp
		if err := os.WriteFile(filepath.Join(tmp, "Dockerfile"), data, 0o600); err != nil {
			return fmt.Errorf("storing the Dockerfile from standard input: %w", err)
		}
		r.dockerfileDir, r.dockerfile, r.content = tmp, "Dockerfile", data
		return r.checkDockerfile("Dockerfile from standard input")
	}
	path := file
	if path == "" {
		path = filepath.Join(r.contextDir, "Dockerfile")
	}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if file == "" {
			return usage.Errorf("no Dockerfile in build context %s: add one, or name it with -f", r.contextDir)
		}
		return usage.Errorf("Dockerfile %s does not exist: check the path given with -f", file)
	case err != nil:
		var pe *fs.PathError
		if errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "is a directory") {
			return usage.Errorf("Dockerfile %s is a directory: name the file with -f", path)
		}
		return usage.Errorf("cannot read Dockerfile %s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("resolving Dockerfile %s: %w", path, err)
	}
	r.dockerfileDir, r.dockerfile, r.content = filepath.Dir(abs), filepath.Base(abs), data
	return r.checkDockerfile(path)
}

// checkDockerfile catches an empty Dockerfile here, where the message can
// name the file; BuildKit would only say "file with no instructions".
func (r *request) checkDockerfile(name string) error {
	if len(bytes.TrimSpace(r.content)) == 0 {
		return usage.Errorf("Dockerfile %s is empty: it needs at least a FROM instruction", name)
	}
	return nil
}

func (r *request) resolveProgress() error {
	mode := r.opts.Progress
	if mode == "" {
		mode = "auto"
	}
	valid := false
	for _, m := range progressModes {
		valid = valid || m == mode
	}
	if !valid {
		return usage.Errorf("invalid --progress %q: use one of %s", mode, strings.Join(progressModes, ", "))
	}
	if r.opts.Quiet {
		mode = "quiet"
	}
	r.progress = mode
	return nil
}

func (r *request) setAttrs() error {
	a := r.frontendAttrs
	a["filename"] = r.dockerfile
	// The built-in frontend is always used: with "cmdline" set, a
	// "# syntax=" line no longer makes BuildKit fetch a frontend image,
	// which would break every offline build.
	a["cmdline"] = ""
	if len(r.platforms) > 0 {
		a["platform"] = formatPlatforms(r.platforms)
	}
	if r.opts.Target != "" {
		a["target"] = r.opts.Target
	}
	if r.opts.NoCache {
		a["no-cache"] = ""
	}
	// "local" prefers an image already in the namespace and asks the
	// registry only for what is missing; "pull" always asks.
	a["image-resolve-mode"] = "local"
	if r.opts.Pull {
		a["image-resolve-mode"] = "pull"
	}
	for _, kv := range r.opts.BuildArgs {
		k, v, ok, err := ParseBuildArg(kv, os.LookupEnv)
		if err != nil {
			return err
		}
		if ok {
			a["build-arg:"+k] = v
		}
	}
	for _, kv := range r.opts.Labels {
		k, v, _ := strings.Cut(kv, "=")
		if k == "" {
			return usage.Errorf("invalid --label %q: use KEY=VALUE", kv)
		}
		a["label:"+k] = v
	}
	return nil
}

// ParseBuildArg parses a --build-arg value: KEY=VALUE, or a bare KEY that
// takes its value from lookup (the environment). ok is false for a bare
// KEY that lookup does not know: docker then leaves the argument unset.
func ParseBuildArg(s string, lookup func(string) (string, bool)) (key, value string, ok bool, err error) {
	k, v, hasValue := strings.Cut(s, "=")
	if k == "" || strings.TrimSpace(k) != k || strings.ContainsAny(k, "\r\n") {
		return "", "", false, usage.Errorf("invalid --build-arg %q: use KEY=VALUE, or KEY to take the value from the environment", s)
	}
	if !hasValue {
		v, hasValue = lookup(k)
	}
	return k, v, hasValue, nil
}

// syntaxWarning says when the Dockerfile asks for a frontend kiln will not
// fetch, so the user knows which one builds it.
func (r *request) syntaxWarning() string {
	ref, _, _, ok := parser.DetectSyntax(r.content)
	if !ok {
		if v, set := r.frontendAttrs["build-arg:BUILDKIT_SYNTAX"]; set {
			ref, ok = v, true
		}
	}
	if !ok {
		return ""
	}
	return fmt.Sprintf("warning: ignoring syntax %q: kiln builds with its built-in Dockerfile frontend (works offline)", ref)
}

// cleanup removes what prepare created.
func (r *request) cleanup() {
	if r.tempDir != "" {
		os.RemoveAll(r.tempDir)
	}
}
