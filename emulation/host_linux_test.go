package emulation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/platforms"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// These tests change the host's binfmt_misc handlers, which are global: they
// run as subtests of one test (never in parallel) and restore what the host
// had before.
//
// Environment:
//   - they need root in the initial user namespace and qemu-user-static;
//   - KILN_TEST_BUSYBOX_ARM64 may name an arm64 busybox (Debian's
//     busybox-static for arm64, unpacked with dpkg -x) to run as well.

const (
	childEnv   = "KILN_EMULATION_TEST_CHILD" // "inner" or "outer"
	helperEnv  = "KILN_EMULATION_TEST_UNAME" // the foreign uname program
	busyboxEnv = "KILN_TEST_BUSYBOX_ARM64"
)

// foreign is the platform the round trip emulates: linux/arm64, or
// linux/amd64 on arm64 hosts. fa is its table row; uname -m prints
// fa.QEMUArch under QEMU.
var foreign, fa = func() (ocispecs.Platform, Arch) {
	p := ocispecs.Platform{OS: "linux", Architecture: "arm64"}
	if HostPlatform().Architecture == "arm64" {
		p.Architecture = "amd64"
	}
	a, _ := LookupArch(p)
	return p, a
}()

var pf = platforms.Format(foreign)

func requireRootAndQEMU(t *testing.T) {
	t.Helper()
	if os.Getenv(childEnv) != "" {
		t.Skip("running as a helper process")
	}
	if os.Geteuid() != 0 || InUserNamespace() {
		t.Skip("changing the host's binfmt_misc handlers needs root in the initial user namespace")
	}
	if _, err := Interpreter(fa.QEMUArch); err != nil {
		t.Skipf("QEMU is missing (%v)", err)
	}
}

// hostSnapshot is the host's binfmt_misc state for the table's handlers.
type hostSnapshot struct {
	mounted  bool
	handlers map[string]Handler
}

func snapshotHost(t *testing.T) hostSnapshot {
	t.Helper()
	hs, mounted, err := ReadHandlers(DefaultBinfmtDir)
	if err != nil {
		t.Fatal(err)
	}
	s := hostSnapshot{mounted: mounted, handlers: map[string]Handler{}}
	for _, h := range hs {
		s.handlers[h.Name] = h
	}
	return s
}

// restore puts every table handler back as it was: removes what the tests
// added and registers again (same pattern, interpreter, flags, enabled
// state) what they removed or replaced.
func (s hostSnapshot) restore(t *testing.T) {
	t.Helper()
	defer invalidateProbes()
	names := map[string]bool{}
	for _, a := range table {
		names[a.Handler()] = true
	}
	for name := range s.handlers {
		names[name] = true
	}
	for name := range names {
		old, had := s.handlers[name]
		cur, err := readHandler(DefaultBinfmtDir, name)
		exists := err == nil
		if had && exists && fmt.Sprint(cur) == fmt.Sprint(old) {
			continue
		}
		if exists {
			if err := writeFile(filepath.Join(DefaultBinfmtDir, name), "-1"); err != nil {
				t.Errorf("restoring: removing %s: %v", name, err)
			}
		}
		if had {
			if err := writeFile(filepath.Join(DefaultBinfmtDir, "register"), old.registerLine()); err != nil {
				t.Errorf("restoring: registering %s again: %v", name, err)
				continue
			}
			if !old.Enabled {
				if err := writeFile(filepath.Join(DefaultBinfmtDir, name), "0"); err != nil {
					t.Errorf("restoring: disabling %s: %v", name, err)
				}
			}
		}
	}
	if !s.mounted {
		if _, mounted, _ := ReadHandlers(DefaultBinfmtDir); mounted {
			if err := unix.Unmount(DefaultBinfmtDir, 0); err != nil {
				t.Errorf("restoring: unmounting binfmt_misc: %v", err)
			}
		}
	}
	if after := snapshotHost(t); fmt.Sprint(after) != fmt.Sprint(s) {
		t.Errorf("host binfmt_misc not restored:\nbefore %+v\nafter  %+v", s, after)
	}
}

// buildUname cross-compiles testdata/uname for goarch into dir.
func buildUname(t *testing.T, goarch, dir string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go command is needed to build the %s test program: %v", goarch, err)
	}
	out := filepath.Join(dir, "uname-"+goarch)
	cmd := exec.Command(goTool, "build", "-o", out, "./testdata/uname")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the %s uname program: %v\n%s", goarch, err, b)
	}
	return out
}

