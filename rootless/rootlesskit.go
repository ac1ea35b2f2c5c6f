package rootless

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// ErrNotRunning is wrapped by the errors that say the user has no rootless
// containerd running.
var ErrNotRunning = errors.New("no rootless containerd is running")

// startHint says how to start a rootless containerd.
const startHint = `start one with "containerd-rootless-setuptool.sh install" (from nerdctl) ` +
	`or with "make rootless-containerd" in kiln's source tree, or run kiln as root`

// Kit is the RootlessKit instance that runs the user's rootless containerd.
type Kit struct {
	// StateDir is RootlessKit's state directory.
	StateDir string
	// ChildPID is RootlessKit's child process: the namespaces to join.
	ChildPID int
	// DetachedNetNS is the network namespace RootlessKit created with
	// --detach-netns; its child then stays in the host's network namespace.
	DetachedNetNS string
	// SharesNetwork is true when the child is in the host's network
	// namespace (--net=host, or a detached one), which kiln then keeps.
	SharesNetwork bool
	// NetworkDriver is RootlessKit's network driver as its API reports it
	// ("slirp4netns", ...), asked only inside its namespaces; empty for the
	// host's network or when the API does not answer.
	NetworkDriver string
}

// Network describes which network the build runs in, for kiln info.
func (k *Kit) Network() string {
	switch {
	case k.DetachedNetNS != "":
		return "the host's (RootlessKit keeps its network namespace detached at " + k.DetachedNetNS + ")"
	case k.SharesNetwork:
		return "the host's (RootlessKit runs with --net=host)"
	case k.NetworkDriver != "":
		return "RootlessKit's network namespace (" + k.NetworkDriver + "), joined"
	}
	return "RootlessKit's network namespace, joined"
}

// NotRunningError says that the user has no rootless containerd, what kiln
// looked at, how to start one and what to fix first. It wraps ErrNotRunning.
type NotRunningError struct {
	// User names the user.
	User string
	// StateDir is where RootlessKit's state was looked for.
	StateDir string
	// Address is the containerd socket kiln found missing, if any.
	Address string
	// StalePID is the pid RootlessKit's state names when that process has
	// exited (zero when there is no state at all).
	StalePID int
	// Problems are missing prerequisites of rootless containers (see Check).
	Problems []error
}

func (e *NotRunningError) Error() string {
	var b strings.Builder
	if e.StalePID != 0 {
		fmt.Fprintf(&b, "the rootless containerd of %s is not running: RootlessKit's state in %s names pid %d, which has exited; start it again", e.User, e.StateDir, e.StalePID)
		b.WriteString(strings.TrimPrefix(startHint, "start one"))
	} else {
		fmt.Fprintf(&b, "no rootless containerd is running for %s", e.User)
		if e.Address != "" {
			fmt.Fprintf(&b, " (no socket at %s", e.Address)
			fmt.Fprintf(&b, " and no RootlessKit state in %s)", e.StateDir)
		} else {
			fmt.Fprintf(&b, " (no RootlessKit state in %s)", e.StateDir)
		}
		b.WriteString(": " + startHint)
	}
	if len(e.Problems) > 0 {
		msgs := make([]string, len(e.Problems))
		for i, p := range e.Problems {
			msgs[i] = p.Error()
		}
		b.WriteString("; but first: " + strings.Join(msgs, "; "))
	}
	return b.String()
}

// Unwrap lets errors.Is match ErrNotRunning.
func (e *NotRunningError) Unwrap() error { return ErrNotRunning }

// NotRunning returns a *NotRunningError, naming what to fix before
// starting one, when kiln runs for an unprivileged user who has no rootless
// containerd running; another error when RootlessKit's state is unusable;
// nil when one runs or kiln runs as root. address is the socket kiln
// tried, if any.
func NotRunning(address string) error {
	if !Enabled() {
		return nil
	}
	_, err := Find()
	var nr *NotRunningError
	if errors.As(err, &nr) {
		if _, serr := os.Stat(address); address != "" && serr != nil {
			nr.Address = address
		}
		if nr.StalePID == 0 {
			nr.Problems = Check()
		}
		return nr
	}
	return err
}

// SocketMissing explains why no containerd socket is at address when kiln
// runs for an unprivileged user: no rootless containerd (with what to fix
// before starting one), a stale one, or a RootlessKit whose containerd does
// not listen there. It returns nil when kiln runs as root, so the caller
// keeps its own message.
func SocketMissing(address string) error {
	if !Enabled() {
		return nil
	}
	if err := NotRunning(address); err != nil {
		return err
	}
	return &NoSocketError{User: userName(), StateDir: StateDir(), Address: address}
}

// NoSocketError reports a RootlessKit that runs with no containerd socket
// at the address kiln connects to. Pointing kiln at another address is
// the command line's hint: it names options.
type NoSocketError struct {
	User, StateDir, Address string
}

func (e *NoSocketError) Error() string {
	return fmt.Sprintf("RootlessKit runs for %s (state in %s) but no containerd socket is at %s: check that containerd started inside it (see its log)", e.User, e.StateDir, e.Address)
}

// RequireNamespaces returns an error when kiln runs as an unprivileged user
// outside a rootless containerd's namespaces, where BuildKit cannot mount
// the snapshots its steps run on.
func RequireNamespaces() error {
	if !Parent() {
		return nil
	}
	if err := NotRunning(""); err != nil {
		return fmt.Errorf("building as an unprivileged user needs a rootless containerd: %w", err)
	}
	return fmt.Errorf("kiln runs as %s outside the namespaces of the rootless containerd (state in %s): run it again, or join them with \"nsenter -U --preserve-credentials -m -t $(cat %s/child_pid) kiln ...\"",
		userName(), StateDir(), StateDir())
}
