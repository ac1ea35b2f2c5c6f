//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// appDockerfile is a small two-platform application: two RUN steps per
// platform (arm64 under QEMU) and a COPY from the context.
const appDockerfile = `FROM busybox
RUN echo "built on $(uname -m)" > /etc/motd && ls -lR /bin > /bin.list
COPY app.txt /app/
RUN wc -c /app/app.txt /bin.list > /app/sizes && cat /app/sizes
`

// emulationLoop is a CPU-bound shell loop: about 5 s of CPU under
// qemu-aarch64 on a 2026 x86-64 core, long enough that starting the step's
// container weighs as it does in real CPU-bound steps (compilers). The step
// runs it under busybox's time applet, and so does the direct run, so that
// the command's own time can be told from the step's.
const emulationLoop = `i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done`

// layerSize is the size of the layer the export benchmark writes.
const layerSize = 200_000_000

// layerDockerfile writes a 200 MB layer: half random bytes (incompressible),
// half decimal text (compresses about 3:1), so both compressors do real work.
var layerDockerfile = fmt.Sprintf(`FROM busybox
RUN head -c %d /dev/urandom > /random.bin && head -c 40000000 /dev/urandom | busybox od -A d -t u2 | head -c %d > /numbers.txt
`, layerSize/2, layerSize/2)

// contexts writes the build contexts into the bench directory.
func (e *env) contexts() (app, emu, emuTrue, layer string, err error) {
	write := func(name string, files map[string]string) (string, error) {
		dir := filepath.Join(e.dir, name)
		for f, content := range files {
			p := filepath.Join(dir, f)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return "", err
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				return "", err
			}
		}
		return dir, nil
	}
	if app, err = write("ctx-app", map[string]string{
		"Dockerfile": appDockerfile,
		"app.txt":    strings.Repeat("kiln benchmark application data\n", 2048),
	}); err != nil {
		return
	}
	if emu, err = write("ctx-emu", map[string]string{
		"Dockerfile": "FROM busybox\nRUN busybox time sh -c '" + emulationLoop + "'\n",
	}); err != nil {
		return
	}
	if emuTrue, err = write("ctx-emu-true", map[string]string{
		"Dockerfile": "FROM busybox\nRUN true\n",
	}); err != nil {
		return
	}
	layer, err = write("ctx-layer", map[string]string{"Dockerfile": layerDockerfile})
	return
}

// alternate runs every function once per round, n rounds, rotating which
// goes first so that background load and warm caches favour none of them.
// It returns the samples per function, in round order.
func alternate(n int, label string, logf func(string, ...any), fns ...func() (sample, error)) ([][]sample, error) {
	out := make([][]sample, len(fns))
	for i := 0; i < n; i++ {
		for j := range fns {
			k := (i + j) % len(fns)
			s, err := fns[k]()
			if err != nil {
				// Tests on a shared machine may briefly remove the arm64
				// binfmt_misc handler, or load it heavily: retry once.
				logf("%s, round %d: %v; retrying once", label, i+1, firstLine(err))
				time.Sleep(5 * time.Second)
				s, err = fns[k]()
			}
			if err != nil {
				return nil, fmt.Errorf("%s, round %d: %w", label, i+1, err)
			}
			out[k] = append(out[k], s)
		}
		logf("%s: round %d/%d done", label, i+1, n)
	}
	return out, nil
}

func firstLine(err error) string {
	line, _, _ := strings.Cut(err.Error(), "\n")
	return line
}

// results is everything one `make bench` measured.
type results struct {
	Rows    []row                `json:"rows"`
	Samples map[string][]sample  `json:"samples"`
	Series  map[string][]float64 `json:"series"`
}

func (r *results) keep(name string, s []sample) { r.Samples[name] = s }

// keepBaseline keeps the baseline kiln's samples of a comparison, when one
// was measured (the third builder).
func (r *results) keepBaseline(key string, s [][]sample) {
	if len(s) > 2 {
		r.keep(key+"/baseline", s[2])
	}
}

// benchCached: a fully cached two-platform rebuild, the whole kiln process
// against buildctl talking to the already-running buildkitd.
func (e *env) benchCached(r *results, ctxDir string, n int) error {
	b := build{context: ctxDir, tag: "bench-app", platforms: "linux/amd64,linux/arm64"}
	// The first build of each fills its cache; it is not measured.
	if err := e.warm(b); err != nil {
		return err
	}
	s, err := e.alternateBuilders(n, "cached rebuild", b)
	if err != nil {
		return err
	}
	r.compareBuilds("cached", "cached two-platform rebuild", "cached rebuild", s)
	r.Rows = append(r.Rows, baselineRows("cached rebuild", s)...)
	return nil
}

