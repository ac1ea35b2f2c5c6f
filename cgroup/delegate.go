package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNotDelegated is the cause of every budget an unprivileged process
// cannot set up because no cgroup is delegated to it.
var ErrNotDelegated = errors.New("no cgroup is delegated to this user")

// Delegation is a cgroup delegated to an unprivileged user, which a build's
// cgroup can go below.
type Delegation struct {
	// Parent is the delegated cgroup, relative to the hierarchies' roots.
	Parent string
	// move are the processes that must leave Parent before its children
	// get controllers (cgroup v2 allows no processes in a cgroup that
	// hands controllers down): this kiln, and the kiln that started it
	// in its own namespaces.
	move []int
}

// Delegated finds the cgroup delegated to this unprivileged process that
// a build's cgroup with limits can go below.
//
// On cgroup v1 it is the cgroup this process runs in, when the process may
// create cgroups there in the hierarchy of each controller the limits need
// (a directory the user owns: made with mkdir and chown -R, or cgcreate
// -a/-t), with one path in all of them.
//
// On cgroup v2 it is the cgroup this process runs in when kiln is alone
// there (systemd-run --user --scope -p Delegate=yes starts it so), or else
// that cgroup's parent when the user may write there and no process runs
// in it directly (a session in a cgroup below the delegated one). Either
// must offer the controllers. kin are processes of kiln's own that may
// share its cgroup (the kiln that started this one in namespaces of its
// own): on cgroup v2 they move with it.
func (h Host) Delegated(l Limits, kin ...int) (Delegation, error) {
	if err := h.Enforceable(l); err != nil {
		return Delegation{}, err
	}
	var needed []Controller
	if l.Memory > 0 {
		needed = append(needed, h.Memory)
	}
	if l.CPUs > 0 {
		needed = append(needed, h.CPU)
	}
	if len(needed) == 0 {
		return Delegation{}, nil
	}
	own, err := readOwn(files.self)
	if err != nil {
		return Delegation{}, fmt.Errorf("finding the cgroups this process runs in: %w", err)
	}
	if needed[0].Version == V2 {
		return h.delegatedV2(own[""], needed, kin)
	}
	var found string
	for _, c := range needed {
		if c.Version == V2 {
			return Delegation{}, fmt.Errorf("%w: the memory and cpu controllers are in different cgroup versions here", ErrNotDelegated)
		}
		p, ok := own[c.Name]
		if !ok {
			return Delegation{}, fmt.Errorf("%w: /proc/self/cgroup names no %s cgroup", ErrNotDelegated, c.Name)
		}
		dir := filepath.Join(c.Dir, p)
		if !writable(dir) || !writable(filepath.Join(dir, "cgroup.procs")) {
			return Delegation{}, fmt.Errorf("%w: this process runs in the %s cgroup %s, which it may not create cgroups in (%s)", ErrNotDelegated, c.Name, p, dir)
		}
		switch {
		case found == "":
			found = p
		case found != p:
			return Delegation{}, fmt.Errorf("%w: this process runs in different cgroups in the memory (%s) and cpu (%s) hierarchies, and a budget needs one path in both", ErrNotDelegated, found, p)
		}
	}
	return Delegation{Parent: strings.Trim(found, "/")}, nil
}

// delegatedV2 is Delegated on cgroup v2, for this process in the cgroup own.
func (h Host) delegatedV2(own string, needed []Controller, kin []int) (Delegation, error) {
	switch own {
	case "":
		return Delegation{}, fmt.Errorf("%w: /proc/self/cgroup names no cgroup v2 cgroup", ErrNotDelegated)
	case "/":
		return Delegation{}, fmt.Errorf("%w: this process runs in the root cgroup", ErrNotDelegated)
	}
	ownErr := h.usableV2(own, needed)
	if ownErr == nil {
		if kilns, ok := onlyKiln(filepath.Join(h.v2, own), kin); ok {
			return Delegation{Parent: strings.Trim(own, "/"), move: kilns}, nil
		}
	}
	parent := path.Dir(own)
	switch {
	case ownErr != nil && parent == "/":
		return Delegation{}, fmt.Errorf("%w: %v", ErrNotDelegated, ownErr)
	case parent == "/":
		others, _ := readPids(filepath.Join(h.v2, own, "cgroup.procs"))
		others = slices.DeleteFunc(others, func(pid int) bool { return pid == os.Getpid() || slices.Contains(kin, pid) })
		return Delegation{}, fmt.Errorf("%w: the cgroup %s that this process runs in holds other processes too (%s), and cgroup v2 lets a cgroup hand controllers down only when no process runs in it: start kiln alone in a delegated cgroup (systemd-run --user --scope -p Delegate=yes does)", ErrNotDelegated, own, describePids(others))
	case strings.HasSuffix(parent, ".slice"):
		// A slice is systemd's to manage: only a scope or service with
		// Delegate=yes is the user's.
		return Delegation{}, fmt.Errorf("%w: this process runs in %s, which is systemd's: start kiln in a delegated scope of its own (systemd-run --user --scope -p Delegate=yes)", ErrNotDelegated, own)
	}
	if err := h.usableV2(parent, needed); err != nil {
		return Delegation{}, fmt.Errorf("%w: %v", ErrNotDelegated, err)
	}
	if pids, err := readPids(filepath.Join(h.v2, parent, "cgroup.procs")); err != nil || len(pids) > 0 {
		return Delegation{}, fmt.Errorf("%w: processes run directly in the cgroup %s, and cgroup v2 lets a cgroup hand controllers down only when none does", ErrNotDelegated, parent)
	}
	return Delegation{Parent: strings.Trim(parent, "/")}, nil
}

