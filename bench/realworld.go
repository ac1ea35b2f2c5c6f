//go:build linux

package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The real-world corpus (integration/testdata/realworld, TestRealWorld) on a Debian bookworm
// base made from hack/debian-fixtures.sh's tarballs: a representative subset, each for
// linux/amd64 and linux/arm64 (under QEMU), built --no-cache and cached by kiln and by buildctl
// with the warm buildkitd, alternating; and the cached rebuild of the case with the 100 MB layer
// with SOURCE_DATE_EPOCH (#21.1: kiln reuses the layers it rewrote before, buildkitd rewrites
// them at every export).

// debianImage is the base the corpus builds FROM, in both namespaces.
const debianImage = "docker.io/library/debian:bookworm"

// debianEpoch pins the base image's timestamps, as TestRealWorld's harness does, and is the
// epoch of the builds with SOURCE_DATE_EPOCH.
const debianEpoch = "1704067200"

// realworldCases are the cases measured by default (about 11 minutes): 30 steps in one stage,
// the file-system case (users, links, capabilities, whiteouts, a 100 MB layer, apt-get in a
// tools stage, which is built once and not measured), 20 stages the solver schedules side by
// side, and a context of 20,000 files (the context's transfer and COPY, the same code in
// both). apt, gcc and cross are left out: their cold builds spend most of their minutes
// downloading and installing packages (under QEMU for arm64), which measures the mirror and
// QEMU, the same for both builders.
var realworldCases = []string{"steps", "fs", "stages", "context"}

const bothPlatforms = "linux/amd64,linux/arm64"

// importDebian builds the two-platform Debian base once with kiln into an OCI archive and
// imports it into both namespaces, unpacked, as TestRealWorld does.
func (e *env) importDebian() error {
	dir := filepath.Join(e.dir, "ctx-debian")
	if e.debianImported {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, arch := range []string{"amd64", "arm64"} {
		name := "rootfs-" + arch + ".tar"
		src := filepath.Join(e.fixtures, "debian", name)
		if _, err := os.Stat(src); err != nil {
			return fmt.Errorf("%w: make the Debian fixtures with hack/debian-fixtures.sh (`make deps` does)", err)
		}
		if err := os.Link(src, filepath.Join(dir, name)); err != nil {
			if out, err := exec.Command("cp", src, filepath.Join(dir, name)).CombinedOutput(); err != nil {
				return fmt.Errorf("copying %s: %v: %s", name, err, out)
			}
		}
	}
	df := "FROM scratch\nARG TARGETARCH\nADD rootfs-${TARGETARCH}.tar /\nCMD [\"bash\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		return err
	}
	archive := filepath.Join(e.dir, "debian.tar")
	cmd := exec.Command(e.kiln, "--address", e.address, "--namespace", "kiln-bench-debian", "--root", filepath.Join(e.dir, "kiln-debian"),
		"build", "--progress", "plain", "--platform", bothPlatforms, "--source-date-epoch", debianEpoch,
		"-t", debianImage, "-o", "type=oci,dest="+archive, dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the Debian base: %v:\n%s", err, lastLines(string(out), 15))
	}
	for _, ns := range []string{kilnNamespace, buildkitNamespace} {
		if out, err := exec.Command(e.tool("ctr"), "-a", e.address, "-n", ns, "images", "import", "--all-platforms", archive).CombinedOutput(); err != nil {
			return fmt.Errorf("importing the Debian base into %s: %v: %s", ns, err, out)
		}
	}
	e.debianImported = true
	return nil
}

// realworldContext copies a case of the corpus into the bench directory with the files its
// test generates (the same files: seeded, deterministic), once per bench run.
func (e *env) realworldContext(name string) (string, error) {
	dir := filepath.Join(e.dir, "ctx-rw-"+name)
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(e.corpus, name), dir).CombinedOutput(); err != nil {
		return "", fmt.Errorf("copying the %s case: %v: %s", name, err, out)
	}
	switch name {
	case "fs":
		// The final stage gets a name, so that its "cold" build can rebuild it alone
		// (see benchRealWorld).
		df := filepath.Join(dir, "Dockerfile")
		b, err := os.ReadFile(df)
		if err != nil {
			return "", err
		}
		named := strings.Replace(string(b), "\nFROM debian:bookworm\n", "\nFROM debian:bookworm AS final\n", 1)
		if named == string(b) {
			return "", fmt.Errorf("the fs case's Dockerfile has no final FROM debian:bookworm line to name")
		}
		if err := os.WriteFile(df, []byte(named), 0o644); err != nil {
			return "", err
		}
		return dir, writeBig(filepath.Join(dir, "big.bin"))
	case "context":
		return dir, writeContextFiles(dir)
	}
	return dir, nil
}

