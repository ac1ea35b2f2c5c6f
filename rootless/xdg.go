package rootless

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"

	"github.com/kiln-build/kiln/internal/owned"
)

// Environment variables RootlessKit sets in its child, which kiln also sets
// when it re-executes itself into RootlessKit's namespaces (as nerdctl does).
const (
	envStateDir   = "ROOTLESSKIT_STATE_DIR"
	envParentEUID = "ROOTLESSKIT_PARENT_EUID"
	envParentEGID = "ROOTLESSKIT_PARENT_EGID"
)

// Parent reports whether kiln runs as an unprivileged user outside any
// RootlessKit namespace: the process that re-executes itself into them.
func Parent() bool { return os.Geteuid() != 0 }

// Child reports whether kiln runs as root of a RootlessKit user namespace on
// behalf of an unprivileged user: after Enter re-executed it, inside
// "rootlesskit" or after "nsenter -U -t $(cat .../child_pid)".
func Child() bool {
	if os.Geteuid() != 0 {
		return false
	}
	euid := os.Getenv(envParentEUID)
	return euid != "" && euid != "0" && InUserNamespace()
}

// Enabled reports whether kiln works for an unprivileged user, in or out of
// RootlessKit's namespaces: then it uses the user's rootless containerd and
// per-user paths.
func Enabled() bool { return Parent() || Child() }

// UID returns the user's uid on the host: the uid RootlessKit's parent ran
// as when kiln is its child, else the process's.
func UID() int {
	if Child() {
		if n, err := strconv.Atoi(os.Getenv(envParentEUID)); err == nil {
			return n
		}
	}
	return os.Geteuid()
}

// userName names the user in messages: the login name, else "uid N".
func userName() string {
	uid := strconv.Itoa(UID())
	if u, err := user.LookupId(uid); err == nil {
		return u.Username
	}
	return "uid " + uid
}

// InUserNamespace reports whether the process runs in a user namespace other
// than the initial one.
func InUserNamespace() bool { return owned.InUserNamespace() }

// RuntimeDir is $XDG_RUNTIME_DIR, or /run/user/UID where no login manager set
// it.
func RuntimeDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return d
	}
	return filepath.Join("/run/user", strconv.Itoa(UID()))
}

// DataHome is $XDG_DATA_HOME, or ~/.local/share.
func DataHome() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return d
	}
	return filepath.Join(home(), ".local", "share")
}

// ConfigHome is $XDG_CONFIG_HOME, or ~/.config.
func ConfigHome() string {
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		return d
	}
	return filepath.Join(home(), ".config")
}

// home is $HOME or, inside a user namespace where it may be unset, the
// user's home directory from the password database. Without either it is
// kiln's directory in /tmp (see tmpDir), when that is safe to use.
func home() string {
	if h, ok := realHome(); ok {
		return h
	}
	d, err := tmpDir()
	if err != nil {
		// Whatever uses it fails with a clearer message (RunDir says
		// why, the state directory's checks too).
		return filepath.Join(tmpBase, "kiln-"+strconv.Itoa(UID()))
	}
	return d
}

// realHome is $HOME, else the user's home directory from the password
// database; ok is false when there is neither.
func realHome() (string, bool) {
	if h := os.Getenv("HOME"); h != "" {
		return h, true
	}
	if u, err := user.LookupId(strconv.Itoa(UID())); err == nil && u.HomeDir != "" {
		return u.HomeDir, true
	}
	return "", false
}

// stateHome is $XDG_STATE_HOME, or ~/.local/state of the home directory h.
func stateHome(h string) string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return d
	}
	return filepath.Join(h, ".local", "state")
}

// StateDir is where RootlessKit keeps the state of the user's rootless
// containerd: $ROOTLESSKIT_STATE_DIR when set (inside RootlessKit), else
// $XDG_RUNTIME_DIR/containerd-rootless as containerd-rootless.sh sets it.
func StateDir() string {
	if d := os.Getenv(envStateDir); d != "" {
		return d
	}
	return filepath.Join(RuntimeDir(), "containerd-rootless")
}

// DefaultAddress is the user's rootless containerd socket as nerdctl finds
// it: containerd-rootless.sh bind-mounts $XDG_RUNTIME_DIR/containerd over
// /run/containerd inside the namespaces, so the default socket
// /run/containerd/containerd.sock is this path outside them, and this path
// is valid inside too.
func DefaultAddress() string {
	return filepath.Join(RuntimeDir(), "containerd", "containerd.sock")
}

