//go:build linux

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// historyRecord is a line of "kiln history ls --format json".
type historyRecord struct {
	Ref        string   `json:"ref"`
	Command    []string `json:"command"`
	Context    string   `json:"context"`
	Dockerfile string   `json:"dockerfile"`
	Platforms  []string `json:"platforms"`
	Names      []string `json:"names"`
	Digest     string   `json:"digest"`
	Status     string   `json:"status"`
	Error      string   `json:"error"`
	Steps      int      `json:"steps"`
	Completed  int      `json:"completed"`
	Cached     int      `json:"cached"`
	Warnings   []string `json:"warnings"`
	PID        int      `json:"pid"`
}

// history lists e's recorded builds, the latest first.
func (e *env) history(t *testing.T, flags ...string) []historyRecord {
	t.Helper()
	out := e.kiln(append(flags, "history", "ls", "--format", "json")...).ok(t).Stdout
	var recs []historyRecord
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var r historyRecord
		mustJSON(t, line, &r)
		recs = append(recs, r)
	}
	return recs
}

// TestHistoryRecordsBuilds: a completed and a failed build each leave a
// record with what was asked, how it ended and the whole progress log;
// ls, inspect, logs and rm show and remove them.
func TestHistoryRecordsBuilds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.kiln("history", "inspect").fails(t, 1, `no build recorded: list the recorded builds with "kiln history ls"`)
	e.busyboxBase(t, "busybox", "linux/amd64")
	dir := contextDir(t, map[string]string{
		"Dockerfile":      "FROM busybox\nRUN echo built-it\nCMD echo hi\n",
		"fail.Dockerfile": "FROM busybox\nRUN echo first; exit 3\n",
	})
	iid := filepath.Join(t.TempDir(), "iid")
	e.kiln("build", "--platform", "linux/amd64", "-t", "app", "--iidfile", iid, dir).ok(t)
	// Again, every step from the cache.
	e.kiln("build", "--platform", "linux/amd64", "-t", "app", "--iidfile", iid, dir).ok(t)
	failed := e.kiln("build", "-f", filepath.Join(dir, "fail.Dockerfile"), dir).fails(t, 1, "exit code 3")

	recs := e.history(t)
	if len(recs) != 4 {
		t.Fatalf("%d records, want the base's, app's two and the failed build's: %+v", len(recs), recs)
	}
	bad, app, first := recs[0], recs[1], recs[2]
	if first.Cached != 0 || first.Steps != app.Steps {
		t.Errorf("app's first build: %d steps, %d cached; want %d, none cached", first.Steps, first.Cached, app.Steps)
	}
	digest, _ := os.ReadFile(iid)
	switch {
	case app.Status != "completed" || app.Digest != string(digest) || len(app.Names) != 1 || app.Names[0] != "docker.io/library/app:latest":
		t.Errorf("app's record: %+v (digest %s)", app, digest)
	case strings.Join(app.Platforms, ",") != "linux/amd64" || app.Context != dir || app.Dockerfile != filepath.Join(dir, "Dockerfile"):
		t.Errorf("app's record: %+v", app)
	case !strings.Contains(strings.Join(app.Command, " "), "build --platform linux/amd64 -t app --iidfile "+iid+" "+dir):
		t.Errorf("app's command line: %q", app.Command)
	case app.Steps == 0 || app.Completed != app.Steps || app.Cached == 0:
		t.Errorf("app's steps: %d, %d completed, %d cached", app.Steps, app.Completed, app.Cached)
	case len(app.Warnings) != 1 || !strings.HasPrefix(app.Warnings[0], "JSONArgsRecommended"):
		t.Errorf("app's warnings: %q", app.Warnings)
	}
	if bad.Status != "failed" || !strings.Contains(bad.Error, "failed with exit code 3") || bad.Digest != "" {
		t.Errorf("the failed build's record: %+v\nit printed:\n%s", bad, failed.Stderr)
	}

	// The table, the references alone, one build's details.
	ls := e.kiln("history", "ls").ok(t).Stdout
	for _, want := range []string{"BUILD ID", bad.Ref, app.Ref, "app:latest", "completed", "failed"} {
		if !strings.Contains(ls, want) {
			t.Errorf("history ls lacks %q:\n%s", want, ls)
		}
	}
	if q := e.kiln("history", "ls", "-q").ok(t).Stdout; q != bad.Ref+"\n"+app.Ref+"\n"+first.Ref+"\n"+recs[3].Ref+"\n" {
		t.Errorf("history ls -q:\n%s", q)
	}
	inspect := e.kiln("history", "inspect", app.Ref[:12]).ok(t).Stdout
	for _, want := range []string{"Ref:         " + app.Ref, "Status:      completed", "Digest:      " + string(digest), "Build Steps: ", "JSONArgsRecommended"} {
		if !strings.Contains(inspect, want) {
			t.Errorf("history inspect lacks %q:\n%s", want, inspect)
		}
	}
	if out := e.kiln("history", "inspect").ok(t).Stdout; !strings.Contains(out, "Status:      failed") || !strings.Contains(out, "exit code 3") {
		t.Errorf("history inspect of the latest build:\n%s", out)
	}

	// The logs are the plain progress, the failed step's output included.
	logs := e.kiln("history", "logs", first.Ref).ok(t).Stdout
	if !regexp.MustCompile(`#\d+ \[2/2\] RUN echo built-it\n(.*\n)*#\d+ [0-9.]+ built-it\n(.*\n)*#\d+ DONE`).MatchString(logs) {
		t.Errorf("app's log:\n%s", logs)
	}
	if logs := e.kiln("history", "logs", "^0").ok(t).Stdout; !regexp.MustCompile(`#\d+ [0-9.]+ first\n`).MatchString(logs) || !strings.Contains(logs, "ERROR") {
		t.Errorf("the failed build's log:\n%s", logs)
	}

	// Mistakes.
	e.kiln("history", "logs", "zzzz").fails(t, 1, `no build zzzz recorded: list the recorded builds with "kiln history ls"`)
	e.kiln("history", "inspect", "../x").fails(t, 2, `invalid build reference "../x"`)
	e.kiln("history", "rm").fails(t, 2, "needs build references, or --all")
	// Every reference rm cannot remove is said, on one line.
	e.kiln("history", "rm", "zzzz", "yyyy").fails(t, 1, `no build zzzz recorded: list the recorded builds with "kiln history ls"; no build yyyy recorded`)
	e.kiln("history", "inspect", "a", "b").fails(t, 2, "takes one build reference")

	// rm removes the record and its log.
	if out := e.kiln("history", "rm", bad.Ref).ok(t).Stdout; out != bad.Ref+"\n" {
		t.Errorf("history rm printed %q", out)
	}
	if recs := e.history(t); len(recs) != 3 || recs[0].Ref != app.Ref {
		t.Errorf("after rm: %+v", recs)
	}
	e.kiln("history", "rm", "--all").ok(t)
	if recs := e.history(t); len(recs) != 0 {
		t.Errorf("after rm --all: %+v", recs)
	}
	files, _ := filepath.Glob(filepath.Join(e.Root, "buildkit", "*", e.Namespace, "history", "*"))
	if len(files) != 0 {
		t.Errorf("files left: %v", files)
	}
	// --call asks the frontend, it builds nothing: no record.
	e.kiln("build", "--check", dir).fails(t, 1, "")
	if recs := e.history(t); len(recs) != 0 {
		t.Errorf("--check was recorded: %+v", recs)
	}
}

