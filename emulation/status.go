package emulation

import (
	"errors"
	"fmt"
	"strings"

	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// State says whether, and how, a platform's programs run on this host.
type State string

const (
	// StateNative: the host runs the platform's programs itself.
	StateNative State = "native"
	// StateEmulated: a binfmt_misc handler runs them (usually QEMU).
	StateEmulated State = "emulated"
	// StateInstallable: they do not run, but a QEMU interpreter is present,
	// so "kiln emulation install" can make them run.
	StateInstallable State = "installable"
	// StateUnavailable: they do not run and no usable QEMU interpreter was
	// found; Package names what to install.
	StateUnavailable State = "unavailable"
)

// PlatformStatus is one platform's state. The JSON field names are stable.
type PlatformStatus struct {
	// Platform is the normalised platform, e.g. "linux/arm64".
	Platform string `json:"platform"`
	// State is native, emulated, installable or unavailable.
	State State `json:"state"`
	// Handler is the binfmt_misc handler that runs the platform (emulated).
	Handler string `json:"handler"`
	// Interpreter is the handler's interpreter (emulated) or the QEMU
	// emulator kiln would register (installable).
	Interpreter string `json:"interpreter"`
	// Flags are the handler's binfmt_misc flags, e.g. "PF" (emulated).
	Flags string `json:"flags"`
	// Package is what to install to make the platform installable
	// (unavailable).
	Package string `json:"package"`
	// Note explains the state when there is more to say.
	Note string `json:"note,omitempty"`
	// NeedsRoot (installable): registering the handler takes root, which
	// this process lacks. The command to run is kiln's, which the command
	// line names.
	NeedsRoot bool `json:"-"`
}

// armHostNote explains why a 32-bit ARM host gets no emulation.
const armHostNote = "current QEMU releases no longer run on 32-bit ARM hosts; build this platform on a 64-bit host"

// nativeCompat lists architectures a host architecture's kernel may run
// without emulation (compat modes), so that a probe that runs without any
// matching handler is reported as native rather than as an unseen handler.
var nativeCompat = map[string][]string{
	"amd64": {"386"},
	"arm64": {"arm"},
}

func compatible(hostArch, arch string) bool {
	for _, a := range nativeCompat[hostArch] {
		if a == arch {
			return true
		}
	}
	return false
}

// system is what status computation needs from the machine; tests replace it.
type system struct {
	host        ocispecs.Platform
	handlers    []Handler
	mounted     bool
	dir         string
	probe       func(goarch string) error
	interpreter func(qarch string) (string, error)
	// root: the process may register handlers itself (root, possibly only
	// in its user namespace), so hints need no sudo.
	root bool
}

// status computes every table platform's state.
func (s system) status() []PlatformStatus {
	out := make([]PlatformStatus, 0, len(table))
	for _, a := range table {
		out = append(out, s.platformStatus(a))
	}
	return out
}

func (s system) platformStatus(a Arch) PlatformStatus {
	st := PlatformStatus{Platform: a.String()}
	if runsNatively(s.host, a.Platform) {
		st.State = StateNative
		return st
	}
	header := probeHeaderOr(a)
	matching := s.matchingHandlers(a, header)
	perr := s.probe(a.Platform.Architecture)
	if perr == nil {
		if len(matching) > 0 {
			h := matching[0]
			st.State, st.Handler, st.Interpreter, st.Flags = StateEmulated, h.Name, h.Interpreter, h.Flags
			return st
		}
		if compatible(s.host.Architecture, a.Platform.Architecture) || s.host.Architecture == a.Platform.Architecture {
			st.State = StateNative
			st.Note = "runs natively (compat mode), no handler needed"
			return st
		}
		st.State = StateEmulated
		if !s.mounted {
			st.Note = fmt.Sprintf("runs through a binfmt_misc handler kiln cannot see: binfmt_misc is not mounted at %s", s.dir)
		} else {
			st.Note = "runs through a binfmt_misc handler kiln cannot see (another user namespace's instance?)"
		}
		return st
	}
	why := perr.Error()
	if len(matching) > 0 {
		why = fmt.Sprintf("handler %s (%s, flags %s) is registered but fails: %s", matching[0].Name, matching[0].Interpreter, flagsOrNone(matching[0].Flags), why)
	}
	if s.host.Architecture == "arm" {
		st.State = StateUnavailable
		st.Note = armHostNote
		return st
	}
	path, err := s.interpreter(a.QEMUArch)
	if err != nil {
		st.State, st.Package = StateUnavailable, Package
		st.Note = err.Error()
		return st
	}
	st.State, st.Interpreter, st.NeedsRoot = StateInstallable, path, !s.root
	st.Note = why
	return st
}

// matchingHandlers returns the enabled handlers that claim the header,
// the architecture's own qemu-<arch> first.
func (s system) matchingHandlers(a Arch, header []byte) []Handler {
	var own, others []Handler
	for _, h := range s.handlers {
		if !h.Matches(header) {
			continue
		}
		if h.Name == a.Handler() {
			own = append(own, h)
		} else {
			others = append(others, h)
		}
	}
	return append(own, others...)
}

// Result is what an Action did.
type Result string

const (
	// Registered: a handler was registered.
	Registered Result = "registered"
	// Inherited: a handler that served this user namespace from its parent
	// was copied into the namespace's own binfmt_misc instance.
	Inherited Result = "inherited"
	// Removed: a handler was removed.
	Removed Result = "removed"
	// Skipped: nothing was needed or allowed; Reason says why.
	Skipped Result = "skipped"
)

// Action is one thing Install, Uninstall or Ensure did or decided not to do.
type Action struct {
	Result Result `json:"result"`
	// Platforms are the platforms concerned, e.g. ["linux/arm/v7","linux/arm/v6"].
	Platforms []string `json:"platforms"`
	// Handler, Interpreter and Flags describe the handler concerned.
	Handler     string `json:"handler,omitempty"`
	Interpreter string `json:"interpreter,omitempty"`
	Flags       string `json:"flags,omitempty"`
	// UserNamespace is true when the handler lives in the current user
	// namespace's own binfmt_misc instance, not the host's.
	UserNamespace bool `json:"userNamespace,omitempty"`
	// Reason explains a skip or a replacement.
	Reason string `json:"reason,omitempty"`
}

// String renders the action as one line for people.
func (a Action) String() string {
	ps := strings.Join(a.Platforms, ", ")
	flags := a.Flags
	if flags == "" {
		flags = "none"
	}
	where := ""
	if a.UserNamespace {
		where = " in this user namespace"
	}
	var s string
	switch a.Result {
	case Registered:
		s = fmt.Sprintf("registered %s for %s%s (%s, flags %s)", a.Handler, ps, where, a.Interpreter, flags)
	case Inherited:
		s = fmt.Sprintf("copied %s (%s) from the parent namespace%s (%s, flags %s)", a.Handler, ps, where, a.Interpreter, flags)
	case Removed:
		s = fmt.Sprintf("removed %s (%s)%s", a.Handler, ps, where)
	default:
		subject := ps
		if a.Handler != "" {
			subject = fmt.Sprintf("%s (%s)", a.Handler, ps)
		}
		s = fmt.Sprintf("%s %s", a.Result, subject)
	}
	if a.Reason != "" {
		s += ": " + a.Reason
	}
	return s
}

// Report is what Ensure found and did.
type Report struct {
	// Runnable are the requested platforms that already ran, natively or
	// through an existing handler.
	Runnable []ocispecs.Platform
	// Registered are the requested platforms Ensure made runnable.
	Registered []ocispecs.Platform
	// Actions are the handler changes Ensure made (auto mode).
	Actions []Action
}

// PlatformError says that platforms cannot run here, and why; Err is the
// cause, whose message tells the user what to do.
type PlatformError struct {
	// Platforms are the platforms concerned, e.g. ["linux/riscv64"].
	Platforms []string
	// Err is the cause.
	Err error
}

// Error is one line: "platform linux/riscv64 cannot run on this host: <cause>".
func (e *PlatformError) Error() string {
	if len(e.Platforms) == 1 {
		return fmt.Sprintf("platform %s cannot run on this host: %v", e.Platforms[0], e.Err)
	}
	return fmt.Sprintf("platforms %s cannot run on this host: %v", strings.Join(e.Platforms, ", "), e.Err)
}

// Unwrap returns the cause.
func (e *PlatformError) Unwrap() error { return e.Err }

// Sentinel causes, wrapped with details by the errors this package
// returns; declared on every OS so that callers can tell them apart.
var (
	// ErrNoHandler is wrapped by Ensure's errors (auto=false) when a
	// platform does not run but a QEMU interpreter is there to register.
	ErrNoHandler = errors.New("no binfmt_misc handler runs its programs")
	// ErrNeedsRoot: handlers can only be registered on the host as root.
	ErrNeedsRoot = errors.New("registering binfmt_misc handlers on the host needs root")
	// ErrKernelTooOld: the kernel has no binfmt_misc per user namespace.
	ErrKernelTooOld = errors.New("binfmt_misc in a user namespace needs Linux 6.7 or newer")
)

// InstallError says that no handler runs the platforms' programs, and
// what stands in the way of registering one: Err is ErrNoHandler when
// nothing does but the command that registers handlers would, else why
// this process cannot (ErrNeedsRoot, ErrKernelTooOld or another cause).
// That command is kiln's, so the command line names it.
type InstallError struct {
	Err error
	// Platforms are those to register handlers for.
	Platforms []string
	// NeedsRoot: registering them takes root on the host, which this
	// process lacks.
	NeedsRoot bool
}

func (e *InstallError) Error() string { return e.Err.Error() }

func (e *InstallError) Unwrap() error { return e.Err }

// UninstallError reports a handler that only root may remove. The command
// that removes it is kiln's, so the command line names it.
type UninstallError struct {
	Handler string
	// Platform is the first platform the handler runs.
	Platform string
	Err      error
}

func (e *UninstallError) Error() string {
	return fmt.Sprintf("removing handler %s needs root: %v", e.Handler, e.Err)
}

func (e *UninstallError) Unwrap() error { return e.Err }

func flagsOrNone(f string) string {
	if f == "" {
		return "none"
	}
	return f
}
