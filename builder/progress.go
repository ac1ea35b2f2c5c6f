package builder

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/util/progress/progressui"
	digest "github.com/opencontainers/go-digest"
)

// tailLines is how many output lines of a failed step kiln repeats in its
// error, enough to show the cause without burying it.
const tailLines = 6

// recorder remembers each step's name and the last lines it printed, so a
// failure can be reported with the step and its output even when the
// progress display was quiet.
type recorder struct {
	mu      sync.Mutex
	names   map[digest.Digest]string
	tails   map[digest.Digest][]string
	partial map[digest.Digest]string
}

func newRecorder() *recorder {
	return &recorder{
		names:   map[digest.Digest]string{},
		tails:   map[digest.Digest][]string{},
		partial: map[digest.Digest]string{},
	}
}

func (r *recorder) record(st *bkclient.SolveStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range st.Vertexes {
		r.names[v.Digest] = v.Name
	}
	for _, l := range st.Logs {
		text := r.partial[l.Vertex] + string(l.Data)
		lines := strings.Split(text, "\n")
		r.partial[l.Vertex] = lines[len(lines)-1]
		for _, line := range lines[:len(lines)-1] {
			r.addLine(l.Vertex, line)
		}
	}
}

func (r *recorder) addLine(v digest.Digest, line string) {
	line = strings.TrimRight(line, "\r")
	t := append(r.tails[v], line)
	if len(t) > tailLines {
		t = t[len(t)-tailLines:]
	}
	r.tails[v] = t
}

// step returns the name of a step and its last output lines.
func (r *recorder) step(v digest.Digest) (string, []string) {
	if r == nil {
		return "", nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	tail := append([]string(nil), r.tails[v]...)
	if p := strings.TrimSpace(r.partial[v]); p != "" {
		tail = append(tail, p)
		if len(tail) > tailLines {
			tail = tail[len(tail)-tailLines:]
		}
	}
	return r.names[v], tail
}

// display is one progress display that several solves may feed at once:
// the builders of a build on nodes, or the services of a Session.
type display struct {
	ch      chan *bkclient.SolveStatus
	done    chan struct{}
	err     error
	feeders sync.WaitGroup
}

// newDisplay starts a progress display on w in mode: auto, plain, tty,
// quiet or rawjson.
func newDisplay(ctx context.Context, w io.Writer, mode string) (*display, error) {
	ui, err := progressui.NewDisplay(w, progressui.DisplayMode(mode))
	if err != nil {
		return nil, fmt.Errorf("starting the progress display: %w", err)
	}
	d := &display{ch: make(chan *bkclient.SolveStatus), done: make(chan struct{})}
	go func() {
		defer close(d.done)
		// The display must drain every status even when a build fails,
		// so it runs on a context the failure does not cancel.
		_, d.err = ui.UpdateFrom(context.WithoutCancel(ctx), d.ch)
		// A display that failed (a broken terminal) still takes every
		// status, so that no solve blocks on it.
		for range d.ch {
		}
	}()
	return d, nil
}

// feed returns the status channel of one solve, which BuildKit's client
// closes when the solve ends: rec records every status, and name, when
// set, labels its steps (see relabel) so that solves side by side stay
// apart.
func (d *display) feed(rec *recorder, name string) chan *bkclient.SolveStatus {
	ch := make(chan *bkclient.SolveStatus)
	d.feeders.Add(1)
	go func() {
		defer d.feeders.Done()
		for s := range ch {
			rec.record(s)
			if name != "" {
				s = relabel(s, name)
			}
			d.ch <- s
		}
	}()
	return ch
}

// close waits for the statuses of every solve fed to the display, then
// ends it; the error is the display's own (a broken terminal).
func (d *display) close() error {
	d.feeders.Wait()
	close(d.ch)
	<-d.done
	return d.err
}
