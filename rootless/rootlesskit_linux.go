package rootless

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Find returns the RootlessKit that runs the user's rootless containerd,
// from its state directory (see StateDir). The error is a
// *NotRunningError when there is none or its child has exited, and says
// what is wrong otherwise.
func Find() (*Kit, error) {
	dir := StateDir()
	pidFile := filepath.Join(dir, "child_pid")
	b, err := os.ReadFile(pidFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, &NotRunningError{User: userName(), StateDir: dir}
	case err != nil:
		return nil, fmt.Errorf("reading RootlessKit's state in %s: %w", dir, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return nil, fmt.Errorf("RootlessKit's %s holds %q, not a pid: stop the rootless containerd, remove %s and start it again", pidFile, strings.TrimSpace(string(b)), dir)
	}
	k := &Kit{StateDir: dir, ChildPID: pid}
	if err := k.check(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "netns")); err == nil {
		k.DetachedNetNS = filepath.Join(dir, "netns")
	}
	if Child() {
		// Inside, kiln is in the child's network namespace either way:
		// ask RootlessKit which one that is.
		k.NetworkDriver = networkDriver(dir)
		k.SharesNetwork = k.NetworkDriver == ""
	} else {
		k.SharesNetwork = sameNamespace(pid, "net")
	}
	return k, nil
}

// networkDriver asks RootlessKit's API (api.sock in its state directory)
// for its network driver; "" when it has none (--net=host) or does not
// answer.
func networkDriver(stateDir string) string {
	c := &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", filepath.Join(stateDir, "api.sock"))
		}},
	}
	resp, err := c.Get("http://rootlesskit/v1/info")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var info struct {
		NetworkDriver *struct {
			Driver string `json:"driver"`
		} `json:"networkDriver"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&info) != nil || info.NetworkDriver == nil {
		return ""
	}
	return info.NetworkDriver.Driver
}

// check verifies that the child still runs, in a user namespace of this
// user's that maps the user to root, so that a pid reused after a crash or
// reboot is not mistaken for it.
func (k *Kit) check() error {
	stale := &NotRunningError{User: userName(), StateDir: k.StateDir, StalePID: k.ChildPID}
	nsPath := fmt.Sprintf("/proc/%d/ns/user", k.ChildPID)
	f, err := os.Open(nsPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return stale
	case errors.Is(err, fs.ErrPermission):
		// Another user's process has the pid now.
		return stale
	case err != nil:
		return fmt.Errorf("inspecting RootlessKit's child (pid %d): %w", k.ChildPID, err)
	}
	defer f.Close()
	if !InUserNamespace() && sameNamespace(k.ChildPID, "user") {
		// The pid now belongs to an ordinary process of the user's.
		return stale
	}
	owner, err := unix.IoctlGetUint32(int(f.Fd()), unix.NS_GET_OWNER_UID)
	if err == nil && int(owner) != UID() && !InUserNamespace() {
		return fmt.Errorf("the user namespace of pid %d (named by %s) belongs to uid %d, not to %s: set XDG_RUNTIME_DIR or ROOTLESSKIT_STATE_DIR to your own rootless containerd's", k.ChildPID, filepath.Join(k.StateDir, "child_pid"), owner, userName())
	}
	return nil
}

// sameNamespace reports whether pid is in this process's namespace of the
// given kind ("net", "user", "mnt").
func sameNamespace(pid int, kind string) bool {
	var a, b unix.Stat_t
	if unix.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, kind), &a) != nil || unix.Stat("/proc/self/ns/"+kind, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// Joined reports whether this process is in the user and mount namespaces of
// k's child.
func (k *Kit) Joined() bool {
	return sameNamespace(k.ChildPID, "user") && sameNamespace(k.ChildPID, "mnt")
}
