package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	runc "github.com/containerd/go-runc"
	"github.com/moby/buildkit/executor"
	"github.com/moby/buildkit/executor/oci"
	"github.com/moby/buildkit/executor/resources"
	"github.com/moby/buildkit/executor/runcexecutor"
	"github.com/moby/buildkit/solver/pb"
	"github.com/moby/buildkit/util/network"
	"github.com/moby/buildkit/worker/containerd"

	"github.com/kiln-build/kiln/rootless"
)

// newRuncExecutor returns BuildKit's runc executor, as its OCI worker has
// it, with its bundles under workerRoot/executor: each step is a runc child
// of the kiln process. opt gives the rootless mode and cgroup parent; the
// rest is set here.
func newRuncExecutor(workerRoot string, opt runcexecutor.Opt, np map[pb.NetMode]network.Provider, proxy network.ProxyProvider) (executor.Executor, *resources.Monitor, error) {
	monitor, err := resources.NewMonitor()
	if err != nil {
		return nil, nil, fmt.Errorf("starting BuildKit's runc executor: %w", err)
	}
	opt.Root = filepath.Join(workerRoot, "executor")
	// The sweep after a killed kiln (sweepRuncSteps) asks this runc for
	// the steps it left; BuildKit would prefer a buildkit-runc.
	if len(opt.CommandCandidates) == 0 {
		opt.CommandCandidates = []string{"runc"}
	}
	opt.ProcessMode = oci.ProcessSandbox
	opt.ResourceMonitor = monitor
	opt.ProxyProvider = proxy
	exe, err := runcexecutor.New(opt, np)
	if err != nil {
		return nil, nil, fmt.Errorf("starting BuildKit's runc executor: %w", err)
	}
	return exe, monitor, nil
}

// newRuncStepExecutor is newRuncExecutor for a worker on containerd, with
// the worker's options.
func newRuncStepExecutor(workerOpts containerd.WorkerOptions, workerRoot string, np map[pb.NetMode]network.Provider, proxy network.ProxyProvider) (executor.Executor, *resources.Monitor, error) {
	return newRuncExecutor(workerRoot, runcexecutor.Opt{
		DefaultCgroupParent: workerOpts.CgroupParent,
		DNS:                 workerOpts.DNS,
		ApparmorProfile:     workerOpts.ApparmorProfile,
		SELinux:             workerOpts.Selinux,
		TracingSocket:       workerOpts.TraceSocket,
		CDIManager:          workerOpts.CDIManager,
	}, np, proxy)
}

// stepsRunc returns the runc a worker on containerd runs build steps with
// itself rather than as containerd tasks, or "" when steps stay tasks. A task costs a
// shim process (started, connected to and stopped for every step) and
// containerd's bookkeeping: about 0.2 s per step, half of a short step's
// time (BENCHMARKS.md). Running runc directly needs what containerd's shim
// otherwise provides: root in the initial user namespace, to mount the
// step's snapshot and set up its cgroup. With a rootless containerd, or as a
// user who may only talk to containerd's socket, steps stay containerd's
// tasks.
func stepsRunc(rootlessMode bool) string {
	if rootlessMode || os.Geteuid() != 0 || rootless.InUserNamespace() {
		return ""
	}
	p, _ := exec.LookPath("runc")
	return p
}

// sweepRuncSteps removes what a killed kiln process left in the directory
// root of a worker whose steps runc ran (see newRuncExecutor): the runc
// containers of the step bundles there, their state, and mounts under it
// (step root filesystems, cache mounts). The caller holds the state
// directory's lock, so no live kiln process uses them, and root is a worker
// directory of kiln's (see isWorkerDir) in a state directory of kiln's (see
// claimRoot).
func sweepRuncSteps(ctx context.Context, root string, stderr io.Writer) error {
	abs, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	if resolved, err := filepath.EvalSymlinks(abs); err == nil {
		abs = resolved
	}
	// BuildKit's runc executor names each step's bundle directory after its
	// container; the directory outlives a killed kiln.
	bundles := filepath.Join(abs, "executor")
	entries, _ := os.ReadDir(bundles)
	var ids []string
	for _, ent := range entries {
		switch {
		case ent.IsDir() && executor.ValidContainerID(ent.Name()) == nil:
			// Only names the executor gives its containers: ids are
			// passed to runc and name its state directories below.
			ids = append(ids, ent.Name())
		case ent.Type().IsRegular() && strings.HasPrefix(ent.Name(), "hosts."):
			// A step's /etc/hosts with --add-host entries.
			os.Remove(filepath.Join(bundles, ent.Name()))
		}
	}
	n := 0
	r := &runc.Runc{Command: "runc"}
	for _, id := range ids {
		r.Kill(ctx, id, int(syscall.SIGKILL), &runc.KillOpts{All: true})
		if err := r.Delete(ctx, id, &runc.DeleteOpts{Force: true}); err == nil {
			n++
		}
	}
	m, err := unmountUnder(abs)
	if err != nil {
		return fmt.Errorf("removing the mounts an interrupted kiln left under %s: %w; unmount them (\"umount -R %s\") and retry", abs, err, abs)
	}
	if m > 0 {
		fmt.Fprintf(stderr, "removed %d mount(s) left by an interrupted kiln\n", m)
	}
	for _, id := range ids {
		// runc leaves a state directory without state.json (at most its
		// exec.fifo) when it dies while creating the container.
		state := filepath.Join(runcStateDir(), id)
		if _, err := os.Stat(filepath.Join(state, "state.json")); errors.Is(err, fs.ErrNotExist) {
			os.RemoveAll(state)
		}
		if err := os.RemoveAll(filepath.Join(bundles, id)); err != nil {
			return fmt.Errorf("removing the build step bundle %s left by an interrupted kiln: %w", filepath.Join(bundles, id), err)
		}
	}
	if n > 0 {
		fmt.Fprintf(stderr, "removed %d build step container(s) left by an interrupted kiln\n", n)
	}
	return nil
}

// runcStateDir is where runc keeps its containers' state when run without
// --root, as BuildKit's executor runs it: $XDG_RUNTIME_DIR/runc in a user
// namespace (as an unprivileged user), /run/runc otherwise.
func runcStateDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" && rootless.InUserNamespace() {
		return filepath.Join(d, "runc")
	}
	return "/run/runc"
}
