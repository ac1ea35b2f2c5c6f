package cgroup

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/moby/sys/userns"
)

// wrapEnv carries, to kiln started as a command's wrapper, the cgroups to
// join and the command to become there. Its children inherit the
// variable, so the wrapper also needs its name (see Wrap). The leading
// underscore marks it as kiln's own, not an option.
const wrapEnv = "_KILN_CGROUP_WRAP"

// wrapperName is the only name the wrapper runs under, and the only
// command it becomes: runc, for an unprivileged build's steps.
const wrapperName = "runc"

// wrapSpec is wrapEnv's value.
type wrapSpec struct {
	// Command is the runc the wrapper becomes: an absolute path.
	Command string `json:"command"`
	// Procs are the cgroup.procs files the wrapper writes its pid to.
	Procs []string `json:"procs"`
}

// Wrap makes link a wrapper of command that runs it inside g: a symbolic
// link to this program, which Exec recognises by its name, and the
// environment variable that tells it what to join and become, set in this
// process for the children it starts until the group is removed. Both
// link and command must be named runc.
//
// Build steps of an unprivileged build get their cgroups this way: BuildKit
// runs them rootless, without cgroup paths, so runc nests each step's
// cgroup below the cgroup runc itself was started in.
func (g *Group) Wrap(link, command string) error {
	if filepath.Base(link) != wrapperName {
		return fmt.Errorf("the cgroup wrapper only starts runc, as runc (not as %s)", filepath.Base(link))
	}
	if err := checkCommand(command); err != nil {
		return err
	}
	procs, err := g.ProcsFiles()
	if err != nil {
		return err
	}
	if len(procs) == 0 {
		return errors.New("the build's cgroup has no cgroup.procs file to join")
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding kiln's own executable: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(link), 0o700); err != nil {
		return err
	}
	// link is in kiln's own state directory: what is there is kiln's.
	if err := os.Remove(link); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Symlink(self, link); err != nil {
		return err
	}
	spec, err := json.Marshal(wrapSpec{Command: command, Procs: procs})
	if err != nil {
		return err
	}
	if err := os.Setenv(wrapEnv, string(spec)); err != nil {
		return err
	}
	g.wrapped = true
	return nil
}

// Exec, in kiln started as a wrapper (see Wrap), moves this process into
// the group and executes the wrapped runc with the same arguments; it
// returns only on failure. In any other kiln process it does nothing and
// returns false.
//
// The wrapper exists for unprivileged builds only. Whoever sets kiln's
// environment must not gain a command run by root through it, so root in
// the initial user namespace refuses it, and it becomes nothing but runc
// after joining nothing but a build's runtime cgroup.
func Exec(args []string) (bool, error) {
	value, ok := os.LookupEnv(wrapEnv)
	if !ok || len(args) == 0 || filepath.Base(args[0]) != wrapperName {
		return false, nil
	}
	if os.Geteuid() == 0 && !userns.RunningInUserNS() {
		return true, fmt.Errorf("%s is set, and root does not start runc through kiln's cgroup wrapper: unset it", wrapEnv)
	}
	var spec wrapSpec
	if err := json.Unmarshal([]byte(value), &spec); err != nil {
		return true, fmt.Errorf("%s is not kiln's: %w", wrapEnv, err)
	}
	mounts, err := readMounts(files.mountinfo)
	if err != nil {
		return true, fmt.Errorf("reading the cgroup mounts: %w", err)
	}
	if err := spec.validate(mounts); err != nil {
		return true, err
	}
	pid := strconv.Itoa(os.Getpid())
	for _, f := range spec.Procs {
		if err := write(filepath.Dir(f), "cgroup.procs", pid); err != nil {
			return true, fmt.Errorf("joining the build's cgroup: %w", err)
		}
	}
	env := make([]string, 0, len(os.Environ()))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, wrapEnv+"=") {
			env = append(env, kv)
		}
	}
	argv := append([]string{spec.Command}, args[1:]...)
	return true, fmt.Errorf("executing %s: %w", spec.Command, syscall.Exec(spec.Command, argv, env))
}

// validate says why the wrapper must not act on s, with the cgroup file
// systems mounts, or nil: it becomes only runc, and joins only the runtime
// cgroups of builds (see Group.Runtime).
func (s wrapSpec) validate(mounts []mount) error {
	if err := checkCommand(s.Command); err != nil {
		return fmt.Errorf("%s: %w", wrapEnv, err)
	}
	if len(s.Procs) == 0 {
		return fmt.Errorf("%s names no cgroup to join", wrapEnv)
	}
	for _, f := range s.Procs {
		if filepath.Clean(f) != f || !strings.HasSuffix(f, "/"+runtimeLeaf+"/cgroup.procs") || !underMount(f, mounts) {
			return fmt.Errorf("%s names %q, which is not the cgroup.procs file of a build's runtime cgroup", wrapEnv, f)
		}
	}
	return nil
}

// checkCommand says why the wrapper must not become command, or nil: it
// becomes only runc, by an absolute path.
func checkCommand(command string) error {
	if !filepath.IsAbs(command) || filepath.Clean(command) != command || filepath.Base(command) != wrapperName {
		return fmt.Errorf("%q is not runc by an absolute path, and kiln's cgroup wrapper only starts runc so", command)
	}
	return nil
}

// underMount reports whether the absolute path f is below one of the
// cgroup file systems mounts.
func underMount(f string, mounts []mount) bool {
	for _, m := range mounts {
		if strings.HasPrefix(f, strings.TrimSuffix(m.dir, "/")+"/") {
			return true
		}
	}
	return false
}
