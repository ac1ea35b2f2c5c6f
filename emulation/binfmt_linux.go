package emulation

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// DefaultBinfmtDir is where binfmt_misc is mounted on Linux systems.
const DefaultBinfmtDir = "/proc/sys/fs/binfmt_misc"

var (
	dirMu sync.Mutex
	// binfmtDir is where this process reads and registers handlers. It
	// differs from DefaultBinfmtDir only when kiln had to mount its user
	// namespace's instance elsewhere (see openRegistry).
	binfmtDir = DefaultBinfmtDir
)

// BinfmtDir returns the binfmt_misc directory this process reads and writes
// handlers in (normally /proc/sys/fs/binfmt_misc).
func BinfmtDir() string {
	dirMu.Lock()
	defer dirMu.Unlock()
	return binfmtDir
}

// ReadHandlers returns the handlers registered in the binfmt_misc directory
// dir. mounted is false when no binfmt_misc is mounted there.
func ReadHandlers(dir string) (handlers []Handler, mounted bool, err error) {
	if _, err := os.Stat(filepath.Join(dir, "register")); err != nil {
		return nil, false, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, true, fmt.Errorf("listing binfmt_misc handlers in %s: %w", dir, err)
	}
	for _, e := range entries {
		if e.Name() == "register" || e.Name() == "status" {
			continue
		}
		h, err := readHandler(dir, e.Name())
		if errors.Is(err, fs.ErrNotExist) { // removed meanwhile
			continue
		}
		if err != nil {
			return nil, true, err
		}
		handlers = append(handlers, h)
	}
	return handlers, true, nil
}

func readHandler(dir, name string) (Handler, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return Handler{}, fmt.Errorf("reading binfmt_misc handler %s: %w", name, err)
	}
	return parseHandler(name, string(b))
}

// writeFile writes s in a single write(2), as binfmt_misc requires, to an
// existing file.
func writeFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, werr := f.Write([]byte(s))
	cerr := f.Close()
	if werr != nil {
		return werr
	}
	return cerr
}

// registry is a binfmt_misc instance kiln can write to.
type registry struct {
	dir string
	// userNS is true when the instance is the current (non-initial) user
	// namespace's own, so handlers registered there serve only it.
	userNS bool
}

func (r *registry) register(line string) error {
	return writeFile(filepath.Join(r.dir, "register"), line)
}

func (r *registry) remove(name string) error {
	return writeFile(filepath.Join(r.dir, name), "-1")
}

// InUserNamespace reports whether the process runs in a user namespace other
// than the initial one (rootless containers, "unshare -U", RootlessKit).
func InUserNamespace() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	return !isInitialUIDMap(string(b))
}

func isInitialUIDMap(s string) bool {
	f := strings.Fields(s)
	return len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295"
}

// kernelVersion returns the running kernel's release and major/minor numbers.
func kernelVersion() (release string, major, minor int) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown", 0, 0
	}
	release = unix.ByteSliceToString(u.Release[:])
	major, minor = parseKernelRelease(release)
	return release, major, minor
}

func parseKernelRelease(release string) (major, minor int) {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return 0, 0
	}
	major, _ = strconv.Atoi(parts[0])
	digits := parts[1]
	if i := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		digits = digits[:i]
	}
	minor, _ = strconv.Atoi(digits)
	return major, minor
}

// userNamespaceBinfmtSupported reports whether the kernel gives each user
// namespace its own binfmt_misc (Linux 6.7, "binfmt_misc: enable sandboxed
// mounts").
func userNamespaceBinfmtSupported() (bool, string) {
	release, major, minor := kernelVersion()
	return major > 6 || (major == 6 && minor >= 7), release
}

const mountFlags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

// openRegistry returns a binfmt_misc instance kiln may register handlers in,
// mounting one when needed, and the handlers it copied into a fresh user
// namespace instance (see ownInstance).
//
// In the initial user namespace that is the host's instance at
// /proc/sys/fs/binfmt_misc, mounted there first if it is not (as systemd
// would); only root may write it. In any other user namespace it is that
// namespace's own instance (Linux >= 6.7), never the parent's: writing the
// parent's would change the host, and a process that is root only inside
// its namespace is not allowed to anyway.
func openRegistry() (*registry, []Action, error) {
	if !InUserNamespace() {
		dir := DefaultBinfmtDir
		if _, mounted, _ := ReadHandlers(dir); !mounted {
			if os.Geteuid() != 0 {
				return nil, nil, fmt.Errorf("%w (binfmt_misc is not even mounted at %s)", ErrNeedsRoot, dir)
			}
			if err := unix.Mount("binfmt_misc", dir, "binfmt_misc", mountFlags, ""); err != nil {
				if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) {
					return nil, nil, fmt.Errorf("mounting binfmt_misc at %s: %w (the kernel lacks binfmt_misc: load it with \"modprobe binfmt_misc\")", dir, err)
				}
				return nil, nil, fmt.Errorf("mounting binfmt_misc at %s: %w", dir, err)
			}
		}
		f, err := os.OpenFile(filepath.Join(dir, "register"), os.O_WRONLY, 0)
		if err != nil {
			if errors.Is(err, fs.ErrPermission) {
				return nil, nil, ErrNeedsRoot
			}
			return nil, nil, fmt.Errorf("opening binfmt_misc's register file: %w", err)
		}
		f.Close()
		return &registry{dir: dir}, nil, nil
	}
	if ok, release := userNamespaceBinfmtSupported(); !ok {
		return nil, nil, fmt.Errorf("%w (this kernel is %s)", ErrKernelTooOld, release)
	}
	return ownInstance()
}

