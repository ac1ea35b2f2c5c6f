package emulation

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/containerd/platforms"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/internal/errmsg"
	"github.com/kiln-build/kiln/platform"
)

// opMu serialises changes to handlers within the process.
var opMu sync.Mutex

// Status returns the state of every platform in the architecture table, in
// table order. A platform is native or emulated only if its probe program
// actually ran (answers are cached for a few seconds). The error is set when
// probing itself is impossible, e.g. a noexec temporary directory.
func Status(ctx context.Context) ([]PlatformStatus, error) {
	dir := BinfmtDir()
	handlers, mounted, err := ReadHandlers(dir)
	if err != nil {
		return nil, err
	}
	host := HostPlatform()
	if _, ok := probeBinaries[host.Architecture]; ok {
		if err := probe(ctx, host.Architecture); errors.Is(err, errProbeSetup) {
			return nil, err
		}
	}
	s := system{
		host:        host,
		handlers:    handlers,
		mounted:     mounted,
		dir:         dir,
		probe:       func(goarch string) error { return probe(ctx, goarch) },
		interpreter: Interpreter,
		root:        os.Geteuid() == 0,
	}
	st := s.status()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return st, nil
}

// group is the platforms one handler serves (linux/arm/v6 and v7 share
// qemu-arm).
type group struct {
	arch      Arch
	platforms []string
}

func groupByHandler(archs []Arch) []*group {
	var out []*group
	byName := map[string]*group{}
	for _, a := range archs {
		g, ok := byName[a.Handler()]
		if !ok {
			g = &group{arch: a}
			byName[a.Handler()] = g
			out = append(out, g)
		}
		g.platforms = append(g.platforms, a.String())
	}
	return out
}

// Install registers a QEMU handler (flags FP) for each platform that does
// not run yet and returns one action per platform or handler. Platforms
// that already run (natively or through any handler) are skipped; the host's
// native architecture never gets a handler. As root in the initial user
// namespace handlers go to the host's binfmt_misc; in a user namespace kiln
// owns (Linux >= 6.7) to that namespace's own instance, mounted at
// /proc/sys/fs/binfmt_misc first. Errors are *PlatformError values (joined
// on one line when several), each saying what is wrong; an *InstallError
// cause carries what the command line needs to say what to run.
func Install(ctx context.Context, ps []ocispecs.Platform) ([]Action, error) {
	opMu.Lock()
	defer opMu.Unlock()
	return install(ctx, ps)
}

func install(ctx context.Context, ps []ocispecs.Platform) ([]Action, error) {
	host := HostPlatform()
	var actions []Action
	var pending []Arch
	archs, errs := lookupArchs(ps)
	for _, a := range archs {
		if runsNatively(host, a.Platform) {
			actions = append(actions, Action{Result: Skipped, Platforms: []string{a.String()}, Reason: "native platform"})
			continue
		}
		if err := probe(ctx, a.Platform.Architecture); err == nil {
			actions = append(actions, Action{Result: Skipped, Platforms: []string{a.String()}, Reason: alreadyRunsReason(a)})
			continue
		} else if errors.Is(err, errProbeSetup) {
			errs = append(errs, &PlatformError{Platforms: []string{a.String()}, Err: err})
			continue
		}
		if host.Architecture == "arm" {
			errs = append(errs, &PlatformError{Platforms: []string{a.String()}, Err: errors.New(armHostNote)})
			continue
		}
		pending = append(pending, a)
	}
	if err := ctx.Err(); err != nil {
		return actions, errmsg.Join(append(errs, err)...)
	}
	if len(pending) == 0 {
		return actions, errmsg.Join(errs...)
	}

	groups := groupByHandler(pending)
	interpreters := map[string]string{}
	var ready []*group
	for _, g := range groups {
		path, err := Interpreter(g.arch.QEMUArch)
		if err != nil {
			errs = append(errs, &PlatformError{Platforms: g.platforms, Err: err})
			continue
		}
		interpreters[g.arch.Handler()] = path
		ready = append(ready, g)
	}
	if len(ready) == 0 {
		return actions, errmsg.Join(errs...)
	}

	reg, inherited, err := openRegistry()
	actions = append(actions, inherited...)
	if len(inherited) > 0 {
		invalidateProbes()
	}
	if err != nil {
		var all []string
		for _, g := range ready {
			all = append(all, g.platforms...)
		}
		errs = append(errs, &PlatformError{Platforms: all, Err: registryError(err, all)})
		return actions, errmsg.Join(errs...)
	}
	for _, g := range ready {
		// A handler copied from the parent namespace may have made it run.
		if inheritedFor(inherited, g) {
			if err := probe(ctx, g.arch.Platform.Architecture); err == nil {
				continue
			}
		}
		a, err := reg.registerArch(ctx, g, interpreters[g.arch.Handler()])
		if err != nil {
			errs = append(errs, &PlatformError{Platforms: g.platforms, Err: err})
			continue
		}
		actions = append(actions, a)
	}
	return actions, errmsg.Join(errs...)
}

