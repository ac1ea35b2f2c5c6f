package history

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bkclient "github.com/moby/buildkit/client"
	digest "github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/internal/owned"
	"github.com/kiln-build/kiln/internal/safeio"
)

// statuses is what BuildKit reports for a build of two steps, one cached,
// one that prints a line and warns.
func statuses() []*bkclient.SolveStatus {
	t0 := time.Now()
	t1 := t0.Add(10 * time.Millisecond)
	a, b := digest.FromString("a"), digest.FromString("b")
	return []*bkclient.SolveStatus{
		{Vertexes: []*bkclient.Vertex{{Digest: a, Name: "[1/2] FROM busybox", Started: &t0, Completed: &t0, Cached: true}}},
		{Vertexes: []*bkclient.Vertex{{Digest: b, Name: "[2/2] RUN echo hello", Started: &t0}}},
		{Logs: []*bkclient.VertexLog{{Vertex: b, Data: []byte("hello\n"), Timestamp: t1}}},
		{Warnings: []*bkclient.VertexWarning{{Vertex: b, Short: []byte("JSONArgsRecommended: JSON arguments recommended (line 3)")}}},
		{Vertexes: []*bkclient.Vertex{{Digest: b, Name: "[2/2] RUN echo hello", Started: &t0, Completed: &t1}}},
	}
}

func record(t *testing.T, dir string, limits Limits, o Outcome) Record {
	t.Helper()
	w, err := Begin(dir, Record{Command: []string{"build", "-t", "app", "."}, Context: "/src", Dockerfile: "/src/Dockerfile", Names: []string{"docker.io/library/app:latest"}}, limits)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range statuses() {
		w.Update(st)
	}
	if err := w.Finish(o); err != nil {
		t.Fatal(err)
	}
	rec, err := Find(dir, w.Ref())
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestRecordAndLog(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "history")
	rec := record(t, dir, DefaultLimits, Outcome{Status: StatusCompleted, Digest: "sha256:abc"})
	if rec.Status != StatusCompleted || rec.Digest != "sha256:abc" || rec.PID != os.Getpid() || len(rec.Ref) != 25 || !validRef(rec.Ref) {
		t.Errorf("record %+v", rec)
	}
	if rec.Steps != 2 || rec.Completed != 2 || rec.Cached != 1 {
		t.Errorf("steps %d, completed %d, cached %d; want 2, 2, 1", rec.Steps, rec.Completed, rec.Cached)
	}
	if len(rec.Warnings) != 1 || !strings.HasPrefix(rec.Warnings[0], "JSONArgsRecommended") {
		t.Errorf("warnings %q", rec.Warnings)
	}
	if rec.Ended.Before(rec.Started) || rec.Duration(time.Now()) != rec.Ended.Sub(rec.Started) {
		t.Errorf("started %v, ended %v", rec.Started, rec.Ended)
	}
	r, err := OpenLog(dir, rec)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	log, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"#1 [1/2] FROM busybox\n#1 CACHED\n", "#2 [2/2] RUN echo hello\n", "#2 0.010 hello\n", "#2 WARN: JSONArgsRecommended", "#2 DONE"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	// Only the record and its log are left: no temporary file.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("files %v", ents)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("history directory: %v %v", fi.Mode(), err)
	}
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	var refs []string
	for i := range 3 {
		rec := record(t, dir, DefaultLimits, Outcome{Status: StatusFailed, Error: fmt.Sprint("failure ", i)})
		refs = append(refs, rec.Ref)
		time.Sleep(2 * time.Millisecond) // distinct start times
	}
	recs, err := List(dir)
	if err != nil || len(recs) != 3 || recs[0].Ref != refs[2] || recs[2].Ref != refs[0] {
		t.Fatalf("List: %v, %v", recs, err)
	}
	for ref, want := range map[string]string{"": refs[2], "^0": refs[2], "^2": refs[0], refs[1]: refs[1], refs[1][:20]: refs[1]} {
		if rec, err := Find(dir, ref); err != nil || rec.Ref != want {
			t.Errorf("Find(%q) = %s, %v; want %s", ref, rec.Ref, err, want)
		}
	}
	var nf *NotFoundError
	if _, err := Find(dir, "^3"); !errors.As(err, &nf) {
		t.Errorf("Find(^3): %v", err)
	}
	if _, err := Find(dir, "zzzzzz"); !errors.As(err, &nf) || err.Error() != "no build zzzzzz recorded" {
		t.Errorf("Find(zzzzzz): %v", err)
	}
	if _, err := Find(t.TempDir(), ""); !errors.As(err, &nf) || err.Error() != "no build recorded" {
		t.Errorf("Find in an empty history: %v", err)
	}
	var inv *InvalidRefError
	for _, bad := range []string{"../x", "ABC", "^x", "^-1"} {
		if _, err := Find(dir, bad); !errors.As(err, &inv) {
			t.Errorf("Find(%q): %v, want an invalid reference", bad, err)
		}
	}
	// Two references that start alike.
	os.Rename(recordPath(dir, refs[0]), recordPath(dir, "abc1"))
	os.WriteFile(recordPath(dir, "abc1"), []byte(`{"ref":"abc1","status":"completed"}`), 0o600)
	os.WriteFile(recordPath(dir, "abc2"), []byte(`{"ref":"abc2","status":"completed"}`), 0o600)
	var amb *AmbiguousError
	if _, err := Find(dir, "abc"); !errors.As(err, &amb) || len(amb.Matches) != 2 {
		t.Errorf("Find(abc): %v", err)
	}
	// A damaged record (a power cut while writing) is left out.
	os.WriteFile(recordPath(dir, "abc2"), []byte(`{"ref":`), 0o600)
	if recs, _ := List(dir); len(recs) != 3 {
		t.Errorf("List with a damaged record: %d records", len(recs))
	}
}

