package cgroup

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeProc points Probe at a mountinfo and /proc/cgroups written by the
// test.
func fakeProc(t *testing.T, mountinfo, cgroups string) {
	t.Helper()
	dir := t.TempDir()
	old := files
	t.Cleanup(func() { files = old })
	files.mountinfo = filepath.Join(dir, "mountinfo")
	files.cgroups = filepath.Join(dir, "cgroups")
	os.WriteFile(files.mountinfo, []byte(mountinfo), 0o644)
	os.WriteFile(files.cgroups, []byte(cgroups), 0o644)
}

const cgroupsEnabled = `#subsys_name	hierarchy	num_cgroups	enabled
cpu	1	10	1
memory	4	10	1
`

func TestProbeV1Hybrid(t *testing.T) {
	fakeProc(t, `30 22 0:27 / /sys/fs/cgroup rw - tmpfs tmpfs rw
31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
34 30 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
39 30 0:36 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd
40 30 0:37 / /tmp/nonexistent-unified rw - cgroup2 cgroup2 rw
41 30 0:38 /sub /mnt/bound rw - cgroup cgroup rw,memory
`, cgroupsEnabled)
	h := Probe()
	if h.Version != V1Hybrid {
		t.Errorf("version %q, want %q", h.Version, V1Hybrid)
	}
	if !h.Memory.Available || h.Memory.Version != V1 || h.Memory.Dir != "/sys/fs/cgroup/memory" {
		t.Errorf("memory %+v, want v1 at /sys/fs/cgroup/memory", h.Memory)
	}
	if !h.CPU.Available || h.CPU.Dir != "/sys/fs/cgroup/cpu,cpuacct" {
		t.Errorf("cpu %+v, want v1 at /sys/fs/cgroup/cpu,cpuacct", h.CPU)
	}
	if len(h.roots()) != 4 {
		t.Errorf("roots %q: want the three v1 mounts and the v2 one, not the bind mount of a subtree", h.roots())
	}
}

func TestProbeV2(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpuset cpu io memory pids\n"), 0o644)
	fakeProc(t, fmt.Sprintf("25 1 0:22 / %s rw - cgroup2 cgroup2 rw,nsdelegate\n", root), cgroupsEnabled)
	h := Probe()
	if h.Version != V2 || !h.Memory.Available || h.Memory.Version != V2 || h.Memory.Dir != root || !h.CPU.Available {
		t.Errorf("probe %+v, want v2 with memory and cpu at %s", h, root)
	}
}

// Raspberry Pi OS boots with the memory controller disabled: the kernel
// lists it in /proc/cgroups as not enabled and cgroup2 does not offer it.
func TestProbeMemoryDisabled(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpuset cpu io pids\n"), 0o644)
	fakeProc(t, fmt.Sprintf("25 1 0:22 / %s rw - cgroup2 cgroup2 rw\n", root), `#subsys_name	hierarchy	num_cgroups	enabled
cpu	0	80	1
memory	0	80	0
`)
	h := Probe()
	if h.Memory.Available {
		t.Fatalf("memory available with the controller disabled: %+v", h.Memory)
	}
	if !strings.Contains(h.Memory.Why, "cgroup_enable=memory") || !strings.Contains(h.Memory.Why, "cmdline.txt") {
		t.Errorf("reason %q does not say how to enable the memory controller", h.Memory.Why)
	}
	err := h.Enforceable(Limits{Memory: 256 << 20})
	if err == nil || !strings.Contains(err.Error(), "cgroup_enable=memory") {
		t.Errorf("Enforceable = %v, want the reason", err)
	}
	if err := h.Enforceable(Limits{CPUs: 1}); err != nil {
		t.Errorf("a CPU quota without the memory controller: %v", err)
	}
	if _, err := h.Create("kiln/x", Limits{Memory: 256 << 20}); err == nil {
		t.Error("Create succeeded without the memory controller")
	}
}

func TestProbeNotBuiltIn(t *testing.T) {
	fakeProc(t, "31 30 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n", "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t1\t1\n")
	h := Probe()
	if h.Memory.Available || !strings.Contains(h.Memory.Why, "built without") {
		t.Errorf("memory %+v, want unavailable because the kernel has no such controller", h.Memory)
	}
}

// fakeV2 makes a directory that looks like a cgroup2 root to Create: the
// files it writes exist, as the kernel makes them in every cgroup.
func fakeV2(t *testing.T, root string, dirs ...string) {
	for _, d := range append([]string{""}, dirs...) {
		dir := filepath.Join(root, d)
		os.MkdirAll(dir, 0o755)
		for _, f := range []string{"cgroup.subtree_control", "memory.max", "memory.swap.max", "cpu.max"} {
			os.WriteFile(filepath.Join(dir, f), nil, 0o644)
		}
	}
}