// benchNoCache: a --no-cache two-platform build, n consecutive builds each;
// it also gives the memory figures across consecutive builds.
func (e *env) benchNoCache(r *results, ctxDir string, n int) error {
	b := build{context: ctxDir, tag: "bench-app", platforms: "linux/amd64,linux/arm64", noCache: true}
	before := rss(e.buildkitd.Pid())
	s, err := e.alternateBuilders(n, "--no-cache build", b)
	if err != nil {
		return err
	}
	r.compareBuilds("nocache", "--no-cache two-platform build", "--no-cache build", s)

	var kilnPeaks, bkAfter []float64
	for i := range s[0] {
		kilnPeaks = append(kilnPeaks, mb(s[0][i].MaxRSS))
		bkAfter = append(bkAfter, mb(s[1][i].DaemonAfter))
	}
	r.Series["kiln peak RSS per --no-cache build (MB)"] = kilnPeaks
	r.Series["buildkitd RSS after each --no-cache build (MB)"] = bkAfter
	k := summarize(kilnPeaks)
	flat := k.Max <= k.Min*1.10 && kilnPeaks[len(kilnPeaks)-1] <= kilnPeaks[0]*1.10
	r.Rows = append(r.Rows, row{
		Name: fmt.Sprintf("RSS growth over %d consecutive builds", n), Unit: "MB",
		Kiln:     stat{Median: kilnPeaks[len(kilnPeaks)-1] - kilnPeaks[0], Min: k.Min, Max: k.Max},
		Peer:     stat{Median: bkAfter[len(bkAfter)-1] - bkAfter[0], Min: mb(before), Max: bkAfter[len(bkAfter)-1]},
		PeerName: "buildkitd",
		Target:   "kiln flat (spread <= 10%)", flat: &flat, noRatio: true,
		Note: fmt.Sprintf("kiln: peak of build %d minus build 1 (min-max of all); buildkitd: RSS after build %d minus after build 1 (before the first: %.0f MB)",
			n, n, mb(before)),
	})
	r.Rows = append(r.Rows, baselineRows("--no-cache build", s)...)
	return nil
}

// compareBuilds keeps kiln's and buildctl's samples (s[0], s[1]) of the
// two-platform build under key/ and adds the rows comparing their wall time
// (target: kiln no slower), CPU time and memory; long names the build in
// the time rows, short in the memory rows.
func (r *results) compareBuilds(key, long, short string, s [][]sample) {
	r.keep(key+"/kiln", s[0])
	r.keep(key+"/buildctl", s[1])
	r.keepBaseline(key, s)
	r.Rows = append(r.Rows,
		wallRow(long+" (wall)", s[0], s[1], "<= 1.0x", 1.0),
		cpuRow(long+" (CPU)", s[0], s[1]),
		memRow("peak RSS, "+short, s[0], s[1]),
		anonRow("peak anonymous memory, "+short, s[0], s[1]))
}

// builders are kiln, buildctl and, when one is given, the baseline kiln.
func (e *env) builders() []func(build) (sample, error) {
	fs := []func(build) (sample, error){e.kilnBuild, e.buildctlBuild}
	if e.baseline != "" {
		fs = append(fs, e.baselineBuild)
	}
	return fs
}

// warm runs b once with every builder, unmeasured: caches filled, first-time
// costs paid.
func (e *env) warm(b build) error {
	for _, f := range e.builders() {
		if _, err := f(b); err != nil {
			return err
		}
	}
	return nil
}

// alternateBuilders runs b n times with every builder, alternating.
func (e *env) alternateBuilders(n int, label string, b build) ([][]sample, error) {
	var fns []func() (sample, error)
	for _, f := range e.builders() {
		fns = append(fns, func() (sample, error) { return f(b) })
	}
	return alternate(n, label, e.logf, fns...)
}

// baselineRows compare kiln with the baseline kiln, when one was measured:
// the ratio is after / before.
func baselineRows(name string, s [][]sample) []row {
	if len(s) < 3 {
		return nil
	}
	w := wallRow(name+", kiln against the baseline kiln (wall)", s[0], s[2], "", 0)
	c := cpuRow(name+", kiln against the baseline kiln (CPU)", s[0], s[2])
	m := memRow(name+", kiln against the baseline kiln (peak RSS)", s[0], s[2])
	m.Target, m.limit = "", 0
	for _, x := range []*row{&w, &c, &m} {
		x.PeerName = "baseline kiln"
	}
	return []row{w, c, m}
}

