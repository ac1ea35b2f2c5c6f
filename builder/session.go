package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/platforms"

	"github.com/kiln-build/kiln/engine"
	"github.com/kiln-build/kiln/request"
	"github.com/kiln-build/kiln/store"
)

// Session is BuildKit started once for several builds: they share its
// engine, build cache and locks, run side by side on its client, and show
// their progress in one display, each step labelled with its build's
// name. kiln compose build builds a project's services on one Session.
// Builds on a session run here: remote nodes are not part of it.
type Session struct {
	cfg     engine.Config
	opts    buildOptions
	eng     *engine.Engine
	display *display
	fed     sync.WaitGroup // the builds' statuses, passed to the display
	first   *request.Request
	failed  atomic.Bool

	mu     sync.Mutex
	ingest *store.Ingest // the store's content, for UseImage
	images int
	// contexts are the build contexts of finished builds: closing one
	// prints its warnings, which must wait until the shared display ends.
	contexts []io.Closer
}

// NewSession starts BuildKit for the builds of reqs, which request.Parse
// made: it checks once that every platform they target runs here
// (registering QEMU handlers, unless a request says not to), starts the
// engine, and starts one progress display in the first request's mode on
// its Stderr. Warnings of the requests are the caller's to print, before
// the display starts. With WithHistory, each build leaves a record in the
// build history, as Build's do. Close the Session when the builds are
// done.
func NewSession(ctx context.Context, cfg engine.Config, reqs []*request.Request, opts ...Option) (*Session, error) {
	if len(reqs) == 0 {
		return nil, errors.New("a build session needs at least one build")
	}
	if err := cfg.GC.Validate(); err != nil {
		return nil, err
	}
	first := reqs[0]
	all := &request.Request{Stderr: first.Stderr}
	for _, r := range reqs {
		all.NoAutoEmulation = all.NoAutoEmulation || r.NoAutoEmulation
		for _, p := range r.Platforms {
			if !slices.ContainsFunc(all.Platforms, platforms.Only(p).Match) {
				all.Platforms = append(all.Platforms, p)
			}
		}
	}
	runnable, err := ensureEmulation(ctx, all)
	if err != nil {
		return nil, err
	}
	defer warmPlatforms(reqs...)()
	eng, err := engine.Start(ctx, cfg, runnable, first.Stderr)
	if err != nil {
		return nil, budgetHint(err)
	}
	d, err := startDisplay(ctx, first)
	if err != nil {
		eng.Close()
		return nil, err
	}
	s := &Session{cfg: cfg, eng: eng, display: d, first: first}
	for _, opt := range opts {
		opt(&s.opts)
	}
	return s, nil
}

// Build builds req, one of those NewSession was given, naming its steps
// "[name] ..." in the display. Builds may run at the same time; a failed
// one leaves the others, and the images they store, alone.
func (s *Session) Build(ctx context.Context, name string, req *request.Request) (*Result, error) {
	hist := s.opts.beginRecord(s.eng.HistoryDir(), req, time.Now())
	res, err := s.build(ctx, name, req, hist)
	hist.finish(ctx, res, err)
	if err != nil {
		s.failed.Store(true)
	}
	return res, err
}

func (s *Session) build(ctx context.Context, name string, req *request.Request, hist *recording) (*Result, error) {
	opt, closers, err := solveOpt(req)
	defer s.closeLater(closers)
	if err != nil {
		return nil, err
	}
	rec := newRecorder()
	resp, err := s.eng.Client().Solve(ctx, nil, opt, s.display.feed(rec, hist, name, &s.fed))
	if err == nil {
		err = commitOutputs(closers)
	}
	if err != nil {
		rec.outOfDisk(s.eng)
		return nil, explain(ctx, s.cfg, s.eng.Store(), req, rec, err)
	}
	return finish(ctx, s.eng.Store(), req, resp)
}

// closeLater closes the outputs of a build and keeps its contexts for
// Close.
func (s *Session) closeLater(closers []io.Closer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range closers {
		if _, ok := c.(*contextFS); ok {
			s.contexts = append(s.contexts, c)
		} else {
			c.Close()
		}
	}
}

// UseImage makes the image of res, built on this session, the named
// context name of req (FROM name, COPY --from=name): BuildKit reads it by
// digest from the store it was just stored in, as an OCI layout through
// the build's session, so neither a registry nor --pull has a say and the
// build gets exactly that image.
func (s *Session) UseImage(ctx context.Context, req *request.Request, name string, res *Result) error {
	if res == nil || res.Digest == "" {
		return fmt.Errorf("the image for context %s has no digest", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ingest == nil {
		in, err := s.eng.Store().NewIngest(ctx)
		if err != nil {
			return err
		}
		s.ingest = in
	}
	s.images++
	// The key names a content store of the build's session; the frontend
	// parses it as an image name, so it is lower case.
	key := fmt.Sprintf("kiln-image-%d", s.images)
	req.OCIStores[key] = s.ingest.Content()
	req.FrontendAttrs["context:"+name] = "oci-layout://" + key + ":latest@" + res.Digest
	return nil
}

// Close ends the display, prints the warnings the builds reported and
// those of their contexts, collects garbage in the build cache as a build
// does when every build succeeded, and stops BuildKit.
func (s *Session) Close(ctx context.Context) error {
	s.fed.Wait()
	// The services' Dockerfiles differ: their warnings name each by
	// BuildKit's base name, not as one request would show it.
	printWarnings(s.first.Stderr, &request.Request{Progress: s.first.Progress, Debug: s.first.Debug}, s.display.close())
	for _, c := range s.contexts {
		c.Close()
	}
	if !s.failed.Load() && ctx.Err() == nil {
		collectGarbage(ctx, s.eng, s.first.Quiet || s.first.Progress == "quiet", s.first.Stderr)
	}
	var rerr error
	if s.ingest != nil {
		rerr = s.ingest.Release()
	}
	return errors.Join(rerr, s.eng.Close())
}
