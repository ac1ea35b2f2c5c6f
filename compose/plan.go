package compose

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/containerd/platforms"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/platform"
	"github.com/kiln-build/kiln/request"
	"github.com/kiln-build/kiln/usage"
)

// Labels docker compose gives every image it builds, so that tools find
// the project and service an image belongs to.
const (
	ProjectLabel = "com.docker.compose.project"
	ServiceLabel = "com.docker.compose.service"
)

// BuildOptions are the options of `kiln compose build`, as docker compose
// build takes them, plus kiln's --platform.
type BuildOptions struct {
	// Services are the services to build; none builds every service with
	// a build section.
	Services []string
	// WithDependencies also builds the services the named ones depend on
	// (depends_on, links and the like).
	WithDependencies bool
	// NoCache, Pull and Push apply to every service (no_cache and pull
	// in a build section apply to that service). Push pushes the services
	// that have an image: name, as docker compose does.
	NoCache, Pull, Push bool
	// BuildArgs (--build-arg KEY=VALUE, or KEY from the project's
	// environment) win over every service's args.
	BuildArgs []string
	// Platforms (--platform), when given, replace every service's
	// platforms.
	Platforms []string
	// Progress is the progress display; Quiet shows none.
	Progress string
	Quiet    bool
	// NoAutoEmulation fails instead of registering QEMU handlers.
	NoAutoEmulation bool
}

// Build is the build of one service.
type Build struct {
	// Service is the service's name.
	Service string
	// Image is the name the image is stored under: the service's image:,
	// or PROJECT-SERVICE as docker compose names it (then also
	// PROJECT_SERVICE, as nerdctl compose up to 2.3 names it).
	Image string
	// Options are the options of the equivalent `kiln build`; request.Parse
	// validates them. ContextDir, Dockerfile (or Stdin with a
	// dockerfile_inline), tags, platforms, arguments, labels and the build
	// section's other keys are set; Stdout and Stderr are the caller's.
	Options request.Options
	// ServiceContexts are the additional contexts that are another
	// service's image (service:NAME), by context name: that service is
	// built first, and its result is the context.
	ServiceContexts map[string]string
}

// Needs are the services b must wait for, sorted.
func (b *Build) Needs() []string {
	return slices.Sorted(maps.Values(b.ServiceContexts))
}

// Plan is every build of one `kiln compose build`, each after the builds
// it needs.
type Plan struct {
	// Project is the project's name.
	Project string
	// Builds are in an order in which every build comes after those it
	// needs; independent builds may run at the same time (see Walk).
	Builds []*Build
}

// Plan maps the services to build onto builds. Services without a build
// section are left out (they run an image from elsewhere). Errors are
// usage errors naming the service and key.
func (p *Project) Plan(o BuildOptions) (*Plan, error) {
	names, err := p.selected(o)
	if err != nil {
		return nil, err
	}
	plan := &Plan{Project: p.p.Name}
	byName := map[string]*Build{}
	for _, name := range names {
		svc, _ := p.service(name)
		b, err := p.build(svc, o)
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", name, err)
		}
		byName[name] = b
	}
	order, err := order(byName)
	if err != nil {
		return nil, err
	}
	if err := contextPlatforms(byName); err != nil {
		return nil, err
	}
	for _, name := range order {
		plan.Builds = append(plan.Builds, byName[name])
	}
	return plan, nil
}

// service finds a service, also one its profiles disable: a service named
// on the command line or by another's service: context is built anyway,
// as docker compose does.
func (p *Project) service(name string) (types.ServiceConfig, bool) {
	if s, ok := p.p.Services[name]; ok {
		return s, true
	}
	s, ok := p.p.DisabledServices[name]
	return s, ok
}

