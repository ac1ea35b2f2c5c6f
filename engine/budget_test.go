package engine

import (
	"os"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/cgroup"
)

func TestLimitsString(t *testing.T) {
	for l, want := range map[Limits]string{
		{}:                                     "none",
		{Memory: 256 << 20}:                    "memory 256MiB",
		{Memory: 3 << 29, CPUs: 1.5}:           "memory 1.5GiB, cpus 1.5",
		{CPUs: 0.25, MaxParallelism: 2}:        "cpus 0.25, max-parallelism 2",
		{MaxParallelism: 1, Memory: 100 << 20}: "memory 100MiB, max-parallelism 1",
	} {
		if got := l.String(); got != want {
			t.Errorf("%+v: %q, want %q", l, got, want)
		}
	}
}

func TestStepCgroupParent(t *testing.T) {
	cfg := Config{Root: "/var/lib/kiln"}
	if got := stepCgroupParent(cfg, nil); got != cgroupParent(cfg.Root) {
		t.Errorf("without a budget: %q, want the root's %q", got, cgroupParent(cfg.Root))
	}
	if os.Geteuid() != 0 {
		return
	}
	cfg.Limits.MaxParallelism = 2
	parent, _, why := budgetParent(cfg, cgroup.Host{})
	if why != "" || parent != cgroupParent(cfg.Root) {
		t.Errorf("as root with only --max-parallelism, which needs no cgroup: %q, %q", parent, why)
	}
}

// A budget that cannot be enforced is refused, saying why, never ignored.
func TestBudgetParentRefuses(t *testing.T) {
	mem := Limits{Memory: 256 << 20}
	noMemory := cgroup.Host{Memory: cgroup.Controller{Name: "memory", Why: "the kernel's memory controller is disabled: add cgroup_enable=memory"}}
	if _, _, why := budgetParent(Config{Rootless: true, Limits: mem}, noMemory); !strings.Contains(why, "cgroup_enable=memory") {
		t.Errorf("rootless without a memory controller: %q", why)
	}
	if _, _, why := budgetParent(Config{Rootless: true, Limits: Limits{MaxParallelism: 1}}, cgroup.Host{}); why != "" {
		t.Errorf("rootless with only --max-parallelism: %q, want it enforced (it needs no cgroup)", why)
	}
	if os.Geteuid() != 0 {
		return
	}
	if _, _, why := budgetParent(Config{Limits: mem}, noMemory); !strings.Contains(why, "cgroup_enable=memory") {
		t.Errorf("without a memory controller: %q", why)
	}
	if _, _, why := budgetParent(Config{Limits: Limits{CPUs: 1}}, cgroup.Host{}); why == "" {
		t.Error("a CPU quota without a cpu controller was taken as enforced")
	}
	err := budgetError(mem, "why")
	if !strings.Contains(err.Error(), "memory 256MiB") || !strings.Contains(err.Error(), "cannot be enforced") {
		t.Errorf("budgetError: %v", err)
	}
}
