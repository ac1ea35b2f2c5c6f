//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kiln-build/kiln/internal/privatecontainerd"
	"golang.org/x/sys/unix"
)

// sample is one measured run of one command.
type sample struct {
	Wall time.Duration `json:"wall"`
	// MaxRSS is the peak resident size of the process itself (rusage), in bytes.
	MaxRSS int64 `json:"maxRSS"`
	// DaemonPeak is buildkitd's peak resident size sampled during the run
	// (buildctl runs only); DaemonAfter its resident size right after it.
	DaemonPeak  int64 `json:"daemonPeak,omitempty"`
	DaemonAfter int64 `json:"daemonAfter,omitempty"`
	// AnonPeak and DaemonAnonPeak are the sampled peaks of the anonymous
	// (private, not file-backed) part of the process's and daemon's RSS.
	AnonPeak       int64 `json:"anonPeak"`
	DaemonAnonPeak int64 `json:"daemonAnonPeak,omitempty"`
	// CPU is the user and system time of the process itself, plus, with a
	// daemon, the daemon's own during the run. The programs either starts
	// (BuildKit's platform probes, git, runc and the build steps under it)
	// do not count: containerd's shims run those for buildkitd, outside it.
	CPU time.Duration `json:"cpu"`
	// Steps are the durations of the build's vertices and exporter statuses
	// by name, read from the rawjson progress stream.
	Steps map[string]time.Duration `json:"steps,omitempty"`
	// Timed is the "real" time busybox's time applet printed in a step's
	// output, when one did.
	Timed time.Duration `json:"timed,omitempty"`
}

// build is one build both builders run.
type build struct {
	context   string            // directory holding the Dockerfile
	tag       string            // short image name
	platforms string            // "linux/amd64,linux/arm64"; empty: the host's
	noCache   bool              // --no-cache
	attrs     map[string]string // extra image exporter attributes (compression=...)
	// epoch is SOURCE_DATE_EPOCH: kiln's --source-date-epoch; for buildctl the
	// build argument and rewrite-timestamp=true, as a user reproduces it.
	epoch string
	// kilnFlags are more options of kiln build (--buildkitd-gzip).
	kilnFlags []string
	// noCacheStage rebuilds that stage without cache (--no-cache-filter).
	noCacheStage string
}

// kilnBuild runs a whole kiln process for b.
func (e *env) kilnBuild(b build) (sample, error) {
	return e.kilnBuildWith(e.kiln, e.kilnRoot, b)
}

// baselineBuild runs the baseline kiln binary for b, on a root and under an
// image name of its own: had both kilns moved one name between their images,
// each build would unpack the other's layers again.
func (e *env) baselineBuild(b build) (sample, error) {
	b.tag += "-baseline"
	return e.kilnBuildWith(e.baseline, e.baselineRoot, b)
}

func (e *env) kilnBuildWith(bin, root string, b build) (sample, error) {
	args := []string{"--address", e.address, "--namespace", kilnNamespace, "--root", root,
		"build", "--progress", "rawjson", "-t", b.tag}
	if b.platforms != "" {
		args = append(args, "--platform", b.platforms)
	}
	if b.noCache {
		args = append(args, "--no-cache")
	}
	if len(b.attrs) > 0 {
		args = append(args, "-o", "type=image,"+joinAttrs(b.attrs))
	}
	if b.epoch != "" {
		args = append(args, "--source-date-epoch", b.epoch)
	}
	if b.noCacheStage != "" {
		args = append(args, "--no-cache-filter", b.noCacheStage)
	}
	args = append(args, b.kilnFlags...)
	return e.measure(nil, bin, append(args, b.context)...)
}

// buildctlBuild runs buildctl for b against the running buildkitd, with the
// options kiln sets itself: the local base image, stored and unpacked.
func (e *env) buildctlBuild(b build) (sample, error) {
	out := "type=image,name=docker.io/library/" + b.tag + ":latest,unpack=true"
	if len(b.attrs) > 0 {
		out += "," + joinAttrs(b.attrs)
	}
	if b.epoch != "" {
		out += ",rewrite-timestamp=true"
	}
	args := []string{"--addr", e.bkAddress, "build", "--progress", "rawjson", "--frontend", "dockerfile.v0",
		"--local", "context=" + b.context, "--local", "dockerfile=" + b.context,
		"--opt", "image-resolve-mode=local", "--output", out}
	if b.platforms != "" {
		args = append(args, "--opt", "platform="+b.platforms)
	}
	if b.noCache {
		args = append(args, "--no-cache")
	}
	if b.epoch != "" {
		args = append(args, "--opt", "build-arg:SOURCE_DATE_EPOCH="+b.epoch)
	}
	if b.noCacheStage != "" {
		args = append(args, "--opt", "no-cache="+b.noCacheStage)
	}
	return e.measure(e.buildkitd, e.tool("buildctl"), args...)
}