// benchEmulation: a CPU-bound RUN for linux/arm64 under QEMU, against the
// same loop run directly by the QEMU binary the binfmt handler names. A
// "RUN true" step measures what every step costs besides its command
// (snapshot, container, shim, QEMU start), to tell it from how fast the
// emulated command itself runs.
func (e *env) benchEmulation(r *results, ctxDir, trueDir string, n int) error {
	b := build{context: ctxDir, tag: "bench-emu", platforms: "linux/arm64", noCache: true}
	t := build{context: trueDir, tag: "bench-emu-true", platforms: "linux/arm64", noCache: true}
	bb := filepath.Join(e.fixtures, "busybox-arm64")
	s, err := alternate(n, "emulated RUN", e.logf,
		func() (sample, error) { return e.kilnBuild(b) },
		func() (sample, error) { return e.buildctlBuild(b) },
		func() (sample, error) { return e.measure(nil, e.qemu, bb, "time", "sh", "-c", emulationLoop) },
		func() (sample, error) { return e.kilnBuild(t) },
		func() (sample, error) { return e.buildctlBuild(t) })
	if err != nil {
		return err
	}
	for i, name := range []string{"kiln", "buildctl", "qemu", "kiln-true", "buildctl-true"} {
		r.keep("emulation/"+name, s[i])
	}
	runOf := func(ss []sample, cmd string) ([]float64, error) {
		var out []float64
		for _, x := range ss {
			d, ok := x.step("RUN " + cmd)
			if !ok {
				return nil, fmt.Errorf("no RUN %s step in the progress stream", cmd)
			}
			out = append(out, d.Seconds())
		}
		return out, nil
	}
	var runs [5][]float64
	for i, c := range []string{"busybox time", "busybox time", "", "true", "true"} {
		if c == "" {
			runs[i] = seconds(s[i])
			continue
		}
		if runs[i], err = runOf(s[i], c); err != nil {
			return err
		}
	}
	kRun, bRun, direct, kTrue, bTrue := summarize(runs[0]), summarize(runs[1]), summarize(runs[2]), summarize(runs[3]), summarize(runs[4])
	r.Rows = append(r.Rows,
		row{Name: "emulated CPU-bound RUN step vs direct QEMU", Unit: "s", Kiln: kRun, Peer: direct,
			PeerName: "qemu-aarch64 directly", Target: "<= 1.1x", limit: 1.1,
			Note: "RUN step time from the progress stream; direct: the same loop, same busybox, same QEMU binary"},
		row{Name: "emulated CPU-bound RUN step vs buildctl", Unit: "s", Kiln: kRun, Peer: bRun,
			PeerName: "buildctl + buildkitd"},
		row{Name: "fixed cost of an emulated step (RUN true)", Unit: "s", Kiln: kTrue, Peer: bTrue,
			PeerName: "buildctl + buildkitd",
			Note:     "snapshot, container and shim start, QEMU start and teardown, the same for any command"},
		row{Name: "emulated command inside the step vs direct QEMU", Unit: "s",
			Kiln: summarize(timed(s[0])), Peer: summarize(timed(s[2])), PeerName: "qemu-aarch64 directly",
			Note: "the loop's own time as busybox time prints it, in kiln's step and run directly: the speed of emulated code itself"},
		wallRow("emulated RUN, whole build (wall)", s[0], s[1], "", 0))
	return nil
}

