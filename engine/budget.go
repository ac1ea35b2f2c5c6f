package engine

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	units "github.com/docker/go-units"
	"golang.org/x/sync/semaphore"

	"github.com/kiln-build/kiln/cgroup"
	"github.com/kiln-build/kiln/rootless"
)

// Limits is a build's budget: what its steps may use together, and how many
// run at once.
type Limits struct {
	// Memory is the memory limit of all steps together, in bytes (swap
	// included); 0 for none.
	Memory int64
	// CPUs is the CPU quota of all steps together, in CPUs; 0 for none.
	CPUs float64
	// MaxParallelism is how many operations BuildKit's solver runs at once
	// (buildkitd's max-parallelism); 0 for no limit, as buildkitd.
	MaxParallelism int
}

// cgroupLimits are the limits a cgroup enforces.
func (l Limits) cgroupLimits() cgroup.Limits {
	return cgroup.Limits{Memory: l.Memory, CPUs: l.CPUs}
}

// String describes the limits as options: "memory 256MiB, cpus 1.5,
// max-parallelism 2", or "none".
func (l Limits) String() string {
	var parts []string
	if l.Memory > 0 {
		parts = append(parts, "memory "+FormatMemory(l.Memory))
	}
	if l.CPUs > 0 {
		parts = append(parts, "cpus "+strconv.FormatFloat(l.CPUs, 'f', -1, 64))
	}
	if l.MaxParallelism > 0 {
		parts = append(parts, "max-parallelism "+strconv.Itoa(l.MaxParallelism))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// FormatMemory writes a memory size as the budget is shown: 256MiB.
func FormatMemory(n int64) string {
	return units.BytesSize(float64(n))
}

// budgetPrefix starts the name of a build's cgroup below the state
// directory's cgroup parent; the pid makes it the build's own.
const budgetPrefix = "build-"

// budgetName is this process's build cgroup's name.
func budgetName() string { return budgetPrefix + strconv.Itoa(os.Getpid()) }

// kilnPrefix starts the name of the cgroup an unprivileged kiln moves
// itself to on cgroup v2 (see cgroup.Host.Vacate), beside its build's.
const kilnPrefix = "kiln-"

// kilnName is this process's own cgroup's name there.
func kilnName() string { return kilnPrefix + strconv.Itoa(os.Getpid()) }

// stepCgroupParent is the cgroup parent of the steps of a build with the
// global options cfg: with a budget, the build's own cgroup (see
// openBudget); otherwise the state directory's (see cgroupParent).
func stepCgroupParent(cfg Config, budget *cgroup.Group) string {
	if budget != nil {
		return budget.Path()
	}
	return cgroupParent(cfg.Root)
}

// shimCgroup are the runc options of containerd's runc shim that start an
// unprivileged build's steps inside its budget: BuildKit's rootless mode
// gives the steps no cgroup paths, so runc places each step's cgroup by
// its own, which is the shim's (see cgroup.Group.Runtime). Nil without a
// budget.
func shimCgroup(budget *cgroup.Group) (*runcoptions.Options, error) {
	if budget == nil {
		return nil, nil
	}
	p, err := budget.Runtime()
	if err != nil {
		return nil, err
	}
	return &runcoptions.Options{ShimCgroup: "/" + p}, nil
}

// wrapRunc returns the runc an unprivileged build's steps run with, in the
// worker directory root: runc itself without a budget, else a wrapper that
// starts it inside the budget's cgroup, below which runc nests each step's
// (see cgroup.Group.Wrap).
func wrapRunc(root string, budget *cgroup.Group) (string, error) {
	if budget == nil {
		return "runc", nil
	}
	real, err := exec.LookPath("runc")
	if err != nil {
		return "", fmt.Errorf("finding runc: %w", err)
	}
	if real, err = filepath.Abs(real); err != nil {
		return "", err
	}
	link := filepath.Join(root, "budget", "runc")
	if err := budget.Wrap(link, real); err != nil {
		return "", fmt.Errorf("starting the build's steps in its cgroup: %w", err)
	}
	return link, nil
}

// ErrBudget is the cause of every budget that cannot be enforced here.
var ErrBudget = errors.New("the build's budget cannot be enforced")

// unprivileged reports whether cfg's builds run their steps as an
// unprivileged user: BuildKit's rootless mode, or steps in kiln's own user
// namespace.
func unprivileged(cfg Config) bool {
	return cfg.Rootless || rootless.InUserNamespace() || os.Geteuid() != 0
}

// budgetParent is the cgroup, relative to the hierarchies' roots, that a
// build's cgroup is created in: the state directory's cgroup parent, below
// the cgroup delegated to an unprivileged user (see
// cgroup.Host.Delegated), and the delegation. It says why cfg's budget
// cannot be enforced here, or "": a kernel without the controller a limit
// needs, or an unprivileged user without a delegated cgroup.
func budgetParent(cfg Config, h cgroup.Host) (parent string, d cgroup.Delegation, why string) {
	l := cfg.Limits.cgroupLimits()
	if !unprivileged(cfg) {
		if err := h.Enforceable(l); err != nil && !l.IsZero() {
			return "", d, err.Error()
		}
		return cgroupParent(cfg.Root), d, ""
	}
	if l.IsZero() {
		return "", d, ""
	}
	var kin []int
	if rootless.InOwnNamespaces() {
		// The kiln that made these namespaces waits in the same cgroup.
		kin = append(kin, os.Getppid())
	}
	d, err := h.Delegated(l, kin...)
	if errors.Is(err, cgroup.ErrNotDelegated) {
		why := "creating the build's cgroup needs root or a cgroup delegated to you"
		if cfg.Rootless || rootless.InUserNamespace() {
			why = "as an unprivileged user kiln runs build steps without cgroups of their own (BuildKit's rootless mode), so a limit holds for them only in a cgroup delegated to you"
		}
		return "", d, why + ", and " + err.Error() + "; ask an administrator to delegate one (see kiln's README, Rootless), or build as root"
	}
	if err != nil {
		return "", d, err.Error()
	}
	return path.Join(d.Parent, cgroupParent(cfg.Root)), d, ""
}

// budgetError is a budget that cannot be enforced, and why.
func budgetError(l Limits, why string) error {
	return fmt.Errorf("%w (%s): %s", ErrBudget, Limits{Memory: l.Memory, CPUs: l.CPUs}, why)
}

// openBudget creates the build's cgroup with cfg's limits, under which
// every step runs; nil without limits. As root runc creates the steps'
// cgroups below it (see stepCgroupParent); an unprivileged user's steps
// are started inside it (see wrapRunc and shimCgroup). It first removes the
// build cgroups a killed kiln left: the caller holds the state directory's
// lock, so no other build uses them.
//
// An unprivileged kiln that ran alone in the delegated cgroup on cgroup v2
// has moved out of it (see cgroup.Host.Vacate); the returned group's Remove
// moves it back.
func openBudget(cfg Config) (*cgroup.Group, error) {
	l := cfg.Limits.cgroupLimits()
	if unprivileged(cfg) && l.IsZero() {
		return nil, nil
	}
	h := cgroup.Probe()
	parent, d, why := budgetParent(cfg, h)
	if why != "" {
		return nil, budgetError(cfg.Limits, why)
	}
	// This build's own name goes too: a cgroup by that name is an earlier
	// build's whose kiln had this pid, and its counters are not this
	// build's.
	h.Sweep(parent, budgetPrefix)
	if unprivileged(cfg) {
		// Only an unprivileged kiln moves itself to a cgroup of its own,
		// which stays while it runs in it.
		h.Sweep(parent, kilnPrefix)
	}
	if l.IsZero() {
		return nil, nil
	}
	build := path.Join(parent, budgetName())
	if h.Exists(build) {
		return nil, budgetCgroupError(cfg.Limits, fmt.Errorf("the cgroup %s of an earlier build with kiln's pid still holds processes: stop them, then build again", build))
	}
	restore, err := h.Vacate(d, path.Join(parent, kilnName()))
	if err != nil {
		return nil, budgetCgroupError(cfg.Limits, err)
	}
	g, err := h.Create(build, l)
	if err != nil {
		return nil, budgetCgroupError(cfg.Limits, errors.Join(err, restore()))
	}
	g.OnRemove(restore)
	return g, nil
}

// budgetCgroupError is a build cgroup that could not be made, for cause.
func budgetCgroupError(l Limits, cause error) error {
	return fmt.Errorf("%w (%s): creating the build's cgroup: %w", ErrBudget, Limits{Memory: l.Memory, CPUs: l.CPUs}, cause)
}

// parallelism is the solver's semaphore for MaxParallelism; nil for no
// limit.
func (l Limits) parallelism() *semaphore.Weighted {
	if l.MaxParallelism <= 0 {
		return nil
	}
	return semaphore.NewWeighted(int64(l.MaxParallelism))
}

// OutOfMemory reports whether the kernel killed a step of the build for
// going over the build's memory budget.
func (e *Engine) OutOfMemory() bool {
	return e.budget.OOMKills() > 0
}

// BudgetInfo is what kiln info says about build budgets.
type BudgetInfo struct {
	// Limits are the limits in force for a build without options: those
	// of the environment (KILN_MEMORY, KILN_CPUS, KILN_MAX_PARALLELISM).
	Limits string `json:"limits"`
	// Enforced is false when a limit in force cannot be enforced here.
	Enforced bool `json:"enforced"`
	// Why says why not.
	Why string `json:"why,omitempty"`
	// Cgroup is the cgroup a build's steps run under with a budget.
	Cgroup string `json:"cgroup,omitempty"`
	// Memory and CPU say whether the kernel offers the controllers that
	// enforce --memory and --cpus, and why not.
	Memory cgroup.Controller `json:"memory"`
	CPU    cgroup.Controller `json:"cpu"`
}

// describeBudget fills in kiln info's budget section.
func describeBudget(cfg Config) *BudgetInfo {
	h := cgroup.Probe()
	b := &BudgetInfo{Limits: cfg.Limits.String(), Enforced: true, Memory: h.Memory, CPU: h.CPU}
	if parent, _, why := budgetParent(cfg, h); why != "" {
		b.Enforced, b.Why = false, why
	} else if !cfg.Limits.cgroupLimits().IsZero() {
		b.Cgroup = parent + "/" + budgetPrefix + "PID"
	}
	return b
}