func TestCreateV2(t *testing.T) {
	root := t.TempDir()
	fakeV2(t, root, "kiln", "kiln/abc", "kiln/abc/build-1")
	h := Host{Version: V2, v2: root,
		Memory: Controller{Name: "memory", Available: true, Version: V2, Dir: root},
		CPU:    Controller{Name: "cpu", Available: true, Version: V2, Dir: root}}
	g, err := h.Create("/kiln/abc/build-1/", Limits{Memory: 256 << 20, CPUs: 1.5})
	if err != nil {
		t.Fatal(err)
	}
	if g.Path() != "kiln/abc/build-1" {
		t.Errorf("path %q", g.Path())
	}
	read := func(p string) string {
		dt, _ := os.ReadFile(filepath.Join(root, p))
		return string(dt)
	}
	for p, want := range map[string]string{
		"kiln/abc/build-1/memory.max":      "268435456",
		"kiln/abc/build-1/memory.swap.max": "0",
		"kiln/abc/build-1/cpu.max":         "150000 100000",
		// The fake files keep only the last write.
		"cgroup.subtree_control":                  "+cpu",
		"kiln/cgroup.subtree_control":             "+cpu",
		"kiln/abc/build-1/cgroup.subtree_control": "+cpu",
	} {
		if got := read(p); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
}

// TestBudgetOnThisHost creates a real build cgroup (as root, where the
// kernel has a memory controller), runs a process in a cgroup below it, as
// runc runs a step, that allocates more than the limit, and checks that
// the kernel killed it and the group counted the kill.
func TestBudgetOnThisHost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating cgroups needs root")
	}
	h := Probe()
	if !h.Memory.Available {
		t.Skipf("no memory controller: %s", h.Memory.Why)
	}
	p := fmt.Sprintf("kiln-unit-test/build-%d", os.Getpid())
	g, err := h.Create(p, Limits{Memory: 32 << 20, CPUs: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := g.Remove(); err != nil {
			t.Errorf("Remove: %v", err)
		}
		os.Remove(filepath.Join(h.Memory.Dir, "kiln-unit-test"))
		os.Remove(filepath.Join(h.CPU.Dir, "kiln-unit-test"))
		if _, err := os.Stat(filepath.Join(h.Memory.Dir, p)); err == nil {
			t.Errorf("the group is still there after Remove")
		}
	}()
	if n := g.OOMKills(); n != 0 {
		t.Fatalf("%d OOM kills before any step ran", n)
	}
	step := filepath.Join(h.Memory.Dir, p, "buildkit", "step")
	if err := os.MkdirAll(step, 0o755); err != nil {
		t.Fatal(err)
	}
	// awk doubles a string until it is 256 MB long.
	cmd := exec.Command("sh", "-c", fmt.Sprintf(`echo $$ > %s/cgroup.procs && exec awk 'BEGIN{s="x"; while (length(s) < 256000000) s = s s; print length(s)}'`, step))
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("a step allocating 256 MB under a 32 MiB limit succeeded: %s", out)
	}
	if n := g.OOMKills(); n == 0 {
		t.Errorf("the step failed (%v) but the group counted no OOM kill", err)
	}
}

func TestReadOwn(t *testing.T) {
	f := filepath.Join(t.TempDir(), "cgroup")
	os.WriteFile(f, []byte("12:cpu,cpuacct:/user/alice\n4:memory:/user/alice\n1:name=systemd:/user.slice/a:b\n0::/user.slice/a:b\n5:pids:/../../x\n"), 0o644)
	own, err := readOwn(f)
	if err != nil {
		t.Fatal(err)
	}
	for c, want := range map[string]string{"cpu": "/user/alice", "cpuacct": "/user/alice", "memory": "/user/alice", "name=systemd": "/user.slice/a:b", "": "/user.slice/a:b"} {
		if own[c] != want {
			t.Errorf("%q: %q, want %q", c, own[c], want)
		}
	}
	// Outside this process's cgroup namespace: no cgroup it can reach.
	if p, ok := own["pids"]; ok {
		t.Errorf("pids: %q, want none", p)
	}
}

// Delegated finds the cgroup a process runs in when it may create cgroups
// there, and refuses what it cannot use, saying why.
func TestDelegated(t *testing.T) {
	root := t.TempDir()
	mem, cpu := filepath.Join(root, "memory"), filepath.Join(root, "cpu")
	for _, d := range []string{mem, cpu} {
		os.MkdirAll(filepath.Join(d, "user", "alice"), 0o755)
		os.WriteFile(filepath.Join(d, "user", "alice", "cgroup.procs"), nil, 0o644)
	}
	fakeProc(t, fmt.Sprintf("31 30 0:28 / %s rw - cgroup cgroup rw,cpu\n34 30 0:31 / %s rw - cgroup cgroup rw,memory\n", cpu, mem), cgroupsEnabled)
	self := filepath.Join(t.TempDir(), "self")
	files.self = self
	h := Probe()

	os.WriteFile(self, []byte("12:cpu:/user/alice\n4:memory:/user/alice\n"), 0o644)
	if os.Geteuid() == 0 {
		d, err := h.Delegated(Limits{Memory: 1 << 30, CPUs: 1})
		if err != nil || d.Parent != "user/alice" || d.alone {
			t.Errorf("delegated %+v, %v; want user/alice, with nothing to move on v1", d, err)
		}
	}
	if d, err := h.Delegated(Limits{}); err != nil || d.Parent != "" {
		t.Errorf("without limits: %+v, %v", d, err)
	}

	os.MkdirAll(filepath.Join(cpu, "user", "bob"), 0o755)
	os.WriteFile(filepath.Join(cpu, "user", "bob", "cgroup.procs"), nil, 0o644)
	os.WriteFile(self, []byte("12:cpu:/user/bob\n4:memory:/user/alice\n"), 0o644)
	if _, err := h.Delegated(Limits{Memory: 1 << 30, CPUs: 1}); !errors.Is(err, ErrNotDelegated) || !strings.Contains(err.Error(), "different cgroups") {
		t.Errorf("different paths per hierarchy: %v", err)
	}
	os.WriteFile(self, []byte("4:memory:/user/carol\n"), 0o644)
	if _, err := h.Delegated(Limits{Memory: 1 << 30}); !errors.Is(err, ErrNotDelegated) {
		t.Errorf("a cgroup that does not exist: %v", err)
	}

}

