//go:build linux

package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The real-world corpus: every directory under testdata/realworld is a build context of what
// users build FROM debian:bookworm (apt-get, gcc natively, under QEMU and as a cross compiler,
// users, setuid bits, hard links, capabilities, whiteouts, a 100 MB layer, 30 steps, 20 stages,
// 20,000 context files). Each is built for linux/amd64 and linux/arm64 by kiln and by buildkitd
// (its containerd worker, on the same containerd) with the same SOURCE_DATE_EPOCH; the images
// must have the same digest, or, where a step's output differs between any two runs (apt's logs
// and caches), the same file trees but for the listed paths (docs/realworld.md). Then each
// platform of kiln's image runs under `ctr run` and is checked from inside.
// Run one case with go test -run 'TestRealWorld/apt' ./integration/.

// realworldPlatforms are the platforms every case is built for.
var realworldPlatforms = []string{"linux/amd64", "linux/arm64"}

// realworldEpoch is every build's SOURCE_DATE_EPOCH.
const realworldEpoch = debianEpoch

// aptIgnore are the paths an apt-get install writes differently in any two runs, whoever builds:
// kiln against buildkitd, or kiln against itself with --no-cache (KILN_REALWORLD_SELFCHECK=1
// checks). These files must still be in both, with the same type, mode, owner, xattrs and
// time; their contents (and so sizes) may differ. docs/realworld.md lists them too.
var aptIgnore = []ignoredPath{
	// apt's binary caches of the package lists: they record the lists' modification times
	// (when apt-get update downloaded them), so they differ even when the lists do not.
	{"var/cache/apt/pkgcache.bin", "apt's package cache: records when the lists were fetched"},
	{"var/cache/apt/srcpkgcache.bin", "apt's source package cache: likewise"},
	// ldconfig's auxiliary cache is keyed by the libraries' inode numbers and change times.
	{"var/cache/ldconfig/aux-cache", "ldconfig's cache: inode numbers and ctimes of the libraries"},
	// Logs: every line carries the wall-clock time of the install.
	{"var/log/dpkg.log", "dpkg's log: timestamped lines"},
	{"var/log/alternatives.log", "update-alternatives' log: timestamped lines"},
	{"var/log/apt/history.log", "apt's history: Start-Date and End-Date"},
	{"var/log/apt/term.log", "apt's terminal log: Log started/ended times"},
}

// realworldCase is one directory of testdata/realworld.
type realworldCase struct {
	name string
	// deterministic: no step's output depends on the time or the network, so kiln's and
	// buildkitd's index digests must be equal. Otherwise the trees are compared, but for ignore.
	deterministic bool
	ignore        []ignoredPath
	// setup writes generated files into the context and keeps values for check.
	setup func(t *testing.T, r *realworldRun)
	// check runs kiln's image (r.run) and reads its layers.
	check func(t *testing.T, r *realworldRun)
}

// realworldRun is one running case.
type realworldRun struct {
	e      *env
	ctx    string // a copy of the case directory, with what setup wrote
	name   string // image name in both namespaces
	digest string // kiln's index digest
	data   map[string]string
	// kilnOut is kiln's progress output.
	kilnOut string
}

func realworldCases() []realworldCase {
	// Slowest first: with two cases at a time (go test's -parallel is GOMAXPROCS), the long QEMU
	// builds start at once and the quick ones fill the gaps.
	return []realworldCase{
		{name: "gcc", deterministic: true, check: checkRealWorldGCC},
		{name: "apt", ignore: aptIgnore, check: checkRealWorldApt},
		{name: "fs", deterministic: true, setup: setupRealWorldFS, check: checkRealWorldFS},
		{name: "cross", deterministic: true, check: checkRealWorldCross},
		{name: "context", deterministic: true, setup: setupRealWorldContext, check: checkRealWorldContext},
		{name: "stages", deterministic: true, check: checkRealWorldStages},
		{name: "steps", deterministic: true, check: checkRealWorldSteps},
	}
}