// usableV2 says why this process cannot create cgroups with the needed
// controllers below the cgroup v2 cgroup p, or nil.
func (h Host) usableV2(p string, needed []Controller) error {
	dir := filepath.Join(h.v2, p)
	for _, f := range []string{"", "cgroup.procs", "cgroup.subtree_control"} {
		if !writable(filepath.Join(dir, f)) {
			return fmt.Errorf("this process may not create cgroups in the cgroup %s (%s)", p, dir)
		}
	}
	dt, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return err
	}
	for _, c := range needed {
		if !slices.Contains(strings.Fields(string(dt)), c.Name) {
			return fmt.Errorf("the %s controller is not delegated to the cgroup %s: its parent's cgroup.subtree_control must enable it", c.Name, p)
		}
	}
	return nil
}

// onlyKiln returns the processes in the cgroup dir when they are only this
// process and its kin.
func onlyKiln(dir string, kin []int) ([]int, bool) {
	pids, err := readPids(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, false
	}
	for _, pid := range pids {
		if pid != os.Getpid() && !slices.Contains(kin, pid) {
			return nil, false
		}
	}
	return pids, true
}

// readPids reads a cgroup.procs file.
func readPids(file string) ([]int, error) {
	dt, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(dt)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// Vacate moves the processes d says must leave the delegated cgroup into
// the cgroup leaf below it (relative to the hierarchies' roots), where
// they stay: kiln's own, on cgroup v2, when it was alone there.
func (h Host) Vacate(d Delegation, leaf string) error {
	if len(d.move) == 0 {
		return nil
	}
	dir := filepath.Join(h.v2, leaf)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating a cgroup for kiln itself: %w", err)
	}
	for _, pid := range d.move {
		if err := write(dir, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("moving kiln out of the delegated cgroup %s: %w", d.Parent, err)
		}
	}
	return nil
}

// writable reports whether this process may write to p, as the kernel
// decides for its user and user namespace.
func writable(p string) bool {
	return unix.Access(p, unix.W_OK) == nil
}

// readOwn reads /proc/self/cgroup: the path of this process's cgroup in
// each v1 hierarchy, by controller name ("name=systemd" for named ones),
// and in v2 under "".
func readOwn(file string) (map[string]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	own := map[string]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		// hierarchy-ID:controller-list:path; the path may hold colons.
		parts := strings.SplitN(s.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		p := path.Clean("/" + parts[2])
		if parts[1] == "" {
			own[""] = p
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			own[c] = p
		}
	}
	return own, s.Err()
}

// runtimeLeaf is the cgroup below a build's cgroup that the runtime starting
// its steps joins (see Runtime).
const runtimeLeaf = "runtime"

// Runtime creates, below the group, the cgroup that the runtime starting an
// unprivileged build's steps joins (runc, or containerd's runc shim), and
// returns its path relative to the hierarchies' roots. runc gives a step
// without a cgroup path a cgroup below its own on cgroup v1 and beside its
// own on v2: inside the group either way, and on v2 the group itself holds
// no process, so it can hand controllers down.
func (g *Group) Runtime() (string, error) {
	p := path.Join(g.path, runtimeLeaf)
	for _, c := range g.controllers() {
		if err := os.MkdirAll(filepath.Join(c.Dir, p), 0o755); err != nil {
			return "", fmt.Errorf("creating the cgroup for the build's runtime: %w", err)
		}
	}
	return p, nil
}

// ProcsFiles are the cgroup.procs files of the group's runtime cgroup (see
// Runtime) in the hierarchies of the controllers its limits use: writing a
// process's pid there moves it into the group.
func (g *Group) ProcsFiles() ([]string, error) {
	p, err := g.Runtime()
	if err != nil {
		return nil, err
	}
	var files []string
	for _, c := range g.controllers() {
		f := filepath.Join(c.Dir, p, "cgroup.procs")
		if !slices.Contains(files, f) {
			files = append(files, f)
		}
	}
	return files, nil
}

// controllers are the controllers the group's limits use.
func (g *Group) controllers() []Controller {
	var cs []Controller
	if g.limits.Memory > 0 {
		cs = append(cs, g.host.Memory)
	}
	if g.limits.CPUs > 0 {
		cs = append(cs, g.host.CPU)
	}
	return cs
}

// describePids names processes for a message: "pid 12 (sh), pid 40 (sleep)".
func describePids(pids []int) string {
	var parts []string
	for _, pid := range pids {
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		parts = append(parts, fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(string(comm))))
	}
	return strings.Join(parts, ", ")
}
