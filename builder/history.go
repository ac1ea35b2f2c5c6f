package builder

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	bkclient "github.com/moby/buildkit/client"

	"github.com/kiln-build/kiln/history"
	"github.com/kiln-build/kiln/platform"
	"github.com/kiln-build/kiln/request"
)

// Option changes how Build works.
type Option func(*buildOptions)

type buildOptions struct {
	recordLimits history.Limits
	command      []string
	record       bool
}

// WithHistory records the build in the build history of its store and
// namespace (package history), which keeps records within limits; command
// is kiln's command line as typed, without the program name.
func WithHistory(limits history.Limits, command []string) Option {
	return func(o *buildOptions) {
		o.record, o.recordLimits, o.command = true, limits, command
	}
}

// recording is one build's history record while it runs; a nil recording
// records nothing.
type recording struct {
	w      *history.Writer
	stderr io.Writer
}

// beginRecord starts the record of req's build in dir, started at when.
// A record that cannot be written is a warning: the build goes on.
func (o buildOptions) beginRecord(dir string, req *request.Request, started time.Time) *recording {
	if !o.record || !o.recordLimits.Enabled() {
		return nil
	}
	rec := history.Record{
		Command:    o.command,
		Context:    req.ContextDir,
		Dockerfile: filepath.Join(req.Dockerfile.Dir, req.Dockerfile.Name),
		Target:     req.FrontendAttrs["target"],
		Names:      req.Names,
		Started:    started,
	}
	if req.Dockerfile.FromStdin {
		rec.Dockerfile = req.Dockerfile.Display
	}
	if len(req.Platforms) > 0 {
		rec.Platforms = strings.Split(platform.FormatList(req.Platforms), ",")
	}
	w, err := history.Begin(dir, rec, o.recordLimits)
	if err != nil {
		fmt.Fprintf(req.Stderr, "warning: this build is not recorded in kiln's build history: %s\n", oneLine(err.Error()))
		return nil
	}
	return &recording{w: w, stderr: req.Stderr}
}

// update records a status of the build.
func (r *recording) update(st *bkclient.SolveStatus) {
	if r != nil {
		r.w.Update(st)
	}
}

// finish records how the build ended: with res, or err (interrupted when
// ctx was cancelled, as by SIGINT).
func (r *recording) finish(ctx context.Context, res *Result, err error) {
	if r == nil {
		return
	}
	o := history.Outcome{Status: history.StatusCompleted}
	switch {
	case err != nil && ctx.Err() != nil:
		o.Status, o.Error = history.StatusInterrupted, err.Error()
	case err != nil:
		o.Status, o.Error = history.StatusFailed, err.Error()
	case res != nil:
		o.Digest = res.Digest
	}
	if ferr := r.w.Finish(o); ferr != nil {
		fmt.Fprintf(r.stderr, "warning: the record of this build in kiln's build history is incomplete: %s\n", oneLine(ferr.Error()))
	}
}

// oneLine joins a multi-line message into one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
