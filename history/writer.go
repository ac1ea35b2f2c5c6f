package history

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/util/progress/progressui"
	digest "github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/internal/owned"
	"github.com/kiln-build/kiln/internal/safeio"
)

// Writer records one build while it runs: its record, marked running
// until Finish, and its progress log, written by BuildKit's plain progress
// display from the statuses Update receives, gzip-compressed.
type Writer struct {
	dir    string
	limits Limits
	log    *os.File
	gz     *gzip.Writer
	buf    *bufio.Writer
	ch     chan *bkclient.SolveStatus
	done   chan struct{}

	mu       sync.Mutex
	rec      Record
	vertices map[digest.Digest]vertexState
	warnings map[string]bool
	finished bool
}

// vertexState is what the statuses said of a step so far.
type vertexState struct{ completed, cached bool }

// Begin starts the record of a build in dir, creating dir: rec describes
// the build; Begin gives it its Ref, PID and running status, and Started
// unless set. Nothing is recorded when limits record nothing: the Writer
// is then nil, and its methods do nothing.
func Begin(dir string, rec Record, limits Limits) (*Writer, error) {
	if !limits.Enabled() {
		return nil, nil
	}
	if err := makeDir(dir); err != nil {
		return nil, err
	}
	if rec.Started.IsZero() {
		rec.Started = time.Now()
	}
	rec.Ref = newRef(rec.Started)
	rec.PID = os.Getpid()
	rec.Status = StatusRunning
	// The log first, locked: from the moment the record exists, its lock
	// says whether its build still runs.
	f, err := os.OpenFile(logPath(dir, rec.Ref), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating a build record in %s: %w", dir, err)
	}
	if err := lockLog(f); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("locking the build record %s: %w", f.Name(), err)
	}
	// Stateless compression of 64 KiB blocks: a log compresses well
	// enough, and this costs microseconds where the standard library's
	// fastest level allocates a megabyte and a millisecond before the
	// first byte, which a cached rebuild would notice.
	gz, _ := gzip.NewWriterLevel(f, gzip.StatelessCompression)
	buf := bufio.NewWriterSize(gz, 64<<10)
	w := &Writer{
		dir: dir, limits: limits, log: f, gz: gz, buf: buf,
		ch: make(chan *bkclient.SolveStatus), done: make(chan struct{}),
		rec: rec, vertices: map[digest.Digest]vertexState{}, warnings: map[string]bool{},
	}
	if err := writeRecord(dir, rec); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	disp, err := progressui.NewDisplay(buf, progressui.PlainMode)
	if err != nil {
		close(w.done)
		return w, nil // the record without a log
	}
	go func() {
		defer close(w.done)
		disp.UpdateFrom(context.Background(), w.ch) //nolint:errcheck // writes to the gzip stream, whose errors Finish reports
	}()
	return w, nil
}

// Ref returns the reference of the build being recorded; "" for a nil
// Writer.
func (w *Writer) Ref() string {
	if w == nil {
		return ""
	}
	return w.rec.Ref
}

// Update records a status of the build: its steps for the counts, its
// warnings, and the log. It blocks while the log's display takes it.
func (w *Writer) Update(st *bkclient.SolveStatus) {
	if w == nil {
		return
	}
	// The lock is held while the display takes st, so that Finish cannot
	// close the channel under a send.
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.finished {
		return
	}
	for _, v := range st.Vertexes {
		s := w.vertices[v.Digest]
		s.completed = s.completed || v.Completed != nil
		s.cached = s.cached || v.Cached
		w.vertices[v.Digest] = s
	}
	for _, warn := range st.Warnings {
		if !w.warnings[string(warn.Short)] {
			w.warnings[string(warn.Short)] = true
			w.rec.Warnings = append(w.rec.Warnings, string(warn.Short))
		}
	}
	select {
	case w.ch <- st:
	case <-w.done: // no display
	}
}

// Outcome is how a build ended.
type Outcome struct {
	Status Status
	// Error is the error a failed or interrupted build printed.
	Error string
	// Digest is the result of a completed build.
	Digest string
}

// Finish ends the record: the log is completed, the record says how the
// build ended, and records the limits no longer keep are removed. Its
// error is for a warning: the build's own result does not depend on it.
func (w *Writer) Finish(o Outcome) error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	if w.finished {
		w.mu.Unlock()
		return nil
	}
	w.finished = true
	close(w.ch)
	rec := w.rec
	w.mu.Unlock()
	<-w.done
	err := errors.Join(w.buf.Flush(), w.gz.Close())

	rec.Status, rec.Error, rec.Digest = o.Status, o.Error, o.Digest
	rec.Ended = time.Now()
	for _, s := range w.vertices {
		rec.Steps++
		if s.completed {
			rec.Completed++
		}
		if s.cached {
			rec.Cached++
		}
	}
	// The record is final before the log's lock goes with the file.
	err = errors.Join(err, writeRecord(w.dir, rec), w.log.Close())
	return errors.Join(err, Prune(w.dir, w.limits, rec.Ended))
}

// writeRecord writes rec to its file in dir through a temporary file and
// a rename (safeio), so that a reader sees no record or the old one or the
// new one, never a part.
func writeRecord(dir string, rec Record) error {
	dt, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encoding build record %s: %w", rec.Ref, err)
	}
	if err := safeio.WriteFile(recordPath(dir, rec.Ref), dt, 0o600); err != nil {
		return fmt.Errorf("writing build record %s: %w", rec.Ref, err)
	}
	return nil
}

// makeDir creates the history directory dir, and the state directory
// above it when no engine has made it yet, and checks that dir is the
// user's own and closed to others: kiln writes and removes records only
// there.
func makeDir(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return fmt.Errorf("creating the build history directory %s: %w", dir, err)
	}
	if _, err := owned.MkdirPrivate(dir); err != nil {
		return fmt.Errorf("creating the build history directory %s: %w", dir, err)
	}
	return nil
}
