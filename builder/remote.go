package builder

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/platforms"
	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	"github.com/moby/buildkit/session/auth"
	solvererrdefs "github.com/moby/buildkit/solver/errdefs"
	"github.com/moby/buildkit/util/grpcerrors"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"

	"github.com/kiln-build/kiln/engine"
	"github.com/kiln-build/kiln/internal/errmsg"
	"github.com/kiln-build/kiln/nodes"
	"github.com/kiln-build/kiln/platform"
	"github.com/kiln-build/kiln/request"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/usage"
)

// localName labels the platforms built in this process in the progress
// display of a build on nodes.
const localName = "local"

// buildOnNodes builds with some platforms on remote nodes when --node or
// the nodes files send them there. ok is false when every platform builds
// here, and the caller takes the ordinary path.
//
// Each node solves its platforms with BuildKit's Dockerfile frontend; the
// build context, secrets and ssh agents go to it through BuildKit's
// session, as with buildctl. Every solve, the local one included, exports
// with the OCI exporter into containerd's content store here (streamed
// through the session, not through a registry), under a lease. kiln then
// joins the per-builder indexes into one index, names it only once every
// blob is present, and unpacks the host's platform.
func buildOnNodes(ctx context.Context, cfg engine.Config, req *request.Request, o buildOptions, started time.Time) (res *Result, ok bool, err error) {
	plan, err := planNodes(ctx, req)
	if err != nil || plan == nil {
		return nil, err != nil, err
	}
	defer plan.close()
	if req.Invoke != nil {
		return nil, true, usage.Errorf("--on-error and --invoke start their command in a container here, and this build sends platforms to nodes: build those platforms here (--node PLATFORM=local) to use them")
	}
	res, err = runPlan(ctx, cfg, req, plan, o, started)
	return res, true, err
}

// builderRun is one solve of a build on nodes: here or on one node.
type builderRun struct {
	name      string // "local" or the node's name, for the display
	node      *nodeGroup
	client    *bkclient.Client
	req       *request.Request // the request with this builder's platforms
	rec       *recorder
	resp      *bkclient.SolveResponse
	platforms []ocispecs.Platform
	// auth answers a node's credential requests (credentials.go).
	auth *scopedAuth
}

