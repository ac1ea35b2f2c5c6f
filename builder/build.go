// Package builder orchestrates one build: it checks that the requested
// platforms run here (package emulation), starts BuildKit in the kiln
// process (package engine), turns build options into a solve request,
// streams progress, writes the outputs, sends platforms to remote nodes
// and turns BuildKit's errors into errors a user can act on.
package builder

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/containerd/platforms"
	"github.com/docker/cli/cli/config"
	"github.com/docker/go-units"
	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/auth/authprovider"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/tonistiigi/fsutil"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-build/kiln/emulation"
	"github.com/kiln-build/kiln/engine"
	"github.com/kiln-build/kiln/internal/safeio"
	"github.com/kiln-build/kiln/request"
	"github.com/kiln-build/kiln/store"
)

// danglingPrefix names images built without -t, as docker keeps them:
// without a name containerd's garbage collector would delete the result.
const danglingPrefix = "kiln-dangling"

// Result describes a finished build.
type Result struct {
	// Digest is the digest of the image index (or manifest, for one platform).
	Digest string
	// Names are the normalised names the image is stored under.
	Names []string
	// Platforms are the platforms built.
	Platforms []ocispecs.Platform
	// Metadata is BuildKit's exporter response, decoded as buildx does.
	Metadata map[string]any
}

// Build builds req with the embedded BuildKit and stores the result in
// containerd. request.Parse has checked everything in req the user can get
// wrong; Build checks cfg's garbage collection options before any
// connection is made. With WithHistory, the build leaves a record in the
// build history from the moment BuildKit runs.
func Build(ctx context.Context, cfg engine.Config, req *request.Request, opts ...Option) (*Result, error) {
	started := time.Now()
	var o buildOptions
	for _, opt := range opts {
		opt(&o)
	}
	if err := cfg.GC.Validate(); err != nil {
		return nil, err
	}
	for _, w := range req.Warnings {
		fmt.Fprintln(req.Stderr, w)
	}
	cfg.Limits = engine.Limits{Memory: req.Budget.Memory, CPUs: req.Budget.CPUs, MaxParallelism: req.Budget.MaxParallelism}
	// Platforms that --node or the nodes files send to remote BuildKit
	// nodes take their own path (remote.go).
	if res, ok, err := buildOnNodes(ctx, cfg, req, o, started); ok {
		return res, err
	}
	runnable, err := ensureEmulation(ctx, req)
	if err != nil {
		return nil, err
	}
	defer warmPlatforms(req)()
	eng, err := engine.Start(ctx, cfg, runnable, req.Stderr)
	if err != nil {
		return nil, budgetHint(err)
	}
	defer eng.Close()

	rec := o.beginRecord(eng.HistoryDir(), req, started)
	res, err := buildHere(ctx, cfg, eng, req, rec)
	rec.finish(ctx, res, err)
	if err != nil {
		return nil, err
	}
	collectGarbage(ctx, eng, req.Quiet, req.Stderr)
	return res, nil
}

// buildHere solves req on the engine and writes its outputs.
func buildHere(ctx context.Context, cfg engine.Config, eng *engine.Engine, req *request.Request, hist *recording) (*Result, error) {
	resp, rec, err := solve(ctx, eng.Client(), req, hist)
	if err != nil {
		rec.outOfMemory(eng, req)
		rec.outOfDisk(eng)
		return nil, request.WithOptionHint(explain(ctx, cfg, eng.Store(), req, rec, err))
	}
	return finish(ctx, eng.Store(), req, resp)
}