func TestRemove(t *testing.T) {
	dir := t.TempDir()
	rec := record(t, dir, DefaultLimits, Outcome{Status: StatusCompleted})
	if got, err := Remove(dir, rec.Ref[:8]); err != nil || got.Ref != rec.Ref {
		t.Fatalf("Remove: %v, %v", got, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left %v", ents)
	}
	var nf *NotFoundError
	if _, err := Remove(dir, rec.Ref); !errors.As(err, &nf) {
		t.Errorf("removing again: %v", err)
	}
}

func TestRunningAndKilled(t *testing.T) {
	dir := t.TempDir()
	w, err := Begin(dir, Record{Context: "/src"}, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	w.Update(statuses()[1])
	rec, err := Find(dir, "")
	if err != nil || rec.Status != StatusRunning || !rec.Ended.IsZero() {
		t.Fatalf("a running build reads %+v, %v", rec, err)
	}
	if _, err := Remove(dir, rec.Ref); err == nil || !strings.Contains(err.Error(), "is still running") {
		t.Errorf("removing a running build: %v", err)
	}
	// Its log reads up to where it got, without an error.
	if r, err := OpenLog(dir, rec); err != nil {
		t.Errorf("log of a running build: %v", err)
	} else {
		if _, err := io.ReadAll(r); err != nil {
			t.Errorf("reading the log of a running build: %v", err)
		}
		r.Close()
	}
	// The process dies: its lock goes with its files.
	w.log.Close()
	rec, err = Find(dir, rec.Ref)
	if err != nil || rec.Status != StatusInterrupted || !strings.Contains(rec.Error, "was killed") {
		t.Errorf("a killed build reads %+v, %v", rec, err)
	}
}

func TestPrune(t *testing.T) {
	dir := t.TempDir()
	limits := Limits{MaxEntries: 3, MaxAge: time.Hour}
	now := time.Now()
	var refs []string
	for i := range 6 {
		rec := record(t, dir, DefaultLimits, Outcome{Status: StatusCompleted})
		refs = append(refs, rec.Ref)
		// The first four ended hours ago, the first the longest.
		if i < 4 {
			old := now.Add(-time.Duration(10-i) * time.Hour)
			os.Chtimes(recordPath(dir, rec.Ref), old, old)
		}
	}
	// Leftovers of a killed writer: a log without a record, a temporary
	// record; and a log being written (locked) that must stay.
	old := now.Add(-2 * time.Minute)
	os.WriteFile(logPath(dir, "orphan"), nil, 0o600)
	os.Chtimes(logPath(dir, "orphan"), old, old)
	temp := safeio.TempPrefix + "x" + recordSuffix + "-1"
	os.WriteFile(filepath.Join(dir, temp), nil, 0o600)
	os.Chtimes(filepath.Join(dir, temp), old, old)
	// Names kiln does not write stay, however old.
	for _, name := range []string{"notes.txt", safeio.TempPrefix + "other-1", "x-1" + logSuffix} {
		os.WriteFile(filepath.Join(dir, name), nil, 0o600)
		os.Chtimes(filepath.Join(dir, name), old, old)
	}
	live, _ := os.Create(logPath(dir, "live"))
	lockLog(live)
	defer live.Close()
	os.Chtimes(logPath(dir, "live"), old, old)

	if err := Prune(dir, limits, now); err != nil {
		t.Fatal(err)
	}
	recs, _ := List(dir)
	kept := map[string]bool{}
	for _, r := range recs {
		kept[r.Ref] = true
	}
	// The two recent ones and the newest of the old ones make three; the
	// other old ones go.
	for i, ref := range refs {
		want := i >= 3
		if kept[ref] != want {
			t.Errorf("record %d kept %v, want %v", i, kept[ref], want)
		}
		if _, err := os.Stat(logPath(dir, ref)); (err == nil) != want {
			t.Errorf("log %d: %v", i, err)
		}
	}
	for name, want := range map[string]bool{"orphan" + logSuffix: false, temp: false, "live" + logSuffix: true, "notes.txt": true, safeio.TempPrefix + "other-1": true, "x-1" + logSuffix: true} {
		if _, err := os.Stat(filepath.Join(dir, name)); (err == nil) != want {
			t.Errorf("%s exists: %v, want %v", name, err == nil, want)
		}
	}
	// MaxAge 0 keeps exactly MaxEntries.
	Prune(dir, Limits{MaxEntries: 1}, now)
	if recs, _ := List(dir); len(recs) != 1 || recs[0].Ref != refs[5] {
		t.Errorf("after pruning to one: %v", recs)
	}
}

// TestOwnDirOnly: records are written and removed only in a directory of
// the user's, closed to others; a link in its place is not followed.
func TestOwnDirOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "history")
	rec := record(t, dir, DefaultLimits, Outcome{Status: StatusCompleted})
	if err := os.Chmod(dir, 0o770); err != nil {
		t.Fatal(err)
	}
	var oe *owned.Error
	if _, err := Remove(dir, rec.Ref); !errors.As(err, &oe) || oe.Kind != owned.Writable {
		t.Errorf("removing in a group-writable directory: %v", err)
	}
	if err := Prune(dir, Limits{}, time.Now().Add(time.Hour)); !errors.As(err, &oe) {
		t.Errorf("pruning a group-writable directory: %v", err)
	}
	if _, err := os.Stat(recordPath(dir, rec.Ref)); err != nil {
		t.Errorf("the record went: %v", err)
	}
	if _, err := Begin(dir, Record{}, DefaultLimits); !errors.As(err, &oe) {
		t.Errorf("recording in a group-writable directory: %v", err)
	}

	link := filepath.Join(t.TempDir(), "history")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o700)
	if _, err := Begin(link, Record{}, DefaultLimits); !errors.As(err, &oe) || oe.Kind != owned.Symlink {
		t.Errorf("recording through a link: %v", err)
	}
}