// TestHistoryInterruptedAndKilled: a build stopped by SIGINT is recorded as
// interrupted with its log up to then; one whose kiln was killed reads as
// interrupted too, once its lock is gone.
func TestHistoryInterruptedAndKilled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.busyboxBase(t, "busybox", "linux/amd64")
	dir := contextDir(t, map[string]string{"Dockerfile": slowDockerfile})

	r := e.startKiln("build", "--progress", "plain", dir)
	r.waitFor(t, slowStepRunning)
	// While it runs, its record says so.
	if recs := e.history(t); len(recs) != 2 || recs[0].Status != "running" {
		t.Errorf("during the build: %+v", recs)
	}
	e.kiln("history", "rm", "^0").fails(t, 1, "is still running")
	r.cmd.Process.Signal(syscall.SIGINT)
	if code, out := r.wait(t); code != 130 {
		t.Fatalf("exit code %d, want 130:\n%s", code, out)
	}
	recs := e.history(t)
	if recs[0].Status != "interrupted" || !strings.Contains(recs[0].Error, "build interrupted") {
		t.Errorf("after SIGINT: %+v", recs[0])
	}
	if logs := e.kiln("history", "logs").ok(t).Stdout; !strings.Contains(logs, slowStepRunning) || !strings.Contains(logs, "CANCELED") {
		t.Errorf("the interrupted build's log:\n%s", logs)
	}

	r = e.startKiln("build", "--progress", "plain", dir)
	r.waitFor(t, slowStepRunning)
	r.cmd.Process.Kill()
	r.wait(t)
	recs = e.history(t)
	if len(recs) != 3 || recs[0].Status != "interrupted" || !strings.Contains(recs[0].Error, "was killed") {
		t.Errorf("after SIGKILL: %+v", recs)
	}
	// Its log holds what was written; the next build cleans the step up.
	e.kiln("history", "logs").ok(t)
	e.kiln("du").ok(t)
}

