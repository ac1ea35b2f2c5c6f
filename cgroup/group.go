package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// cpuPeriod is the CFS period a CPU quota is expressed in, in
// microseconds: the kernel's default, as docker and runc use it.
const cpuPeriod = 100000

// Group is one build's cgroup: the cgroup parent its steps' cgroups are
// created under, with the build's limits on it.
type Group struct {
	host   Host
	path   string // below the hierarchies' roots, e.g. kiln/1a2b3c/build-42
	limits Limits
	oom    *oomWatch // v1: notifications of the memory controller's OOM
	// wrapped: this process's children join the group (see Wrap).
	wrapped bool
	// after runs once the group is removed (see OnRemove).
	after func() error
}

// OnRemove has Remove call f once the group is gone.
func (g *Group) OnRemove(f func() error) { g.after = f }

// Create makes the cgroup at path (relative to the hierarchies' roots, as
// a runc cgroups path is) and sets limits on it: memory (swap included, so
// that the budget holds on a host with swap) and a CPU quota. Only the
// controllers a limit needs are set up; runc creates the steps' cgroups
// below it in every hierarchy. Creating cgroups needs root.
func (h Host) Create(p string, limits Limits) (*Group, error) {
	if err := h.Enforceable(limits); err != nil {
		return nil, err
	}
	p = strings.Trim(path.Clean("/"+p), "/")
	g := &Group{host: h, path: p, limits: limits}
	ok := false
	defer func() {
		if !ok {
			g.Remove()
		}
	}()
	if limits.Memory > 0 {
		if err := g.setMemory(); err != nil {
			return nil, fmt.Errorf("setting the memory limit on the cgroup %s: %w", g.dir(h.Memory), err)
		}
	}
	if limits.CPUs > 0 {
		if err := g.setCPU(); err != nil {
			return nil, fmt.Errorf("setting the CPU quota on the cgroup %s: %w", g.dir(h.CPU), err)
		}
	}
	ok = true
	return g, nil
}

// Path is the group's cgroup path, relative to the hierarchies' roots:
// the cgroup parent of the steps.
func (g *Group) Path() string { return g.path }

// dir is the group's directory in the hierarchy that holds c.
func (g *Group) dir(c Controller) string { return filepath.Join(c.Dir, g.path) }

