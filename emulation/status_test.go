package emulation

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/platforms"

	"github.com/kiln-build/kiln/internal/errmsg"
)

// fakeSystem builds a system whose probe runs exactly the architectures in
// runs and whose interpreters exist for the QEMU arches in interps.
func fakeSystem(host string, handlers []Handler, runs []string, interps []string) system {
	return system{
		host:     platforms.Normalize(platforms.MustParse(host)),
		handlers: handlers,
		mounted:  true,
		dir:      DefaultBinfmtDir,
		root:     true,
		probe: func(goarch string) error {
			for _, r := range runs {
				if r == goarch {
					return nil
				}
			}
			return errors.New("no binfmt_misc handler runs its programs")
		},
		interpreter: func(qarch string) (string, error) {
			for _, q := range interps {
				if q == qarch {
					return "/usr/bin/qemu-" + qarch + "-static", nil
				}
			}
			return "", fmt.Errorf("%w for %s found; install it with \"apt-get install %s\"", ErrNoInterpreter, qarch, Package)
		},
	}
}

// handlerFor is the handler kiln registers for a platform.
func handlerFor(t *testing.T, platform, interp, flags string) Handler {
	t.Helper()
	a, err := LookupArch(platforms.MustParse(platform))
	if err != nil {
		t.Fatal(err)
	}
	return Handler{Name: a.Handler(), Enabled: true, Interpreter: interp, Flags: flags, Magic: []byte(a.Magic), Mask: []byte(a.Mask)}
}

func byPlatform(st []PlatformStatus) map[string]PlatformStatus {
	m := map[string]PlatformStatus{}
	for _, s := range st {
		m[s.Platform] = s
	}
	return m
}

func checkStatus(t *testing.T, got PlatformStatus, want PlatformStatus) {
	t.Helper()
	if got.State != want.State || got.Handler != want.Handler || got.Interpreter != want.Interpreter || got.Flags != want.Flags || got.Package != want.Package {
		t.Errorf("%s:\n got %+v\nwant %+v", want.Platform, got, want)
	}
}

func TestStatusAMD64Host(t *testing.T) {
	s := fakeSystem("linux/amd64",
		[]Handler{handlerFor(t, "linux/arm64", "/usr/bin/qemu-aarch64-static", "PF")},
		[]string{"amd64", "arm64", "386"},
		[]string{"aarch64", "arm", "i386", "ppc64le"})
	st := s.status()
	if len(st) != len(table) {
		t.Fatalf("%d rows, want %d", len(st), len(table))
	}
	m := byPlatform(st)
	checkStatus(t, m["linux/amd64"], PlatformStatus{Platform: "linux/amd64", State: StateNative})
	checkStatus(t, m["linux/arm64"], PlatformStatus{Platform: "linux/arm64", State: StateEmulated, Handler: "qemu-aarch64", Interpreter: "/usr/bin/qemu-aarch64-static", Flags: "PF"})
	checkStatus(t, m["linux/386"], PlatformStatus{Platform: "linux/386", State: StateNative}) // IA-32 compat, no handler
	checkStatus(t, m["linux/arm/v7"], PlatformStatus{Platform: "linux/arm/v7", State: StateInstallable, Interpreter: "/usr/bin/qemu-arm-static"})
	checkStatus(t, m["linux/ppc64le"], PlatformStatus{Platform: "linux/ppc64le", State: StateInstallable, Interpreter: "/usr/bin/qemu-ppc64le-static"})
	checkStatus(t, m["linux/riscv64"], PlatformStatus{Platform: "linux/riscv64", State: StateUnavailable, Package: "qemu-user-static"})
	if n := m["linux/riscv64"].Note; !strings.Contains(n, `apt-get install qemu-user-static`) {
		t.Errorf("riscv64 note %q does not say what to install", n)
	}
	if st := m["linux/arm/v7"]; st.NeedsRoot || strings.Contains(st.Note, "kiln") {
		t.Errorf("arm/v7 as root: %+v (the command line names the command to run)", st)
	}
}