// writeBig writes the fs case's big.bin: 100 MiB, incompressible (TestRealWorld's
// setupRealWorldFS writes the same bytes).
func writeBig(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	rng := rand.NewChaCha8([32]byte{'k', 'i', 'l', 'n'})
	buf := make([]byte, 1<<20)
	for i := 0; i < 100; i++ {
		rng.Read(buf)
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// writeContextFiles writes the context case's 20,000 files (as TestRealWorld's
// setupRealWorldContext): 100 directories of 180 kept and 10 ignored files, 999 ignored
// build outputs and one file .dockerignore takes back.
func writeContextFiles(dir string) error {
	write := func(rel, content string) error {
		return os.WriteFile(filepath.Join(dir, rel), []byte(content), 0o644)
	}
	if err := os.MkdirAll(filepath.Join(dir, "build"), 0o755); err != nil {
		return err
	}
	for d := 0; d < 100; d++ {
		sub := fmt.Sprintf("src/pkg%03d", d)
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
		for f := 0; f < 180; f++ {
			if err := write(fmt.Sprintf("%s/file%03d.txt", sub, f), fmt.Sprintf("package %d file %d\n", d, f)); err != nil {
				return err
			}
		}
		for f := 0; f < 10; f++ {
			if err := write(fmt.Sprintf("%s/scratch%02d.tmp", sub, f), "scratch\n"); err != nil {
				return err
			}
		}
	}
	for f := 0; f < 999; f++ {
		if err := write(fmt.Sprintf("build/obj%04d.o", f), "object\n"); err != nil {
			return err
		}
	}
	return write("src/keep.tmp", "wanted back\n")
}

// benchRealWorld measures every case of realworldCases: cold (--no-cache) in runs rounds,
// cached in cached rounds; then the fs case's cached rebuild with and without the epoch.
func (e *env) benchRealWorld(r *results, runs, cached int) error {
	e.logf("real world: building the Debian base and importing it into both namespaces")
	if err := e.importDebian(); err != nil {
		return err
	}
	for _, c := range realworldCases {
		dir, err := e.realworldContext(c)
		if err != nil {
			return err
		}
		b := build{context: dir, tag: "rw-" + c, platforms: bothPlatforms, noCache: true}
		cold := "--no-cache"
		if c == "fs" {
			// The tools stage is apt-get under QEMU for arm64: minutes of the mirror and
			// QEMU, the same for both. It is built once, unmeasured; the measured build
			// rebuilds the image's own stage (users, links, whiteouts, the 100 MB layer).
			b.noCache, b.noCacheStage, cold = false, "final", "final stage without cache"
			if err := e.warm(build{context: dir, tag: b.tag, platforms: b.platforms}); err != nil {
				return err
			}
		}
		s, err := e.alternateBuilders(runs, "real world "+c+", "+cold, b)
		if err != nil {
			return err
		}
		r.keep("realworld-"+c+"-cold/kiln", s[0])
		r.keep("realworld-"+c+"-cold/buildctl", s[1])
		r.Rows = append(r.Rows,
			wallRow("real world "+c+", "+cold+" (wall)", s[0], s[1], "<= 0.8x", 0.8),
			cpuRow("real world "+c+", "+cold+" (CPU)", s[0], s[1]),
			noTarget(memRow("peak RSS, real world "+c+", "+cold, s[0], s[1])))
		r.Rows[len(r.Rows)-3].Note = exportNote(s[0], s[1])
		if c == "context" {
			r.Rows[len(r.Rows)-3].Note += "; " + phaseNote(s[0], s[1], "buildkitd", contextPhases)
		}
		r.keepBaseline("realworld-"+c+"-cold", s)
		r.Rows = append(r.Rows, baselineRows("real world "+c+", "+cold, s)...)
		if c == "context" && len(s) > 2 {
			r.Rows[len(r.Rows)-3].Note = phaseNote(s[0], s[2], "the baseline kiln", contextPhases)
		}

		b.noCache, b.noCacheStage = false, ""
		s, err = e.alternateBuilders(cached, "real world "+c+", cached", b)
		if err != nil {
			return err
		}
		r.keep("realworld-"+c+"-cached/kiln", s[0])
		r.keep("realworld-"+c+"-cached/buildctl", s[1])
		r.Rows = append(r.Rows,
			wallRow("real world "+c+", cached (wall)", s[0], s[1], "<= 1.0x", 1.0),
			noTarget(memRow("peak RSS, real world "+c+", cached", s[0], s[1])))
		r.keepBaseline("realworld-"+c+"-cached", s)
		r.Rows = append(r.Rows, baselineRows("real world "+c+", cached", s)...)

		if c != "fs" {
			continue
		}
		// #21.1: the cached rebuild with SOURCE_DATE_EPOCH. One unmeasured build each
		// first: kiln rewrites the layers once for the epoch and remembers them.
		be := b
		be.epoch = debianEpoch
		if err := e.warm(be); err != nil {
			return err
		}
		se, err := e.alternateBuilders(cached, "real world fs, cached, --source-date-epoch", be)
		if err != nil {
			return err
		}
		r.keep("realworld-fs-cached-epoch/kiln", se[0])
		r.keep("realworld-fs-cached-epoch/buildctl", se[1])
		withEpoch := wallRow("real world fs, cached, --source-date-epoch (wall)", se[0], se[1], "<= 1.0x", 1.0)
		withEpoch.Note = "buildctl: build-arg:SOURCE_DATE_EPOCH and rewrite-timestamp=true; buildkitd rewrites every layer above the base at every export, kiln reuses its earlier rewrites"
		own := row{Name: "real world fs, cached: with --source-date-epoch against without (kiln)", Unit: "s",
			Kiln: summarize(seconds(se[0])), Peer: summarize(seconds(s[0])), PeerName: "kiln without the epoch",
			Target: "<= 1.1x", limit: 1.1,
			Note: "#21.1: a cached reproducible build costs what a cached build costs"}
		bkOwn := row{Name: "real world fs, cached: with --source-date-epoch against without (buildkitd)", Unit: "s",
			Kiln: summarize(seconds(se[1])), Peer: summarize(seconds(s[1])), PeerName: "buildctl without the epoch"}
		r.Rows = append(r.Rows, withEpoch, own, bkOwn)
	}
	return nil
}

// noTarget is a row without target: the real-world builds' memory is reported, not
// aimed at (a 20,000-file context is held in both builders while it is sent).
func noTarget(r row) row {
	r.Target, r.limit = "", 0
	return r
}

// contextPhases are the steps of the context case's cold build, in the
// order they run: the context's transfer, the COPY and the RUN of each
// platform (side by side), the export. Both builders run the same BuildKit
// code in each; the medians show which of them bounds the ratio.
var contextPhases = []string{
	"[internal] load build context",
	"[linux/amd64 2/3] COPY", "[linux/arm64 2/3] COPY",
	"[linux/amd64 3/3] RUN", "[linux/arm64 3/3] RUN",
	"exporting layers",
}

// phaseNote gives the median time of each of the steps named (a prefix of
// the step's name) in kiln's builds and the peer's, named peerName.
func phaseNote(kiln, peer []sample, peerName string, phases []string) string {
	var parts []string
	for _, p := range phases {
		parts = append(parts, fmt.Sprintf("%s kiln %.2f s, %s %.2f s", p, stepMedian(kiln, p), peerName, stepMedian(peer, p)))
	}
	return "steps (median): " + strings.Join(parts, "; ")
}

// stepMedian is the median duration, in seconds, of the first step whose
// name contains substr, over the samples that have one.
func stepMedian(ss []sample, substr string) float64 {
	var xs []float64
	for _, s := range ss {
		if d, ok := s.step(substr); ok {
			xs = append(xs, d.Seconds())
		}
	}
	return summarize(xs).Median
}

// exportNote gives the median time of the "exporting layers" step of kiln's and
// buildkitd's builds: what compressing the new layers took.
func exportNote(kiln, peer []sample) string {
	return fmt.Sprintf("the \"exporting layers\" step (median): kiln %.1f s, buildkitd %.1f s", stepMedian(kiln, "exporting layers"), stepMedian(peer, "exporting layers"))
}
