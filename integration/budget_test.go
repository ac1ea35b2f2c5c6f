//go:build linux

package integration

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bkclient "github.com/moby/buildkit/client"
)

// kilnCgroupDirs are the build cgroups (build-PID) kiln keeps below the
// cgroup parent of e's root, in the memory and cpu hierarchies of cgroup v1
// or in cgroup v2.
func (e *env) kilnCgroupDirs(t *testing.T) []string {
	t.Helper()
	abs, err := filepath.Abs(e.Root)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(abs))
	parent := filepath.Join("kiln", hex.EncodeToString(sum[:6]))
	var dirs []string
	for _, root := range []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup"} {
		m, _ := filepath.Glob(filepath.Join(root, parent, "build-*"))
		dirs = append(dirs, m...)
	}
	return dirs
}

// A step that allocates more than the build's memory budget is killed by
// the kernel, and the build fails with one line naming the step, "out of
// memory" and the budget; the build's cgroup is gone afterwards. A step
// within the budget builds.
func TestBuildMemoryBudget(t *testing.T) {
	e := newEnv(t)
	e.busyboxBase(t, "busybox", "linux/amd64")
	small := contextDir(t, map[string]string{"Dockerfile": withinBudgetDockerfile})
	e.kiln("build", "--memory", "256MiB", "--cpus", "0.5", "--progress", "plain", "-t", "within", small).ok(t)
	if dirs := e.kilnCgroupDirs(t); len(dirs) > 0 {
		t.Errorf("the build's cgroup is still there after the build: %v", dirs)
	}

	// awk doubles a string until it is 512 MB long: twice the budget.
	big := contextDir(t, map[string]string{"Dockerfile": overBudgetDockerfile})
	r := e.kiln("build", "--memory", "256m", "--progress", "plain", "-t", "over", big).fails(t, 1, "out of memory")
	checkOutOfMemory(t, r)
	if dirs := e.kilnCgroupDirs(t); len(dirs) > 0 {
		t.Errorf("the build's cgroup is still there after the failed build: %v", dirs)
	}
	// The same step without a budget is not killed: the failure above was
	// the budget's.
	e.kiln("build", "--progress", "quiet", "-t", "over", big).ok(t)
}

