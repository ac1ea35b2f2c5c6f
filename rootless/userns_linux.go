package rootless

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// envOwn carries kiln through the steps of entering namespaces of its own:
// "wait" in the new process until the parent has mapped its ids, "ready"
// after it executed itself again as root of the user namespace.
const envOwn = "_KILN_OWN_USERNS"

// syncFD is the pipe on which the new process waits for its id maps: the
// first of cmd.ExtraFiles.
const syncFD = 3

// RunInOwnNamespaces runs kiln again, with the same arguments, environment
// and standard streams, as root of a user namespace of its own that maps
// the user to root and their subordinate ids (from /etc/subuid and
// /etc/subgid, mapped with newuidmap and newgidmap) to the ids above, in a
// mount namespace of its own: there kiln's embedded store can mount
// snapshots and runc can run build steps without root and without any
// containerd. It returns the exit status to exit with: the new process's,
// or 128+N when a signal N ended it. Signals kiln receives meanwhile are
// passed on.
//
// The new process sees itself as RootlessKit's child does (ROOTLESSKIT_
// PARENT_EUID set, see Child), so paths stay the user's.
func RunInOwnNamespaces() (int, error) {
	uid, gid := os.Geteuid(), os.Getegid()
	h := newHost()
	uidMap, gidMap, problems := h.idMaps(uid, gid)
	if len(problems) > 0 {
		return 0, ownNamespaceError(problems)
	}
	self, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("finding kiln's own executable to run it in a user namespace: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer w.Close()
	set := map[string]string{
		envOwn:        "wait",
		envParentEUID: strconv.Itoa(uid),
		envParentEGID: strconv.Itoa(gid),
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{r}
	cmd.Env = withEnv(os.Environ(), set)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWUSER | unix.CLONE_NEWNS,
		// The new process dies with this one; Pdeathsig belongs to the
		// thread that started it, which must therefore stay.
		Pdeathsig: syscall.SIGKILL,
	}
	runtime.LockOSThread()
	// Signals are passed on from here; until the new process runs they
	// wait in the channel.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		r.Close()
		problems := h.checkUserNamespaces()
		return 0, ownNamespaceError(append([]error{fmt.Errorf("creating a user namespace: %w", err)}, problems...))
	}
	r.Close()
	pid := strconv.Itoa(cmd.Process.Pid)
	for _, m := range []struct{ prog, ids string }{{"newuidmap", uidMap}, {"newgidmap", gidMap}} {
		args := append([]string{pid}, strings.Fields(m.ids)...)
		if out, err := exec.Command(m.prog, args...).CombinedOutput(); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return 0, ownNamespaceError([]error{fmt.Errorf("%s %s failed: %w: %s", m.prog, strings.Join(args, " "), err, strings.TrimSpace(string(out)))})
		}
	}
	w.Close() // the new process goes on

	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case s := <-sigs:
			cmd.Process.Signal(s)
		case err := <-done:
			var exit *exec.ExitError
			switch {
			case err == nil:
				return 0, nil
			case errors.As(err, &exit):
				if st, ok := exit.Sys().(syscall.WaitStatus); ok && st.Signaled() {
					return 128 + int(st.Signal()), nil
				}
				return exit.ExitCode(), nil
			}
			return 0, fmt.Errorf("running kiln in its user namespace: %w", err)
		}
	}
}

// ownNamespaceError says why kiln could not make its user namespace, and
// what to do.
func ownNamespaceError(problems []error) error {
	msgs := make([]string, len(problems))
	for i, p := range problems {
		msgs[i] = p.Error()
	}
	return fmt.Errorf("kiln builds without root and without containerd in a user namespace of its own, which it cannot create: %s; or run kiln as root, or use a rootless containerd", strings.Join(msgs, "; "))
}

// idMaps returns the arguments of newuidmap and newgidmap after the pid:
// the user to root, and the first 65536 (or fewer) of their subordinate
// ids to 1 and up. problems say what is missing.
func (h *host) idMaps(uid, gid int) (uidMap, gidMap string, problems []error) {
	problems = append(problems, h.checkIDMaps()...)
	problems = append(problems, h.checkSubIDs()...)
	if len(problems) > 0 {
		return "", "", problems
	}
	one := func(file string, id int) (string, error) {
		ranges, err := readSubIDs(h.path(file))
		if err != nil {
			return "", fmt.Errorf("reading %s: %w", file, err)
		}
		for _, r := range ranges {
			if r.owner == h.user || r.owner == strconv.Itoa(h.uid) {
				n := min(r.count, minSubIDs)
				return fmt.Sprintf("0 %d 1 1 %d %d", id, r.start, n), nil
			}
		}
		return "", fmt.Errorf("%s has no subordinate range for %s", file, h.user)
	}
	var err error
	if uidMap, err = one("/etc/subuid", uid); err != nil {
		problems = append(problems, err)
	}
	if gidMap, err = one("/etc/subgid", gid); err != nil {
		problems = append(problems, err)
	}
	return uidMap, gidMap, problems
}

