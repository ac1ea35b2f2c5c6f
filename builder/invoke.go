package builder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/containerd/console"
	"github.com/containerd/platforms"
	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/exporter/containerimage/exptypes"
	gateway "github.com/moby/buildkit/frontend/gateway/client"
	solvererrdefs "github.com/moby/buildkit/solver/errdefs"
	"github.com/moby/buildkit/solver/pb"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-build/kiln/request"
)

// invoker starts req.Invoke's command on the user's terminal in a
// container of the build: the failed step's, or the result's. BuildKit's
// gateway gives a build function the failed step's mounts (the filesystem
// as the command left it, cache mounts, secrets) with the error, and a
// container made of them runs under the build's session, so it can only
// start while the build function runs: the build waits for the command.
type invoker struct {
	req  *request.Request
	disp *display
	rec  *recorder
	// notes say why no command started; they follow the progress.
	notes []string
}

// buildInvoking is the solve of a build with --on-error or --invoke: the
// same frontend, attributes, exports and session, with kiln as the
// gateway's client, which asks BuildKit's Dockerfile frontend for the build
// and keeps the failure's (or the result's) container at hand.
func buildInvoking(ctx context.Context, c *bkclient.Client, opt bkclient.SolveOpt, statusCh chan *bkclient.SolveStatus, inv *invoker) (*bkclient.SolveResponse, error) {
	sreq := gateway.SolveRequest{Frontend: opt.Frontend, FrontendOpt: maps.Clone(opt.FrontendAttrs)}
	opt.Frontend, opt.FrontendAttrs = "", nil
	return c.Build(ctx, opt, "kiln", func(ctx context.Context, gw gateway.Client) (*gateway.Result, error) {
		// BuildKit hands the cache to import to the client building, not
		// to the frontend it asks.
		if v, ok := gw.BuildOpts().Opts["cache-imports"]; ok {
			sreq.FrontendOpt["cache-imports"] = v
		}
		res, err := gw.Solve(ctx, sreq)
		if err == nil {
			// The frontend's result is lazy: its steps run when it is
			// evaluated, here rather than during the export, so that a
			// failure comes while its container can still start.
			err = evaluate(ctx, res)
		}
		if err != nil {
			inv.inFailedStep(ctx, gw, err)
			return nil, err
		}
		if !inv.req.Invoke.OnErrorOnly {
			inv.inResult(ctx, gw, res)
		}
		return res, nil
	}, statusCh)
}

// evaluate runs the steps of every platform's result side by side.
func evaluate(ctx context.Context, res *gateway.Result) error {
	eg, ctx := errgroup.WithContext(ctx)
	res.EachRef(func(ref gateway.Reference) error { //nolint:errcheck // the function returns nil
		if ref != nil {
			eg.Go(func() error { return ref.Evaluate(ctx) })
		}
		return nil
	})
	return eg.Wait()
}