// ownInstance makes the current user namespace's binfmt_misc instance
// available at /proc/sys/fs/binfmt_misc in the current mount namespace.
//
// What works (verified on Linux 6.18 as an unprivileged user under
// "unshare -Urm", no --mount-proc needed):
//   - mounting binfmt_misc needs CAP_SYS_ADMIN over the mount namespace, so
//     the mount namespace must belong to the user namespace ("unshare -Ur"
//     alone, without -m, gets EPERM);
//   - the new superblock is keyed by the mounter's user namespace: every
//     mount of binfmt_misc in the same user namespace shows the same
//     handlers, and those serve that namespace and its children;
//   - mounting it over /proc/sys/fs/binfmt_misc works on the host's /proc
//     as inherited by "unshare -Urm" (whether or not the host has binfmt_misc
//     mounted there) and on a fresh /proc ("unshare -Urmpf --mount-proc";
//     --mount-proc without -p fails in unshare itself, since proc can only
//     be mounted by the owner of a PID namespace), so tools reading the
//     usual path see the namespace's handlers;
//   - once a user namespace has its own instance, the kernel stops using the
//     parent's handlers for it. ownInstance therefore copies the handlers
//     that were visible before into the new instance, so what already ran
//     keeps running.
//
// To tell whether /proc/sys/fs/binfmt_misc already shows this namespace's
// instance, ownInstance mounts the instance on a private temporary directory
// and compares device numbers (one superblock, one device).
func ownInstance() (*registry, []Action, error) {
	tmp, err := os.MkdirTemp("", "kiln-binfmt-")
	if err != nil {
		return nil, nil, fmt.Errorf("creating a mount point for binfmt_misc: %w", err)
	}
	if err := unix.Mount("binfmt_misc", tmp, "binfmt_misc", mountFlags, ""); err != nil {
		os.Remove(tmp)
		return nil, nil, fmt.Errorf("mounting binfmt_misc in this user namespace (kiln must own the mount namespace too, as after \"unshare -Urm\"): %w", err)
	}
	cleanup := func() {
		_ = unix.Unmount(tmp, unix.MNT_DETACH)
		_ = os.Remove(tmp)
	}
	if sameDevice(tmp, DefaultBinfmtDir) {
		cleanup()
		setBinfmtDir(DefaultBinfmtDir)
		return &registry{dir: DefaultBinfmtDir, userNS: true}, nil, nil
	}
	// Handlers visible before: the parent's, which served this namespace
	// until the instance existed.
	before, _, _ := ReadHandlers(DefaultBinfmtDir)
	dir := DefaultBinfmtDir
	if err := unix.Mount("binfmt_misc", dir, "binfmt_misc", mountFlags, ""); err != nil {
		// Keep the private mount; it lives as long as the mount namespace.
		dir = tmp
	} else {
		cleanup()
	}
	setBinfmtDir(dir)
	r := &registry{dir: dir, userNS: true}
	return r, r.inherit(before), nil
}

// inherit registers the enabled handlers in hs that the instance lacks.
// Failures are reported as skipped actions: they only mean a platform that
// ran through the parent's handler must be registered again.
func (r *registry) inherit(hs []Handler) []Action {
	have, _, _ := ReadHandlers(r.dir)
	names := map[string]bool{}
	for _, h := range have {
		names[h.Name] = true
	}
	var actions []Action
	for _, h := range hs {
		if !h.Enabled || names[h.Name] {
			continue
		}
		a := Action{Handler: h.Name, Interpreter: h.Interpreter, Flags: h.Flags, UserNamespace: true, Platforms: platformsOfHandler(h)}
		if err := r.register(h.registerLine()); err != nil {
			a.Result = Skipped
			a.Reason = fmt.Sprintf("could not copy it into this user namespace: %v", err)
		} else {
			a.Result = Inherited
		}
		actions = append(actions, a)
	}
	return actions
}

func setBinfmtDir(dir string) {
	dirMu.Lock()
	binfmtDir = dir
	dirMu.Unlock()
}

func sameDevice(a, b string) bool {
	var sa, sb unix.Stat_t
	if unix.Stat(a, &sa) != nil || unix.Stat(b, &sb) != nil {
		return false
	}
	return sa.Dev == sb.Dev
}

// platformsOfHandler names the table platforms whose programs h claims.
func platformsOfHandler(h Handler) []string {
	var out []string
	for _, a := range table {
		if h.Matches(probeHeaderOr(a)) {
			out = append(out, a.String())
		}
	}
	return out
}