// benchLayer: a build that writes a 200 MB layer, exported with the given
// compression; throughput is the layer size over the exporter's
// "exporting layers" step. Both caches are pruned before every round so each
// build starts from the same state.
func (e *env) benchLayer(r *results, ctxDir, compression string, n int) error {
	b := build{context: ctxDir, tag: "bench-layer-" + compression, noCache: true,
		attrs: map[string]string{"compression": compression}}
	prune := func() error {
		if out, err := exec.Command(e.kiln, "--address", e.address, "--namespace", kilnNamespace, "--root", e.kilnRoot,
			"prune", "--all").CombinedOutput(); err != nil {
			return fmt.Errorf("kiln prune: %v: %s", err, out)
		}
		if out, err := exec.Command(e.tool("buildctl"), "--addr", e.bkAddress, "prune", "--all").CombinedOutput(); err != nil {
			return fmt.Errorf("buildctl prune: %v: %s", err, out)
		}
		return nil
	}
	pruned := func(f func(build) (sample, error)) func() (sample, error) {
		return func() (sample, error) {
			if err := prune(); err != nil {
				return sample{}, err
			}
			return f(b)
		}
	}
	fns := []func() (sample, error){pruned(e.kilnBuild), pruned(e.buildctlBuild)}
	if compression == "gzip" {
		// kiln with buildkitd's compressor: what the parallel one adds.
		bb := b
		bb.kilnFlags = []string{"--buildkitd-gzip"}
		fns = append(fns, func() (sample, error) {
			if err := prune(); err != nil {
				return sample{}, err
			}
			return e.kilnBuild(bb)
		})
	}
	s, err := alternate(n, "200 MB layer, "+compression, e.logf, fns...)
	if err != nil {
		return err
	}
	if err := prune(); err != nil {
		return err
	}
	r.keep("layer-"+compression+"/kiln", s[0])
	r.keep("layer-"+compression+"/buildctl", s[1])
	tput := func(ss []sample) ([]float64, error) {
		var out []float64
		for _, x := range ss {
			d, ok := x.step("exporting layers")
			if !ok || d <= 0 {
				return nil, fmt.Errorf("no \"exporting layers\" step in the progress stream")
			}
			out = append(out, float64(layerSize)/1e6/d.Seconds())
		}
		return out, nil
	}
	kt, err := tput(s[0])
	if err != nil {
		return err
	}
	bt, err := tput(s[1])
	if err != nil {
		return err
	}
	// gzip: kiln compresses on every core (package layers), buildkitd on one;
	// zstd is BuildKit's compressor in both.
	target, limit := ">= 1.0x", 1.0
	if compression == "gzip" {
		target, limit = ">= 1.7x", 1.7
	}
	r.Rows = append(r.Rows,
		row{Name: "200 MB layer export, " + compression, Unit: "MB/s", Kiln: summarize(kt), Peer: summarize(bt),
			PeerName: "buildctl + buildkitd", Target: target, limit: limit, higher: true,
			Note: "uncompressed MB per second of the exporter's \"exporting layers\" step"},
		wallRow("200 MB layer build, "+compression+" (wall)", s[0], s[1], "", 0),
		memRow("peak RSS, 200 MB layer, "+compression, s[0], s[1]),
		anonRow("peak anonymous memory, 200 MB layer, "+compression, s[0], s[1]))
	if len(s) > 2 {
		r.keep("layer-gzip/kiln-buildkitd-gzip", s[2])
		ct, err := tput(s[2])
		if err != nil {
			return err
		}
		r.Rows = append(r.Rows,
			row{Name: "200 MB layer export, gzip, kiln --buildkitd-gzip", Unit: "MB/s", Kiln: summarize(ct), Peer: summarize(bt),
				PeerName: "buildctl + buildkitd", higher: true,
				Note: "kiln with buildkitd's compressor: the same bytes as buildkitd's"},
			memRow("peak RSS, 200 MB layer, gzip, kiln --buildkitd-gzip", s[2], s[1]))
	}
	return nil
}

func wallRow(name string, kiln, peer []sample, target string, limit float64) row {
	return row{Name: name, Unit: "s", Kiln: summarize(seconds(kiln)), Peer: summarize(seconds(peer)),
		PeerName: "buildctl + buildkitd", Target: target, limit: limit}
}

// memRow compares kiln's peak RSS with buildkitd's peak during the same
// build plus buildctl's own.
func memRow(name string, kiln, peer []sample) row {
	k := each(kiln, func(s sample) float64 { return mb(s.MaxRSS) })
	p := each(peer, func(s sample) float64 { return mb(s.DaemonPeak + s.MaxRSS) })
	return row{Name: name, Unit: "MB", Kiln: summarize(k), Peer: summarize(p),
		PeerName: "buildkitd + buildctl", Target: "<= 0.5x", limit: 0.5}
}

// cpuRow compares the CPU time of kiln (with the probes and other children
// it waited for) with buildctl's plus buildkitd's during the same build.
func cpuRow(name string, kiln, peer []sample) row {
	cpu := func(s sample) float64 { return s.CPU.Seconds() }
	return row{Name: name, Unit: "s", Kiln: summarize(each(kiln, cpu)), Peer: summarize(each(peer, cpu)),
		PeerName: "buildctl + buildkitd"}
}

// anonRow is memRow for the anonymous part of the RSS: memory of the
// process's own, without the pages of its binary and libraries, which are
// file-backed and shared with the page cache. Sampled every 10 ms.
func anonRow(name string, kiln, peer []sample) row {
	k := each(kiln, func(s sample) float64 { return mb(s.AnonPeak) })
	p := each(peer, func(s sample) float64 { return mb(s.DaemonAnonPeak + s.AnonPeak) })
	return row{Name: name, Unit: "MB", Kiln: summarize(k), Peer: summarize(p), PeerName: "buildkitd + buildctl"}
}

// timed returns the busybox time measurements of the samples.
func timed(ss []sample) []float64 {
	out := make([]float64, len(ss))
	for i, s := range ss {
		out[i] = s.Timed.Seconds()
	}
	return out
}

func seconds(ss []sample) []float64 {
	return each(ss, func(s sample) float64 { return s.Wall.Seconds() })
}

// each is f of every sample, the figures a row summarises.
func each(ss []sample, f func(sample) float64) []float64 {
	out := make([]float64, len(ss))
	for i, s := range ss {
		out[i] = f(s)
	}
	return out
}

func mb(b int64) float64 { return float64(b) / 1e6 }