// lastErrorLine returns stderr from kiln's error line on: the line that
// starts with "error: " or, failing that, the last non-empty line.
func lastErrorLine(stderr string) string {
	if i := strings.LastIndex(stderr, "\nerror: "); i >= 0 {
		return stderr[i+1:]
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	return lines[len(lines)-1]
}

// With --max-parallelism 1 two independent stages run one after the other;
// without it, side by side (which shows that the check can fail).
func TestBuildMaxParallelism(t *testing.T) {
	e := newEnv(t)
	e.busyboxBase(t, "busybox", "linux/amd64")
	dir := contextDir(t, map[string]string{"Dockerfile": `FROM busybox AS a
RUN sleep 2 && echo a > /a
FROM busybox AS b
RUN sleep 2 && echo b > /b
FROM busybox
COPY --from=a /a /a
COPY --from=b /b /b
`})
	run := func(args ...string) [2][2]time.Time {
		r := e.kiln(append([]string{"build", "--no-cache", "--progress", "rawjson", "-t", "par"}, append(args, dir)...)...).ok(t)
		return sleepSpans(t, r.Stderr)
	}
	overlap := func(s [2][2]time.Time) bool { return s[0][0].Before(s[1][1]) && s[1][0].Before(s[0][1]) }
	if s := run(); !overlap(s) {
		t.Logf("without --max-parallelism the stages did not overlap (%v); the host may be busy", s)
	}
	if s := run("--max-parallelism", "1"); overlap(s) {
		t.Errorf("with --max-parallelism 1 the two stages ran at once: %v", s)
	}
	e.kiln("build", "--max-parallelism", "-1", dir).fails(t, 2, "invalid --max-parallelism")
}

// sleepSpans reads the start and end of the two RUN sleep steps from a
// rawjson progress stream.
func sleepSpans(t *testing.T, stderr string) [2][2]time.Time {
	t.Helper()
	spans := map[string]*[2]time.Time{}
	s := bufio.NewScanner(strings.NewReader(stderr))
	s.Buffer(make([]byte, 1<<20), 16<<20)
	for s.Scan() {
		var st bkclient.SolveStatus
		if json.Unmarshal(s.Bytes(), &st) != nil {
			continue
		}
		for _, v := range st.Vertexes {
			if !strings.Contains(v.Name, "RUN sleep 2") || v.Cached {
				continue
			}
			sp := spans[v.Name]
			if sp == nil {
				sp = &[2]time.Time{}
				spans[v.Name] = sp
			}
			if v.Started != nil {
				sp[0] = *v.Started
			}
			if v.Completed != nil {
				sp[1] = *v.Completed
			}
		}
	}
	var out [2][2]time.Time
	i := 0
	for name, sp := range spans {
		if sp[0].IsZero() || sp[1].IsZero() {
			t.Fatalf("step %q has no start or end in the progress stream", name)
		}
		if i < 2 {
			out[i] = *sp
		}
		i++
	}
	if i != 2 {
		t.Fatalf("found %d RUN sleep steps in the progress stream, want 2:\n%s", i, stderr)
	}
	return out
}

// delegatedCgroup makes a cgroup in the memory and cpu hierarchies of cgroup
// v1 that uid owns, as an administrator delegates one to a user (mkdir and
// chown -R, as cgcreate -a/-t does), and returns the shell command that
// moves the shell into it before it executes "$0" "$@", and the cgroup's
// directories. The cgroups go when the test ends, with what kiln left below
// them.
func delegatedCgroup(t *testing.T, uid, gid int) (join string, dirs []string) {
	t.Helper()
	if !cgroupV1() {
		t.Skip("delegation is set up here for cgroup v1 only")
	}
	name := "kiln-it-delegated-" + strconv.Itoa(os.Getpid()) + "-" + strconv.Itoa(int(time.Now().UnixNano()%1e6))
	var joins []string
	for _, h := range []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu"} {
		dir := filepath.Join(h, name)
		dirs = append(dirs, dir)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatalf("making the delegated cgroup: %v", err)
		}
		t.Cleanup(func() { removeCgroupTree(t, dir) })
		if out, err := exec.Command("chown", "-R", fmt.Sprintf("%d:%d", uid, gid), dir).CombinedOutput(); err != nil {
			t.Fatalf("delegating %s: %v: %s", dir, err, out)
		}
		joins = append(joins, "echo $$ > "+dir+"/cgroup.procs")
	}
	return strings.Join(joins, " && ") + ` && exec "$0" "$@"`, dirs
}

// buildCgroupsBelow lists the build cgroups (build-PID) kiln left below the
// delegated cgroups dirs.
func buildCgroupsBelow(dirs []string) []string {
	var left []string
	for _, d := range dirs {
		m, _ := filepath.Glob(filepath.Join(d, "kiln", "*", "build-*"))
		left = append(left, m...)
	}
	return left
}

// removeCgroupTree removes the cgroup dir and those below it, deepest first.
func removeCgroupTree(t *testing.T, dir string) {
	var dirs []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Remove(dirs[i]); err != nil {
			t.Logf("removing the cgroup %s: %v", dirs[i], err)
		}
	}
}

// budgetDockerfiles are a step within a 256 MiB budget (awk builds a 16 MB
// string) and one over it (512 MB).
const (
	withinBudgetDockerfile = "FROM busybox\nRUN awk 'BEGIN{s=\"x\"; while (length(s) < 16000000) s = s s; print length(s)}' > /len\n"
	overBudgetDockerfile   = "FROM busybox\nRUN echo allocating && awk 'BEGIN{s=\"x\"; while (length(s) < 512000000) s = s s; print length(s)}'\n"
)

// checkOutOfMemory checks that a build killed for its budget failed with one
// line naming the step, "out of memory" and the budget.
func checkOutOfMemory(t *testing.T, r result) {
	t.Helper()
	first := strings.SplitN(strings.TrimSpace(lastErrorLine(r.Stderr)), "\n", 2)[0]
	t.Logf("error: %s", first)
	for _, want := range []string{"Dockerfile:2", "RUN echo allocating", "out of memory", "--memory 256MiB"} {
		if !strings.Contains(first, want) {
			t.Errorf("the error line %q does not contain %q", first, want)
		}
	}
	if strings.Contains(first, "exit code 137") {
		t.Errorf("the error line %q is a bare exit code", first)
	}
}