func runPlan(ctx context.Context, cfg engine.Config, req *request.Request, plan *nodePlan, o buildOptions, started time.Time) (_ *Result, err error) {
	if req.Progress != "quiet" && req.Progress != "rawjson" {
		fmt.Fprintln(req.Stderr, plan.describe())
	}
	var runs []*builderRun
	var st *store.Store
	var eng *engine.Engine // the local builder, when there is one
	if len(plan.local) > 0 {
		local := req.WithPlatforms(plan.local)
		runnable, err := ensureEmulation(ctx, local)
		if err != nil {
			return nil, err
		}
		if eng, err = engine.Start(ctx, cfg, runnable, req.Stderr); err != nil {
			return nil, budgetHint(err)
		}
		defer eng.Close()
		st = eng.Store()
		runs = append(runs, &builderRun{name: localName, client: eng.Client(), req: local, platforms: plan.local})
	} else {
		var err error
		// The store the global options select, the embedded one included.
		if st, err = engine.OpenStore(ctx, cfg, req.Stderr); err != nil {
			return nil, err
		}
		defer st.Close()
	}
	var hist *recording
	if eng != nil {
		hist = o.beginRecord(eng.HistoryDir(), req, started)
	} else if o.record && o.recordLimits.Enabled() {
		if dir, err := engine.HistoryDir(ctx, cfg); err != nil {
			fmt.Fprintf(req.Stderr, "warning: this build is not recorded in kiln's build history: %s\n", oneLine(err.Error()))
		} else {
			hist = o.beginRecord(dir, req, started)
		}
	}
	var res *Result
	defer func() { hist.finish(ctx, res, err) }()
	snapshotter := engine.UnpackSnapshotter(ctx, cfg, st)
	for _, g := range plan.remote {
		runs = append(runs, &builderRun{name: g.node.Name, node: g, client: g.client, req: req.WithPlatforms(g.platforms), platforms: g.platforms})
	}

	ingest, err := st.NewIngest(ctx)
	if err != nil {
		return nil, err
	}
	defer ingest.Release()

	multi := len(plan.order) > 1
	if err := solveAll(ctx, runs, ingest, multi, req, hist); err != nil {
		if eng != nil {
			runs[0].rec.outOfMemory(eng, req)
			runs[0].rec.outOfDisk(eng)
		}
		return nil, explainRuns(ctx, cfg, st, runs, err)
	}

	desc, err := assemble(ctx, ingest, runs, plan.order)
	if err != nil {
		return nil, err
	}
	names, push := req.ImageNames()
	if len(names) == 0 {
		names = []string{danglingPrefix + "@" + desc.Digest.String()}
	}
	if err := ingest.Name(ctx, desc, names, store.NameOptions{Snapshotter: snapshotter}); err != nil {
		return nil, err
	}
	if push {
		for _, n := range names {
			if _, err := st.Push(ctx, n, store.PushOptions{Registry: cfg.Registry, Progress: progressOut(req)}); err != nil {
				return nil, err
			}
		}
	}
	descJSON, _ := json.Marshal(desc)
	where := map[string]string{}
	for _, r := range runs {
		for _, p := range r.platforms {
			where[platforms.Format(p)] = r.name
		}
	}
	meta := map[string]any{
		exptypes.ExporterImageDigestKey:     desc.Digest.String(),
		exptypes.ExporterImageDescriptorKey: json.RawMessage(descJSON),
		"kiln.nodes":                        where,
	}
	if len(req.Names) > 0 {
		meta[exptypes.ExporterImageNameKey] = strings.Join(names, ",")
	}
	built := &Result{Digest: desc.Digest.String(), Names: req.Names, Platforms: req.Platforms, Metadata: meta}
	if err := writeOutputs(req, built); err != nil {
		return nil, err
	}
	res = built
	hist.finish(ctx, res, nil)
	hist = nil
	// The nodes collect their own caches; this is the local builder's.
	if eng != nil {
		collectGarbage(ctx, eng, req.Quiet, req.Stderr)
	}
	return res, nil
}

// imageOnlyAttrs are attributes of the image exporter the OCI exporter
// kiln uses for builds on nodes does not take: kiln names, stores and
// pushes the joined result itself.
var imageOnlyAttrs = map[string]bool{
	"name": true, "push": true, "push-by-digest": true, "insecure": true, "registry.insecure": true,
	"store": true, "unpack": true, "dangling-name-prefix": true, "name-canonical": true,
}

// nodeExport is the OCI export of one builder's result into the ingest.
func nodeExport(r *request.Request, ingest *store.Ingest) bkclient.ExportEntry {
	attrs := map[string]string{}
	for _, o := range r.Outputs {
		for k, v := range o.Attrs {
			if !imageOnlyAttrs[k] {
				attrs[k] = v
			}
		}
	}
	for k, v := range r.ExportAttrs {
		if _, set := attrs[k]; !set {
			attrs[k] = v
		}
	}
	attrs["tar"] = "false"
	return bkclient.ExportEntry{Type: bkclient.ExporterOCI, Attrs: attrs, OutputStore: ingest.Content()}
}

