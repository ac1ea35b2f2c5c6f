package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
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
	// alone: on cgroup v2, kiln runs in Parent itself, with nothing but
	// its kin and their children, all of which must leave it before its
	// children get controllers (cgroup v2 allows no processes in a cgroup
	// that hands controllers down).
	alone bool
	// kin are the processes of kiln's own besides this one: the kiln that
	// started it in namespaces of its own.
	kin []int
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
	var others []int
	if ownErr == nil {
		if others = strangers(filepath.Join(h.v2, own), kin); len(others) == 0 {
			return Delegation{Parent: strings.Trim(own, "/"), alone: true, kin: kin}, nil
		}
	}
	parent := path.Dir(own)
	switch {
	case ownErr != nil && parent == "/":
		return Delegation{}, fmt.Errorf("%w: %v", ErrNotDelegated, ownErr)
	case parent == "/":
		return Delegation{}, sharedError(own, others)
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

// strangers are the processes in the cgroup dir that are neither this
// process, its kin, nor a descendant of either.
func strangers(dir string, kin []int) []int {
	pids, err := readPids(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return []int{-1}
	}
	return slices.DeleteFunc(pids, func(pid int) bool { return kilns(pid, kin) })
}

// kilns reports whether pid is this process, one of its kin, or a
// descendant of either (a probe kiln started, or runc); a process that
// has gone counts as kiln's, as it is no longer in the way.
func kilns(pid int, kin []int) bool {
	for range 64 {
		if pid == os.Getpid() || slices.Contains(kin, pid) {
			return true
		}
		if pid <= 1 {
			return false
		}
		ppid, err := parentPid(pid)
		if errors.Is(err, fs.ErrNotExist) {
			return true
		}
		if err != nil {
			return false
		}
		pid = ppid
	}
	return false
}

// parentPid reads the parent of the process pid from /proc/PID/stat.
func parentPid(pid int) (int, error) {
	dt, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(dt), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(dt[i+1:]))
	if len(fields) < 2 {
		return 0, fmt.Errorf("/proc/%d/stat: no parent", pid)
	}
	return strconv.Atoi(fields[1])
}

// sharedError says that the cgroup own, where kiln runs, holds the
// processes others too.
func sharedError(own string, others []int) error {
	return fmt.Errorf("%w: the cgroup %s that kiln runs in is shared with other processes (%s), and cgroup v2 lets a cgroup hand controllers down only when no process runs in it: run kiln alone there (exec kiln from a shell in that scope, or systemd-run --user --scope -p Delegate=yes kiln ...)", ErrNotDelegated, own, describePids(others))
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

// Vacate moves kiln out of the delegated cgroup d, when it runs there
// alone on cgroup v2, into the cgroup leaf below it (relative to the
// hierarchies' roots), where it stays: this process first, so that the
// processes it starts from then on are born there, then its kin and the
// children either started before. A process of anyone else's in the
// delegated cgroup stops it.
//
// The returned function undoes it once the build's cgroup is gone: it
// hands the controllers kiln enabled below the delegated cgroup back,
// moves kiln's processes back there and removes the cgroups kiln made
// below it, so that the user can start a process in the delegated cgroup
// again (cgroup v2 refuses one in a cgroup that hands controllers down).
func (h Host) Vacate(d Delegation, leaf string) (restore func() error, err error) {
	if !d.alone {
		return func() error { return nil }, nil
	}
	dir := filepath.Join(h.v2, leaf)
	parent := filepath.Join(h.v2, d.Parent)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating a cgroup for kiln itself: %w", err)
	}
	if err := move(dir, os.Getpid()); err != nil {
		return nil, fmt.Errorf("moving kiln out of the delegated cgroup %s: %w", d.Parent, err)
	}
	restore = func() error { return h.unvacate(d, leaf) }
	// Children started before kiln moved can start more there meanwhile;
	// each round moves what the last one found.
	err = moveAll(parent, dir, func(pid int) error {
		if !kilns(pid, d.kin) {
			return sharedError("/"+d.Parent, []int{pid})
		}
		return nil
	})
	if err != nil {
		return nil, errors.Join(err, restore())
	}
	return restore, nil
}

// unvacate undoes Vacate (see there).
func (h Host) unvacate(d Delegation, leaf string) error {
	parent := filepath.Join(h.v2, d.Parent)
	if err := disableBelow(parent); err != nil {
		return fmt.Errorf("handing the controllers of the delegated cgroup %s back: %w", d.Parent, err)
	}
	if err := moveAll(filepath.Join(h.v2, leaf), parent, nil); err != nil {
		return fmt.Errorf("moving kiln back to the delegated cgroup %s: %w", d.Parent, err)
	}
	if err := removeTree(filepath.Join(h.v2, leaf)); err != nil {
		return err
	}
	// The cgroups between are kiln's state directory's; they go when no
	// other build's cgroup is in them.
	for p := path.Dir(leaf); strings.HasPrefix(p, d.Parent+"/"); p = path.Dir(p) {
		if os.Remove(filepath.Join(h.v2, p)) != nil {
			break
		}
	}
	return nil
}

// moveAll moves every process in the cgroup from to the cgroup to, until
// none is left; check, when set, may refuse one.
func moveAll(from, to string, check func(pid int) error) error {
	for range 100 {
		pids, err := readPids(filepath.Join(from, "cgroup.procs"))
		if err != nil || len(pids) == 0 {
			return err
		}
		for _, pid := range pids {
			if check != nil {
				if err := check(pid); err != nil {
					return err
				}
			}
			if err := move(to, pid); err != nil {
				return fmt.Errorf("moving process %d: %w", pid, err)
			}
		}
	}
	return fmt.Errorf("processes kept starting in the cgroup %s while kiln moved them out", from)
}

// disableBelow takes every controller away from the cgroups below dir and
// from dir's children: deepest first, as the kernel lets a cgroup stop
// handing a controller down only when no child hands it on. Below a
// delegated cgroup kiln ran in alone, kiln and the runc it started enabled
// them all: none can be enabled in a cgroup that processes run in.
func disableBelow(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := disableBelow(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	dt, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return err
	}
	var off []string
	for _, c := range strings.Fields(string(dt)) {
		off = append(off, "-"+c)
	}
	if len(off) == 0 {
		return nil
	}
	return write(dir, "cgroup.subtree_control", strings.Join(off, " "))
}

// move moves the process pid into the cgroup dir; a process that has
// ended meanwhile is no error.
func move(dir string, pid int) error {
	if err := write(dir, "cgroup.procs", strconv.Itoa(pid)); err != nil && !errors.Is(err, unix.ESRCH) {
		return err
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
		// A path above the root of this process's cgroup namespace
		// ("/../x") names no cgroup this process can reach.
		if parts[2] == ".." || strings.HasPrefix(parts[2], "../") || strings.HasPrefix(parts[2], "/..") {
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
