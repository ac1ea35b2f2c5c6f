// Package request turns the options of one `kiln build`, as typed on the
// command line, into a build request: typed data, validated once. Everything
// a user can get wrong is checked here, before kiln connects to anything,
// and reported as a usage error; the builder then solves the request without
// looking at the options again. The package imports no engine code.
package request

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/core/content"
	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/session"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/internal/safeio"
	"github.com/kiln-build/kiln/platform"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/usage"
)

// MaxDockerfileSize bounds the Dockerfile kiln reads: 16 MiB, the most
// BuildKit's built-in Dockerfile frontend reads (frontend/dockerui's
// maxFileSize, one gRPC message). A larger one could not build anyway, and
// without a bound "-f /dev/zero" or an endless standard input would fill
// kiln's memory.
const MaxDockerfileSize = 16 << 20

// Request is one validated build: what to build, how, and where the result
// goes, in the form BuildKit's solve takes it.
type Request struct {
	// ContextDir is the build context, an absolute directory.
	ContextDir string
	// Dockerfile is the Dockerfile to build.
	Dockerfile Dockerfile
	// Names are the normalised names (-t) to store the image under.
	Names []string
	// Platforms are the platforms to build, normalised and de-duplicated in
	// the order given; empty builds the worker's default, the host's.
	Platforms []ocispecs.Platform
	// FrontendAttrs are the attributes of BuildKit's Dockerfile frontend:
	// the file name, platforms, target, build arguments, labels, options of
	// RUN steps, attestations and named contexts.
	FrontendAttrs map[string]string
	// Outputs are where the result goes; there is at least one.
	Outputs []Output
	// ExportAttrs go to every exporter that writes an image (reproducible
	// timestamps, annotations, compression); what -o sets wins.
	ExportAttrs map[string]string
	// Attachables hand secrets and ssh agents to the build through
	// BuildKit's session.
	Attachables []session.Attachable
	// ContextDirs are the --build-context directories by session key.
	ContextDirs map[string]string
	// OCIStores are the --build-context OCI layouts by session key.
	OCIStores map[string]content.Store
	// CacheImports and CacheExports are --cache-from and --cache-to; a local
	// cache that does not exist yet is left out, with a warning.
	CacheImports, CacheExports []bkclient.CacheOptionsEntry
	// Entitlements are those granted to the build (--allow, --network host).
	Entitlements []string
	// Warnings are for the user before the build starts: a syntax line kiln
	// ignores, a local cache that is not there yet.
	Warnings []string
	// Nodes say which platforms build on remote BuildKit nodes.
	Nodes Nodes
	// Budget is what the build's steps here may use together.
	Budget Budget

	// Progress is the progress display: auto, plain, tty, quiet or rawjson;
	// quiet with Quiet.
	Progress string
	// Quiet prints nothing but the image digest, on Stdout.
	Quiet bool
	// Pull always asks the registry for base images, even local ones.
	Pull bool
	// Push also pushes the image to its registry.
	Push bool
	// NoCache rebuilds every step.
	NoCache bool
	// NoAutoEmulation fails instead of registering QEMU handlers for
	// platforms this host cannot run.
	NoAutoEmulation bool
	// IIDFile, when set, receives the image digest.
	IIDFile string
	// MetadataFile, when set, receives the build result's metadata as JSON.
	MetadataFile string
	// Stdout and Stderr are the streams the build writes: the digest with
	// Quiet and outputs to "-" on Stdout, progress and notices on Stderr.
	Stdout, Stderr io.Writer
	// Call, when set, asks the Dockerfile frontend for a method's answer
	// (check, outline, targets) instead of a build.
	Call *Call
	// Debug prints the details of the check warnings a build found.
	Debug bool
	// Invoke, when set, starts a command on the terminal in the failed
	// step's container, or in the result (--on-error shell, --invoke).
	Invoke *Invoke
	// Stdin is the build's standard input: the terminal Invoke's command
	// reads.
	Stdin io.Reader

	// tempDir holds a Dockerfile read from standard input.
	tempDir string
}

// Dockerfile is the Dockerfile of a build.
type Dockerfile struct {
	// Dir is the absolute directory that holds it, which BuildKit reads.
	Dir string
	// Name is its base name inside Dir.
	Name string
	// Content is what it holds.
	Content []byte
	// Display is how messages name it: its path relative to the working
	// directory (absolute outside it), or "Dockerfile (stdin)".
	Display string
	// FromStdin is set for a Dockerfile read from standard input (-f -).
	FromStdin bool
}