// runMachine runs a program printing uname -m and returns its output.
func runMachine(prog string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, prog, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func statusOf(t *testing.T, platform string) PlatformStatus {
	t.Helper()
	st, err := Status(context.Background())
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	for _, s := range st {
		if s.Platform == platform {
			return s
		}
	}
	t.Fatalf("Status has no %s row", platform)
	return PlatformStatus{}
}

func TestHostHandlers(t *testing.T) {
	requireRootAndQEMU(t)
	ctx := context.Background()
	snap := snapshotHost(t)
	t.Cleanup(func() { snap.restore(t) })

	dir, err := os.MkdirTemp("", "kiln-emulation-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil { // readable by the unprivileged child
		t.Fatal(err)
	}
	uname := buildUname(t, foreign.Architecture, dir)
	interp, err := Interpreter(fa.QEMUArch)
	if err != nil {
		t.Fatal(err)
	}
	host := HostPlatform()

	// Start from a host with no working handler for the foreign platform.
	if _, err := Uninstall(ctx, []ocispecs.Platform{foreign}); err != nil {
		t.Fatalf("Uninstall: %v", err)
	}
	if err := probe(ctx, foreign.Architecture); err == nil {
		t.Skipf("%s programs run through a handler kiln does not manage; cannot test from a clean state", pf)
	}

	t.Run("ensure without auto explains", func(t *testing.T) {
		rep, err := Ensure(ctx, []ocispecs.Platform{host, foreign}, false)
		if !errors.Is(err, ErrNoHandler) {
			t.Fatalf("Ensure error %v, want ErrNoHandler", err)
		}
		want := fmt.Sprintf(`platform %s cannot run on this host: no binfmt_misc handler runs its programs`, pf)
		if ie := installError(err); err.Error() != want || ie == nil || ie.NeedsRoot || strings.Join(ie.Platforms, ",") != pf {
			t.Errorf("error\n got %s (%+v)\nwant %s", err, ie, want)
		}
		if len(rep.Runnable) != 1 || platforms.Format(rep.Runnable[0]) != platforms.Format(host) || len(rep.Registered) != 0 {
			t.Errorf("report %+v", rep)
		}
	})

	t.Run("status installable", func(t *testing.T) {
		got := statusOf(t, pf)
		want := PlatformStatus{Platform: pf, State: StateInstallable, Interpreter: interp}
		checkStatus(t, got, want)
		checkStatus(t, statusOf(t, platforms.Format(host)), PlatformStatus{Platform: platforms.Format(host), State: StateNative})
	})

	t.Run("install", func(t *testing.T) {
		actions, err := Install(ctx, []ocispecs.Platform{foreign, host})
		if err != nil {
			t.Fatalf("Install: %v", err)
		}
		if len(actions) != 2 {
			t.Fatalf("actions %v", actions)
		}
		want := Action{Result: Registered, Platforms: []string{pf}, Handler: fa.Handler(), Interpreter: interp, Flags: "FP"}
		if fmt.Sprint(actions[1]) != fmt.Sprint(want) {
			t.Errorf("action\n got %+v\nwant %+v", actions[1], want)
		}
		if actions[0].Result != Skipped || actions[0].Reason != "native platform" {
			t.Errorf("host platform action %+v, want skipped as native", actions[0])
		}
		h, err := readHandler(DefaultBinfmtDir, fa.Handler())
		if err != nil {
			t.Fatal(err)
		}
		if !h.Enabled || h.Interpreter != interp || !strings.Contains(h.Flags, "F") || !strings.Contains(h.Flags, "P") {
			t.Errorf("registered handler %+v", h)
		}
		if _, err := readHandler(DefaultBinfmtDir, "qemu-"+archOf(t, host).QEMUArch); err == nil {
			t.Errorf("a handler for the native architecture exists")
		}
		out, err := runMachine(uname)
		if err != nil || out != fa.QEMUArch {
			t.Errorf("%s uname program: %q, %v; want %s", pf, out, err, fa.QEMUArch)
		}
		if bb := os.Getenv(busyboxEnv); bb != "" && foreign.Architecture == "arm64" {
			out, err := runMachine(bb, "uname", "-m")
			if err != nil || out != fa.QEMUArch {
				t.Errorf("arm64 busybox uname -m: %q, %v; want aarch64", out, err)
			}
		} else {
			t.Logf("%s not set: arm64 busybox not run", busyboxEnv)
		}
		// F: the interpreter need not be reachable, as in a container.
		cmd := exec.Command("/uname-" + foreign.Architecture)
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: dir}
		if out, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != fa.QEMUArch {
			t.Errorf("chrooted %s program: %q, %v", pf, out, err)
		}
	})

	t.Run("status emulated", func(t *testing.T) {
		got := statusOf(t, pf)
		want := PlatformStatus{Platform: pf, State: StateEmulated, Handler: fa.Handler(), Interpreter: interp, Flags: "PF"}
		checkStatus(t, got, want)
		if got.Note != "" {
			t.Errorf("note %q", got.Note)
		}
	})

	t.Run("install again skips", func(t *testing.T) {
		actions, err := Install(ctx, []ocispecs.Platform{foreign})
		if err != nil || len(actions) != 1 || actions[0].Result != Skipped || actions[0].Reason != "already runs through handler "+fa.Handler() {
			t.Errorf("actions %+v, %v", actions, err)
		}
		rep, err := Ensure(ctx, []ocispecs.Platform{foreign, host}, false)
		if err != nil || len(rep.Runnable) != 2 || len(rep.Registered) != 0 {
			t.Errorf("Ensure: %+v, %v", rep, err)
		}
	})

	t.Run("uninstall", func(t *testing.T) {
		actions, err := Uninstall(ctx, []ocispecs.Platform{foreign})
		if err != nil || len(actions) != 1 || actions[0].Result != Removed || actions[0].Handler != fa.Handler() {
			t.Fatalf("actions %+v, %v", actions, err)
		}
		if _, err := os.Stat(filepath.Join(DefaultBinfmtDir, fa.Handler())); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("handler still there: %v", err)
		}
		if _, err := runMachine(uname); !errors.Is(err, syscall.ENOEXEC) {
			t.Errorf("%s program after uninstall: %v, want exec format error", pf, err)
		}
		// No stale cached answer.
		checkStatus(t, statusOf(t, pf), PlatformStatus{Platform: pf, State: StateInstallable, Interpreter: interp})
		actions, err = Uninstall(ctx, []ocispecs.Platform{foreign})
		if err != nil || actions[0].Result != Skipped || actions[0].Reason != "not registered" {
			t.Errorf("second uninstall %+v, %v", actions, err)
		}
	})

	t.Run("uninstall leaves non-QEMU handlers", func(t *testing.T) {
		// A handler with kiln's name whose interpreter is not QEMU's.
		other := filepath.Join(dir, "emu-"+fa.QEMUArch)
		b, err := os.ReadFile(interp)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(other, b, 0o755); err != nil {
			t.Fatal(err)
		}
		a := archOf(t, foreign)
		if err := writeFile(filepath.Join(DefaultBinfmtDir, "register"), a.registerLine(other, "F")); err != nil {
			t.Fatal(err)
		}
		defer writeFile(filepath.Join(DefaultBinfmtDir, fa.Handler()), "-1")
		actions, err := Uninstall(ctx, []ocispecs.Platform{foreign})
		if err != nil || actions[0].Result != Skipped || !strings.Contains(actions[0].Reason, "not QEMU's") {
			t.Errorf("actions %+v, %v", actions, err)
		}
		if _, err := readHandler(DefaultBinfmtDir, fa.Handler()); err != nil {
			t.Errorf("non-QEMU handler was removed: %v", err)
		}
	})

	t.Run("install replaces a broken QEMU handler", func(t *testing.T) {
		// Without F the interpreter is not found inside a container.
		a := archOf(t, foreign)
		if err := writeFile(filepath.Join(DefaultBinfmtDir, "register"), a.registerLine(interp, "")); err != nil {
			t.Fatal(err)
		}
		invalidateProbes()
		got := statusOf(t, pf)
		if got.State != StateInstallable || !strings.Contains(got.Note, "registered but fails") {
			t.Errorf("status with a broken handler: %+v", got)
		}
		actions, err := Install(ctx, []ocispecs.Platform{foreign})
		if err != nil || len(actions) != 1 || actions[0].Result != Registered || !strings.Contains(actions[0].Reason, "replaced") {
			t.Fatalf("actions %+v, %v", actions, err)
		}
		if out, err := runMachine(uname); err != nil || out != fa.QEMUArch {
			t.Errorf("%s program: %q, %v", pf, out, err)
		}
		if _, err := Uninstall(ctx, []ocispecs.Platform{foreign}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("ensure auto registers", func(t *testing.T) {
		rep, err := Ensure(ctx, []ocispecs.Platform{host, foreign}, true)
		if err != nil {
			t.Fatalf("Ensure: %v", err)
		}
		if len(rep.Registered) != 1 || platforms.Format(rep.Registered[0]) != pf || len(rep.Runnable) != 1 {
			t.Errorf("report %+v", rep)
		}
		if out, err := runMachine(uname); err != nil || out != fa.QEMUArch {
			t.Errorf("%s program: %q, %v", pf, out, err)
		}
		if _, err := Uninstall(ctx, []ocispecs.Platform{foreign}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("noexec TMPDIR", func(t *testing.T) {
		noexec := filepath.Join(dir, "noexec")
		if err := os.Mkdir(noexec, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("tmpfs", noexec, "tmpfs", unix.MS_NOEXEC, ""); err != nil {
			t.Skipf("mounting a noexec tmpfs: %v", err)
		}
		defer unix.Unmount(noexec, unix.MNT_DETACH)
		t.Setenv("TMPDIR", noexec)
		invalidateProbes()
		defer invalidateProbes()
		_, err := Status(ctx)
		if err == nil || !strings.Contains(err.Error(), "point TMPDIR at a directory mounted without noexec") {
			t.Errorf("Status with a noexec TMPDIR: %v", err)
		}
	})

	// The user namespace tests want a host handler to inherit (qemu-arm) and
	// none for the foreign platform.
	armActions, err := Install(ctx, []ocispecs.Platform{{OS: "linux", Architecture: "arm", Variant: "v7"}})
	if err != nil {
		t.Fatalf("Install linux/arm/v7: %v", err)
	}
	// Whether kiln registered it now or the host had it already, a qemu-arm
	// handler on the host is what the namespace should inherit.
	_, statErr := os.Stat(filepath.Join(DefaultBinfmtDir, "qemu-arm"))
	armOnHost := len(armActions) == 1 && statErr == nil

	t.Run("user namespace", func(t *testing.T) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestUserNamespaceChild$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), childEnv+"=inner", helperEnv+"="+uname, fmt.Sprintf("KILN_TEST_EXPECT_INHERIT=%v", armOnHost))
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
		}
		runChild(t, cmd)
		checkHostUntouched(t, uname)
	})

	t.Run("unprivileged user namespace", func(t *testing.T) {
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			t.Skipf("setpriv (util-linux) is needed to drop to an unprivileged user: %v", err)
		}
		// The test binary must be executable by the unprivileged user.
		self, err := os.ReadFile(os.Args[0])
		if err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(dir, "emulation.test")
		if err := os.WriteFile(bin, self, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
			bin, "-test.run=^TestUserNamespaceChild$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), childEnv+"=outer", helperEnv+"="+uname, fmt.Sprintf("KILN_TEST_EXPECT_INHERIT=%v", armOnHost), "TMPDIR=/tmp")
		cmd.Dir = "/"
		runChild(t, cmd)
		checkHostUntouched(t, uname)
	})
}

func archOf(t *testing.T, p ocispecs.Platform) Arch {
	t.Helper()
	a, err := LookupArch(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func runChild(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("child output:\n%s", out.String())
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	if !strings.Contains(out.String(), "CHILD OK") {
		t.Fatal("child did not report success")
	}
}

// checkHostUntouched: registering in a user namespace left the host as it was.
func checkHostUntouched(t *testing.T, uname string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(DefaultBinfmtDir, fa.Handler())); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the host has a %s handler after the user namespace test (%v)", fa.Handler(), err)
	}
	if _, err := runMachine(uname); !errors.Is(err, syscall.ENOEXEC) {
		t.Errorf("%s program on the host: %v, want exec format error", pf, err)
	}
}

// TestUserNamespaceChild is the helper process of TestHostHandlers' user
// namespace subtests. "outer" runs as an unprivileged user in the initial
// user namespace and starts "inner" in a new user+mount namespace it owns,
// as "unshare -Urm" does; "inner" registers the foreign platform there and runs it.
func TestUserNamespaceChild(t *testing.T) {
	ctx := context.Background()
	switch os.Getenv(childEnv) {
	case "outer":
		if os.Geteuid() == 0 {
			t.Fatal("outer helper runs as root")
		}
		// Without a user namespace: a clear error naming the root command.
		_, err := Install(ctx, []ocispecs.Platform{foreign})
		want := fmt.Sprintf(`platform %s cannot run on this host: registering binfmt_misc handlers on the host needs root`, pf)
		if ie := installError(err); !errors.Is(err, ErrNeedsRoot) || err.Error() != want || ie == nil || !ie.NeedsRoot {
			t.Errorf("unprivileged Install:\n got %v\nwant %s", err, want)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestUserNamespaceChild$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), childEnv+"=inner")
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		}
		out, err := cmd.CombinedOutput()
		t.Logf("inner output:\n%s", out)
		if err != nil || !bytes.Contains(out, []byte("CHILD OK")) {
			t.Fatalf("inner helper: %v", err)
		}
		fmt.Println("CHILD OK")
	case "inner":
		userNamespaceChild(t, ctx)
	default:
		t.Skip("helper process of TestHostHandlers")
	}
}