// solveAll runs every builder's solve side by side with one progress
// display; the first failure cancels the others.
func solveAll(ctx context.Context, runs []*builderRun, ingest *store.Ingest, multi bool, req *request.Request, hist *recording) error {
	opts := make([]bkclient.SolveOpt, len(runs))
	registries := buildRegistries(req)
	// The closers are the contexts (and no output file: every builder
	// exports into ingest); closing them after the solves prints what they
	// warned about once the progress display is done.
	var closers []io.Closer
	defer func() { closeAll(closers) }()
	for i, r := range runs {
		opt, cs, err := solveOpt(r.req)
		closers = append(closers, cs...)
		if err != nil {
			return err
		}
		opt.Exports = []bkclient.ExportEntry{nodeExport(r.req, ingest)}
		if multi {
			// Every builder's result is an index, even of one platform,
			// so that the results can be joined.
			opt.FrontendAttrs["multi-platform"] = "true"
		}
		if r.node != nil {
			if err := scopeSession(&opt, r, registries); err != nil {
				return err
			}
			// A node has no access to this host's containerd: base images
			// come from their registries.
			opt.FrontendAttrs["image-resolve-mode"] = "default"
			if req.Pull {
				opt.FrontendAttrs["image-resolve-mode"] = "pull"
			}
		}
		opts[i] = opt
	}
	disp, err := startDisplay(ctx, req)
	if err != nil {
		return err
	}
	var forwarders sync.WaitGroup
	eg, gctx := errgroup.WithContext(ctx)
	for i, r := range runs {
		r.rec = newRecorder()
		statusCh := disp.feed(r.rec, hist, r.name, &forwarders)
		eg.Go(func() error {
			resp, err := r.client.Solve(gctx, nil, opts[i], statusCh)
			if err != nil {
				return &runError{run: r, err: err}
			}
			r.resp = resp
			return nil
		})
	}
	err = eg.Wait()
	forwarders.Wait()
	printWarnings(req.Stderr, req, disp.close())
	return err
}

// scopeSession makes a node's session safe to hand it: the node must be
// reached encrypted unless the user accepted plain TCP (planNodes refused
// it before; this keeps secrets and ssh agents off such a node whatever
// path leads here), and BuildKit's auth provider is wrapped so that the
// node gets credentials only for the registries the build uses.
func scopeSession(opt *bkclient.SolveOpt, r *builderRun, registries []string) error {
	if err := r.node.node.CheckTransport(); err != nil {
		return err
	}
	for i, a := range opt.Session {
		if inner, ok := a.(auth.AuthServer); ok {
			r.auth = newScopedAuth(inner, r.node.node.String(), registries)
			opt.Session[i] = r.auth
		}
	}
	if r.auth == nil {
		return errors.New("internal error: the build's session has no registry auth provider to restrict for a node")
	}
	return nil
}

// refusedHosts are the registries a node asked credentials for and did
// not get, when a build on it failed: a registry the build reaches only
// indirectly (a mirror the node uses, a base image's ONBUILD) then
// answers unauthorized.
func refusedHosts(r *builderRun) string {
	if r.auth == nil {
		return ""
	}
	return strings.Join(r.auth.Refused(), ", ")
}

// runError is the failure of one builder's solve.
type runError struct {
	run *builderRun
	err error
}

func (e *runError) Error() string { return e.err.Error() }
func (e *runError) Unwrap() error { return e.err }

// relabel prefixes every step of a builder's status with the builder's
// name, "[pi] [linux/arm64 2/3] RUN ...", and makes its vertex digests
// its own, so that the display keeps the builders' steps apart.
func relabel(s *bkclient.SolveStatus, name string) *bkclient.SolveStatus {
	d := func(v digest.Digest) digest.Digest {
		if v == "" {
			return v
		}
		return digest.FromString(name + "\x00" + v.String())
	}
	for _, v := range s.Vertexes {
		v.Digest = d(v.Digest)
		for i := range v.Inputs {
			v.Inputs[i] = d(v.Inputs[i])
		}
		v.Name = "[" + name + "] " + v.Name
	}
	for _, st := range s.Statuses {
		st.Vertex = d(st.Vertex)
	}
	for _, l := range s.Logs {
		l.Vertex = d(l.Vertex)
	}
	for _, w := range s.Warnings {
		w.Vertex = d(w.Vertex)
	}
	return s
}

// lostNode matches the errors of a connection that broke mid-build.
var lostNode = errmsg.Pattern(`(?i)error reading from server|connection reset|transport is closing|broken pipe|EOF|connection refused|keepalive`)