// Parse validates the options and resolves paths, names and platforms into
// a Request. Its errors are usage errors where the user can fix them. When
// ctx ends (kiln got SIGINT or SIGTERM) while Parse waits for input, such
// as a Dockerfile on standard input, Parse returns at once with an error
// wrapping safeio.ErrInterrupted. Close the Request when the build is done.
func Parse(ctx context.Context, o *Options) (*Request, error) {
	r := &Request{
		FrontendAttrs: map[string]string{}, ExportAttrs: map[string]string{},
		ContextDirs: map[string]string{}, OCIStores: map[string]content.Store{},
		Quiet: o.Quiet, Pull: o.Pull, Push: o.Push, NoCache: o.NoCache, NoAutoEmulation: o.NoAutoEmulation,
		IIDFile: o.IIDFile, MetadataFile: o.MetadataFile, Stdout: o.Stdout, Stderr: o.Stderr, Debug: o.Debug,
	}
	if r.Stdout == nil {
		r.Stdout = os.Stdout
	}
	if r.Stdin = o.Stdin; r.Stdin == nil {
		r.Stdin = os.Stdin
	}
	if r.Stderr == nil {
		r.Stderr = os.Stderr
	}
	if err := r.parse(ctx, o); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *Request) parse(ctx context.Context, o *Options) error {
	if err := r.resolveContext(o.ContextDir); err != nil {
		return err
	}
	if err := r.resolveDockerfile(ctx, o.Dockerfile, o.Stdin); err != nil {
		return err
	}
	names, err := store.NormalizeNames(o.Tags)
	if err != nil {
		return usage.Wrap(fmt.Errorf("invalid tag: %w", err))
	}
	r.Names = names
	if r.Platforms, err = ParseBuildable(o.Platforms); err != nil {
		return err
	}
	if r.Budget, err = ParseBudget(o.Memory, o.CPUs, o.MaxParallelism); err != nil {
		return err
	}
	withCtx := func(step func(context.Context, *Options) error) func(*Options) error {
		return func(o *Options) error { return step(ctx, o) }
	}
	for _, step := range []func(*Options) error{r.resolveOutputs, r.resolveProgress, r.setAttrs, r.setRunAttrs, r.setExportAttrs, withCtx(r.resolveContexts), r.resolveCache, withCtx(r.resolveSecrets), r.resolveCall, r.resolveInvoke} {
		if err := step(o); err != nil {
			return err
		}
	}
	if w := r.syntaxWarning(); w != "" {
		r.Warnings = append([]string{w}, r.Warnings...)
	}
	return r.resolveNodes(ctx, o)
}

func (r *Request) resolveContext(dir string) error {
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
	r.ContextDir = abs
	return nil
}

func (r *Request) resolveDockerfile(ctx context.Context, file string, stdin io.Reader) error {
	if file == "-" {
		if stdin == nil {
			stdin = os.Stdin
		}
		const name = "the Dockerfile from standard input"
		data, err := safeio.ReadAll(ctx, stdin, name, MaxDockerfileSize)
		if err != nil {
			return dockerfileReadError(name, err)
		}
		tmp, err := os.MkdirTemp("", "kiln-dockerfile-")
		if err != nil {
			return fmt.Errorf("storing the Dockerfile from standard input: %w", err)
		}
		r.tempDir = tmp
		if err := os.WriteFile(filepath.Join(tmp, "Dockerfile"), data, 0o600); err != nil {
			return fmt.Errorf("storing the Dockerfile from standard input: %w", err)
		}
		r.Dockerfile = Dockerfile{Dir: tmp, Name: "Dockerfile", Content: data, Display: "Dockerfile (stdin)", FromStdin: true}
		return r.checkDockerfile("Dockerfile from standard input")
	}
	path := file
	if path == "" {
		path = filepath.Join(r.ContextDir, "Dockerfile")
	}
	data, err := safeio.ReadFile(ctx, path, MaxDockerfileSize)
	var notRegular *safeio.NotRegularError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if file == "" {
			return usage.Errorf("no Dockerfile in build context %s: add one, or name it with -f", r.ContextDir)
		}
		return usage.Errorf("Dockerfile %s does not exist: check the path given with -f", file)
	case errors.As(err, &notRegular) && notRegular.Mode.IsDir():
		return usage.Errorf("Dockerfile %s is a directory: name the file with -f", path)
	case err != nil:
		return dockerfileReadError("Dockerfile "+path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("resolving Dockerfile %s: %w", path, err)
	}
	r.Dockerfile = Dockerfile{Dir: filepath.Dir(abs), Name: filepath.Base(abs), Content: data, Display: displayPath(abs)}
	return r.checkDockerfile(path)
}