func inheritedFor(inherited []Action, g *group) bool {
	for _, a := range inherited {
		if a.Result == Inherited {
			for _, p := range a.Platforms {
				if p == g.platforms[0] {
					return true
				}
			}
		}
	}
	return false
}

// registryError says that openRegistry's error leaves ps without
// handlers, which root on the host can register.
func registryError(err error, ps []string) error {
	return &InstallError{Err: err, Platforms: ps, NeedsRoot: true}
}

func alreadyRunsReason(a Arch) string {
	handlers, _, _ := ReadHandlers(BinfmtDir())
	s := system{handlers: handlers}
	if m := s.matchingHandlers(a, probeHeaderOr(a)); len(m) > 0 {
		return "already runs through handler " + m[0].Name
	}
	if compatible(HostPlatform().Architecture, a.Platform.Architecture) {
		return "already runs natively"
	}
	return "already runs"
}

// registerArch registers g's handler with interpreter, replacing a QEMU
// handler of the same name that does not work, and checks that the probe
// then runs; if it does not, the new handler is removed again.
func (r *registry) registerArch(ctx context.Context, g *group, interpreter string) (Action, error) {
	a := g.arch
	action := Action{Result: Registered, Platforms: g.platforms, Handler: a.Handler(), Interpreter: interpreter, Flags: HandlerFlags, UserNamespace: r.userNS}
	old, err := readHandler(r.dir, a.Handler())
	switch {
	case err == nil:
		if !old.IsQEMU() {
			return action, fmt.Errorf("a binfmt_misc handler named %s exists whose interpreter %s is not QEMU; remove it with \"echo -1 > %s\" and retry", old.Name, old.Interpreter, filepath.Join(r.dir, old.Name))
		}
		if err := r.remove(old.Name); err != nil {
			return action, fmt.Errorf("removing the non-working handler %s: %w", old.Name, err)
		}
		state := "enabled"
		if !old.Enabled {
			state = "disabled"
		}
		action.Reason = fmt.Sprintf("replaced the %s handler that did not run these programs (%s, flags %s)", state, old.Interpreter, flagsOrNone(old.Flags))
	case !errors.Is(err, fs.ErrNotExist):
		return action, err
	}
	err = r.register(a.registerLine(interpreter, HandlerFlags))
	invalidateProbes()
	if err != nil {
		return action, fmt.Errorf("registering handler %s for %s: %w", a.Handler(), interpreter, err)
	}
	if err := probe(ctx, a.Platform.Architecture); err != nil {
		_ = r.remove(a.Handler())
		invalidateProbes()
		return action, fmt.Errorf("registered handler %s (%s) but %s programs still do not run, so removed it again: %w", a.Handler(), interpreter, a.String(), err)
	}
	return action, nil
}

// Uninstall removes the handlers for the given platforms, but only handlers
// kiln can identify as QEMU's: named qemu-<arch> with an interpreter path
// containing "qemu". It returns one action per handler. Handlers are removed
// from the binfmt_misc instance this process sees (the host's, or its user
// namespace's own).
func Uninstall(ctx context.Context, ps []ocispecs.Platform) ([]Action, error) {
	opMu.Lock()
	defer opMu.Unlock()
	archs, errs := lookupArchs(ps)
	dir := BinfmtDir()
	_, mounted, _ := ReadHandlers(dir)
	userNS := InUserNamespace()
	var actions []Action
	for _, g := range groupByHandler(archs) {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		name := g.arch.Handler()
		action := Action{Platforms: g.platforms, Handler: name, UserNamespace: userNS}
		h, err := readHandler(dir, name)
		switch {
		case !mounted:
			action.Result, action.Reason = Skipped, "not registered (binfmt_misc is not mounted at "+dir+")"
		case errors.Is(err, fs.ErrNotExist):
			action.Result, action.Reason = Skipped, "not registered"
		case err != nil:
			errs = append(errs, err)
			continue
		case !h.IsQEMU():
			action.Result, action.Reason = Skipped, fmt.Sprintf("its interpreter %s is not QEMU's, left alone", h.Interpreter)
		default:
			action.Interpreter, action.Flags = h.Interpreter, h.Flags
			if err := writeFile(filepath.Join(dir, name), "-1"); err != nil {
				if errors.Is(err, fs.ErrPermission) {
					err = &UninstallError{Handler: name, Platform: g.platforms[0], Err: err}
				} else {
					err = fmt.Errorf("removing handler %s: %w", name, err)
				}
				errs = append(errs, err)
				continue
			}
			invalidateProbes()
			action.Result = Removed
		}
		actions = append(actions, action)
	}
	return actions, errmsg.Join(errs...)
}