// On cgroup v2 the delegated cgroup is kiln's own when kiln is alone there
// (and must move out of it), else its parent when no process runs there
// directly; never a systemd slice.
func TestDelegatedV2(t *testing.T) {
	v2 := t.TempDir()
	fakeProc(t, fmt.Sprintf("25 1 0:22 / %s rw - cgroup2 cgroup2 rw\n", v2), cgroupsEnabled)
	self := filepath.Join(t.TempDir(), "self")
	files.self = self
	cg := func(p, controllers string, pids ...int) {
		dir := filepath.Join(v2, p)
		os.MkdirAll(dir, 0o755)
		var procs string
		for _, pid := range pids {
			procs += fmt.Sprintf("%d\n", pid)
		}
		os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(procs), 0o644)
		os.WriteFile(filepath.Join(dir, "cgroup.controllers"), []byte(controllers), 0o644)
		os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), nil, 0o644)
	}
	cg("", "cpu memory")
	h := Probe()
	mem := Limits{Memory: 1 << 30}
	delegated := func(own string) (Delegation, error) {
		os.WriteFile(self, []byte("0::"+own+"\n"), 0o644)
		return h.Delegated(mem)
	}

	cg("alice", "cpu memory", os.Getpid())
	if d, err := delegated("/alice"); err != nil || d.Parent != "alice" || !d.alone {
		t.Errorf("kiln alone in its cgroup: %+v, %v; want alice, kiln to move out", d, err)
	}
	cg("dave", "cpu memory", 4242, os.Getpid())
	os.WriteFile(self, []byte("0::/dave\n"), 0o644)
	if d, err := h.Delegated(mem, 4242); err != nil || d.Parent != "dave" || !d.alone || !slices.Equal(d.kin, []int{4242}) {
		t.Errorf("kiln with its kin: %+v, %v; want dave, both to move out", d, err)
	}
	// A child of kiln's (a probe it started) is kiln's too.
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { child.Process.Kill(); child.Wait() }()
	cg("erin", "cpu memory", os.Getpid(), child.Process.Pid)
	if d, err := delegated("/erin"); err != nil || d.Parent != "erin" || !d.alone {
		t.Errorf("kiln with its child: %+v, %v; want erin, both to move out", d, err)
	}
	cg("frank", "cpu memory", 1, os.Getpid())
	if _, err := delegated("/frank"); !errors.Is(err, ErrNotDelegated) || !strings.Contains(err.Error(), "is shared with other processes (pid 1 (") || !strings.Contains(err.Error(), "exec kiln") {
		t.Errorf("kiln with a process not its own: %v", err)
	}
	cg("carol", "cpu memory")
	cg("carol/session", "cpu memory", 1, os.Getpid())
	if d, err := delegated("/carol/session"); err != nil || d.Parent != "carol" || d.alone {
		t.Errorf("kiln beside other processes: %+v, %v; want the parent carol, nothing to move", d, err)
	}
	cg("carol", "cpu memory", 1)
	if _, err := delegated("/carol/session"); !errors.Is(err, ErrNotDelegated) || !strings.Contains(err.Error(), "processes run directly in the cgroup /carol") {
		t.Errorf("a parent with processes of its own: %v", err)
	}
	cg("user.slice/app.slice", "cpu memory")
	cg("user.slice/app.slice/term.scope", "cpu memory", 1, os.Getpid())
	if _, err := delegated("/user.slice/app.slice/term.scope"); !errors.Is(err, ErrNotDelegated) || !strings.Contains(err.Error(), "systemd-run --user --scope -p Delegate=yes") {
		t.Errorf("a scope in a systemd slice: %v", err)
	}
	cg("bob", "cpu", os.Getpid())
	if _, err := delegated("/bob"); !errors.Is(err, ErrNotDelegated) || !strings.Contains(err.Error(), "the memory controller is not delegated") {
		t.Errorf("without the memory controller: %v", err)
	}
	if _, err := delegated("/"); !errors.Is(err, ErrNotDelegated) {
		t.Errorf("the root cgroup: %v", err)
	}
}
