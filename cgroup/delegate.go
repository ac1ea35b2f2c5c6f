package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNotDelegated is the cause of every budget an unprivileged process
// cannot set up because no cgroup is delegated to it.
var ErrNotDelegated = errors.New("no cgroup is delegated to this user")

// Delegated returns the cgroup this process runs in, relative to the
// hierarchies' roots, when this process may create cgroups below it with
// the controllers limits need: a cgroup an administrator delegated to an
// unprivileged user. On cgroup v1 that is a directory the user owns in the
// hierarchy of each controller (made with mkdir and chown -R, or cgcreate
// -a/-t), with this process in it.
//
// Delegation on cgroup v2 is refused for now: its rule that a cgroup with
// controllers for its children holds no processes means kiln would have to
// move itself, which this package has not been able to test.
func (h Host) Delegated(l Limits) (string, error) {
	if err := h.Enforceable(l); err != nil {
		return "", err
	}
	var needed []Controller
	if l.Memory > 0 {
		needed = append(needed, h.Memory)
	}
	if l.CPUs > 0 {
		needed = append(needed, h.CPU)
	}
	if len(needed) == 0 {
		return "", nil
	}
	own, err := readOwn(files.self)
	if err != nil {
		return "", fmt.Errorf("finding the cgroups this process runs in: %w", err)
	}
	var found string
	for _, c := range needed {
		if c.Version == V2 {
			return "", fmt.Errorf("%w: on cgroup v2 kiln does not yet set up a budget in a delegated cgroup", ErrNotDelegated)
		}
		p, ok := own[c.Name]
		if !ok {
			return "", fmt.Errorf("%w: /proc/self/cgroup names no %s cgroup", ErrNotDelegated, c.Name)
		}
		dir := filepath.Join(c.Dir, p)
		if !writable(dir) || !writable(filepath.Join(dir, "cgroup.procs")) {
			return "", fmt.Errorf("%w: this process runs in the %s cgroup %s, which it may not create cgroups in (%s)", ErrNotDelegated, c.Name, p, dir)
		}
		switch {
		case found == "":
			found = p
		case found != p:
			return "", fmt.Errorf("%w: this process runs in different cgroups in the memory (%s) and cpu (%s) hierarchies, and a budget needs one path in both", ErrNotDelegated, found, p)
		}
	}
	return strings.Trim(found, "/"), nil
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

// ProcsFiles are the cgroup.procs files of the group in the hierarchies of
// the controllers its limits use: writing a process's pid there moves it
// into the group.
func (g *Group) ProcsFiles() []string {
	var files []string
	for _, c := range []Controller{g.host.Memory, g.host.CPU} {
		if !c.Available {
			continue
		}
		f := filepath.Join(g.dir(c), "cgroup.procs")
		if _, err := os.Stat(f); err == nil && !slices.Contains(files, f) {
			files = append(files, f)
		}
	}
	return files
}
