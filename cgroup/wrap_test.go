package cgroup

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// A command started through the wrapper runs inside the group (as root,
// on a real cgroup); started under another name, or after the group is
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
	link := filepath.Join(t.TempDir(), "bin", "runc")
	if err := g.Wrap(link, "/bin/cat"); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(link, "/proc/self/cgroup").CombinedOutput()
	if err != nil {
		t.Fatalf("the wrapped command: %v: %s", err, out)
	}
	if !strings.Contains(string(out), ":memory:/"+p+"/runtime\n") {
		t.Errorf("the wrapped command ran in\n%s\nnot in the memory cgroup /%s/runtime", out, p)
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