// inFailedStep starts the command in the container of the step that
// failed with err, when it was a RUN step; it says why it does not
// otherwise. The build's error follows either way.
func (inv *invoker) inFailedStep(ctx context.Context, gw gateway.Client, err error) {
	if ctx.Err() != nil {
		return
	}
	var se *solvererrdefs.SolveError
	var exec *pb.ExecOp
	if errors.As(err, &se) && se.Op != nil {
		exec = se.Op.GetExec()
	}
	if exec == nil {
		inv.note("the build failed before a RUN step, so there is no step container to start %s in", inv.command())
		return
	}
	if len(se.MountIDs) < len(exec.Mounts) {
		inv.note("the failed step's filesystem is not available (%d of %d mounts): %s not started", len(se.MountIDs), len(exec.Mounts), inv.command())
		return
	}
	creq := gateway.NewContainerRequest{
		NetMode:    exec.Network,
		Hostname:   exec.GetMeta().GetHostname(),
		ExtraHosts: exec.GetMeta().GetExtraHosts(),
		Platform:   se.Op.GetPlatform(),
	}
	for i, m := range exec.Mounts {
		creq.Mounts = append(creq.Mounts, gateway.Mount{
			Selector:  m.Selector,
			Dest:      m.Dest,
			ResultID:  se.MountIDs[i],
			Readonly:  m.Readonly,
			MountType: m.MountType,
			CacheOpt:  m.CacheOpt,
			SecretOpt: m.SecretOpt,
			SSHOpt:    m.SSHOpt,
		})
	}
	meta := exec.GetMeta()
	sreq := gateway.StartRequest{
		Args:                      inv.req.Invoke.Args,
		Env:                       append(meta.GetEnv(), proxyEnv(meta.GetProxyEnv())...),
		SecretEnv:                 exec.Secretenv,
		User:                      meta.GetUser(),
		Cwd:                       meta.GetCwd(),
		SecurityMode:              exec.Security,
		RemoveMountStubsRecursive: meta.GetRemoveMountStubsRecursive(),
	}
	step := "a RUN step"
	var ve *solvererrdefs.VertexError
	if errors.As(err, &ve) {
		if name, _ := inv.rec.step(digest.Digest(ve.Digest)); name != "" {
			step = name
		}
	}
	inv.run(ctx, gw, creq, sreq, fmt.Sprintf("%s failed: starting %s in its container, as the step left it; the build fails when it exits", step, inv.command()))
}

// inResult starts the command in the build's result: its filesystem, with
// the image's environment, working directory and user. Of several
// platforms it takes this host's, or the first.
func (inv *invoker) inResult(ctx context.Context, gw gateway.Client, res *gateway.Result) {
	ref, key := res.Ref, ""
	if ref == nil {
		host := platforms.Format(platforms.Normalize(platforms.DefaultSpec()))
		var first string
		for _, p := range inv.req.Platforms {
			k := platforms.Format(p)
			if _, ok := res.Refs[k]; ok && first == "" {
				first = k
			}
		}
		if _, ok := res.Refs[host]; ok {
			key = host
		} else if first != "" {
			key = first
		} else {
			for k := range res.Refs {
				key = k
				break
			}
		}
		ref = res.Refs[key]
	}
	if ref == nil {
		inv.note("the build's result has no filesystem: %s not started", inv.command())
		return
	}
	sreq := gateway.StartRequest{Args: inv.req.Invoke.Args}
	cfgKey := exptypes.ExporterImageConfigKey
	if key != "" {
		cfgKey += "/" + key
	}
	var img ocispecs.Image
	if dt, ok := res.Metadata[cfgKey]; ok && json.Unmarshal(dt, &img) == nil {
		sreq.Env, sreq.User, sreq.Cwd = img.Config.Env, img.Config.User, img.Config.WorkingDir
	}
	creq := gateway.NewContainerRequest{Mounts: []gateway.Mount{{Dest: "/", MountType: pb.MountType_BIND, Ref: ref}}}
	if key != "" {
		if p, err := platforms.Parse(key); err == nil {
			creq.Platform = &pb.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
		}
	}
	what := "the build's result"
	if key != "" {
		what = "the build's result for " + key
	}
	inv.run(ctx, gw, creq, sreq, fmt.Sprintf("starting %s in %s; the image is stored when it exits", inv.command(), what))
}

