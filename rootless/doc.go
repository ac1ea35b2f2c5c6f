// Package rootless runs kiln as an unprivileged user against that user's
// rootless containerd.
//
// A rootless containerd lives inside namespaces that RootlessKit creates: a
// user namespace that maps the user to root and their subordinate ids to
// the rest, a mount namespace in which its snapshots are mounted, and
// (unless RootlessKit runs with --net=host or a detached network namespace)
// a network namespace. RootlessKit records its state, including the pid of
// the child process whose namespaces those are, in
// $XDG_RUNTIME_DIR/containerd-rootless (containerd-rootless.sh and kiln's
// hack/rootless-containerd.sh both use that directory).
//
// BuildKit mounts snapshots itself and must do so where containerd's shim
// sees them, so kiln's build runs inside those namespaces. A Go process
// cannot join a user namespace once it runs several threads, and the Go
// runtime starts them before main, so Enter re-executes kiln through
// nsenter(1), which joins the namespaces and then executes kiln again. The
// process is replaced, not forked: arguments, environment, standard
// streams, the terminal and the exit status are kiln's own. The working
// directory is passed along and restored by the re-executed kiln, because
// joining a mount namespace resets it to "/".
//
// Inside, kiln is root of RootlessKit's user namespace (Child reports it);
// files it creates belong to the user on the host. Paths default to the
// XDG directories nerdctl uses: state in $XDG_DATA_HOME/kiln, containerd's
// socket at $XDG_RUNTIME_DIR/containerd/containerd.sock.
package rootless