// DefaultRoot is kiln's per-user state directory, $XDG_DATA_HOME/kiln.
func DefaultRoot() string {
	return filepath.Join(DataHome(), "kiln")
}

// RunDir returns kiln's runtime directory, shared by every kiln of the user
// whatever its --root, created when missing: it holds the namespace locks,
// the emulation memo and, in kiln's user namespace without a runtime
// directory, runc's state (see EnsureRuntimeDir). Locks and files there
// are only safe in a directory nobody else can change, so it is always the
// user's own, not writable by group or others, below directories only
// root and the user can change (see package owned):
//
//   - /run/kiln for root;
//   - for an unprivileged user, in or out of RootlessKit's namespaces,
//     $XDG_RUNTIME_DIR/kiln when the runtime directory ($XDG_RUNTIME_DIR,
//     else /run/user/UID) is such a directory;
//   - else $XDG_STATE_HOME/kiln/run (~/.local/state/kiln/run);
//   - else, without a home directory kiln can write, /tmp/kiln-UID, which
//     kiln creates itself and refuses when another user made it first.
//
// It fails, saying what to do, when the directory it settles on is not
// safe.
func RunDir() (string, error) {
	if runDirSet != "" {
		return runDirSet, nil
	}
	if !Enabled() {
		return privateDir("/run/kiln", true)
	}
	return userRunDir()
}

// userRunDir is RunDir for an unprivileged user.
func userRunDir() (string, error) {
	if d := runtimeDirIfSafe(); d != "" {
		return privateDir(filepath.Join(d, "kiln"), false)
	}
	if h, ok := realHome(); ok {
		dir := filepath.Join(stateHome(h), "kiln", "run")
		if err := os.MkdirAll(filepath.Dir(dir), 0o700); err == nil {
			return privateDir(dir, false)
		}
	}
	return tmpDir()
}

// runDirSet is the RunDir that EnsureRuntimeDir made $XDG_RUNTIME_DIR:
// RunDir would otherwise find a directory below it from then on.
var runDirSet string

// runtimeDirIfSafe returns the user's runtime directory, with links
// resolved, when it is the user's own and closed to others; "" otherwise.
func runtimeDirIfSafe() string {
	real, err := filepath.EvalSymlinks(RuntimeDir())
	if err != nil || owned.Dir(real) != nil || owned.Above(real) != nil {
		return ""
	}
	return real
}

// privateDir creates dir with mode 0700 (with its parents when parents is
// set) unless it exists, checks that nobody but the user can change it,
// and returns it with its parent's links resolved: the checks hold for that
// path.
func privateDir(dir string, parents bool) (string, error) {
	if parents {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return "", fmt.Errorf("creating kiln's runtime directory %s: %w", dir, err)
		}
	}
	parent, err := filepath.EvalSymlinks(filepath.Dir(dir))
	if err != nil {
		return "", fmt.Errorf("creating kiln's runtime directory %s: %w", dir, err)
	}
	dir = filepath.Join(parent, filepath.Base(dir))
	if err := owned.Above(dir); err != nil {
		return "", runDirError(dir, err)
	}
	if _, err := owned.MkdirPrivate(dir); err != nil {
		return "", runDirError(dir, err)
	}
	return dir, nil
}

// tmpDir is the runtime directory of last resort, /tmp/kiln-UID: a name
// anyone can predict in a directory anyone can write, so kiln uses it only
// as a directory of the user's own, closed to others, and never through a
// link (see owned.MkdirPrivate). A directory another user made first is
// refused.
func tmpDir() (string, error) {
	return privateDir(filepath.Join(tmpBase, "kiln-"+strconv.Itoa(UID())), false)
}

// tmpBase is /tmp, always: $TMPDIR may differ between kiln processes (kiln
// points it into its state directory), and they must find one directory.
// Tests replace it.
var tmpBase = "/tmp"

// runDirError says why the runtime directory dir cannot be used, and what
// to do.
func runDirError(dir string, err error) error {
	var oe *owned.Error
	if errors.As(err, &oe) {
		return fmt.Errorf("kiln's runtime directory %s cannot be trusted: %s %s; remove it, or set XDG_RUNTIME_DIR to a directory of your own with mode 0700", dir, oe.Path, oe.Problem)
	}
	return fmt.Errorf("creating kiln's runtime directory %s: %w", dir, err)
}
