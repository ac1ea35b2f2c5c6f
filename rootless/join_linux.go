package rootless

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Variables kiln passes to itself through the re-execution.
const (
	// envReexec marks the re-executed process, so that a failure to end up
	// as root of RootlessKit's user namespace is reported instead of
	// re-executing again.
	envReexec = "_KILN_ROOTLESS_REEXEC"
	// envWorkDir is the working directory to restore: joining a mount
	// namespace resets it to the namespace's root.
	envWorkDir = "_KILN_ROOTLESS_WD"
)

// Enter runs the rest of kiln inside the namespaces of the user's rootless
// containerd. Called by an unprivileged user's kiln whose RootlessKit runs,
// it replaces the process with nsenter(1), which joins RootlessKit's user
// and mount namespaces (and its network namespace unless RootlessKit shares
// or detaches the host's) and executes kiln again with the same arguments,
// environment and standard streams; it returns only on failure. In the
// re-executed kiln it restores the working directory and returns nil. It
// also returns nil, doing nothing, as root, inside any RootlessKit, and when
// the user has no rootless containerd: commands then explain that when they
// connect (see SocketMissing).
//
// Call it first thing in main, before anything depends on the working
// directory or on being root.
func Enter() error {
	// The marker counts only inside a user namespace, where nsenter put
	// the re-executed kiln: inherited by a kiln on the host it is dropped.
	if os.Getenv(envReexec) != "" {
		wd := os.Getenv(envWorkDir)
		os.Unsetenv(envReexec)
		os.Unsetenv(envWorkDir)
		if !InUserNamespace() {
			return Enter()
		}
		if !Child() {
			return fmt.Errorf("kiln joined the namespaces of the rootless containerd (state in %s) but is not root there (uid %d): RootlessKit must map your uid to root, as it does by default", StateDir(), os.Geteuid())
		}
		if wd != "" {
			if err := os.Chdir(wd); err != nil {
				return fmt.Errorf("the working directory %s is not visible inside the rootless containerd's mount namespace: run kiln from a directory under your home directory: %w", wd, err)
			}
		}
		return nil
	}
	if !Parent() {
		return nil
	}
	kit, err := Find()
	if errors.Is(err, ErrNotRunning) {
		return nil
	}
	if err != nil {
		return err
	}
	return kit.reexec()
}

// reexec replaces the process with nsenter running kiln again inside k's
// namespaces. The options are those util-linux and busybox nsenter share.
func (k *Kit) reexec() error {
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		if _, serr := os.Stat("/usr/bin/nsenter"); serr != nil {
			return fmt.Errorf("kiln needs nsenter to join the namespaces of your rootless containerd: install the util-linux package: %w", err)
		}
		nsenter = "/usr/bin/nsenter"
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding kiln's own executable to run it inside the rootless containerd's namespaces: %w", err)
	}
	args := []string{"nsenter", "-t", strconv.Itoa(k.ChildPID), "-U", "--preserve-credentials", "-m"}
	if k.DetachedNetNS == "" && !k.SharesNetwork {
		args = append(args, "-n")
	}
	args = append(args, "-F", "--", self)
	args = append(args, os.Args[1:]...)

	set := map[string]string{
		envReexec:     "1",
		envStateDir:   k.StateDir,
		envParentEUID: strconv.Itoa(os.Geteuid()),
		envParentEGID: strconv.Itoa(os.Getegid()),
	}
	if wd, err := os.Getwd(); err == nil {
		set[envWorkDir] = wd
	}
	env := withEnv(os.Environ(), set)
	if err := syscall.Exec(nsenter, args, env); err != nil {
		return fmt.Errorf("running %s to join the namespaces of the rootless containerd (pid %d): %w", nsenter, k.ChildPID, err)
	}
	return nil // not reached
}

// withEnv returns env with the variables in set replaced or added.
func withEnv(env []string, set map[string]string) []string {
	out := make([]string, 0, len(env)+len(set))
	for _, kv := range env {
		key, _, _ := strings.Cut(kv, "=")
		if _, ok := set[key]; !ok {
			out = append(out, kv)
		}
	}
	for _, key := range slices.Sorted(maps.Keys(set)) {
		out = append(out, key+"="+set[key])
	}
	return out
}
