package builder

import (
	"context"
	"errors"
	"fmt"
	"maps"

	bkclient "github.com/moby/buildkit/client"
	gateway "github.com/moby/buildkit/frontend/gateway/client"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-build/kiln/engine"
	"github.com/kiln-build/kiln/request"
)

// CallResult is the Dockerfile frontend's answer to a --call method.
type CallResult struct {
	// Call is the method asked for.
	Call *request.Call
	// Metadata is the answer as BuildKit's subrequests give it: result.json
	// (the data), result.txt (the frontend's own text form),
	// result.statuscode (non-zero when a check found something) and
	// version (of the answer's structure).
	Metadata map[string][]byte
}

// Call asks the Dockerfile frontend for req.Call's answer (checks, outline,
// targets) instead of building: the frontend parses the Dockerfile and
// resolves what it needs (base images' configurations) but runs no step and
// exports nothing. Progress and notices go to req.Stderr, as for a build;
// printing the answer is the caller's. Calls are not recorded in the build
// history, as buildx marks them internal.
func Call(ctx context.Context, cfg engine.Config, req *request.Request) (*CallResult, error) {
	if req.Call == nil {
		return nil, errors.New("no --call method given")
	}
	for _, w := range req.Warnings {
		fmt.Fprintln(req.Stderr, w)
	}
	// No step runs, so no platform needs emulation: the worker's own
	// platforms are enough to resolve base images for any target.
	eng, err := engine.Start(ctx, cfg, nil, req.Stderr)
	if err != nil {
		return nil, err
	}
	defer eng.Close()

	opt, closers, err := sessionOpt(req)
	defer closeAll(closers)
	if err != nil {
		return nil, err
	}
	sreq := gateway.SolveRequest{Frontend: opt.Frontend, FrontendOpt: maps.Clone(opt.FrontendAttrs)}
	sreq.FrontendOpt["requestid"] = req.Call.RequestID()
	// The build function below is the frontend of this solve: it asks the
	// Dockerfile frontend through the gateway and keeps its answer.
	opt.Frontend, opt.FrontendAttrs = "", nil

	disp, err := startDisplay(ctx, req)
	if err != nil {
		return nil, err
	}
	statusCh := make(chan *bkclient.SolveStatus)
	rec := newRecorder()
	var meta map[string][]byte
	eg, gctx := errgroup.WithContext(ctx)
	eg.Go(func() error {
		_, err := eng.Client().Build(gctx, opt, "kiln", func(ctx context.Context, c gateway.Client) (*gateway.Result, error) {
			res, err := c.Solve(ctx, sreq)
			if err != nil {
				return nil, err
			}
			meta = res.Metadata
			return res, nil
		}, statusCh)
		return err
	})
	eg.Go(func() error {
		for st := range statusCh {
			rec.record(st)
			disp.send(st)
		}
		return nil
	})
	err = eg.Wait()
	disp.close()
	if err != nil {
		return nil, explain(ctx, cfg, eng.Store(), req, rec, err)
	}
	if meta == nil {
		return nil, fmt.Errorf("the Dockerfile frontend gave no answer to --call %s", req.Call.Name)
	}
	return &CallResult{Call: req.Call, Metadata: meta}, nil
}