// selected are the services to build: those named (every enabled one when
// none is), with their dependencies when asked, and always the services
// their service: contexts name; only those with a build section.
func (p *Project) selected(o BuildOptions) ([]string, error) {
	want := o.Services
	if len(want) == 0 {
		want = p.p.ServiceNames()
	}
	seen := map[string]bool{}
	var out []string
	var visit func(name, from string) error
	visit = func(name, from string) error {
		if seen[name] {
			return nil
		}
		svc, ok := p.service(name)
		if !ok {
			if from != "" {
				return usage.Errorf("service %s depends on service %s, which the project does not define", from, name)
			}
			return usage.Errorf("no such service: %s (the project defines %s)", name, strings.Join(p.p.ServiceNames(), ", "))
		}
		seen[name] = true
		if svc.Build == nil {
			if from == "" && len(o.Services) > 0 && !o.WithDependencies {
				return usage.Errorf("service %s has no build section: it runs the image %s, there is nothing to build", name, svc.Image)
			}
			return nil
		}
		out = append(out, name)
		var deps []string
		for _, c := range svc.Build.AdditionalContexts {
			if dep, ok := strings.CutPrefix(c, types.ServicePrefix); ok {
				deps = append(deps, dep)
			}
		}
		if o.WithDependencies {
			deps = append(deps, svc.GetDependencies()...)
		}
		sort.Strings(deps)
		for _, d := range deps {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		return nil
	}
	for _, name := range want {
		if err := visit(name, ""); err != nil {
			return nil, err
		}
	}
	sort.Strings(out)
	return out, nil
}

// ImageName is the name docker compose gives a service's image: its
// image:, or PROJECT-SERVICE (compose's api.GetImageNameOrDefault), which
// nerdctl compose also looks for since it follows docker compose v2.
func ImageName(project string, svc types.ServiceConfig) string {
	if svc.Image != "" {
		return svc.Image
	}
	return project + "-" + svc.Name
}

// nerdctlImageName is the name nerdctl compose releases up to 2.3 look for
// when a service has no image:, PROJECT_SERVICE (docker compose v1's
// separator); "" when the service names its image.
func nerdctlImageName(project string, svc types.ServiceConfig) string {
	if svc.Image != "" {
		return ""
	}
	return project + "_" + svc.Name
}

// build maps one service's build section onto the options of kiln build.
func (p *Project) build(svc types.ServiceConfig, o BuildOptions) (*Build, error) {
	bc := svc.Build
	b := &Build{Service: svc.Name, Image: ImageName(p.p.Name, svc), ServiceContexts: map[string]string{}}
	opts := &b.Options
	if isRemote(bc.Context) {
		return nil, usage.Errorf("build context %s is a git repository or URL: kiln builds local directories only; clone it and set build.context to the directory", bc.Context)
	}
	opts.ContextDir = bc.Context
	switch {
	case bc.DockerfileInline != "":
		// request reads a Dockerfile from Stdin with "-".
		opts.Dockerfile = "-"
		opts.Stdin = strings.NewReader(bc.DockerfileInline)
	case bc.Dockerfile != "":
		// Relative to the context, as in docker compose.
		opts.Dockerfile = bc.Dockerfile
		if !filepath.IsAbs(bc.Dockerfile) {
			opts.Dockerfile = filepath.Join(bc.Context, bc.Dockerfile)
		}
	}
	opts.Tags = append([]string{b.Image}, bc.Tags...)
	// The image also gets the name older nerdctl compose releases look for,
	// so that "nerdctl compose up" finds it with every nerdctl.
	if n := nerdctlImageName(p.p.Name, svc); n != "" {
		opts.Tags = append(opts.Tags, n)
	}
	opts.Target = bc.Target
	platforms, err := p.platforms(svc, o)
	if err != nil {
		return nil, err
	}
	opts.Platforms = platforms
	opts.BuildArgs = p.buildArgs(bc.Args, o.BuildArgs)
	opts.Labels = labels(bc.Labels, p.p.Name, svc.Name)
	opts.NoCache = o.NoCache || bc.NoCache
	opts.NoCacheFilter = bc.NoCacheFilter
	opts.Pull = o.Pull || bc.Pull
	// docker compose pushes only the images a service names: a default
	// PROJECT-SERVICE name has no registry to go to.
	opts.Push = o.Push && svc.Image != ""
	opts.Progress = o.Progress
	if o.Quiet {
		opts.Progress = "quiet"
	}
	opts.NoAutoEmulation = o.NoAutoEmulation
	opts.CacheFrom = bc.CacheFrom
	opts.CacheTo = bc.CacheTo
	opts.Network = bc.Network
	opts.AddHosts = hosts(bc.ExtraHosts)
	if bc.ShmSize > 0 {
		opts.ShmSize = strconv.FormatInt(int64(bc.ShmSize), 10)
	}
	opts.Ulimits = ulimits(bc.Ulimits)
	opts.Allow = append(opts.Allow, bc.Entitlements...)
	if bc.Privileged {
		opts.Allow = append(opts.Allow, request.EntitlementSecurityInsecure)
	}
	if err := p.provenance(bc, opts); err != nil {
		return nil, err
	}
	if opts.Secrets, err = p.secrets(bc.Secrets); err != nil {
		return nil, err
	}
	opts.SSH = sshKeys(bc.SSH)
	if err := b.contexts(bc.AdditionalContexts); err != nil {
		return nil, err
	}
	// Every platform builds in this process: compose builds share one
	// engine, which remote nodes (kiln build --node) are not part of.
	opts.NodesFiles = []string{}
	return b, nil
}

// isRemote reports a context compose-go leaves as it is because it is not
// a local path: a git repository or URL (see compose-go's paths package).
func isRemote(s string) bool {
	if strings.Contains(s, "://") {
		return true
	}
	for _, prefix := range []string{"github.com/", "git@"} {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// platforms are --platform when given, else build.platforms, else the
// service's platform: (or $DOCKER_DEFAULT_PLATFORM), which must be one of
// build.platforms when both are set, as docker compose checks.
func (p *Project) platforms(svc types.ServiceConfig, o BuildOptions) ([]string, error) {
	if len(o.Platforms) > 0 {
		return o.Platforms, nil
	}
	single := svc.Platform
	if d := p.p.Environment["DOCKER_DEFAULT_PLATFORM"]; d != "" {
		single = d
	}
	list := svc.Build.Platforms
	if single != "" && len(list) > 0 && !slices.Contains(list, single) {
		return nil, usage.Errorf("platform %s is not one of build.platforms (%s): add it there, or change the service's platform", single, strings.Join(list, ", "))
	}
	if len(list) > 0 {
		return list, nil
	}
	if single != "" {
		return []string{single}, nil
	}
	return nil, nil
}

// buildArgs are the service's args with --build-arg winning, as KEY=VALUE.
// A KEY without a value takes it from the project's environment (the
// process environment and .env), as docker compose does, and is left out
// when that has none.
func (p *Project) buildArgs(args types.MappingWithEquals, cli []string) []string {
	merged := types.MappingWithEquals{}
	for k, v := range args {
		merged[k] = v
	}
	for _, kv := range cli {
		k, v, ok := strings.Cut(kv, "=")
		if ok {
			merged[k] = &v
		} else {
			merged[k] = nil
		}
	}
	merged = merged.Resolve(func(k string) (string, bool) {
		v, ok := p.p.Environment[k]
		return v, ok
	})
	var out []string
	for _, k := range slices.Sorted(maps.Keys(merged)) {
		if v := merged[k]; v != nil {
			out = append(out, k+"="+*v)
		}
	}
	return out
}

// labels are the build section's labels and the project and service
// labels docker compose adds.
func labels(l types.Labels, project, service string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(l)) {
		if k == ProjectLabel || k == ServiceLabel {
			continue
		}
		out = append(out, k+"="+l[k])
	}
	return append(out, ProjectLabel+"="+project, ServiceLabel+"="+service)
}

// hosts are extra_hosts as HOST=IP, which also holds IPv6 addresses.
func hosts(h types.HostsList) []string {
	l := h.AsList("=")
	sort.Strings(l)
	return l
}

func ulimits(u map[string]*types.UlimitsConfig) []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(u)) {
		l := u[name]
		if l == nil {
			continue
		}
		if l.Single != 0 {
			out = append(out, fmt.Sprintf("%s=%d", name, l.Single))
		} else {
			out = append(out, fmt.Sprintf("%s=%d:%d", name, l.Soft, l.Hard))
		}
	}
	return out
}