func userNamespaceChild(t *testing.T, ctx context.Context) {
	uname := os.Getenv(helperEnv)
	if !InUserNamespace() {
		t.Fatal("not in a user namespace")
	}
	uidMap, _ := os.ReadFile("/proc/self/uid_map")
	t.Logf("uid_map: %s", bytes.TrimSpace(uidMap))
	if ok, release := userNamespaceBinfmtSupported(); !ok {
		_, err := Ensure(ctx, []ocispecs.Platform{foreign}, true)
		if !errors.Is(err, ErrKernelTooOld) {
			t.Fatalf("kernel %s: Ensure error %v, want ErrKernelTooOld", release, err)
		}
		fmt.Println("CHILD OK (old kernel)")
		return
	}
	expectInherit := os.Getenv("KILN_TEST_EXPECT_INHERIT") == "true"
	armv7 := ocispecs.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}
	if expectInherit {
		if err := probe(ctx, "arm"); err != nil {
			t.Fatalf("arm does not run through the host's handler before: %v", err)
		}
	}

	// Not allowed to register: the error says what to run.
	_, err := Ensure(ctx, []ocispecs.Platform{foreign}, false)
	want := fmt.Sprintf(`platform %s cannot run on this host: no binfmt_misc handler runs its programs`, pf)
	if ie := installError(err); err == nil || err.Error() != want || ie == nil || !ie.NeedsRoot {
		t.Errorf("Ensure(auto=false):\n got %v\nwant %s", err, want)
	}

	rep, err := Ensure(ctx, []ocispecs.Platform{foreign}, true)
	if err != nil {
		t.Fatalf("Ensure(auto=true): %v", err)
	}
	t.Logf("report: %+v", rep)
	if len(rep.Registered) != 1 || platforms.Format(rep.Registered[0]) != pf {
		t.Errorf("Registered = %v, want %s", rep.Registered, pf)
	}
	var registered, inherited bool
	for _, a := range rep.Actions {
		t.Logf("action: %s", a)
		if !a.UserNamespace {
			t.Errorf("action not in the user namespace: %+v", a)
		}
		registered = registered || (a.Result == Registered && a.Handler == fa.Handler())
		inherited = inherited || (a.Result == Inherited && a.Handler == "qemu-arm")
	}
	if !registered {
		t.Errorf("no %s registration among the actions", fa.Handler())
	}
	if expectInherit != inherited {
		t.Errorf("qemu-arm inherited = %v, want %v", inherited, expectInherit)
	}
	if BinfmtDir() != DefaultBinfmtDir {
		t.Errorf("handlers live in %s, not at %s", BinfmtDir(), DefaultBinfmtDir)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if n := strings.Count(string(mi), " "+DefaultBinfmtDir+" "); n < 1 {
		t.Errorf("no binfmt_misc mount at %s:\n%s", DefaultBinfmtDir, mi)
	}

	out, err := runMachine(uname)
	if err != nil || out != fa.QEMUArch {
		t.Errorf("%s uname program: %q, %v; want %s", pf, out, err, fa.QEMUArch)
	}
	if bb := os.Getenv(busyboxEnv); bb != "" && foreign.Architecture == "arm64" {
		out, err := runMachine(bb, "uname", "-m")
		if err != nil || out != fa.QEMUArch {
			t.Errorf("arm64 busybox uname -m: %q, %v; want aarch64", out, err)
		}
	}
	if expectInherit {
		if err := probe(ctx, "arm"); err != nil {
			t.Errorf("arm stopped running in the user namespace: %v", err)
		}
	}
	interp, _ := Interpreter(fa.QEMUArch)
	checkStatus(t, statusOf(t, pf), PlatformStatus{Platform: pf, State: StateEmulated, Handler: fa.Handler(), Interpreter: interp, Flags: "PF"})

	// Hide riscv64's emulator in this mount namespace: Ensure must say what
	// to install.
	riscv64 := ocispecs.Platform{OS: "linux", Architecture: "riscv64"}
	if probe(ctx, "riscv64") != nil {
		for _, c := range interpreterCandidates("riscv64") {
			if _, err := os.Stat(c); err == nil {
				if err := unix.Mount("/dev/null", c, "", unix.MS_BIND, ""); err != nil {
					t.Fatalf("hiding %s: %v", c, err)
				}
			}
		}
		_, err := Ensure(ctx, []ocispecs.Platform{riscv64}, true)
		want := `platform linux/riscv64 cannot run on this host: no QEMU interpreter for riscv64 found; install it with "apt-get install qemu-user-static"`
		if err == nil || err.Error() != want || !errors.Is(err, ErrNoInterpreter) {
			t.Errorf("Ensure without an emulator:\n got %v\nwant %s", err, want)
		}
		if s := statusOf(t, "linux/riscv64"); s.State != StateUnavailable || s.Package != Package {
			t.Errorf("riscv64 status without an emulator: %+v", s)
		}
	}

	// A second Ensure finds the namespace's instance already in place.
	rep, err = Ensure(ctx, []ocispecs.Platform{foreign, armv7}, true)
	if err != nil || len(rep.Runnable) != 2 || len(rep.Actions) != 0 {
		t.Errorf("second Ensure: %+v, %v", rep, err)
	}
	// Uninstall works inside the namespace too.
	actions, err := Uninstall(ctx, []ocispecs.Platform{foreign})
	if err != nil || len(actions) != 1 || actions[0].Result != Removed {
		t.Errorf("Uninstall in the namespace: %+v, %v", actions, err)
	}
	if _, err := runMachine(uname); !errors.Is(err, syscall.ENOEXEC) {
		t.Errorf("%s program after uninstall in the namespace: %v", pf, err)
	}
	if t.Failed() {
		return
	}
	fmt.Println("CHILD OK")
}

