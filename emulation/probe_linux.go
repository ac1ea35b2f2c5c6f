package emulation

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// probeTTL is how long a probe's answer is reused within the process.
const probeTTL = 5 * time.Second

type probeResult struct {
	err error
	at  time.Time
}

var (
	resultsMu sync.Mutex
	results   = map[string]probeResult{}
)

// invalidateProbes forgets cached answers after handlers changed.
func invalidateProbes() {
	resultsMu.Lock()
	clear(results)
	resultsMu.Unlock()
}

// probe reports whether programs for goarch execute here: nil when they do,
// otherwise why not. Answers are cached for a few seconds.
func probe(ctx context.Context, goarch string) error {
	resultsMu.Lock()
	r, ok := results[goarch]
	resultsMu.Unlock()
	if ok && time.Since(r.at) < probeTTL {
		return r.err
	}
	err := runProbe(ctx, goarch)
	if ctx.Err() != nil { // do not cache a cancelled probe
		return err
	}
	resultsMu.Lock()
	results[goarch] = probeResult{err: err, at: time.Now()}
	resultsMu.Unlock()
	return err
}

// errProbeSetup marks failures to run the probe at all (as opposed to the
// kernel refusing the program).
var errProbeSetup = errors.New("cannot run probe programs")

// runProbe writes the probe program into an empty temporary directory and
// executes it. When the process may chroot (root, or root in its user
// namespace) the probe runs chrooted into that directory, as BuildKit does:
// there the interpreter path of a handler is unreachable, so only handlers
// whose interpreter the kernel opened at registration (flag F) pass, which
// are the ones that also work inside build containers.
func runProbe(ctx context.Context, goarch string) error {
	bin, err := probeBinary(goarch)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "kiln-probe-")
	if err != nil {
		return fmt.Errorf("%w: %w", errProbeSetup, err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "probe")
	if err := os.WriteFile(path, bin, 0o755); err != nil {
		return fmt.Errorf("%w: %w", errProbeSetup, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var cmd *exec.Cmd
	if canChroot() {
		cmd = exec.CommandContext(ctx, "/probe")
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: dir}
	} else {
		cmd = exec.CommandContext(ctx, path)
	}
	cmd.Dir = "/"
	cmd.Env = []string{}
	err = cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		if probeSucceeded(goarch, 0) {
			return nil
		}
		return fmt.Errorf("the probe program exited with status 0, expected 65-68")
	case errors.As(err, &exitErr):
		if probeSucceeded(goarch, exitErr.ExitCode()) {
			return nil
		}
		return fmt.Errorf("the probe program failed: %w", err)
	case errors.Is(err, syscall.ENOEXEC):
		return errors.New("no binfmt_misc handler runs its programs")
	case errors.Is(err, syscall.ENOENT):
		return errors.New("a binfmt_misc handler claims its programs but its interpreter cannot be found inside a container (registered without the F flag?)")
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("%w from %s: %w; point TMPDIR at a directory mounted without noexec", errProbeSetup, os.TempDir(), err)
	default:
		return fmt.Errorf("running the probe program: %w", err)
	}
}

var (
	chrootOnce sync.Once
	chrootOK   bool
)

// canChroot reports whether the process has CAP_SYS_CHROOT.
func canChroot() bool {
	chrootOnce.Do(func() {
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			return
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
				caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
				chrootOK = err == nil && caps&(1<<18) != 0 // CAP_SYS_CHROOT
			}
		}
	})
	return chrootOK
}