// dockerfileReadError says what to do when the Dockerfile named name could
// not be read: it is not a file, too large, or kiln was interrupted.
func dockerfileReadError(name string, err error) error {
	return inputError(name, err,
		"name a regular file with -f, or pass -f - to read the Dockerfile from standard input",
		"BuildKit's Dockerfile frontend reads no more; check what -f names")
}

// inputError is the usage error for an input named what that safeio
// refused: notFile says what to give instead of something that is not a
// regular file, tooLarge what to do about one over its limit. An
// interruption stays as it is.
func inputError(what string, err error, notFile, tooLarge string) error {
	var notRegular *safeio.NotRegularError
	var large *safeio.TooLargeError
	switch {
	case errors.Is(err, safeio.ErrInterrupted):
		return err
	case errors.As(err, &notRegular):
		return usage.Errorf("%s is %s: %s", what, safeio.Kind(notRegular.Mode), notFile)
	case errors.As(err, &large):
		return usage.Errorf("%s is larger than %s: %s", what, safeio.FormatSize(large.Limit), tooLarge)
	}
	return usage.Errorf("cannot read %s: %w", what, err)
}

// displayPath is the path the user knows a file by: relative to the
// working directory when it is below it.
func displayPath(abs string) string {
	if rel, err := filepath.Rel(".", abs); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return abs
}

// checkDockerfile catches an empty Dockerfile here, where the message can
// name the file; BuildKit would only say "file with no instructions".
func (r *Request) checkDockerfile(name string) error {
	if len(bytes.TrimSpace(r.Dockerfile.Content)) == 0 {
		return usage.Errorf("Dockerfile %s is empty: it needs at least a FROM instruction", name)
	}
	return nil
}

func (r *Request) resolveProgress(o *Options) error {
	mode := o.Progress
	if mode == "" {
		mode = "auto"
	}
	if !slices.Contains(progressModes, mode) {
		return usage.Errorf("invalid --progress %q: use one of %s", mode, strings.Join(progressModes, ", "))
	}
	if o.Quiet {
		mode = "quiet"
	}
	r.Progress = mode
	return nil
}

func (r *Request) setAttrs(o *Options) error {
	a := r.FrontendAttrs
	a["filename"] = r.Dockerfile.Name
	// The built-in frontend is always used: with "cmdline" set, a
	// "# syntax=" line no longer makes BuildKit fetch a frontend image,
	// which would break every offline build.
	a["cmdline"] = ""
	if len(r.Platforms) > 0 {
		a["platform"] = platform.FormatList(r.Platforms)
	}
	if o.Target != "" {
		a["target"] = o.Target
	}
	if o.NoCache {
		a["no-cache"] = ""
	}
	// "local" prefers an image already in the namespace and asks the
	// registry only for what is missing; "pull" always asks.
	a["image-resolve-mode"] = "local"
	if o.Pull {
		a["image-resolve-mode"] = "pull"
	}
	for _, kv := range o.BuildArgs {
		k, v, ok, err := ParseBuildArg(kv, os.LookupEnv)
		if err != nil {
			return err
		}
		if ok {
			a["build-arg:"+k] = v
		}
	}
	for _, kv := range o.Labels {
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
func (r *Request) syntaxWarning() string {
	ref, _, _, ok := parser.DetectSyntax(r.Dockerfile.Content)
	if !ok {
		if v, set := r.FrontendAttrs["build-arg:BUILDKIT_SYNTAX"]; set {
			ref, ok = v, true
		}
	}
	if !ok {
		return ""
	}
	return fmt.Sprintf("warning: ignoring syntax %q: kiln builds with its built-in Dockerfile frontend (works offline)", ref)
}

// WithPlatforms is a copy of the request that builds only ps, as one
// builder of a build on nodes does.
func (r *Request) WithPlatforms(ps []ocispecs.Platform) *Request {
	c := *r
	c.Platforms = ps
	c.FrontendAttrs = maps.Clone(r.FrontendAttrs)
	c.FrontendAttrs["platform"] = platform.FormatList(ps)
	return &c
}

// ImageNames are the names the image output stores the result under, and
// whether it pushes.
func (r *Request) ImageNames() ([]string, bool) {
	names, push := r.Names, r.Push
	for _, o := range r.Outputs {
		if n := o.Attrs["name"]; n != "" {
			names = strings.Split(n, ",")
		}
		push = push || o.Attrs["push"] == "true"
	}
	return names, push
}

// Close removes what Parse created: the copy of a Dockerfile read from
// standard input.
func (r *Request) Close() {
	if r.tempDir != "" {
		os.RemoveAll(r.tempDir)
	}
}