// run starts the command in a new container on the terminal and waits for
// it to exit. Without a terminal on standard input it says so and starts
// nothing.
func (inv *invoker) run(ctx context.Context, gw gateway.Client, creq gateway.NewContainerRequest, sreq gateway.StartRequest, what string) {
	in, out, ok := inv.terminal()
	if !ok {
		inv.note("%s needs a terminal on standard input, and it is not one: nothing started", inv.command())
		return
	}
	// The progress display would draw over the command's screen.
	inv.disp.pause()
	fmt.Fprintf(inv.req.Stderr, "\n%s\n", what)

	ctr, err := gw.NewContainer(ctx, creq)
	if err != nil {
		inv.note("starting the container for %s: %s", inv.command(), oneLine(err.Error()))
		return
	}
	defer ctr.Release(context.WithoutCancel(ctx)) //nolint:errcheck // BuildKit releases it with the build anyway

	if err := in.SetRaw(); err != nil {
		inv.note("setting the terminal to raw mode: %s", err)
		return
	}
	defer in.Reset() //nolint:errcheck // best effort: the terminal as it was

	// The process reads a pipe, closed when it exits, so that nothing
	// keeps reading the terminal for it.
	pr, pw := io.Pipe()
	go func() {
		_, err := io.Copy(pw, in)
		pw.CloseWithError(err)
	}()
	defer pr.Close()
	sreq.Tty = true
	sreq.Stdin = pr
	sreq.Stdout, sreq.Stderr = nopWriteCloser{out}, nopWriteCloser{out}
	proc, err := ctr.Start(ctx, sreq)
	if err != nil {
		in.Reset() //nolint:errcheck
		inv.note("starting %s: %s", inv.command(), oneLine(err.Error()))
		return
	}
	resize := func() {
		if sz, err := in.Size(); err == nil {
			proc.Resize(ctx, gateway.WinSize{Rows: uint32(sz.Height), Cols: uint32(sz.Width)}) //nolint:errcheck // the next resize tries again
		}
	}
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	done := make(chan struct{})
	defer close(done)
	go func() {
		resize()
		for {
			select {
			case <-winch:
				resize()
			case <-done:
				return
			}
		}
	}()
	err = proc.Wait()
	in.Reset() //nolint:errcheck
	if err != nil && ctx.Err() == nil {
		fmt.Fprintf(inv.req.Stderr, "\r\n%s ended: %s\n", inv.command(), oneLine(err.Error()))
	} else {
		fmt.Fprint(inv.req.Stderr, "\r\n")
	}
}

// terminal returns the user's terminal: standard input, and the first of
// standard error and output that is a terminal to show the command on.
func (inv *invoker) terminal() (console.Console, io.Writer, bool) {
	f, ok := inv.req.Stdin.(*os.File)
	if !ok {
		return nil, nil, false
	}
	in, err := console.ConsoleFromFile(f)
	if err != nil {
		return nil, nil, false
	}
	for _, w := range []io.Writer{inv.req.Stderr, inv.req.Stdout} {
		if f, ok := w.(*os.File); ok {
			if _, err := console.ConsoleFromFile(f); err == nil {
				return in, f, true
			}
		}
	}
	return nil, nil, false
}

// command names the command to start in messages.
func (inv *invoker) command() string {
	return strings.Join(inv.req.Invoke.Args, " ")
}

// note keeps why no command started, for after the progress display,
// which must show the failure as it would without --on-error.
func (inv *invoker) note(format string, args ...any) {
	inv.notes = append(inv.notes, fmt.Sprintf(format, args...))
}

// printNotes prints the notes, once the progress display is done.
func (inv *invoker) printNotes() {
	if inv == nil {
		return
	}
	for _, n := range inv.notes {
		fmt.Fprintf(inv.req.Stderr, "%s\n", n)
	}
}

// proxyEnv is the environment BuildKit gives a step from the proxy
// build arguments, in both cases as it sets them.
func proxyEnv(p *pb.ProxyEnv) []string {
	if p == nil {
		return nil
	}
	var env []string
	for _, kv := range [][2]string{{"HTTP_PROXY", p.HttpProxy}, {"HTTPS_PROXY", p.HttpsProxy}, {"FTP_PROXY", p.FtpProxy}, {"NO_PROXY", p.NoProxy}, {"ALL_PROXY", p.AllProxy}} {
		if kv[1] != "" {
			env = append(env, kv[0]+"="+kv[1], strings.ToLower(kv[0])+"="+kv[1])
		}
	}
	return env
}

// nopWriteCloser is a writer the process may close without closing the
// terminal.
type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
