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
)

// wrapEnv carries, to kiln started as a command's wrapper, the cgroups to
// join and the command to become there. Its children inherit the
// variable, so the wrapper also needs its name (see Wrap).
const wrapEnv = "KILN_CGROUP_WRAP"

// wrapSpec is wrapEnv's value.
type wrapSpec struct {
	// Name is the base name the wrapper is started under.
	Name string `json:"name"`
	// Command is the program the wrapper becomes.
	Command string `json:"command"`
	// Procs are the cgroup.procs files the wrapper writes its pid to.
	Procs []string `json:"procs"`
}

// Wrap makes link a wrapper of command that runs it inside g: a symbolic
// link to this program, which Exec recognises by its name, and the
// environment variable that tells it what to join and become, set in this
// process for the children it starts until the group is removed.
//
// Build steps of an unprivileged build get their cgroups this way: BuildKit
// runs them rootless, without cgroup paths, so runc nests each step's
// cgroup below the cgroup runc itself was started in.
func (g *Group) Wrap(link, command string) error {
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
	spec, err := json.Marshal(wrapSpec{Name: filepath.Base(link), Command: command, Procs: procs})
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
// the group and executes the wrapped command with the same arguments; it
// returns only on failure. In any other kiln process it does nothing and
// returns false.
func Exec(args []string) (bool, error) {
	value, ok := os.LookupEnv(wrapEnv)
	if !ok || len(args) == 0 {
		return false, nil
	}
	var spec wrapSpec
	if err := json.Unmarshal([]byte(value), &spec); err != nil || spec.Name == "" || filepath.Base(args[0]) != spec.Name {
		return false, nil
	}
	pid := strconv.Itoa(os.Getpid())
	for _, f := range spec.Procs {
		if !strings.HasSuffix(f, "/cgroup.procs") {
			return true, fmt.Errorf("%s is not a cgroup.procs file", f)
		}
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
