//go:build linux

package integration

import (
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const binfmtDir = "/proc/sys/fs/binfmt_misc"

// savedHandler is a binfmt_misc handler as the host had it before a test.
type savedHandler struct{ name, register string }

// saveHandlers reads the named handlers so they can be put back exactly.
func saveHandlers(t *testing.T, names ...string) []savedHandler {
	t.Helper()
	var out []savedHandler
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(binfmtDir, n))
		if err != nil {
			continue
		}
		out = append(out, savedHandler{n, registerLine(n, string(b))})
	}
	return out
}

// registerLine turns a handler's status file back into the line that
// registers it.
func registerLine(name, status string) string {
	f := map[string]string{}
	for _, line := range strings.Split(status, "\n") {
		k, v, _ := strings.Cut(line, " ")
		f[strings.TrimSuffix(k, ":")] = v
	}
	esc := func(h string) string {
		b, _ := hex.DecodeString(h)
		var s strings.Builder
		for _, c := range b {
			fmt.Fprintf(&s, "\\x%02x", c)
		}
		return s.String()
	}
	return fmt.Sprintf(":%s:M:%s:%s:%s:%s:%s", name, f["offset"], esc(f["magic"]), esc(f["mask"]), f["interpreter"], f["flags"])
}

// restoreHandlers removes whatever the test left under the names and
// registers the saved handlers again.
func restoreHandlers(t *testing.T, saved []savedHandler, names ...string) {
	for _, n := range names {
		os.WriteFile(filepath.Join(binfmtDir, n), []byte("-1"), 0o200)
	}
	for _, h := range saved {
		if err := os.WriteFile(filepath.Join(binfmtDir, "register"), []byte(h.register), 0o200); err != nil {
			t.Errorf("restoring the host's %s handler: %v", h.name, err)
		}
	}
}

type platformStatus struct {
	Platform, State, Handler, Interpreter, Flags, Package string
}

func emulationStatus(t *testing.T, r result) map[string]platformStatus {
	t.Helper()
	var list []platformStatus
	mustJSON(t, r.ok(t).Stdout, &list)
	out := map[string]platformStatus{}
	for _, s := range list {
		out[s.Platform] = s
	}
	return out
}

