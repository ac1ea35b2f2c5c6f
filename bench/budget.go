//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/docker/go-units"
)

// budgetCases are the real-world cases built under a memory budget: the whole corpus, each for
// linux/amd64 and linux/arm64 (the arm64 half's steps run under QEMU, whose own memory the
// budget holds too).
var budgetCases = []string{"steps", "fs", "context", "stages", "apt", "gcc", "cross"}

// benchBudget builds every case of the corpus once, --no-cache, with kiln under --memory budget
// (#17), and reports the build cgroup's peak memory against the budget, and kiln's own peak
// RSS, which stays outside the budget so that the OOM killer takes a step and not kiln.
// buildkitd has no per-build budget, so there is no peer: the budget is the row's reference.
func (e *env) benchBudget(r *results, budget string) error {
	limit, err := units.RAMInBytes(budget)
	if err != nil || limit <= 0 {
		return fmt.Errorf("-budget %q is not a memory size (say 256MiB)", budget)
	}
	if err := e.importDebian(); err != nil {
		return err
	}
	for _, c := range budgetCases {
		dir, err := e.realworldContext(c)
		if err != nil {
			return err
		}
		e.logf("budget %s: real world %s, --no-cache, %s", budget, c, bothPlatforms)
		b := build{context: dir, tag: "rw-budget-" + c, platforms: bothPlatforms, noCache: true,
			kilnFlags: []string{"--memory", budget}}
		stop := pollCgroupPeak()
		s, err := e.kilnBuild(b)
		peak := stop()
		result := fmt.Sprintf("built in %.0f s", s.Wall.Seconds())
		if err != nil {
			if !strings.Contains(err.Error(), "ran out of memory") {
				return err
			}
			result = "failed: a step ran out of memory (kiln's one-line error naming the step and the budget)"
		}
		within := peak <= limit
		x := row{Name: "budget " + budget + ": real world " + c + ", --no-cache, amd64 and arm64 (steps' peak)",
			Unit: "MB", Kiln: one(mb(peak)), Peer: one(mb(limit)), PeerName: "--memory " + budget,
			Target: "<= 1.0x", flat: &within,
			Note: fmt.Sprintf("%s; kiln's own peak RSS %.0f MB (outside the budget); steps and kiln together %.0f MB",
				result, mb(s.MaxRSS), mb(peak+s.MaxRSS))}
		r.Rows = append(r.Rows, x)
		r.keep("budget-"+c+"/kiln", []sample{s})
	}
	return nil
}

// one is the stat of a single measurement.
func one(v float64) stat { return stat{Median: v, Min: v, Max: v} }

// pollCgroupPeak polls the peak memory of kiln's build cgroups every 100 ms until the function
// it returns is called, which returns the highest value seen. The build's cgroup goes away
// when the build ends, so its peak has to be read while it runs; the usage counts page cache
// the kernel reclaims under the limit, so a busy build's peak reaches its budget.
func pollCgroupPeak() (stop func() int64) {
	return sampleMax(100*time.Millisecond, func(highest int64) int64 { return max(highest, cgroupPeak()) })
}

// cgroupPeak is the highest peak memory of kiln's build cgroups now: cgroup v1's
// memory.max_usage_in_bytes, v2's memory.peak.
func cgroupPeak() int64 {
	var highest int64
	for _, g := range []string{"/sys/fs/cgroup/memory/kiln/*/build-*/memory.max_usage_in_bytes", "/sys/fs/cgroup/kiln/*/build-*/memory.peak"} {
		files, _ := filepath.Glob(g)
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			if v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
				highest = max(highest, v)
			}
		}
	}
	return highest
}