// explainRuns says which builder failed and why: a node that stopped
// answering, or the step that failed where it ran.
func explainRuns(ctx context.Context, cfg engine.Config, st *store.Store, runs []*builderRun, err error) error {
	var re *runError
	if !errors.As(err, &re) {
		return err
	}
	r := re.run
	if r.node == nil {
		return request.WithOptionHint(explain(ctx, cfg, st, r.req, r.rec, re.err))
	}
	n := r.node.node
	if ctx.Err() == nil && nodeLost(re.err) {
		return fmt.Errorf("node %s stopped answering while it built %s (%s): the build failed and no name was changed; check the node and build again, or build those platforms here with --node %s=local",
			n, platform.FormatList(r.platforms), nodes.Explain(re.err), platform.FormatList(r.platforms))
	}
	if m := resolveImage().FindStringSubmatch(clean(re.err)); m != nil && ctx.Err() == nil {
		if hosts := refusedHosts(r); hosts != "" {
			return fmt.Errorf("node %s cannot fetch base image %s (%s): kiln gave the node no credentials for %s, a registry the build names no image of (a mirror of the node's, or a base image's ONBUILD); let the node pull from it without credentials, or name that registry's image in the Dockerfile (see docs/nodes.md)", n, m[1], lastCause(clean(re.err)), hosts)
		}
		return fmt.Errorf("node %s cannot fetch base image %s (%s): a node has no access to this host's images; push the base to a registry the node reaches, or build it there", n, m[1], lastCause(clean(re.err)))
	}
	if hosts := refusedHosts(r); hosts != "" {
		return fmt.Errorf("on node %s (kiln gave it no credentials for %s, which the build names no image of; see docs/nodes.md): %w", n, hosts, request.WithOptionHint(explain(ctx, cfg, st, r.req, r.rec, re.err)))
	}
	return fmt.Errorf("on node %s: %w", n, request.WithOptionHint(explain(ctx, cfg, st, r.req, r.rec, re.err)))
}

// nodeLost reports whether err is a node's connection breaking rather
// than a build step failing on it.
func nodeLost(err error) bool {
	var ve *solvererrdefs.VertexError
	if errors.As(err, &ve) {
		return false
	}
	return grpcerrors.Code(err) == codes.Unavailable || lostNode().MatchString(err.Error())
}

// assemble joins the builders' results into the image to store: the one
// builder's result as it is, or one index of every builder's entries in
// the order the platforms were asked for, attestations after them.
func assemble(ctx context.Context, ingest *store.Ingest, runs []*builderRun, order []ocispecs.Platform) (ocispecs.Descriptor, error) {
	descs := make([]ocispecs.Descriptor, len(runs))
	for i, r := range runs {
		d, err := resultDescriptor(r)
		if err != nil {
			return ocispecs.Descriptor{}, err
		}
		descs[i] = d
	}
	if len(runs) == 1 {
		return descs[0], nil
	}
	// Each builder builds platforms of its own, so Join only appends.
	var joined store.IndexEntries
	for i, r := range runs {
		if !images.IsIndexType(descs[i].MediaType) {
			return ocispecs.Descriptor{}, fmt.Errorf("the result of %s is a %s, not an index: cannot join it with the other platforms", r.name, descs[i].MediaType)
		}
		idx, err := ingest.ReadIndex(ctx, descs[i])
		if err != nil {
			return ocispecs.Descriptor{}, fmt.Errorf("reading the result of %s: %w", r.name, err)
		}
		joined.Join(store.EntriesOf(idx))
	}
	joined.Order(order)
	return ingest.WriteIndex(ctx, joined.Index(ocispecs.MediaTypeImageIndex))
}

// resultDescriptor reads the descriptor of what a builder exported.
func resultDescriptor(r *builderRun) (ocispecs.Descriptor, error) {
	if r.resp == nil {
		return ocispecs.Descriptor{}, fmt.Errorf("%s returned no result", r.name)
	}
	raw := r.resp.ExporterResponse[exptypes.ExporterImageDescriptorKey]
	b, err := base64.StdEncoding.DecodeString(raw)
	var d ocispecs.Descriptor
	if err == nil {
		err = json.Unmarshal(b, &d)
	}
	if err != nil || d.Digest == "" {
		return ocispecs.Descriptor{}, fmt.Errorf("%s returned no image descriptor (exporter response %v)", r.name, r.resp.ExporterResponse)
	}
	// The exporter's annotations on the descriptor (creation time) are
	// not part of the blob; the index entry needs none.
	return ocispecs.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}, nil
}

// progressOut is where push progress goes: standard error unless quiet.
func progressOut(req *request.Request) io.Writer {
	if req.Progress == "quiet" {
		return nil
	}
	return req.Stderr
}
