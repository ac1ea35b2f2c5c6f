//go:build linux

package rootless

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestDefaults(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/1234")
	t.Setenv("XDG_DATA_HOME", "/home/u/data")
	t.Setenv(envStateDir, "")
	if got, want := DefaultAddress(), "/run/user/1234/containerd/containerd.sock"; got != want {
		t.Errorf("DefaultAddress() = %q, want %q", got, want)
	}
	if got, want := DefaultRoot(), "/home/u/data/kiln"; got != want {
		t.Errorf("DefaultRoot() = %q, want %q", got, want)
	}
	if got, want := StateDir(), "/run/user/1234/containerd-rootless"; got != want {
		t.Errorf("StateDir() = %q, want %q", got, want)
	}
	t.Setenv("XDG_DATA_HOME", "")
	t.Setenv("HOME", "/home/u")
	if got, want := DefaultRoot(), "/home/u/.local/share/kiln"; got != want {
		t.Errorf("DefaultRoot() without XDG_DATA_HOME = %q, want %q", got, want)
	}
	t.Setenv("XDG_RUNTIME_DIR", "")
	if got, want := RuntimeDir(), "/run/user/"+strconv.Itoa(UID()); got != want {
		t.Errorf("RuntimeDir() without XDG_RUNTIME_DIR = %q, want %q", got, want)
	}
	t.Setenv(envStateDir, "/elsewhere")
	if got := StateDir(); got != "/elsewhere" {
		t.Errorf("StateDir() with %s set = %q", envStateDir, got)
	}
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(envStateDir, dir)

	// No state: not running, and the message says how to start one.
	_, err := Find()
	var nr *NotRunningError
	if !errors.As(err, &nr) || !errors.Is(err, ErrNotRunning) || nr.StalePID != 0 {
		t.Fatalf("Find() with no state = %v, want a *NotRunningError", err)
	}
	for _, want := range []string{"no rootless containerd is running for ", "no RootlessKit state in " + dir, "containerd-rootless-setuptool.sh install", "make rootless-containerd"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}

	// A pid that does not exist: stale.
	pidFile := filepath.Join(dir, "child_pid")
	if err := os.WriteFile(pidFile, []byte("2147483646\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Find()
	if !errors.As(err, &nr) || nr.StalePID != 2147483646 {
		t.Fatalf("Find() with a dead pid = %v, want a stale *NotRunningError", err)
	}
	if want := "names pid 2147483646, which has exited; start it again with"; !strings.Contains(err.Error(), want) {
		t.Errorf("message %q lacks %q", err, want)
	}

	// A pid reused by an ordinary process (this one): stale too.
	if !InUserNamespace() {
		os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())), 0o644)
		if _, err = Find(); !errors.As(err, &nr) || nr.StalePID != os.Getpid() {
			t.Fatalf("Find() with a pid outside any user namespace = %v, want a stale *NotRunningError", err)
		}
	}

	// Garbage.
	os.WriteFile(pidFile, []byte("pid?"), 0o644)
	_, err = Find()
	if err == nil || errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), `holds "pid?", not a pid: stop the rootless containerd, remove `+dir+" and start it again") {
		t.Fatalf("Find() with a garbled child_pid = %v", err)
	}
}

func TestNotRunningMessage(t *testing.T) {
	e := &NotRunningError{User: "alice", StateDir: "/run/user/1000/containerd-rootless", Address: "/run/user/1000/containerd/containerd.sock",
		Problems: []error{errors.New("newuidmap is missing, which RootlessKit needs to map subordinate ids: install the uidmap package")}}
	want := "no rootless containerd is running for alice (no socket at /run/user/1000/containerd/containerd.sock and no RootlessKit state in /run/user/1000/containerd-rootless): " +
		`start one with "containerd-rootless-setuptool.sh install" (from nerdctl) or with "make rootless-containerd" in kiln's source tree, or run kiln as root; ` +
		"but first: newuidmap is missing, which RootlessKit needs to map subordinate ids: install the uidmap package"
	if e.Error() != want {
		t.Errorf("got  %s\nwant %s", e, want)
	}
}

func TestWithEnv(t *testing.T) {
	got := withEnv([]string{"A=1", "ROOTLESSKIT_STATE_DIR=/old", "B=2=3"}, map[string]string{"ROOTLESSKIT_STATE_DIR": "/new", "C": "x"})
	want := "A=1 B=2=3 C=x ROOTLESSKIT_STATE_DIR=/new"
	if strings.Join(got, " ") != want {
		t.Errorf("withEnv = %q, want %q", got, want)
	}
}