func TestRealWorld(t *testing.T) {
	start := time.Now()
	debianArchive(t)
	bk := sharedBuildkitd(t)
	var mu sync.Mutex
	var timings []string
	covered := map[string]bool{}
	// After the parallel subtests.
	t.Cleanup(func() {
		sort.Strings(timings)
		t.Logf("timing: the real-world corpus in %.1fs (kiln and buildctl side by side, two cases at a time):\n  %s",
			time.Since(start).Seconds(), strings.Join(timings, "\n  "))
	})
	for _, tc := range realworldCases() {
		covered[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			caseStart := time.Now()
			r := &realworldRun{e: newEnv(t), name: "docker.io/library/realworld-" + tc.name + ":latest", data: map[string]string{}}
			debianBase(t, r.e.Namespace)
			r.ctx = filepath.Join(t.TempDir(), "ctx")
			if out, err := exec.Command("cp", "-a", filepath.Join("testdata", "realworld", tc.name), r.ctx).CombinedOutput(); err != nil {
				t.Fatalf("copying the case: %v: %s", err, out)
			}
			if tc.setup != nil {
				tc.setup(t, r)
			}
			// kiln and buildctl side by side: the steps wait on the network and on
			// QEMU, and the two builders share nothing but containerd.
			var kiln, bkRes result
			var kilnTime, bkTime time.Duration
			var wg sync.WaitGroup
			wg.Add(2)
			go func() {
				defer wg.Done()
				s := time.Now()
				// --buildkitd-gzip: kiln's default compresses new layers on every
				// core, which buildkitd's digests cannot match (README, "Notes").
				kiln = r.e.kiln("build", "--progress", "plain", "--platform", strings.Join(realworldPlatforms, ","),
					"--source-date-epoch", realworldEpoch, "--buildkitd-gzip", "-t", r.name, r.ctx)
				kilnTime = time.Since(s)
			}()
			go func() {
				defer wg.Done()
				s := time.Now()
				bkRes = bk.build(t, r.ctx, r.name, realworldPlatforms, realworldEpoch)
				bkTime = time.Since(s)
			}()
			wg.Wait()
			kiln.ok(t)
			bkRes.ok(t)
			r.kilnOut = kiln.Stderr
			r.digest = r.e.image(t, r.name).Digest
			bkDigest := bk.env(t).image(t, r.name).Digest
			kilnImg, bkImg := image{"kiln", r.digest}, image{"buildkitd", bkDigest}
			c, err := compareImages(kilnImg, bkImg, tc.deterministic, tc.ignore)
			if err != nil {
				t.Fatalf("comparing kiln's image with buildkitd's: %v", err)
			}
			switch {
			case len(c.Diffs) > 0:
				t.Errorf("kiln's image %s differs from buildkitd's %s:\n%s", r.digest, bkDigest, strings.Join(c.Diffs, "\n"))
			case tc.deterministic:
				t.Logf("kiln's and buildkitd's images are both %s", r.digest)
			default:
				t.Logf("kiln's image %s and buildkitd's %s hold the same files; the contents of these ignored paths differ: %s",
					r.digest, bkDigest, strings.Join(keys(c.Ignored), " "))
			}
			if !tc.deterministic && os.Getenv("KILN_REALWORLD_SELFCHECK") != "" {
				selfCheck(t, r, tc, c)
			}
			checkStart := time.Now()
			tc.check(t, r)
			line := fmt.Sprintf("%-8s kiln %5.1fs  buildctl %5.1fs  checks %4.1fs  total %5.1fs",
				tc.name, kilnTime.Seconds(), bkTime.Seconds(), time.Since(checkStart).Seconds(), time.Since(caseStart).Seconds())
			t.Logf("timing: %s", line)
			mu.Lock()
			timings = append(timings, line)
			mu.Unlock()
		})
	}
	entries, err := os.ReadDir(filepath.Join("testdata", "realworld"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range entries {
		if d.IsDir() && !covered[d.Name()] {
			t.Errorf("testdata/realworld/%s has no case in realworldCases", d.Name())
		}
	}
}

// selfCheck (KILN_REALWORLD_SELFCHECK=1) keeps a case's ignore list honest: kiln builds the case
// again with --no-cache, and the two kiln images must differ only in ignored paths, which shows
// that those differ between any two runs, not between kiln and buildkitd.
func selfCheck(t *testing.T, r *realworldRun, tc realworldCase, vsBuildkitd comparison) {
	t.Helper()
	again := strings.Replace(r.name, ":latest", ":again", 1)
	r.e.kiln("build", "--progress", "plain", "--no-cache", "--platform", strings.Join(realworldPlatforms, ","),
		"--source-date-epoch", realworldEpoch, "--buildkitd-gzip", "-t", again, r.ctx).ok(t)
	c, err := compareImages(image{"kiln", r.digest}, image{"kiln again", r.e.image(t, again).Digest}, false, tc.ignore)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Diffs) > 0 {
		t.Errorf("two kiln builds differ in paths the ignore list does not name:\n%s", strings.Join(c.Diffs, "\n"))
	}
	for _, ig := range tc.ignore {
		t.Logf("self-check: %-40s differs kiln/kiln %-5v kiln/buildkitd %v", ig.Pattern, c.Ignored[ig.Pattern], vsBuildkitd.Ignored[ig.Pattern])
	}
}