// provenance maps build.provenance; build.sbom asks for a scanner kiln
// does not run.
func (p *Project) provenance(bc *types.BuildConfig, opts *request.Options) error {
	opts.Provenance = bc.Provenance
	if bc.SBOM != "" && bc.SBOM != "false" {
		return usage.Errorf("build.sbom is not supported: kiln attaches no SBOM (it needs a scanner image from a registry); remove it")
	}
	return nil
}

// secrets map build.secrets onto --secret values: each names a top-level
// secret with a file or an environment variable (read from kiln's
// environment, as docker compose's builds read it); its target, when set,
// is the id RUN --mount=type=secret uses.
func (p *Project) secrets(refs []types.ServiceSecretConfig) ([]string, error) {
	var out []string
	for _, ref := range refs {
		def, ok := p.p.Secrets[ref.Source]
		if !ok {
			return nil, usage.Errorf("build.secrets names secret %q, which the project does not define under secrets:", ref.Source)
		}
		id := ref.Source
		if ref.Target != "" {
			id = ref.Target
		}
		switch {
		case bool(def.External):
			return nil, usage.Errorf("secret %q is external: a build reads only secrets with file: or environment:", ref.Source)
		case def.File != "":
			out = append(out, "id="+id+",src="+def.File)
		case def.Environment != "":
			out = append(out, "id="+id+",env="+def.Environment)
		default:
			return nil, usage.Errorf("secret %q has neither file: nor environment:", ref.Source)
		}
	}
	return out, nil
}

