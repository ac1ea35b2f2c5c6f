package rootless

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
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
func InUserNamespace() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return !(len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295")
}

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
// user's home directory from the password database.
func home() string {
	if h := os.Getenv("HOME"); h != "" {
		return h
	}
	if u, err := user.LookupId(strconv.Itoa(UID())); err == nil && u.HomeDir != "" {
		return u.HomeDir
	}
	return filepath.Join(os.TempDir(), "kiln-"+strconv.Itoa(UID()))
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

// RunDir is kiln's runtime directory, shared by every kiln of the user
// whatever its --root: /run/kiln for root, LockDir for an unprivileged
// user, in or out of RootlessKit's namespaces. It holds the namespace locks
// and the emulation memo.
func RunDir() string {
	if Enabled() {
		return LockDir()
	}
	return "/run/kiln"
}

// LockDir is where an unprivileged user's kiln processes keep the locks
// they share whatever their state directory: $XDG_RUNTIME_DIR/kiln, or a
// per-user directory in /tmp where that does not exist.
func LockDir() string {
	d := RuntimeDir()
	if _, err := os.Stat(d); err == nil {
		return filepath.Join(d, "kiln")
	}
	return filepath.Join(os.TempDir(), "kiln-"+strconv.Itoa(UID()))
}