// run runs kiln's image for platform under ctr with args (none: the image's own command) and
// returns its standard output.
func (r *realworldRun) run(t *testing.T, platform string, args ...string) string {
	t.Helper()
	return r.runOpts(t, platform, nil, args...)
}

// runOpts is run with more ctr run options (e.g. --user).
func (r *realworldRun) runOpts(t *testing.T, platform string, opts []string, args ...string) string {
	t.Helper()
	id := strings.NewReplacer("docker.io/library/", "", ":latest", "", "/", "-").Replace(r.name + "-" + platform)
	full := append(append([]string{"run", "--rm", "--platform", platform}, opts...), r.name, id)
	return r.e.ctr(append(full, args...)...).ok(t).Stdout
}

// sh runs a shell script in kiln's image for platform.
func (r *realworldRun) sh(t *testing.T, platform, script string) string {
	t.Helper()
	return r.run(t, platform, "sh", "-c", script)
}

// layers reads every layer of kiln's image for platform, in order.
func (r *realworldRun) layers(t *testing.T, platform string) []map[string]layerEntry {
	t.Helper()
	idx, err := readIndex(r.digest)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := idx.Manifests[platform]
	if !ok {
		t.Fatalf("kiln's image has no %s", platform)
	}
	var out []map[string]layerEntry
	for _, l := range m.Layers {
		tree, err := readLayer(l.Digest.String())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tree)
	}
	return out
}

