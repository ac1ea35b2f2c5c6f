package rootless

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

const markerHelperEnv = "KILN_TEST_MARKER_HELPER"

// TestInheritedOwnNamespaceMarkerIgnored: kiln run as root with
// _KILN_OWN_USERNS inherited from its environment must not remount
// anything private. The code runs in a helper process in a mount namespace
// of its own, whose mounts start as copies of the host's (shared stays
// shared), so that a kiln that trusts the marker changes that copy and not
// the host.
func TestInheritedOwnNamespaceMarkerIgnored(t *testing.T) {
	if os.Getenv(markerHelperEnv) != "" {
		t.Skip("running as a helper process")
	}
	if os.Geteuid() != 0 || InUserNamespace() {
		t.Skip("needs root on the host to give the helper a mount namespace of its own")
	}
	line := regexp.MustCompile(`MARKER before="([^"]*)" after="([^"]*)" err=(.*) env="([^"]*)"`)
	for _, stage := range []string{"ready", "wait"} {
		t.Run(stage, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestOwnNamespaceMarkerHelper$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), markerHelperEnv+"=1", envOwn+"="+stage)
			// Cloneflags, not Unshareflags: Go makes every mount private
			// after unsharing the mount namespace itself.
			cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
			out, err := cmd.CombinedOutput()
			m := line.FindStringSubmatch(string(out))
			if err != nil || m == nil {
				t.Fatalf("helper: %v\n%s", err, out)
			}
			before, after, ferr, env := m[1], m[2], m[3], m[4]
			if !strings.Contains(before, "shared:") {
				t.Fatalf("the helper's mount is not shared to begin with (%q)", before)
			}
			if after != before || ferr != "<nil>" || env != "" {
				t.Errorf("with %s=%s inherited: propagation %q -> %q, error %s, marker left %q; want it ignored", envOwn, stage, before, after, ferr, env)
			}
		})
	}
}

// TestOwnNamespaceMarkerHelper is the helper process of
// TestInheritedOwnNamespaceMarkerIgnored: it mounts a shared tmpfs, runs
// FinishOwnNamespaces and prints the mount's propagation before and after.
func TestOwnNamespaceMarkerHelper(t *testing.T) {
	if os.Getenv(markerHelperEnv) == "" {
		t.Skip("helper process of TestInheritedOwnNamespaceMarkerIgnored")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	if err := unix.Mount("", dir, "", unix.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
	before := propagation(t, dir)
	err := FinishOwnNamespaces()
	fmt.Printf("MARKER before=%q after=%q err=%v env=%q\n", before, propagation(t, dir), err, os.Getenv(envOwn))
}

// propagation returns the optional fields of the mount at dir in
// /proc/self/mountinfo ("shared:12", "master:3", or "" when private).
func propagation(t *testing.T, dir string) string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	found := "not mounted"
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 7 || f[4] != dir {
			continue
		}
		var opt []string
		for _, x := range f[6:] {
			if x == "-" {
				break
			}
			opt = append(opt, x)
		}
		found = strings.Join(opt, " ")
	}
	return found
}

// TestInheritedReexecMarkerIgnored: _KILN_ROOTLESS_REEXEC inherited by a
// kiln on the host (in no user namespace) is dropped, not taken for a
// failed join of RootlessKit's namespaces; its working directory is not
// used.
func TestInheritedReexecMarkerIgnored(t *testing.T) {
	if os.Geteuid() != 0 || InUserNamespace() {
		t.Skip("as an unprivileged user Enter would go on to join a rootless containerd")
	}
	wd, _ := os.Getwd()
	t.Setenv(envReexec, "1")
	t.Setenv(envWorkDir, "/")
	if err := Enter(); err != nil {
		t.Fatalf("Enter with an inherited marker = %v, want it ignored", err)
	}
	if now, _ := os.Getwd(); now != wd {
		t.Errorf("Enter changed the working directory to %s", now)
	}
	if os.Getenv(envReexec) != "" || os.Getenv(envWorkDir) != "" {
		t.Errorf("the markers stay in the environment")
	}
}