// finish makes the Result of a solve and writes what the request asks
// for besides the image: the iidfile, the metadata file, the digest with -q.
func finish(ctx context.Context, st *store.Store, req *request.Request, resp *bkclient.SolveResponse) (*Result, error) {
	if names := resp.ExporterResponse["image.name"]; names != "" {
		// In Kubernetes' namespace the kubelet sees the image at once.
		if err := st.ManageForCRI(ctx, strings.Split(names, ",")); err != nil {
			return nil, err
		}
	}
	res := &Result{
		Digest:    resp.ExporterResponse["containerimage.digest"],
		Names:     req.Names,
		Platforms: req.Platforms,
		Metadata:  decodeMetadata(resp.ExporterResponse),
	}
	if err := writeOutputs(req, res); err != nil {
		return nil, err
	}
	return res, nil
}

// collectGarbage applies the garbage collection policy after a build and
// says what it freed (unless quiet) or that it failed: a build that
// succeeded stays a success.
func collectGarbage(ctx context.Context, eng *engine.Engine, quiet bool, stderr io.Writer) {
	freed, err := eng.CollectGarbage(ctx)
	if freed.Records > 0 && !quiet {
		fmt.Fprintf(stderr, "garbage collection freed %d build cache records, %s (set what it keeps with --gc-keep-storage, or turn it off with --gc=false)\n",
			freed.Records, units.HumanSize(float64(freed.Size)))
	}
	if err != nil && ctx.Err() == nil {
		fmt.Fprintf(stderr, "warning: the build succeeded, but collecting build cache garbage failed: %s (free space with \"kiln prune\")\n", oneLine(err.Error()))
	}
}

// ensureEmulation checks that every requested platform runs here before any
// step does, registering QEMU handlers unless told not to (see
// emulation.Prepare). It returns the platforms the worker reports: the
// host's first, as its default.
func ensureEmulation(ctx context.Context, req *request.Request) ([]ocispecs.Platform, error) {
	out, rep, err := emulation.Prepare(ctx, req.Platforms, !req.NoAutoEmulation)
	for _, p := range rep.Registered {
		fmt.Fprintf(req.Stderr, "registered a QEMU binfmt_misc handler for %s (turn this off with --no-auto-emulation)\n", platforms.Format(p))
	}
	return out, err
}