func TestLimits(t *testing.T) {
	w, err := Begin(t.TempDir(), Record{}, Limits{})
	if w != nil || err != nil {
		t.Errorf("a history of 0 records recorded: %v %v", w, err)
	}
	w.Update(statuses()[0]) // a nil Writer does nothing
	if err := w.Finish(Outcome{}); err != nil || w.Ref() != "" {
		t.Error(err)
	}
	if err := (Limits{MaxEntries: -1}).Validate(); err == nil {
		t.Error("negative entries accepted")
	}
	if err := (Limits{MaxAge: -time.Second}).Validate(); err == nil {
		t.Error("negative age accepted")
	}
	if err := DefaultLimits.Validate(); err != nil {
		t.Error(err)
	}
}

// Builds recording side by side into one directory, pruning as they end,
// leave every record whole.
func TestConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	limits := Limits{MaxEntries: 5}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, err := Begin(dir, Record{Context: "/src"}, limits)
			if err != nil {
				errs <- err
				return
			}
			for _, st := range statuses() {
				w.Update(st)
			}
			if _, err := List(dir); err != nil {
				errs <- err
			}
			errs <- w.Finish(Outcome{Status: StatusCompleted})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	// Builds that end at the same moment may each keep the other's record
	// for the next build to remove; none goes too early.
	recs, _ := List(dir)
	if len(recs) < 5 {
		t.Errorf("%d records kept, want 5 or more", len(recs))
	}
	Prune(dir, limits, time.Now())
	recs, _ = List(dir)
	if len(recs) != 5 {
		t.Errorf("%d records kept, want 5", len(recs))
	}
	for _, r := range recs {
		if r.Status != StatusCompleted || r.Steps != 2 {
			t.Errorf("record %+v", r)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 10 {
		t.Errorf("%d files, want 5 records and 5 logs", len(ents))
	}
}

// benchRecord records a short build in dir for each round of b.
func benchRecord(b *testing.B, dir string, limits Limits) {
	sts := statuses()
	for b.Loop() {
		w, err := Begin(dir, Record{Command: []string{"build", "."}}, limits)
		if err != nil {
			b.Fatal(err)
		}
		for _, st := range sts {
			w.Update(st)
		}
		if err := w.Finish(Outcome{Status: StatusCompleted}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRecordBusy is what recording costs a build on a busy CI runner:
// the history holds 1000 records under two days old (and b.N more), which
// buildkitd's default limits keep; pruning lists them all.
func BenchmarkRecordBusy(b *testing.B) {
	dir := b.TempDir()
	for range 1000 {
		w, _ := Begin(dir, Record{}, DefaultLimits)
		w.Finish(Outcome{Status: StatusCompleted})
	}
	benchRecord(b, dir, DefaultLimits)
}

// BenchmarkRecord is what recording costs a build: the record written twice,
// the log of a short build, and the pruning of a history of 50 records (one
// removed each time, as the default limits do once the oldest is two days
// old).
func BenchmarkRecord(b *testing.B) {
	benchRecord(b, b.TempDir(), Limits{MaxEntries: 50})
}
