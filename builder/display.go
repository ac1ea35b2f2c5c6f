package builder

import (
	"context"
	"fmt"
	"io"
	"sync"

	bkclient "github.com/moby/buildkit/client"
	solvererrdefs "github.com/moby/buildkit/solver/errdefs"
	"github.com/moby/buildkit/solver/pb"
	"github.com/moby/buildkit/util/progress/progressui"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-build/kiln/request"
)

// display is the progress of one build on the user's terminal: BuildKit's
// progress display in the mode --progress chose. It also collects the
// warnings the build reported (the Dockerfile's check warnings), which
// are printed once the display is done, as buildx does. Statuses reach it
// through send; after pause (before a shell opens on the terminal) they
// are only counted, so that nothing draws over the shell.
type display struct {
	ch     chan *bkclient.SolveStatus
	done   chan struct{}
	mu     sync.Mutex
	paused bool

	warnings []bkclient.VertexWarning
	seen     map[string]bool
}

// startDisplay starts the display of req's progress on req.Stderr. The
// display drains every status even when the build fails, so it runs on a
// context the failure does not cancel.
func startDisplay(ctx context.Context, req *request.Request) (*display, error) {
	d, err := progressui.NewDisplay(req.Stderr, progressui.DisplayMode(req.Progress))
	if err != nil {
		return nil, fmt.Errorf("starting the progress display: %w", err)
	}
	p := &display{ch: make(chan *bkclient.SolveStatus), done: make(chan struct{}), seen: map[string]bool{}}
	go func() {
		defer close(p.done)
		d.UpdateFrom(context.WithoutCancel(ctx), p.ch) //nolint:errcheck // only a broken terminal fails it
	}()
	return p, nil
}

// send shows st, unless the display is paused, and keeps its warnings.
func (p *display) send(st *bkclient.SolveStatus) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range st.Warnings {
		// The builders of a build on nodes each run the frontend, whose
		// checks then warn once per builder.
		key := string(w.Short) + "\x00" + w.URL
		if !p.seen[key] {
			p.seen[key] = true
			p.warnings = append(p.warnings, *w)
		}
	}
	if !p.paused {
		p.ch <- st
	}
}

// feed returns the status channel of one solve, which BuildKit's client
// closes when the solve ends, and passes its statuses to p: rec and hist
// (which may be nil) record each, and name, when set, labels its steps
// (see relabel), so that solves side by side stay apart: the builders of
// a build on nodes, the services of a Session. fed is done when the
// solve's last status is passed on; wait for it before close.
func (p *display) feed(rec *recorder, hist *recording, name string, fed *sync.WaitGroup) chan *bkclient.SolveStatus {
	ch := make(chan *bkclient.SolveStatus)
	fed.Add(1)
	go func() {
		defer fed.Done()
		for s := range ch {
			rec.record(s)
			if name != "" {
				s = relabel(s, name)
			}
			hist.update(s)
			p.send(s)
		}
	}()
	return ch
}

// pause ends the display, which draws its last state, and waits for it:
// later statuses are not shown.
func (p *display) pause() {
	p.mu.Lock()
	if !p.paused {
		p.paused = true
		close(p.ch)
	}
	p.mu.Unlock()
	<-p.done
}

// close ends the display and returns the warnings the build reported.
func (p *display) close() []bkclient.VertexWarning {
	p.pause()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.warnings
}

// printWarnings prints the warnings a build reported after its progress, as
// buildx does: one line each, with the rule's name, what it found and the
// line, and, with --debug, the rule's description, URL and the lines of
// the Dockerfile it points at. Quiet and rawjson progress print none: the
// rawjson stream has them already.
func printWarnings(w io.Writer, req *request.Request, warnings []bkclient.VertexWarning) {
	if len(warnings) == 0 || req.Progress == "quiet" || req.Progress == "rawjson" {
		return
	}
	s := "s"
	if len(warnings) == 1 {
		s = ""
	}
	more := " (add --debug to see each rule's description, link and lines)"
	if req.Debug {
		more = ""
	}
	fmt.Fprintf(w, "\n %d warning%s found%s:\n", len(warnings), s, more)
	for _, warn := range warnings {
		fmt.Fprintf(w, " - %s\n", warn.Short)
		if !req.Debug {
			continue
		}
		for _, d := range warn.Detail {
			fmt.Fprintf(w, "%s\n", d)
		}
		if warn.URL != "" {
			fmt.Fprintf(w, "More info: %s\n", warn.URL)
		}
		if warn.SourceInfo != nil && warn.Range != nil {
			info := warn.SourceInfo
			if info.Filename == req.Dockerfile.Name && req.Dockerfile.Display != "" {
				// Named as the user named it, not by BuildKit's base name.
				info = proto.Clone(info).(*pb.SourceInfo)
				info.Filename = req.Dockerfile.Display
			}
			src := solvererrdefs.Source{Info: info, Ranges: warn.Range}
			src.Print(w) //nolint:errcheck // as the display's own writes
		}
		fmt.Fprintln(w)
	}
}