// solve runs the build and the progress display side by side, and prints
// the warnings the build reported once the display is done.
func solve(ctx context.Context, c *bkclient.Client, req *request.Request, hist *recording) (*bkclient.SolveResponse, *recorder, error) {
	solveOpt, closers, err := solveOpt(req)
	defer closeAll(closers)
	if err != nil {
		return nil, nil, err
	}
	disp, err := startDisplay(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	statusCh := make(chan *bkclient.SolveStatus)
	rec := newRecorder()
	var inv *invoker
	if req.Invoke != nil {
		inv = &invoker{req: req, disp: disp, rec: rec}
	}
	var resp *bkclient.SolveResponse
	eg, gctx := errgroup.WithContext(ctx)
	eg.Go(func() error {
		var err error
		if inv != nil {
			resp, err = buildInvoking(gctx, c, solveOpt, statusCh, inv)
		} else {
			resp, err = c.Solve(gctx, nil, solveOpt, statusCh)
		}
		return err
	})
	eg.Go(func() error {
		// BuildKit's client closes statusCh when the solve ends.
		for st := range statusCh {
			rec.record(st)
			hist.update(st)
			disp.send(st)
		}
		return nil
	})
	err = eg.Wait()
	printWarnings(req.Stderr, req, disp.close())
	inv.printNotes()
	if err == nil {
		err = commitOutputs(closers)
	}
	return resp, rec, err
}

// solveOpt maps the request to BuildKit's solve options: the frontend and
// its attributes, the directories the session serves, the exports, cache
// and entitlements. The closers close the contexts and the outputs' files,
// also on error. Builds that send platforms to nodes (remote.go) start
// from it too.
func solveOpt(r *request.Request) (bkclient.SolveOpt, []io.Closer, error) {
	opt, closers, err := sessionOpt(r)
	if err != nil {
		return opt, closers, err
	}
	entries, outputs, err := exports(r)
	closers = append(closers, outputs...)
	if err != nil {
		return bkclient.SolveOpt{}, closers, err
	}
	opt.Exports = r.WithExportAttrs(entries)
	opt.CacheExports = r.CacheExports
	return opt, closers, nil
}

// sessionOpt is what every solve of the request takes, whether it builds
// or only asks the frontend (--call): the frontend and its attributes, the
// directories, secrets and agents the session serves, the cache to import
// and the entitlements. It writes nothing; the closers close the contexts,
// which prints their warnings (contextFS), also on error.
func sessionOpt(r *request.Request) (bkclient.SolveOpt, []io.Closer, error) {
	// Closing the contexts prints their warnings: they come first among
	// the closers, before the outputs are committed or removed.
	var closers []io.Closer
	contextFS, err := newContextFS(r.ContextDir, dockerignore(context.Background(), r), r.Stderr)
	if err != nil {
		return bkclient.SolveOpt{}, nil, fmt.Errorf("reading build context %s: %w", r.ContextDir, err)
	}
	closers = append(closers, contextFS)
	dockerfileFS, err := newContextFS(r.Dockerfile.Dir, nil, nil)
	if err != nil {
		return bkclient.SolveOpt{}, closers, fmt.Errorf("reading the Dockerfile's directory %s: %w", r.Dockerfile.Dir, err)
	}
	mounts := map[string]fsutil.FS{"context": contextFS, "dockerfile": dockerfileFS}
	for key, dir := range r.ContextDirs {
		named, err := newContextFS(dir, nil, r.Stderr)
		if err != nil {
			return bkclient.SolveOpt{}, closers, fmt.Errorf("reading build context %s: %w", dir, err)
		}
		mounts[key] = named
		closers = append(closers, named)
	}
	return bkclient.SolveOpt{
		Frontend:            "dockerfile.v0",
		FrontendAttrs:       r.FrontendAttrs,
		LocalMounts:         mounts,
		OCIStores:           r.OCIStores,
		CacheImports:        r.CacheImports,
		AllowedEntitlements: r.Entitlements,
		Session:             append([]session.Attachable{authProvider(r.Stderr)}, r.Attachables...),
	}, closers, nil
}

// authProvider hands registry credentials to BuildKit from the docker config
// file and credential helpers, as docker and nerdctl use them.
func authProvider(stderr io.Writer) session.Attachable {
	cfg := config.LoadDefaultConfigFile(stderr)
	return authprovider.NewDockerAuthProvider(authprovider.DockerAuthProviderConfig{
		AuthConfigProvider: authprovider.LoadAuthConfig(cfg),
	})
}

// decodeMetadata turns BuildKit's exporter response into the JSON buildx
// writes with --metadata-file: base64 JSON values become JSON.
func decodeMetadata(resp map[string]string) map[string]any {
	out := make(map[string]any, len(resp))
	for k, v := range resp {
		out[k] = v
		dt, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			continue
		}
		var raw json.RawMessage
		if json.Unmarshal(dt, &raw) == nil {
			out[k] = raw
		}
	}
	return out
}

// writeOutputs writes what a build reports: the digest to --iidfile (and
// standard output with -q), the metadata to --metadata-file.
func writeOutputs(req *request.Request, res *Result) error {
	if req.IIDFile != "" {
		if err := safeio.WriteFile(req.IIDFile, []byte(res.Digest), 0o644); err != nil {
			return fmt.Errorf("writing the image digest to --iidfile %s: %w", req.IIDFile, err)
		}
	}
	if req.MetadataFile != "" {
		dt, err := json.MarshalIndent(res.Metadata, "", "  ")
		if err != nil {
			return fmt.Errorf("encoding build metadata: %w", err)
		}
		if err := safeio.WriteFile(req.MetadataFile, dt, 0o644); err != nil {
			return fmt.Errorf("writing build metadata to --metadata-file %s: %w", req.MetadataFile, err)
		}
	}
	if req.Quiet {
		fmt.Fprintln(req.Stdout, res.Digest)
	}
	return nil
}