// FinishOwnNamespaces completes RunInOwnNamespaces in the new process; call
// it first thing in main. Waiting for the id maps, the process is not yet
// root there, and a process gains its capabilities in a user namespace only
// when it executes a program as root: so it executes kiln again, and that
// kiln makes every mount private to its mount namespace, so that nothing it
// mounts reaches the host. Elsewhere it does nothing.
//
// The marker in the environment is not trusted alone: anyone can set it,
// and a root kiln that believed it would make every mount of the host
// private. It counts only in namespaces as RunInOwnNamespaces makes them
// (see inOwnNamespaces); otherwise it is dropped and kiln runs as it would
// without it.
func FinishOwnNamespaces() error {
	stage := os.Getenv(envOwn)
	if stage == "" {
		return nil
	}
	os.Unsetenv(envOwn)
	own, err := inOwnNamespaces(os.Getppid())
	if err != nil {
		return fmt.Errorf("%s=%s is set, but kiln cannot tell whether it runs in namespaces it made: %w", envOwn, stage, err)
	}
	if !own {
		return nil
	}
	switch stage {
	case "wait":
		sync := os.NewFile(syncFD, "kiln-userns-sync")
		if fi, err := sync.Stat(); err != nil || fi.Mode()&fs.ModeNamedPipe == 0 {
			return fmt.Errorf("kiln's user namespace has no pipe from its parent on descriptor %d", syncFD)
		}
		io.Copy(io.Discard, sync)
		sync.Close()
		if os.Geteuid() != 0 {
			return fmt.Errorf("kiln's user namespace has no id maps (newuidmap did not run): %w", os.ErrPermission)
		}
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding kiln's own executable: %w", err)
		}
		env := withEnv(os.Environ(), map[string]string{envOwn: "ready"})
		if err := syscall.Exec(self, os.Args, env); err != nil {
			return fmt.Errorf("running kiln again as root of its user namespace: %w", err)
		}
		return nil // not reached
	case "ready":
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return fmt.Errorf("making the mounts of kiln's mount namespace private: %w", err)
		}
		inOwn = true
	}
	return nil
}

// inOwn is set once FinishOwnNamespaces has found kiln in namespaces its
// parent made.
var inOwn bool

// InOwnNamespaces reports whether this kiln runs in the user and mount
// namespaces that its parent, another kiln, made with RunInOwnNamespaces:
// the parent waits for it there.
func InOwnNamespaces() bool { return inOwn }

// inOwnNamespaces reports whether the process runs in namespaces as
// RunInOwnNamespaces makes them: a user namespace other than the initial
// one, owning the process's mount namespace, and neither the namespaces of
// the process ppid (its parent). A process that merely inherited the
// marker on the host fails the first test. A parent in an ancestor user
// namespace, as kiln's own is, cannot be looked into (permission denied):
// that counts as different.
func inOwnNamespaces(ppid int) (bool, error) {
	if !InUserNamespace() {
		return false, nil
	}
	if owned, err := mountNamespaceOwned(); err != nil || !owned {
		return false, err
	}
	for _, ns := range []string{"user", "mnt"} {
		self, err := os.Readlink("/proc/self/ns/" + ns)
		if err != nil {
			return false, err
		}
		parent, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", ppid, ns))
		switch {
		case errors.Is(err, fs.ErrPermission):
			continue
		case err != nil:
			return false, err
		case self == parent:
			return false, nil
		}
	}
	return true, nil
}

// mountNamespaceOwned reports whether the process's user namespace owns
// its mount namespace: both were made together (CLONE_NEWUSER|CLONE_NEWNS).
func mountNamespaceOwned() (bool, error) {
	mnt, err := os.Open("/proc/self/ns/mnt")
	if err != nil {
		return false, err
	}
	defer mnt.Close()
	fd, err := unix.IoctlRetInt(int(mnt.Fd()), unix.NS_GET_USERNS)
	if err != nil {
		return false, fmt.Errorf("asking for the owner of kiln's mount namespace: %w", err)
	}
	defer unix.Close(fd)
	var owner, self unix.Stat_t
	if err := unix.Fstat(fd, &owner); err != nil {
		return false, err
	}
	if err := unix.Stat("/proc/self/ns/user", &self); err != nil {
		return false, err
	}
	return owner.Dev == self.Dev && owner.Ino == self.Ino, nil
}

// UserNamespaceMap describes the user namespace kiln runs in, for kiln
// info: which host ids are root and the others. Empty outside one.
func UserNamespaceMap() string {
	if !InUserNamespace() {
		return ""
	}
	var parts []string
	for _, kind := range []string{"uid", "gid"} {
		b, err := os.ReadFile("/proc/self/" + kind + "_map")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			f := strings.Fields(line)
			if len(f) != 3 {
				continue
			}
			inside, _ := strconv.Atoi(f[0])
			host, _ := strconv.Atoi(f[1])
			n, _ := strconv.Atoi(f[2])
			if n == 1 {
				parts = append(parts, fmt.Sprintf("host %s %d is %d", kind, host, inside))
			} else {
				parts = append(parts, fmt.Sprintf("host %ss %d-%d are %d-%d", kind, host, host+n-1, inside, inside+n-1))
			}
		}
	}
	return strings.Join(parts, ", ")
}

// EnsureRuntimeDir makes $XDG_RUNTIME_DIR name a directory the process
// can write: inside a user namespace runc keeps its containers' state in
// $XDG_RUNTIME_DIR/runc, and a user without a login session has none. It
// then points it at RunDir, which stays kiln's runtime directory for the
// rest of the process.
func EnsureRuntimeDir() error {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() && unix.Access(d, unix.W_OK) == nil {
			return nil
		}
	}
	dir, err := RunDir()
	if err != nil {
		return err
	}
	runDirSet = dir
	return os.Setenv("XDG_RUNTIME_DIR", dir)
}