// Ensure checks that every platform can run before a build starts. Platforms
// that run natively or through a working handler are listed in
// Report.Runnable. With auto, handlers are registered for the others (as
// Install does: on the host as root, in kiln's own user namespace
// otherwise) and listed in Report.Registered. Otherwise, or when that fails,
// the error (one line, *PlatformError causes) names the platforms and says
// what is wrong, e.g.
//
//	platform linux/riscv64 cannot run on this host: no QEMU interpreter for riscv64 found; install it with "apt-get install qemu-user-static"
//	platform linux/arm64 cannot run on this host: no binfmt_misc handler runs its programs
//
// where the second is an *InstallError, after which the command line says
// which of its commands registers the handler.
func Ensure(ctx context.Context, ps []ocispecs.Platform, auto bool) (Report, error) {
	opMu.Lock()
	defer opMu.Unlock()
	var rep Report
	var errs []error
	var missing []ocispecs.Platform
	host := HostPlatform()
	for _, p := range ps {
		a, err := LookupArch(p)
		if err != nil {
			errs = append(errs, &PlatformError{Platforms: []string{platforms.Format(p)}, Err: err})
			continue
		}
		if runsNatively(host, a.Platform) {
			rep.Runnable = append(rep.Runnable, a.Platform)
			continue
		}
		err = probe(ctx, a.Platform.Architecture)
		switch {
		case err == nil:
			rep.Runnable = append(rep.Runnable, a.Platform)
		case errors.Is(err, errProbeSetup):
			errs = append(errs, &PlatformError{Platforms: []string{a.String()}, Err: err})
		default:
			missing = append(missing, a.Platform)
		}
	}
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	if len(missing) == 0 {
		return rep, errmsg.Join(errs...)
	}
	if !auto {
		errs = append(errs, explainMissing(missing, host)...)
		return rep, errmsg.Join(errs...)
	}
	actions, err := install(ctx, missing)
	rep.Actions = actions
	registered := map[string]bool{}
	for _, a := range actions {
		if a.Result == Registered || a.Result == Inherited {
			for _, p := range a.Platforms {
				registered[p] = true
			}
		}
	}
	for _, p := range missing {
		if registered[platforms.Format(p)] {
			rep.Registered = append(rep.Registered, p)
		}
	}
	if err != nil {
		errs = append(errs, err)
	}
	return rep, errmsg.Join(errs...)
}

// explainMissing builds the errors for platforms that do not run when Ensure
// may not register handlers, grouped by cause.
func explainMissing(missing []ocispecs.Platform, host ocispecs.Platform) []error {
	var errs []error
	if host.Architecture == "arm" {
		return []error{&PlatformError{Platforms: platform.Strings(missing), Err: errors.New(armHostNote)}}
	}
	var installable []ocispecs.Platform
	archs, _ := lookupArchs(missing) // Ensure looked them up already
	for _, g := range groupByHandler(archs) {
		if _, err := Interpreter(g.arch.QEMUArch); err != nil {
			errs = append(errs, &PlatformError{Platforms: g.platforms, Err: err})
			continue
		}
		for _, p := range missing {
			if a, _ := LookupArch(p); a.Handler() == g.arch.Handler() {
				installable = append(installable, p)
			}
		}
	}
	if len(installable) > 0 {
		names := platform.Strings(installable)
		root := os.Geteuid() == 0 && !InUserNamespace()
		errs = append(errs, &PlatformError{Platforms: names, Err: &InstallError{Err: ErrNoHandler, Platforms: names, NeedsRoot: !root}})
	}
	return errs
}

// lookupArchs looks up the Arch of each platform; the errors name those
// kiln does not emulate.
func lookupArchs(ps []ocispecs.Platform) ([]Arch, []error) {
	var archs []Arch
	var errs []error
	for _, p := range ps {
		a, err := LookupArch(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		archs = append(archs, a)
	}
	return archs, errs
}