func (g *Group) setMemory() error {
	c := g.host.Memory
	dir := g.dir(c)
	limit := strconv.FormatInt(g.limits.Memory, 10)
	if c.Version == V2 {
		if err := enableV2(c.Dir, g.path, "memory"); err != nil {
			return err
		}
		if err := write(dir, "memory.max", limit); err != nil {
			return err
		}
		// Without swap.max the steps could go on in swap beyond the
		// budget; the file is missing when the kernel has no swap
		// accounting, and then there is no swap to limit either.
		if err := write(dir, "memory.swap.max", "0"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// Children count against their parent's limit only in a hierarchical
	// memory cgroup: the default, and the only mode of recent kernels.
	if dt, err := os.ReadFile(filepath.Join(dir, "memory.use_hierarchy")); err == nil && strings.TrimSpace(string(dt)) != "1" {
		if err := write(dir, "memory.use_hierarchy", "1"); err != nil {
			return fmt.Errorf("the memory cgroup %s is not hierarchical, so a limit on it would not hold for its children: %w", dir, err)
		}
	}
	if err := write(dir, "memory.limit_in_bytes", limit); err != nil {
		return err
	}
	// memsw is memory plus swap; it exists with swap accounting only.
	if err := write(dir, "memory.memsw.limit_in_bytes", limit); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	watch, err := watchOOM(dir)
	if err != nil {
		return fmt.Errorf("watching for steps killed for memory: %w", err)
	}
	g.oom = watch
	return nil
}

func (g *Group) setCPU() error {
	c := g.host.CPU
	dir := g.dir(c)
	quota := int64(g.limits.CPUs*cpuPeriod + 0.5)
	if quota < 1000 {
		// The kernel's smallest quota is 1 ms.
		quota = 1000
	}
	if c.Version == V2 {
		if err := enableV2(c.Dir, g.path, "cpu"); err != nil {
			return err
		}
		return write(dir, "cpu.max", fmt.Sprintf("%d %d", quota, cpuPeriod))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := write(dir, "cpu.cfs_period_us", strconv.Itoa(cpuPeriod)); err != nil {
		return err
	}
	return write(dir, "cpu.cfs_quota_us", strconv.FormatInt(quota, 10))
}

// enableV2 creates the cgroup p below the cgroup2 mount root, enabling the
// controller for the children of every cgroup on the way, p included (the
// steps' cgroups are created below it).
func enableV2(root, p, controller string) error {
	dir := root
	parts := strings.Split(p, "/")
	for i := 0; i <= len(parts); i++ {
		if i > 0 {
			dir = filepath.Join(dir, parts[i-1])
			if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
		}
		dt, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
		if err != nil {
			return err
		}
		if slices.Contains(strings.Fields(string(dt)), controller) {
			continue
		}
		if err := write(dir, "cgroup.subtree_control", "+"+controller); err != nil {
			return fmt.Errorf("enabling the %s controller for the cgroups below %s: %w", controller, dir, err)
		}
	}
	return nil
}

// write writes value to the cgroup file dir/name.
func write(dir, name, value string) error {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %q to %s: %w", value, filepath.Join(dir, name), err)
	}
	return nil
}

// OOMKills returns how many times the kernel's OOM killer took a process
// of the group's steps because they were over the memory limit: v2 counts
// them in memory.events (oom_kill, for the group and every cgroup below);
// v1 counts only in the victim's own cgroup, which runc has removed by the
// time a step's failure is known, so on v1 the group listens for the
// memory controller's OOM notifications (memory.oom_control, which covers
// the group and every cgroup below) from the moment it is created.
func (g *Group) OOMKills() uint64 {
	if g == nil || g.limits.Memory == 0 {
		return 0
	}
	c := g.host.Memory
	if c.Version == V2 {
		n, _ := readKey(filepath.Join(g.dir(c), "memory.events"), "oom_kill")
		return n
	}
	if g.oom == nil {
		return 0
	}
	n := g.oom.count()
	// Older kernels (before 4.13) have no oom_kill line; newer ones
	// count, in the group itself, the kills the group's limit caused to a
	// process that was in it directly (none: steps are below it).
	if k, err := readKey(filepath.Join(g.dir(c), "memory.oom_control"), "oom_kill"); err == nil && k > n {
		n = k
	}
	return n
}

// readKey reads the value of key from a cgroup file of "key value" lines.
func readKey(file, key string) (uint64, error) {
	dt, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(dt), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && k == key {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s has no %s", file, key)
}

// Remove removes the group and the cgroups below it that runc left (its
// "buildkit" directory) in every hierarchy. Steps must have ended.
func (g *Group) Remove() error {
	if g == nil {
		return nil
	}
	if g.oom != nil {
		g.oom.close()
		g.oom = nil
	}
	if g.wrapped {
		os.Unsetenv(wrapEnv)
		g.wrapped = false
	}
	var errs []error
	for _, root := range g.host.roots() {
		if err := removeTree(filepath.Join(root, g.path)); err != nil {
			errs = append(errs, err)
		}
	}
	if g.after != nil {
		errs = append(errs, g.after())
		g.after = nil
	}
	return errors.Join(errs...)
}

// roots are the mount points of every hierarchy kiln's cgroups can be in.
func (h Host) roots() []string {
	roots := append([]string(nil), h.v1...)
	if h.v2 != "" {
		roots = append(roots, h.v2)
	}
	return roots
}

// Exists reports whether the cgroup p (relative to the hierarchies' roots)
// is there in any hierarchy.
func (h Host) Exists(p string) bool {
	for _, root := range h.roots() {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			return true
		}
	}
	return false
}

// Sweep removes the cgroups named prefix* directly below parent, in every
// hierarchy: the groups of builds whose kiln was killed. The caller makes
// sure no build using them runs (kiln holds the state directory's lock).
// Cgroups that still hold processes stay.
func (h Host) Sweep(parent, prefix string) {
	parent = strings.Trim(path.Clean("/"+parent), "/")
	for _, root := range h.roots() {
		dir := filepath.Join(root, parent)
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if e.IsDir() && strings.HasPrefix(e.Name(), prefix) {
				removeTree(filepath.Join(dir, e.Name()))
			}
		}
	}
}
