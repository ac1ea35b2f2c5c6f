//go:build linux

package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/console"
)

// ptySession is a kiln process on a pseudo-terminal, as a user's shell
// would run it: standard input, output and error are the terminal, which is
// its controlling terminal.
type ptySession struct {
	t    *testing.T
	pty  console.Console
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	code int
}

// kilnOnPty starts kiln with e's global flags on a new pseudo-terminal.
func (e *env) kilnOnPty(t *testing.T, args ...string) *ptySession {
	t.Helper()
	pty, slavePath, err := console.NewPty()
	if err != nil {
		t.Fatalf("opening a pseudo-terminal: %v", err)
	}
	slave, err := os.OpenFile(slavePath, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	pty.Resize(console.WinSize{Height: 40, Width: 120})
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	full := append([]string{"--address", e.Address, "--namespace", e.Namespace, "--root", e.Root}, args...)
	cmd := exec.CommandContext(ctx, kilnBinary, full...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	slave.Close()
	s := &ptySession{t: t, pty: pty, cmd: cmd, done: make(chan struct{})}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := pty.Read(buf)
			s.mu.Lock()
			s.out.Write(buf[:n])
			s.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() {
		cmd.Wait()
		s.code = cmd.ProcessState.ExitCode()
		close(s.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-s.done
		pty.Close()
	})
	t.Logf("$ kiln %s  # on a pseudo-terminal", strings.Join(args, " "))
	return s
}

// output is what the terminal showed so far.
func (s *ptySession) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// waitFor waits until the terminal shows text.
func (s *ptySession) waitFor(text string) {
	s.t.Helper()
	deadline := time.After(3 * time.Minute)
	for !strings.Contains(s.output(), text) {
		select {
		case <-s.done:
			if strings.Contains(s.output(), text) {
				return
			}
			s.t.Fatalf("kiln exited (code %d) before showing %q:\n%s", s.code, text, s.output())
		case <-deadline:
			s.t.Fatalf("the terminal did not show %q within 3 minutes:\n%s", text, s.output())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// typeLine types a line on the terminal.
func (s *ptySession) typeLine(line string) {
	s.t.Helper()
	if _, err := s.pty.Write([]byte(line + "\r")); err != nil {
		s.t.Fatalf("typing %q: %v", line, err)
	}
}

// wait waits for kiln to exit and returns its exit code.
func (s *ptySession) wait() int {
	s.t.Helper()
	select {
	case <-s.done:
	case <-time.After(3 * time.Minute):
		s.t.Fatalf("kiln did not exit within 3 minutes:\n%s", s.output())
	}
	// What kiln printed last may still be in the terminal's buffer.
	time.Sleep(200 * time.Millisecond)
	return s.code
}

// failingDockerfile fails in a RUN step that leaves a file behind and
// uses a cache mount another step filled.
const failingDockerfile = `FROM busybox
WORKDIR /work
ENV GREETING=hello
RUN --mount=type=cache,target=/cache echo cached > /cache/c
RUN --mount=type=cache,target=/cache uname -m > machine; echo partial > left-behind; exit 7
`

// TestOnErrorShell: when a RUN step fails, --on-error shell starts a shell
// on the terminal in that step's container, with the files the command
// left, the step's environment, working directory, user and cache mount;
// typing a command there shows its output, and when the shell exits kiln
// ends with the build's failure. Natively and under QEMU.
func TestOnErrorShell(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ platform, machine string }{{"linux/amd64", "x86_64"}, {"linux/arm64", "aarch64"}} {
		t.Run(strings.ReplaceAll(c.platform, "/", "-"), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.busyboxBase(t, "busybox", c.platform)
			dir := contextDir(t, map[string]string{"Dockerfile": failingDockerfile})
			s := e.kilnOnPty(t, "build", "--progress", "plain", "--platform", c.platform, "--on-error", "shell", dir)
			s.waitFor("failed: starting /bin/sh in its container, as the step left it")
			s.waitFor("/work # ")
			s.typeLine(`echo "seen=$GREETING:$(pwd):$(cat left-behind):$(cat /cache/c):$(id -u):$(cat machine):$(uname -m)"`)
			want := "seen=hello:/work:partial:cached:0:" + c.machine + ":" + c.machine
			s.waitFor(want)
			s.typeLine("exit")
			if code := s.wait(); code != 1 {
				t.Fatalf("exit code %d, want the build's failure, 1:\n%s", code, s.output())
			}
			if out := s.output(); !strings.Contains(out, "failed with exit code 7") {
				t.Errorf("the build's error is missing after the shell:\n%s", out)
			}
			// The shell changed nothing: no image.
			if imgs := e.ctr("images", "ls", "-q").ok(t).Stdout; strings.Count(imgs, "\n") != 1 {
				t.Errorf("images after the failed build:\n%s", imgs)
			}
		})
	}
}

// TestInvokeResult: --invoke CMD starts CMD in the built image's
// filesystem, with its environment and working directory; the image is
// stored once CMD exits, and kiln ends with the build's success.
func TestInvokeResult(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.busyboxBase(t, "busybox", "linux/amd64")
	dir := contextDir(t, map[string]string{"Dockerfile": "FROM busybox\nWORKDIR /srv\nENV WHO=result\nRUN echo built > /srv/file\n"})
	s := e.kilnOnPty(t, "build", "--progress", "plain", "-t", "invoked", "--invoke", `["sh"]`, dir)
	s.waitFor("starting sh in the build's result")
	s.waitFor("/srv # ")
	s.typeLine(`echo "got=$WHO:$(pwd):$(cat file)"`)
	s.waitFor("got=result:/srv:built")
	s.typeLine("exit")
	if code := s.wait(); code != 0 {
		t.Fatalf("exit code %d:\n%s", code, s.output())
	}
	e.image(t, "docker.io/library/invoked:latest")
}

// TestOnErrorWithoutTerminal: without a terminal kiln says it cannot start
// the shell and fails as it would without --on-error; mistakes in the
// options are usage errors.
func TestOnErrorWithoutTerminal(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.busyboxBase(t, "busybox", "linux/amd64")
	dir := contextDir(t, map[string]string{"Dockerfile": failingDockerfile})
	r := e.kiln("build", "--progress", "plain", "--on-error", "shell", dir).fails(t, 1, "/bin/sh needs a terminal on standard input, and it is not one: nothing started\nerror: ")
	if !strings.Contains(r.Stderr, "failed with exit code 7") {
		t.Errorf("the build's error is missing:\n%s", r.Stderr)
	}
	// A failure before any RUN step: no container to start a shell in.
	bad := contextDir(t, map[string]string{"Dockerfile": "FROM busybox\nCOPY missing /\n"})
	e.kiln("build", "--on-error", "shell", bad).fails(t, 1, "the build failed before a RUN step, so there is no step container to start /bin/sh in")

	e.kiln("build", "--on-error", "retry", dir).fails(t, 2, `invalid --on-error "retry": use fail (the default) or shell`)
	e.kiln("build", "--invoke", "[sh", dir).fails(t, 2, `invalid --invoke "[sh"`)
	e.kiln("build", "--check", "--on-error", "shell", dir).fails(t, 2, "--on-error and --invoke need a build")
	e.kilnStdin("FROM busybox\n", "build", "-f", "-", "--on-error", "shell", dir).fails(t, 2, "read the Dockerfile from a file, not -f -")
}