// TestStatusARM64Host is the table seen from an arm64 host: arm64 is native
// and never emulated; amd64 is the foreign one.
func TestStatusARM64Host(t *testing.T) {
	amd64 := handlerFor(t, "linux/amd64", "/usr/bin/qemu-x86_64-static", "PF")
	s := fakeSystem("linux/arm64", []Handler{amd64}, []string{"amd64", "arm"}, []string{"x86_64", "riscv64"})
	m := byPlatform(s.status())
	checkStatus(t, m["linux/arm64"], PlatformStatus{Platform: "linux/arm64", State: StateNative})
	checkStatus(t, m["linux/amd64"], PlatformStatus{Platform: "linux/amd64", State: StateEmulated, Handler: "qemu-x86_64", Interpreter: "/usr/bin/qemu-x86_64-static", Flags: "PF"})
	// AArch32-capable CPU: arm runs with no handler.
	checkStatus(t, m["linux/arm/v7"], PlatformStatus{Platform: "linux/arm/v7", State: StateNative})
	checkStatus(t, m["linux/arm/v6"], PlatformStatus{Platform: "linux/arm/v6", State: StateNative})
	checkStatus(t, m["linux/riscv64"], PlatformStatus{Platform: "linux/riscv64", State: StateInstallable, Interpreter: "/usr/bin/qemu-riscv64-static"})
	checkStatus(t, m["linux/s390x"], PlatformStatus{Platform: "linux/s390x", State: StateUnavailable, Package: Package})

	// A CPU without AArch32 with a qemu-arm handler: emulated.
	arm := handlerFor(t, "linux/arm/v7", "/usr/bin/qemu-arm-static", "POCF")
	s = fakeSystem("linux/arm64", []Handler{amd64, arm}, []string{"amd64", "arm"}, nil)
	m = byPlatform(s.status())
	checkStatus(t, m["linux/arm/v7"], PlatformStatus{Platform: "linux/arm/v7", State: StateEmulated, Handler: "qemu-arm", Interpreter: "/usr/bin/qemu-arm-static", Flags: "POCF"})

	// Even a (bogus) handler claiming arm64 programs does not make the
	// native platform "emulated".
	s = fakeSystem("linux/arm64", []Handler{handlerFor(t, "linux/arm64", "/usr/bin/qemu-aarch64-static", "F")}, nil, nil)
	checkStatus(t, byPlatform(s.status())["linux/arm64"], PlatformStatus{Platform: "linux/arm64", State: StateNative})
}

func TestStatusARM32Host(t *testing.T) {
	s := fakeSystem("linux/arm/v7", nil, nil, []string{"aarch64"})
	m := byPlatform(s.status())
	checkStatus(t, m["linux/arm/v7"], PlatformStatus{Platform: "linux/arm/v7", State: StateNative})
	checkStatus(t, m["linux/arm/v6"], PlatformStatus{Platform: "linux/arm/v6", State: StateNative})
	got := m["linux/arm64"]
	checkStatus(t, got, PlatformStatus{Platform: "linux/arm64", State: StateUnavailable})
	if got.Note != armHostNote {
		t.Errorf("note %q", got.Note)
	}
}

func TestStatusBrokenHandler(t *testing.T) {
	// A handler without F: it matches, but the (chrooted) probe fails.
	h := handlerFor(t, "linux/arm64", "/usr/bin/qemu-aarch64-static", "")
	s := fakeSystem("linux/amd64", []Handler{h}, []string{"amd64"}, []string{"aarch64"})
	got := byPlatform(s.status())["linux/arm64"]
	checkStatus(t, got, PlatformStatus{Platform: "linux/arm64", State: StateInstallable, Interpreter: "/usr/bin/qemu-aarch64-static"})
	if !strings.Contains(got.Note, "handler qemu-aarch64") || !strings.Contains(got.Note, "flags none") {
		t.Errorf("note %q does not mention the failing handler", got.Note)
	}

	// Runs, but no visible handler and no compat mode: an unseen handler.
	s = fakeSystem("linux/amd64", nil, []string{"amd64", "riscv64"}, nil)
	s.mounted = false
	got = byPlatform(s.status())["linux/riscv64"]
	if got.State != StateEmulated || !strings.Contains(got.Note, "not mounted") {
		t.Errorf("unseen handler: %+v", got)
	}
}