func joinAttrs(attrs map[string]string) string {
	var kv []string
	for k, v := range attrs {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

// measure runs one command to completion and returns its wall time and peak
// RSS; with a daemon, the daemon's RSS is sampled meanwhile.
func (e *env) measure(d *privatecontainerd.Daemon, bin string, args ...string) (sample, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	var stopDaemon func() peaks
	var daemonCPU time.Duration
	if d != nil {
		stopDaemon = sampleRSS(d.Pid())
		daemonCPU = cpuTime(d.Pid())
	}
	start := time.Now()
	var own peaks
	var ownCPU time.Duration
	err := cmd.Start()
	if err == nil {
		stop := sampleRSS(cmd.Process.Pid)
		ownCPU = exitCPU(cmd.Process.Pid)
		err = cmd.Wait()
		own = stop()
	}
	s := sample{Wall: time.Since(start), AnonPeak: own.anon}
	if d != nil {
		p := stopDaemon()
		s.DaemonPeak, s.DaemonAnonPeak = p.total, p.anon
		s.DaemonAfter = rss(d.Pid())
		s.CPU = cpuTime(d.Pid()) - daemonCPU
	}
	if err != nil {
		return s, fmt.Errorf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, lastLines(stdout.String()+stderr.String(), 15))
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		s.MaxRSS = ru.Maxrss << 10 // kB on Linux
	}
	s.CPU += ownCPU
	s.Steps, s.Timed = steps(stderr.Bytes())
	if s.Timed == 0 { // not a build: busybox time wrote to stderr itself
		s.Timed = busyboxTime(stderr.String())
	}
	return s, nil
}

// exitCPU waits until process pid has exited, without reaping it, and
// returns the user and system time of the process itself: rusage from
// wait4 would add its children's, which kiln has (runc and the steps under
// it) and buildkitd does not (containerd's shims start them).
func exitCPU(pid int) time.Duration {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			break
		}
	}
	return cpuTime(pid)
}

// steps reads BuildKit's rawjson progress stream (one SolveStatus per line)
// and returns how long each vertex and exporter status took, by name, and
// the time a "busybox time" in a step printed.
func steps(stream []byte) (map[string]time.Duration, time.Duration) {
	type span struct{ start, end time.Time }
	type status struct {
		Vertexes []struct {
			Digest    string     `json:"digest"`
			Name      string     `json:"name"`
			Started   *time.Time `json:"started"`
			Completed *time.Time `json:"completed"`
		} `json:"vertexes"`
		Statuses []struct {
			ID        string     `json:"id"`
			Vertex    string     `json:"vertex"`
			Started   *time.Time `json:"started"`
			Completed *time.Time `json:"completed"`
		} `json:"statuses"`
		Logs []struct {
			Data []byte `json:"data"`
		} `json:"logs"`
	}
	var logs bytes.Buffer
	spans := map[string]*span{}
	names := map[string]string{}
	note := func(key, name string, started, completed *time.Time) {
		sp := spans[key]
		if sp == nil {
			sp = &span{}
			spans[key] = sp
			names[key] = name
		}
		if started != nil && (sp.start.IsZero() || started.Before(sp.start)) {
			sp.start = *started
		}
		if completed != nil && completed.After(sp.end) {
			sp.end = *completed
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(stream))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var st status
		if json.Unmarshal(line, &st) != nil {
			continue
		}
		for _, v := range st.Vertexes {
			note(v.Digest, v.Name, v.Started, v.Completed)
		}
		for _, s := range st.Statuses {
			note(s.Vertex+"/"+s.ID, s.ID, s.Started, s.Completed)
		}
		for _, l := range st.Logs {
			logs.Write(l.Data)
		}
	}
	out := map[string]time.Duration{}
	for key, sp := range spans {
		if !sp.start.IsZero() && !sp.end.IsZero() {
			out[names[key]] += sp.end.Sub(sp.start)
		}
	}
	return out, busyboxTime(logs.String())
}

// busyboxReal matches the "real" line of busybox's time applet: "real	0m 2.32s".
var busyboxReal = regexp.MustCompile(`real\s+(\d+)m\s*([0-9.]+)s`)

func busyboxTime(out string) time.Duration {
	m := busyboxReal.FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	min, _ := strconv.Atoi(m[1])
	sec, _ := strconv.ParseFloat(m[2], 64)
	return time.Duration(min)*time.Minute + time.Duration(sec*float64(time.Second))
}

// step returns the duration of the first step whose name contains substr.
func (s sample) step(substr string) (time.Duration, bool) {
	var names []string
	for n := range s.Steps {
		if strings.Contains(n, substr) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return 0, false
	}
	sort.Strings(names)
	return s.Steps[names[0]], true
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
