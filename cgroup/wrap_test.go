package cgroup

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestMain lets the test binary be the wrapper, as kiln's main does.
func TestMain(m *testing.M) {
	if wrapper, err := Exec(os.Args); wrapper {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// A command started through the wrapper runs inside the group (on a real
// cgroup, as root in a user namespace of its own, as an unprivileged
// build's runc runs); started under another name, or after the group is
// removed, the program is not a wrapper.
func TestWrap(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating cgroups needs root")
	}
	h := Probe()
	if !h.Memory.Available {
		t.Skipf("no memory controller: %s", h.Memory.Why)
	}
	p := fmt.Sprintf("kiln-unit-test/wrap-%d", os.Getpid())
	g, err := h.Create(p, Limits{Memory: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		g.Remove()
		os.Remove(filepath.Join(h.Memory.Dir, "kiln-unit-test"))
	}()
	// The wrapped "runc" is cat, which shows the cgroups it runs in.
	dir := t.TempDir()
	runc := filepath.Join(dir, "real", "runc")
	if err := os.MkdirAll(filepath.Dir(runc), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/bin/cat", runc); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "bin", "runc")
	if err := g.Wrap(link, runc); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(link, "/proc/self/cgroup")
	cmd.SysProcAttr = inUserNamespace()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the wrapped command: %v: %s", err, out)
	}
	want := "/" + p + "/runtime\n"
	if h.Memory.Version == V1 {
		want = ":memory:" + want
	}
	if !strings.Contains(string(out), want) {
		t.Errorf("the wrapped command ran in\n%s\nnot in the memory cgroup /%s/runtime", out, p)
	}
	// Root in the initial user namespace refuses to be the wrapper: the
	// variable must not make root run a command.
	out, err = exec.Command(link, "/proc/self/cgroup").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "root does not start runc through kiln's cgroup wrapper") || strings.Contains(string(out), "/runtime") {
		t.Errorf("the wrapper as root: %v: %s", err, out)
	}
	// The test binary under its own name is not a wrapper: it runs tests.
	self, _ := os.Executable()
	if out, err := exec.Command(self, "-test.run", "^$").CombinedOutput(); err != nil || strings.Contains(string(out), "memory:") {
		t.Errorf("the program under its own name: %v: %s", err, out)
	}
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, ok := os.LookupEnv(wrapEnv); ok {
		t.Errorf("%s is still set after the group was removed", wrapEnv)
	}
}

// inUserNamespace starts a process as root in a user namespace of its own,
// mapped to root outside.
func inUserNamespace() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
	}
}

// Wrap makes wrappers of runc only.
func TestWrapOnlyRunc(t *testing.T) {
	g := &Group{}
	for _, c := range [][2]string{{"/x/runc", "/bin/sh"}, {"/x/sh", "/usr/sbin/runc"}, {"/x/runc", "runc"}} {
		if err := g.Wrap(c[0], c[1]); err == nil || !strings.Contains(err.Error(), "only starts runc") {
			t.Errorf("Wrap(%q, %q): %v", c[0], c[1], err)
		}
	}
}

// The wrapper acts only on a spec that makes it runc in a build's runtime
// cgroup, whatever the environment says.
func TestWrapSpecValidate(t *testing.T) {
	mounts := []mount{{dir: "/sys/fs/cgroup/memory"}, {dir: "/sys/fs/cgroup/unified", v2: true}}
	good := wrapSpec{Command: "/usr/sbin/runc", Procs: []string{"/sys/fs/cgroup/memory/kiln/1a/build-7/runtime/cgroup.procs"}}
	if err := good.validate(mounts); err != nil {
		t.Errorf("a build's spec: %v", err)
	}
	for name, s := range map[string]wrapSpec{
		"a shell":              {Command: "/bin/sh", Procs: good.Procs},
		"a relative runc":      {Command: "runc", Procs: good.Procs},
		"a runc through ..":    {Command: "/tmp/../usr/sbin/runc", Procs: good.Procs},
		"no cgroup":            {Command: good.Command},
		"a file outside":       {Command: good.Command, Procs: []string{"/etc/kiln/runtime/cgroup.procs"}},
		"not a runtime cgroup": {Command: good.Command, Procs: []string{"/sys/fs/cgroup/memory/cgroup.procs"}},
		"a path through ..":    {Command: good.Command, Procs: []string{"/sys/fs/cgroup/memory/../../../etc/runtime/cgroup.procs"}},
		"a mount's sibling":    {Command: good.Command, Procs: []string{"/sys/fs/cgroup/memoryx/runtime/cgroup.procs"}},
	} {
		if err := s.validate(mounts); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