func TestStatusJSONFieldNames(t *testing.T) {
	b, err := json.Marshal(PlatformStatus{Platform: "linux/arm64", State: StateEmulated, Handler: "qemu-aarch64", Interpreter: "/q", Flags: "PF"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"platform":"linux/arm64","state":"emulated","handler":"qemu-aarch64","interpreter":"/q","flags":"PF","package":""}`
	if string(b) != want {
		t.Errorf("JSON\n got %s\nwant %s", b, want)
	}
}

func TestActionString(t *testing.T) {
	for _, tc := range []struct {
		a    Action
		want string
	}{
		{Action{Result: Registered, Platforms: []string{"linux/arm64"}, Handler: "qemu-aarch64", Interpreter: "/usr/bin/qemu-aarch64-static", Flags: "FP"},
			"registered qemu-aarch64 for linux/arm64 (/usr/bin/qemu-aarch64-static, flags FP)"},
		{Action{Result: Registered, Platforms: []string{"linux/arm/v7", "linux/arm/v6"}, Handler: "qemu-arm", Interpreter: "/q", Flags: "FP", UserNamespace: true},
			"registered qemu-arm for linux/arm/v7, linux/arm/v6 in this user namespace (/q, flags FP)"},
		{Action{Result: Skipped, Platforms: []string{"linux/amd64"}, Reason: "native platform"},
			"skipped linux/amd64: native platform"},
		{Action{Result: Removed, Platforms: []string{"linux/arm64"}, Handler: "qemu-aarch64"},
			"removed qemu-aarch64 (linux/arm64)"},
		{Action{Result: Skipped, Platforms: []string{"linux/s390x"}, Handler: "qemu-s390x", Reason: "not registered"},
			"skipped qemu-s390x (linux/s390x): not registered"},
	} {
		if got := tc.a.String(); got != tc.want {
			t.Errorf("\n got %s\nwant %s", got, tc.want)
		}
	}
}

func TestPlatformErrorMessages(t *testing.T) {
	cause := fmt.Errorf("%w for riscv64 found; install it with \"apt-get install qemu-user-static\"", ErrNoInterpreter)
	err := error(&PlatformError{Platforms: []string{"linux/riscv64"}, Err: cause})
	want := `platform linux/riscv64 cannot run on this host: no QEMU interpreter for riscv64 found; install it with "apt-get install qemu-user-static"`
	if err.Error() != want {
		t.Errorf("\n got %s\nwant %s", err, want)
	}
	two := errmsg.Join(err, &PlatformError{Platforms: []string{"linux/arm64", "linux/s390x"}, Err: &InstallError{Err: ErrNoHandler, Platforms: []string{"linux/arm64", "linux/s390x"}}})
	if strings.Contains(two.Error(), "\n") {
		t.Errorf("multi-line error %q", two)
	}
	if !errors.Is(two, ErrNoInterpreter) || !errors.Is(two, ErrNoHandler) {
		t.Errorf("joined error hides its causes: %v", two)
	}
	var pe *PlatformError
	if !errors.As(two, &pe) {
		t.Error("errors.As finds no PlatformError")
	}
	var ie *InstallError
	if !errors.As(two, &ie) || len(ie.Platforms) != 2 {
		t.Error("errors.As finds no InstallError")
	}
	if !strings.HasSuffix(two.Error(), `; platforms linux/arm64, linux/s390x cannot run on this host: no binfmt_misc handler runs its programs`) {
		t.Errorf("got %s", two)
	}
}

func TestStatusHintNeedsSudoWithoutRoot(t *testing.T) {
	s := fakeSystem("linux/amd64", nil, []string{"amd64"}, []string{"aarch64"})
	s.root = false
	got := byPlatform(s.status())["linux/arm64"]
	if got.State != StateInstallable || !got.NeedsRoot {
		t.Errorf("status %+v, want installable with root", got)
	}
}