func TestRegistryErrors(t *testing.T) {
	ps := []string{"linux/arm64"}
	for _, cause := range []error{fmt.Errorf("%w (this kernel is 6.1.0-28-amd64)", ErrKernelTooOld), ErrNeedsRoot} {
		got := registryError(cause, ps)
		if ie := installError(got); got.Error() != cause.Error() || !errors.Is(got, cause) || ie == nil || !ie.NeedsRoot || ie.Platforms[0] != ps[0] {
			t.Errorf("registryError(%v) = %v (%+v)", cause, got, ie)
		}
	}
}

// installError is err's *InstallError, or nil.
func installError(err error) *InstallError {
	var ie *InstallError
	errors.As(err, &ie)
	return ie
}

func TestInstallNeverRegistersNative(t *testing.T) {
	// Decided before any handler is touched, so it runs unprivileged too.
	host := HostPlatform()
	if _, ok := probeBinaries[host.Architecture]; !ok {
		t.Skipf("host architecture %s is not in the table", host.Architecture)
	}
	actions, err := Install(context.Background(), []ocispecs.Platform{host})
	if err != nil || len(actions) != 1 || actions[0].Result != Skipped || actions[0].Reason != "native platform" {
		t.Errorf("Install(host) = %+v, %v", actions, err)
	}
	rep, err := Ensure(context.Background(), []ocispecs.Platform{host}, false)
	if err != nil || len(rep.Runnable) != 1 {
		t.Errorf("Ensure(host) = %+v, %v", rep, err)
	}
}

func TestStatusRealHost(t *testing.T) {
	// Runs unprivileged too: the host's own platform is native, every row is
	// there, and states agree with the probe.
	st, err := Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != len(table) {
		t.Fatalf("%d rows", len(st))
	}
	host := platforms.Format(HostPlatform())
	states := []State{StateNative, StateEmulated, StateInstallable, StateUnavailable}
	for _, s := range st {
		if !slices.Contains(states, s.State) {
			t.Errorf("%s: state %q", s.Platform, s.State)
		}
		if s.Platform == host && s.State != StateNative {
			t.Errorf("host platform %s is %s", host, s.State)
		}
		if s.State == StateUnavailable && s.Package == "" && s.Note == "" {
			t.Errorf("%s unavailable without a hint", s.Platform)
		}
	}
}