// sshKeys map build.ssh onto --ssh values: default, or ID=PATH, sorted:
// compose-go does not keep the file's order of the list.
func sshKeys(keys types.SSHConfig) []string {
	var out []string
	for _, k := range keys {
		if k.Path == "" {
			out = append(out, k.ID)
		} else {
			out = append(out, k.ID+"="+k.Path)
		}
	}
	slices.Sort(out)
	return out
}

// contexts map build.additional_contexts onto --build-context values; a
// service:NAME context becomes a dependency on that service's build.
func (b *Build) contexts(ctxs types.Mapping) error {
	for _, name := range slices.Sorted(maps.Keys(ctxs)) {
		v := ctxs[name]
		if dep, ok := strings.CutPrefix(v, types.ServicePrefix); ok {
			if dep == b.Service {
				return usage.Errorf("additional context %s is service:%s, the service itself: a service cannot build from its own image", name, dep)
			}
			b.ServiceContexts[name] = dep
			continue
		}
		if isRemote(v) && !strings.HasPrefix(v, "docker-image://") && !strings.HasPrefix(v, "oci-layout://") {
			return usage.Errorf("additional context %s=%s is not supported: kiln takes a directory, docker-image://REF, oci-layout://PATH or service:NAME", name, v)
		}
		b.Options.BuildContexts = append(b.Options.BuildContexts, name+"="+v)
	}
	return nil
}

// contextPlatforms refuses a build that needs a platform of a service:
// context the other service does not build: BuildKit would only say that
// the image has no such platform, once the other build is done.
func contextPlatforms(builds map[string]*Build) error {
	for _, name := range slices.Sorted(maps.Keys(builds)) {
		b := builds[name]
		for _, ctx := range slices.Sorted(maps.Keys(b.ServiceContexts)) {
			dep := builds[b.ServiceContexts[ctx]]
			want, have := b.platforms(), dep.platforms()
			if want == nil || have == nil {
				continue // request.Parse reports a platform that does not parse
			}
			var missing []string
			for _, p := range want {
				if !slices.Contains(have, p) {
					missing = append(missing, p)
				}
			}
			if len(missing) > 0 {
				return usage.Errorf("service %s builds for %s, but service %s, whose image is its additional context %s, builds only for %s: add %s to the platforms of %s",
					name, strings.Join(missing, ", "), dep.Service, ctx, strings.Join(have, ", "), strings.Join(missing, ", "), dep.Service)
			}
		}
	}
	return nil
}

// platforms are the platforms b builds, normalised; this host's when it
// names none, nil when they do not parse.
func (b *Build) platforms() []string {
	ps, err := platform.ParseList(b.Options.Platforms)
	if err != nil {
		return nil
	}
	if len(ps) == 0 {
		ps = []ocispecs.Platform{platforms.DefaultSpec()}
	}
	return platform.Strings(ps)
}

// order sorts the builds so that each comes after the services its
// service: contexts name, and refuses a cycle, naming it.
func order(builds map[string]*Build) ([]string, error) {
	const (
		unvisited = iota
		visiting
		done
	)
	state := map[string]int{}
	var out, path []string
	var visit func(name string) error
	visit = func(name string) error {
		switch state[name] {
		case done:
			return nil
		case visiting:
			i := slices.Index(path, name)
			cycle := append(slices.Clone(path[i:]), name)
			return usage.Errorf("services depend on each other's images through additional_contexts: %s; a build can only use the image of a service that does not need its own", strings.Join(cycle, " -> "))
		}
		state[name] = visiting
		path = append(path, name)
		for _, dep := range builds[name].Needs() {
			if _, ok := builds[dep]; !ok {
				return usage.Errorf("service %s uses the image of service %s as an additional context, but %s has no build section", name, dep, dep)
			}
			if err := visit(dep); err != nil {
				return err
			}
		}
		path = path[:len(path)-1]
		state[name] = done
		out = append(out, name)
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(builds)) {
		if err := visit(name); err != nil {
			return nil, err
		}
	}
	return out, nil
}