// TestHistoryConcurrentAndLimits: builds that share a root and namespace,
// or run side by side into two namespaces, each leave a whole record; the
// limits keep the latest records and 0 records nothing.
func TestHistoryConcurrentAndLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.busyboxBase(t, "busybox", "linux/amd64")
	other := *e
	other.Namespace = e.Namespace + "-b"
	t.Cleanup(func() { sweepNamespace(e.Address, other.Namespace, t.Logf) })
	other.busyboxBase(t, "busybox", "linux/amd64")

	const n = 3
	var wg sync.WaitGroup
	for i := range n {
		for _, env := range []*env{e, &other} {
			dir := contextDir(t, map[string]string{"Dockerfile": fmt.Sprintf("FROM busybox\nRUN echo build-%d-%s\n", i, env.Namespace)})
			wg.Add(1)
			go func() {
				defer wg.Done()
				env.kiln("build", "-t", fmt.Sprintf("c%d", i), dir).ok(t)
			}()
		}
	}
	wg.Wait()
	for _, env := range []*env{e, &other} {
		recs := env.history(t)
		if len(recs) != n+1 {
			t.Fatalf("namespace %s: %d records, want %d", env.Namespace, len(recs), n+1)
		}
		for _, r := range recs[:n] {
			if r.Status != "completed" || r.Digest == "" {
				t.Errorf("record %+v", r)
			}
			logs := env.kiln("history", "logs", r.Ref).ok(t).Stdout
			if !regexp.MustCompile(`RUN echo build-\d-` + regexp.QuoteMeta(env.Namespace) + `\n`).MatchString(logs) {
				t.Errorf("the log of %s is not its build's:\n%s", r.Ref, logs)
			}
		}
	}

	// The limits: the latest two stay when the age limit is 0; 0 entries
	// record nothing; the environment sets them too.
	dir := contextDir(t, map[string]string{"Dockerfile": "FROM busybox\nRUN true\n"})
	e.kiln("--history-max-entries", "2", "--history-max-age", "0s", "build", dir).ok(t)
	recs := e.history(t)
	if len(recs) != 2 {
		t.Errorf("--history-max-entries 2 kept %d records", len(recs))
	}
	e.kiln("--history-max-entries", "0", "build", dir).ok(t)
	if after := e.history(t); len(after) != 2 || after[0].Ref != recs[0].Ref {
		t.Errorf("--history-max-entries 0 recorded a build: %+v", after)
	}
	e.kiln("build", "--history-max-entries", "-1", dir).fails(t, 2, "invalid history limit of -1 records")
	e.kiln("build", "--history-max-age", "-1h", dir).fails(t, 2, "invalid history age -1h0m0s")
	// The latest build always shows in inspect's JSON as it does in ls.
	var rec historyRecord
	mustJSON(t, e.kiln("history", "inspect", "--format", "json").ok(t).Stdout, &rec)
	if rec.Ref != recs[0].Ref {
		t.Errorf("inspect --format json: %+v", rec)
	}
}
