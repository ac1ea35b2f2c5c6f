//go:build linux

package privatecontainerd

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"
)

// Daemon is a background process a harness started: in a process group of
// its own, killed if the harness dies, its output in a log file.
type Daemon struct {
	Name    string // for messages
	LogPath string // its stdout and stderr
	cmd     *exec.Cmd
	exited  chan struct{}
	err     error // Wait's, once exited is closed
}

// StartDaemon starts cmd (its Stdout, Stderr and SysProcAttr are set here)
// with its output in logPath.
func StartDaemon(name, logPath string, cmd *exec.Cmd) (*Daemon, error) {
	d := &Daemon{Name: name, LogPath: logPath, cmd: cmd, exited: make(chan struct{})}
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Pdeathsig is tied to the starting OS thread, not the process: start and
	// wait on one locked goroutine that lives as long as the daemon does.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		d.err = cmd.Wait()
		close(d.exited)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	return d, nil
}

// Pid is the daemon's process id.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Exited is closed once the daemon has exited.
func (d *Daemon) Exited() <-chan struct{} { return d.exited }

// Dead reports whether the daemon has exited.
func (d *Daemon) Dead() bool {
	select {
	case <-d.exited:
		return true
	default:
		return false
	}
}

// Err is how the daemon exited (Wait's error); nil while it runs.
func (d *Daemon) Err() error {
	if !d.Dead() {
		return nil
	}
	return d.err
}

// WaitFor calls ready every 100 ms until it succeeds; it fails if the daemon
// exits first or ready still fails after timeout. what names the check in
// that error.
func (d *Daemon) WaitFor(timeout time.Duration, what string, ready func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		if d.Dead() {
			return fmt.Errorf("%s exited during start-up: %v", d.Name, d.err)
		}
		err := ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer %s within %v: %v", d.Name, what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stopGrace is how long Stop waits after SIGTERM, which lets a daemon shut
// down cleanly (containerd closes its metadata database); the grace bounds
// one that hangs doing so.
const stopGrace = 15 * time.Second

// Stop sends the daemon SIGTERM, SIGKILL if it is still there after 15 s,
// and returns once it has exited.
func (d *Daemon) Stop() {
	if d.Dead() {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(stopGrace):
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
}
