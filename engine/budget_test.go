package engine

import (
	"os"
	"strconv"
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
	if got := stepCgroupParent(cfg); got != cgroupParent(cfg.Root) {
		t.Errorf("without a budget: %q, want the root's %q", got, cgroupParent(cfg.Root))
	}
	cfg.Limits.MaxParallelism = 2
	if got := stepCgroupParent(cfg); got != cgroupParent(cfg.Root) {
		t.Errorf("with only --max-parallelism, which needs no cgroup: %q", got)
	}
	cfg.Limits.Memory = 64 << 20
	want := cgroupParent(cfg.Root) + "/build-" + strconv.Itoa(os.Getpid())
	if got := stepCgroupParent(cfg); got != want {
		t.Errorf("with a budget: %q, want %q", got, want)
	}
}

// A budget that cannot be enforced is refused, saying why, never ignored.
func TestUnenforced(t *testing.T) {
	mem := Limits{Memory: 256 << 20}
	if why := unenforced(Config{Rootless: true, Limits: mem}, cgroup.Host{}); !strings.Contains(why, "unprivileged") {
		t.Errorf("rootless: %q, want it to say that steps run without cgroups", why)
	}
	if why := unenforced(Config{Rootless: true, Limits: Limits{MaxParallelism: 1}}, cgroup.Host{}); why != "" {
		t.Errorf("rootless with only --max-parallelism: %q, want it enforced (it needs no cgroup)", why)
	}
	if os.Geteuid() != 0 {
		return
	}
	disabled := cgroup.Host{Memory: cgroup.Controller{Name: "memory", Why: "the kernel's memory controller is disabled: add cgroup_enable=memory"}}
	if why := unenforced(Config{Limits: mem}, disabled); !strings.Contains(why, "cgroup_enable=memory") {
		t.Errorf("without a memory controller: %q", why)
	}
	if why := unenforced(Config{Limits: Limits{CPUs: 1}}, cgroup.Host{}); why == "" {
		t.Error("a CPU quota without a cpu controller was taken as enforced")
	}
	err := budgetError(mem, "why")
	if !strings.Contains(err.Error(), "memory 256MiB") || !strings.Contains(err.Error(), "cannot be enforced") {
		t.Errorf("budgetError: %v", err)
	}
}
