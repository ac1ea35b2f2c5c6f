//go:build linux

// Command bench measures kiln against buildkitd + buildctl on the same
// private containerd and snapshotter: a cached and a --no-cache two-platform
// build, a CPU-bound RUN under QEMU (also against QEMU run directly), the
// export of a 200 MB layer with gzip and zstd, the real-world corpus on a
// Debian base (--no-cache, cached, cached with SOURCE_DATE_EPOCH), and peak
// memory. kiln and
// buildctl runs alternate within one run of the harness, so background load
// hits both alike; the report gives medians with min and max and the ratios
// kiln / peer. Run it as root through `make bench`, which builds buildkitd
// and buildctl from the BuildKit version in go.mod first.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	var (
		p           paths
		out         string
		runs, quick int
		rwRuns      int
		only        string
		budget      string
	)
	flag.StringVar(&p.kiln, "kiln", "bin/kiln", "the kiln binary to measure")
	flag.StringVar(&p.baseline, "baseline", "", "another kiln binary (say, of an older commit) to measure alongside in the cached, --no-cache and real-world builds")
	flag.StringVar(&p.tools, "tools", "_output/bin", "directory with containerd, containerd-shim-runc-v2, ctr, buildkitd and buildctl")
	flag.StringVar(&p.fixtures, "fixtures", "_output/fixtures", "busybox fixtures (hack/fixtures.sh) and the Debian root filesystems (hack/debian-fixtures.sh)")
	flag.StringVar(&p.corpus, "corpus", "integration/testdata/realworld", "the real-world corpus")
	flag.IntVar(&rwRuns, "realworld-runs", 3, "rounds of the real-world cold builds (the cached ones take -runs)")
	cases := flag.String("realworld-cases", strings.Join(realworldCases, ","), "the real-world cases to measure")
	flag.StringVar(&out, "out", "_output/bench", "directory for results.md and results.json")
	flag.IntVar(&runs, "runs", 5, "runs of each builder for the emulation and layer benchmarks")
	flag.IntVar(&quick, "consecutive", 10, "runs of each builder for the cached and --no-cache builds (also the consecutive builds of the memory figures)")
	flag.StringVar(&only, "only", "cached,nocache,emulation,layer,realworld", "benchmarks to run (budget, the real-world corpus under -budget, is not run by default)")
	flag.StringVar(&budget, "budget", "256MiB", "the --memory of the budget benchmark")
	flag.Parse()
	realworldCases = strings.Split(*cases, ",")
	if err := run(p, out, runs, quick, rwRuns, budget, strings.Split(only, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(p paths, outDir string, runs, quick, rwRuns int, budget string, only []string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the benchmarks start containerd and buildkitd and must run as root: sudo make bench")
	}
	if runs < 5 || quick < 5 {
		return fmt.Errorf("medians need at least 5 runs each")
	}
	if rwRuns < 3 {
		return fmt.Errorf("the real-world medians need at least 3 rounds")
	}
	for _, s := range []*string{&p.kiln, &p.baseline, &p.tools, &p.fixtures, &p.corpus, &outDir} {
		if *s == "" {
			continue
		}
		abs, err := filepath.Abs(*s)
		if err != nil {
			return err
		}
		*s = abs
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	}
	began := time.Now()
	m := describeMachine(p)
	logf("load average at start: %s", m.LoadStart)
	logf("starting containerd and buildkitd, building the busybox base")
	e, err := setup(p, logf)
	if err != nil {
		return err
	}
	defer e.close()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		logf("interrupted: stopping buildkitd and containerd")
		e.close()
		os.Exit(130)
	}()
	m.BuildkitdIdle = mb(rss(e.buildkitd.Pid()))

	app, emu, emuTrue, layer, err := e.contexts()
	if err != nil {
		return err
	}
	r := &results{Samples: map[string][]sample{}, Series: map[string][]float64{}}
	steps := []struct {
		name string
		fn   func() error
	}{
		{"cached", func() error { return e.benchCached(r, app, quick) }},
		{"nocache", func() error { return e.benchNoCache(r, app, quick) }},
		{"emulation", func() error { return e.benchEmulation(r, emu, emuTrue, runs) }},
		{"layer", func() error {
			for _, c := range []string{"gzip", "zstd"} {
				if err := e.benchLayer(r, layer, c, runs); err != nil {
					return err
				}
			}
			return nil
		}},
		{"realworld", func() error { return e.benchRealWorld(r, rwRuns, runs) }},
		{"budget", func() error { return e.benchBudget(r, budget) }},
	}
	for _, s := range steps {
		if !slices.Contains(only, s.name) {
			continue
		}
		if err := s.fn(); err != nil {
			return err
		}
	}
	m.LoadEnd = loadavg()
	m.Duration = time.Since(began).Round(time.Second).String()
	m.Runs = fmt.Sprintf("%d runs each for the cached and --no-cache builds, %d for the real-world --no-cache builds, %d for the others", quick, rwRuns, runs)
	for i := range r.Rows {
		r.Rows[i].finish()
	}

	report := markdown(m, r)
	fmt.Print(report)
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(outDir, "results.md"), []byte(report), 0o644); err != nil {
		return err
	}
	dt, err := json.MarshalIndent(struct {
		Machine machine  `json:"machine"`
		Results *results `json:"results"`
	}{m, r}, "", "  ")
	if err != nil {
		return err
	}
	logf("results in %s/results.md and results.json (took %s)", outDir, m.Duration)
	return os.WriteFile(filepath.Join(outDir, "results.json"), dt, 0o644)
}

// machine is what the report says about where it ran.
type machine struct {
	CPU           string  `json:"cpu"`
	Cores         int     `json:"cores"`
	Memory        string  `json:"memory"`
	Kernel        string  `json:"kernel"`
	Cgroup        string  `json:"cgroup"`
	Go            string  `json:"go"`
	Kiln          string  `json:"kiln"`
	Buildkit      string  `json:"buildkit"`
	Containerd    string  `json:"containerd"`
	QEMU          string  `json:"qemu"`
	LoadStart     string  `json:"loadStart"`
	LoadEnd       string  `json:"loadEnd"`
	Duration      string  `json:"duration"`
	Runs          string  `json:"runs"`
	BuildkitdIdle float64 `json:"buildkitdIdleMB"`
}

func describeMachine(p paths) machine {
	m := machine{Cores: runtime.NumCPU(), Go: runtime.Version(), LoadStart: loadavg(), Cgroup: "v1 (hybrid)"}
	if dt, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(dt), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if dt, err := os.ReadFile("/proc/meminfo"); err == nil {
		f := strings.Fields(string(dt))
		if len(f) > 1 {
			var kb int64
			fmt.Sscan(f[1], &kb)
			m.Memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		b := make([]byte, 0, len(u.Release))
		for _, c := range u.Release {
			if c == 0 {
				break
			}
			b = append(b, byte(c))
		}
		m.Kernel = string(b)
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		m.Cgroup = "v2"
	}
	first := func(bin string, args ...string) string {
		out, err := exec.Command(bin, args...).Output()
		if err != nil {
			return "unknown"
		}
		return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	m.Kiln = first(p.kiln, "version")
	m.Buildkit = first(p.tool("buildkitd"), "--version")
	m.Containerd = first(p.tool("containerd"), "--version")
	m.QEMU = first("/usr/bin/qemu-aarch64-static", "--version")
	return m
}

func loadavg() string {
	dt, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(dt))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