// TestEmulation changes the host's binfmt_misc handlers, so it does not run
// in parallel: Go starts parallel tests only after the sequential ones end.
func TestEmulation(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("registering binfmt_misc handlers on the host needs root")
	}
	if _, err := os.Stat("/usr/bin/qemu-aarch64-static"); err != nil {
		t.Fatal("qemu-user-static is not installed: run hack/install-deps.sh")
	}
	handlers := []string{"qemu-aarch64", "qemu-arm", "qemu-riscv64"}
	saved := saveHandlers(t, handlers...)
	t.Cleanup(func() { restoreHandlers(t, saved, handlers...) })
	e := newEnv(t)
	e.kiln("emulation", "uninstall", "linux/arm64", "linux/arm/v7", "linux/riscv64").ok(t)

	t.Run("ls_shows_installable", func(t *testing.T) {
		st := emulationStatus(t, e.kiln("emulation", "ls", "--format", "json"))
		if st["linux/amd64"].State != "native" {
			t.Errorf("linux/amd64: %+v, want native", st["linux/amd64"])
		}
		for _, p := range []string{"linux/arm64", "linux/arm/v7"} {
			if s := st[p]; s.State != "installable" || !strings.Contains(s.Interpreter, "qemu-") || s.Handler != "" {
				t.Errorf("%s: %+v, want installable with a QEMU interpreter and no handler", p, s)
			}
		}
	})

	t.Run("no_auto_emulation_fails_before_the_build", func(t *testing.T) {
		dir := contextDir(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY Dockerfile /\n"})
		r := e.kiln("build", "--no-auto-emulation", "--platform", "linux/arm64", dir)
		r.fails(t, 1, `platform linux/arm64 cannot run on this host`)
		if !strings.Contains(r.Stderr, `kiln emulation install linux/arm64`) || strings.Contains(r.Stderr, "#1 ") {
			t.Errorf("want the install command named and no build step started:\n%s", r.Stderr)
		}
	})

	t.Run("missing_interpreter_fails_before_the_build", func(t *testing.T) {
		dir := contextDir(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY Dockerfile /\n"})
		// Hide QEMU's riscv64 emulator in a mount namespace of the test's own.
		script := `mount --bind /dev/null /usr/bin/qemu-riscv64-static && exec "$@"`
		args := []string{"-m", "sh", "-c", script, "sh", kilnBinary, "--address", e.Address, "--namespace", e.Namespace, "--root", e.Root,
			"build", "--platform", "linux/amd64,linux/riscv64", dir}
		r := runCommand(t, "", "unshare", args...)
		r.fails(t, 1, `platform linux/riscv64 cannot run on this host: no QEMU interpreter for riscv64 found; install it with "apt-get install qemu-user-static"`)
		if strings.Contains(r.Stderr, "#1 ") {
			t.Errorf("a build step started:\n%s", r.Stderr)
		}
	})

	t.Run("three_platform_build_registers_and_runs", func(t *testing.T) {
		e.busyboxBase(t, "busybox", "linux/amd64", "linux/arm64", "linux/arm/v7")
		// Building the base already registered the handlers: start again without them.
		e.kiln("emulation", "uninstall", "linux/arm64", "linux/arm/v7").ok(t)
		dir := contextDir(t, map[string]string{"Dockerfile": archDockerfile})
		r := e.kiln("build", "--platform", "linux/amd64,linux/arm64,linux/arm/v7", "-t", "three", dir).ok(t)
		for _, p := range []string{"linux/arm64", "linux/arm/v7"} {
			if !strings.Contains(r.Stderr, "registered a QEMU binfmt_misc handler for "+p) {
				t.Errorf("no notice about registering %s:\n%s", p, r.Stderr)
			}
		}
		for _, c := range []struct{ platform, machine string }{{"linux/amd64", "x86_64"}, {"linux/arm64", "aarch64"}, {"linux/arm/v7", "armv7l"}} {
			out := e.ctr("run", "--rm", "--platform", c.platform, "docker.io/library/three:latest", "three-"+strings.ReplaceAll(c.platform, "/", "-")).ok(t).Stdout
			if want := "built=" + c.machine + " running=" + c.machine; strings.TrimSpace(out) != want {
				t.Errorf("%s printed %q, want %q", c.platform, out, want)
			}
		}
		st := emulationStatus(t, e.kiln("emulation", "ls", "--format", "json"))
		for p, h := range map[string]string{"linux/arm64": "qemu-aarch64", "linux/arm/v7": "qemu-arm"} {
			if s := st[p]; s.State != "emulated" || s.Handler != h || !strings.Contains(s.Flags, "F") {
				t.Errorf("%s after the build: %+v, want emulated by %s with flag F", p, s, h)
			}
		}
	})

	t.Run("install_uninstall_round_trip", func(t *testing.T) {
		r := e.kiln("emulation", "uninstall", "linux/arm64").ok(t)
		if !strings.Contains(r.Stdout, "qemu-aarch64") {
			t.Errorf("uninstall did not report the handler:\n%s", r.Stdout)
		}
		if _, err := os.Stat(filepath.Join(binfmtDir, "qemu-aarch64")); err == nil {
			t.Fatal("qemu-aarch64 is still registered after uninstall")
		}
		e.kiln("emulation", "install", "linux/arm64").ok(t)
		status, err := os.ReadFile(filepath.Join(binfmtDir, "qemu-aarch64"))
		if err != nil || !strings.Contains(string(status), "flags: PF") && !strings.Contains(string(status), "flags: FP") {
			t.Errorf("qemu-aarch64 after install: %q, %v; want flags F and P", status, err)
		}
		r = e.kiln("emulation", "install", "linux/arm64").ok(t)
		if !strings.Contains(r.Stdout, "skipped") {
			t.Errorf("a second install should skip a platform that runs:\n%s", r.Stdout)
		}
		e.kiln("emulation", "install", "linux/arm65").fails(t, 2, "arm65")
	})

	t.Run("unprivileged_user_namespace", func(t *testing.T) {
		e.kiln("emulation", "uninstall", "linux/arm64").ok(t)
		user := unprivilegedUser(t)
		busybox := filepath.Join(fixturesDir, "busybox-arm64")
		// As the user with no namespace: kiln names the root command.
		r := runCommand(t, "", "setpriv", append(user, kilnBinary, "emulation", "install", "linux/arm64")...)
		r.fails(t, 1, "sudo kiln emulation install linux/arm64")
		st := emulationStatus(t, runCommand(t, "", "setpriv", append(user, kilnBinary, "emulation", "ls", "--format", "json")...))
		if st["linux/arm64"].State != "installable" {
			t.Errorf("linux/arm64 as an unprivileged user: %+v, want installable", st["linux/arm64"])
		}
		// In a user namespace of its own, the user registers a handler there.
		script := fmt.Sprintf("%s emulation install linux/arm64 && %s uname -m", kilnBinary, busybox)
		out := runCommand(t, "", "setpriv", append(user, "unshare", "-Urm", "sh", "-c", script)...).ok(t).Stdout
		if !strings.HasSuffix(strings.TrimSpace(out), "aarch64") {
			t.Errorf("arm64 busybox in the user namespace printed %q, want aarch64", out)
		}
		if _, err := os.Stat(filepath.Join(binfmtDir, "qemu-aarch64")); err == nil {
			t.Error("the user namespace's registration changed the host")
		}
		if err := exec.Command(busybox, "true").Run(); err == nil {
			t.Error("the arm64 busybox runs on the host, which has no handler")
		}
	})
}

// unprivilegedUser returns a setpriv prefix that runs a command as a user
// with no privileges, creating the user if needed.
func unprivilegedUser(t *testing.T) []string {
	t.Helper()
	const name = "kiln-it"
	if err := exec.Command("id", name).Run(); err != nil {
		if out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
			t.Fatalf("creating user %s: %v: %s", name, err, out)
		}
	}
	uid, _ := exec.Command("id", "-u", name).Output()
	gid, _ := exec.Command("id", "-g", name).Output()
	return []string{"--reuid", strings.TrimSpace(string(uid)), "--regid", strings.TrimSpace(string(gid)), "--clear-groups", "--reset-env"}
}