// wantLines fails unless out is want, line by line.
func wantLines(t *testing.T, what, out string, want ...string) {
	t.Helper()
	got := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s printed:\n%s\nwant:\n%s", what, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// elfMachine is how file(1) names a platform's machine.
func elfMachine(platform string) string {
	if platform == "linux/arm64" {
		return "ARM aarch64"
	}
	return "x86-64"
}

// helloLine is what testdata/realworld/gcc/hello.c prints on platform.
func helloLine(platform string) string {
	m := machine(platform)
	return fmt.Sprintf("built for %s, running on %s, 1229 primes below 10000", m, m)
}

func checkRealWorldApt(t *testing.T, r *realworldRun) {
	for _, p := range realworldPlatforms {
		out := r.sh(t, p, `uname -m; jq --version; echo '{"a":[1,2,3]}' | jq -c '.a|add'; file -b /usr/bin/jq | cut -d, -f1,2;
			less --version | head -n1 | cut -d' ' -f1; dpkg-query -W -f='${Package} ${Status}\n' jq file less; ls -A /var/lib/apt/lists | wc -l`)
		wantLines(t, p, out, machine(p), "jq-1.6", "6", "ELF 64-bit LSB pie executable, "+elfMachine(p), "less",
			"file install ok installed", "jq install ok installed", "less install ok installed", "0")
	}
}

func checkRealWorldGCC(t *testing.T, r *realworldRun) {
	for _, p := range realworldPlatforms {
		// FROM scratch: no shell, no dynamic loader; the static binary is the image's entrypoint.
		wantLines(t, p, r.run(t, p), helloLine(p))
		layers := r.layers(t, p)
		if len(layers) != 1 || len(layers[0]) != 1 || layers[0]["hello"].Type != '0' || layers[0]["hello"].Mode != 0o755 {
			t.Errorf("%s: want one layer holding only the executable /hello, got %v", p, layers)
		}
	}
}

func checkRealWorldCross(t *testing.T, r *realworldRun) {
	host := hostPlatform()
	for _, p := range realworldPlatforms {
		wantLines(t, p, r.sh(t, p, "hello; cat /built-check.txt"), helloLine(p), helloLine(p))
		// The build stage ran on the build platform for a foreign target (BuildKit names such
		// steps BUILD->TARGET): the compiler ran natively.
		if p != host {
			if tag := "[" + host + "->" + strings.TrimPrefix(p, "linux/") + " build"; !strings.Contains(r.kilnOut, tag) {
				t.Errorf("kiln's progress shows no step %q: the build stage did not run on the build platform", tag)
			}
		}
	}
}

// bigSize is the size of the fs case's big.bin: a 100 MB layer.
const bigSize = 100 << 20

func setupRealWorldFS(t *testing.T, r *realworldRun) {
	// Incompressible and the same in every run: a seeded ChaCha8 stream.
	f, err := os.Create(filepath.Join(r.ctx, "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.NewChaCha8([32]byte{'k', 'i', 'l', 'n'})
	sum := sha256.New()
	buf := make([]byte, 1<<20)
	for written := 0; written < bigSize; written += len(buf) {
		rng.Read(buf)
		sum.Write(buf)
		if _, err := f.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	r.data["big.sha256"] = hex.EncodeToString(sum.Sum(nil))
}

func checkRealWorldFS(t *testing.T, r *realworldRun) {
	for _, p := range realworldPlatforms {
		// As the image's USER, builder.
		out := r.sh(t, p, `id; pwd
			stat -c '%a %U:%G %n' /usr/local/bin/suid-true /usr/local/bin/sgid-true /srv/drop /srv/team /home/builder /home/builder/secret
			cat /home/builder/secret
			stat -c '%h %i' /srv/links/a /srv/links/b /srv/links/c | uniq -c | sed 's/^ *//; s/ [0-9]*$//'
			[ "$(stat -c %i /usr/bin/env)" != "$(stat -c %i /usr/local/bin/env-link)" ] && echo env-link: a copy
			cmp /usr/bin/env /usr/local/bin/env-link && echo env-link: same content
			getcap /usr/local/bin/bind-true
			cat /srv/xattr-at-build.txt; echo
			getfattr --only-values -n user.kiln.test /srv/xattr.txt 2>/dev/null || echo user.kiln.test: absent
			for f in /etc/motd /usr/share/doc/bash; do [ -e $f ] || echo $f: gone; done
			ls -A /usr/share/man; [ -d /etc/issue.net ] && echo /etc/issue.net: directory; readlink /etc/issue
			sha256sum /srv/big.bin | cut -d' ' -f1`)
		wantLines(t, p, out,
			"uid=1234(builder) gid=1234(builder) groups=1234(builder),2345(shared)", "/home/builder",
			"4755 root:root /usr/local/bin/suid-true", "2755 root:shared /usr/local/bin/sgid-true",
			"1777 root:root /srv/drop", "2775 root:shared /srv/team",
			"755 builder:builder /home/builder", "600 builder:builder /home/builder/secret",
			"secret",
			"3 3", // one inode with three names
			"env-link: a copy", "env-link: same content",
			"/usr/local/bin/bind-true cap_net_bind_service=ep",
			"hello",
			// Issue #21: a user.* xattr set in a RUN step is dropped from the layer (by kiln and
			// buildkitd alike; only security.capability is kept). README, "Notes". If this
			// changes, update both.
			"user.kiln.test: absent",
			"/etc/motd: gone", "/usr/share/doc/bash: gone",
			"README", "/etc/issue.net: directory", "/etc/os-release",
			r.data["big.sha256"])

		// useradd took the day of the last password change from SOURCE_DATE_EPOCH (the
		// Dockerfile declares the ARG), not from the day of the build.
		epoch, _ := strconv.ParseInt(realworldEpoch, 10, 64)
		wantLines(t, p+" /etc/shadow", r.runOpts(t, p, []string{"--user", "0"}, "awk", "-F:", `$1 == "builder" { print $3 }`, "/etc/shadow"),
			strconv.FormatInt(epoch/86400, 10))

		// The layers as written: the capability is an xattr of the file, no user.* xattr is in
		// any layer, deletions are whiteouts, hard links within a layer are tar links, and
		// big.bin is a layer of its own.
		layers := r.layers(t, p)
		for i, l := range layers {
			for name, e := range l {
				if strings.Contains(e.Xattrs, "user.") {
					t.Errorf("%s: layer %d: %s has a user.* xattr (%s): kiln now keeps them; update README's note and this test", p, i, name, e.Xattrs)
				}
			}
		}
		bigLayers := 0
		for i, l := range layers {
			if big, ok := l["srv/big.bin"]; ok {
				bigLayers++
				if big.Size != bigSize || len(l) > 2 { // srv/ and srv/big.bin
					t.Errorf("%s: layer %d should hold only /srv/big.bin of %d bytes: %v", p, i, bigSize, l)
				}
			}
		}
		if bigLayers != 1 {
			t.Errorf("%s: %d layers hold /srv/big.bin, want 1", p, bigLayers)
		}
		// A directory deleted and made again is written as a whiteout per former entry, not as
		// an opaque directory (BuildKit's differ, buildkitd's too): pin it.
		for i, l := range layers {
			for name := range l {
				if strings.HasSuffix(name, "/.wh..wh..opq") {
					t.Errorf("%s: layer %d has an opaque whiteout %s: BuildKit's differ now writes them; update docs/realworld.md", p, i, name)
				}
			}
		}
		want := map[string]func(e layerEntry) bool{
			"usr/local/bin/bind-true": func(e layerEntry) bool {
				return strings.HasPrefix(e.Xattrs, "security.capability=") && !strings.Contains(e.Xattrs, ",")
			},
			"etc/.wh.motd":            func(layerEntry) bool { return true },
			"usr/share/doc/.wh.bash":  func(layerEntry) bool { return true },
			"usr/share/man/.wh.man1":  func(layerEntry) bool { return true },
			"usr/share/man/README":    func(e layerEntry) bool { return e.Type == '0' },
			"usr/local/bin/suid-true": func(e layerEntry) bool { return e.Mode&0o7777 == 0o4755 },
			"srv/links/b":             func(e layerEntry) bool { return e.Type == '1' && e.Linkname == "srv/links/a" },
			"srv/links/c":             func(e layerEntry) bool { return e.Type == '1' && e.Linkname == "srv/links/a" },
			// A hard link to a file of the base is written as a copy (the base's file is not in
			// this layer, so there is nothing to link to): two inodes in the container.
			"usr/local/bin/env-link":  func(e layerEntry) bool { return e.Type == '0' },
			"home/builder/secret":     func(e layerEntry) bool { return e.UID == 1234 && e.GID == 1234 && e.Mode&0o777 == 0o600 },
			"etc/issue":               func(e layerEntry) bool { return e.Type == '2' && e.Linkname == "/etc/os-release" },
			"srv/xattr.txt":           func(e layerEntry) bool { return e.Xattrs == "" },
			"usr/local/bin/sgid-true": func(e layerEntry) bool { return e.Mode&0o7777 == 0o2755 && e.GID == 2345 },
			"srv/drop":                func(e layerEntry) bool { return e.Type == '5' && e.Mode&0o7777 == 0o1777 },
		}
		for name, ok := range want {
			found := false
			for i := len(layers) - 1; i >= 1 && !found; i-- { // layer 0 is the base
				if e, in := layers[i][name]; in {
					found = true
					if !ok(e) {
						t.Errorf("%s: layer %d: /%s is %s", p, i, name, e)
					}
				}
			}
			if !found {
				t.Errorf("%s: no layer above the base holds /%s", p, name)
			}
		}
	}
}

// contextFiles are the numbers of files setupRealWorldContext writes.
const (
	contextDirs    = 100
	contextKept    = 180 // per directory: src/pkgNNN/fileNNN.txt
	contextTmp     = 10  // per directory: src/pkgNNN/scratchNN.tmp, ignored
	contextBuild   = 999 // build/objNNNN.o, ignored
	contextWritten = contextDirs*(contextKept+contextTmp) + contextBuild + 1
)

func setupRealWorldContext(t *testing.T, r *realworldRun) {
	var kept []string
	write := func(rel, content string) {
		p := filepath.Join(r.ctx, rel)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"build"} {
		if err := os.MkdirAll(filepath.Join(r.ctx, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for d := 0; d < contextDirs; d++ {
		dir := fmt.Sprintf("src/pkg%03d", d)
		if err := os.MkdirAll(filepath.Join(r.ctx, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		for f := 0; f < contextKept; f++ {
			name := fmt.Sprintf("%s/file%03d.txt", dir, f)
			write(name, fmt.Sprintf("package %d file %d\n", d, f))
			kept = append(kept, "/ctx/"+name)
		}
		for f := 0; f < contextTmp; f++ {
			write(fmt.Sprintf("%s/scratch%02d.tmp", dir, f), "scratch\n")
		}
	}
	for f := 0; f < contextBuild; f++ {
		write(fmt.Sprintf("build/obj%04d.o", f), "object\n")
	}
	write("src/keep.tmp", "wanted back\n")
	// What the image's `find /ctx/src -name '*.txt' | sort | xargs cat | sha256sum` prints.
	sort.Strings(kept)
	sum := sha256.New()
	for _, name := range kept {
		b, err := os.ReadFile(filepath.Join(r.ctx, strings.TrimPrefix(name, "/ctx/")))
		if err != nil {
			t.Fatal(err)
		}
		sum.Write(b)
	}
	r.data["sum"] = hex.EncodeToString(sum.Sum(nil))
	r.data["count"] = strconv.Itoa(contextDirs*contextKept + 1)
	var n int
	filepath.Walk(r.ctx, func(_ string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			n++
		}
		return nil
	})
	if n < 20000 {
		t.Fatalf("the context holds %d files, want at least 20,000", n)
	}
}

func checkRealWorldContext(t *testing.T, r *realworldRun) {
	for _, p := range realworldPlatforms {
		out := r.sh(t, p, "cat /ctx-count.txt /ctx-tmp.txt /ctx-sum.txt; [ -e /ctx/build ] || echo no build/; ls -A /ctx")
		wantLines(t, p, out, r.data["count"], "/ctx/src/keep.tmp", r.data["sum"], "no build/", "src")
	}
}

func checkRealWorldStages(t *testing.T, r *realworldRun) {
	sha16 := func(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:])[:16] }
	for _, p := range realworldPlatforms {
		base := "base " + machine(p) + "\n"
		stage := func(i int) string { return fmt.Sprintf("stage s%02d %d\n", i, len(base)+i) }
		chain := "c01\nc02\nc03\nc04\nc05\nc06\n"
		m01 := stage(1) + stage(2)
		files := map[string]string{"base.txt": base, "chain.txt": chain, "m01.txt": m01,
			"m02.txt": sha16(m01+chain) + "\n", "m03.txt": stage(3) + stage(4)}
		for i := 5; i <= 9; i++ {
			files[fmt.Sprintf("s%02d.txt", i)] = stage(i)
		}
		var want []string
		for _, name := range keys(files) {
			want = append(want, name+": "+strings.ReplaceAll(files[name], "\n", "|"))
		}
		wantLines(t, p, r.run(t, p), keys(files)...)
		wantLines(t, p, r.sh(t, p, `cd /stages && for f in *; do echo "$f: $(tr '\n' '|' < $f)"; done`), want...)
	}
}

func checkRealWorldSteps(t *testing.T, r *realworldRun) {
	seq := ""
	for i := 1; i <= 1000; i++ {
		seq += strconv.Itoa(i) + "\n"
	}
	sum := sha256.Sum256([]byte(seq))
	for _, p := range realworldPlatforms {
		m := machine(p)
		wantLines(t, p, r.run(t, p), "01 "+m, "02", "03", "04 name=kiln level=info ", "05 600", "06 app",
			"07 hello from "+m, "08 "+hex.EncodeToString(sum[:])[:16], "09 200")
	}
}
