package builder

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/platforms"
	gwpb "github.com/moby/buildkit/frontend/gateway/pb"
	solvererrdefs "github.com/moby/buildkit/solver/errdefs"
	"github.com/moby/buildkit/util/grpcerrors"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/engine"
	"github.com/kiln-build/kiln/internal/errmsg"
	"github.com/kiln-build/kiln/platform"
	"github.com/kiln-build/kiln/registry"
	"github.com/kiln-build/kiln/request"
	"github.com/kiln-build/kiln/store"
)

// BuildError is a build that failed in a step the user wrote: it carries the
// message and the last lines the step printed.
type BuildError struct {
	Message string
	Output  []string
	err     error
}

func (e *BuildError) Error() string {
	if len(e.Output) == 0 {
		return e.Message
	}
	return e.Message + "\nlast output:\n  " + strings.Join(e.Output, "\n  ")
}

// Unwrap returns BuildKit's error.
func (e *BuildError) Unwrap() error { return e.err }

// AddHint puts hint after the message, before the step's output, where it
// is read (see request.WithOptionHint).
func (e *BuildError) AddHint(hint string) { e.Message += ": " + hint }

var (
	grpcPrefix   = errmsg.Pattern(`rpc error: code = \w+ desc = `)
	parsePrefix  = errmsg.Pattern(`dockerfile parse error on line \d+: `)
	resolveImage = errmsg.Pattern(`failed to resolve source metadata for (\S+): `)
	pushImage    = errmsg.Pattern(`failed to push (\S+): `)
	noSpace      = errmsg.Pattern(`no space left on device|disk quota exceeded`)
	unreadable   = errmsg.Pattern(`(?:failed to open source|open|lstat|read) \S*/buildkit-mount\d+/(\S+?): .*permission denied`)
	networkTrap  = errmsg.Pattern(`no such host|connection refused|dial tcp|i/o timeout|network is unreachable|TLS handshake timeout|server misbehaving`)
)

// explain turns a failed solve into an error a user can act on: the
// Dockerfile line of a syntax error, the step and exit code of a failed RUN,
// the missing platform of a local base image.
func explain(ctx context.Context, cfg engine.Config, st *store.Store, req *request.Request, rec *recorder, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("build interrupted: the steps that finished are cached for the next build: %w", ctx.Err())
	}
	msg := clean(err)
	var ee *gwpb.ExitError
	if noSpace().MatchString(msg) && !errors.As(err, &ee) {
		return fmt.Errorf("out of disk space (%s): %s", noSpace().FindString(msg), freeSpace)
	}
	if m := unreadable().FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("cannot read %s in the build context: permission denied; make it readable to kiln or exclude it in .dockerignore", m[1])
	}
	loc := ""
	if srcs := solvererrdefs.Sources(err); len(srcs) > 0 {
		loc = location(req, srcs[len(srcs)-1])
	}
	if be := stepError(err, rec, loc, msg); be != nil {
		return be
	}
	if m := resolveImage().FindStringSubmatch(msg); m != nil {
		if local := localImageError(ctx, st, req, m[1]); local != nil {
			return local
		}
		if known := cfg.Registry.ExplainMessage("pull", m[1], msg); known != nil {
			return known
		}
		if networkTrap().MatchString(msg) {
			return offlineBaseError(ctx, cfg, st, m[1], lastCause(msg))
		}
	}
	if m := pushImage().FindStringSubmatch(msg); m != nil {
		return pushError(cfg.Registry, m[1], msg)
	}
	if budget := rec.oomBudget(); budget != "" {
		return fmt.Errorf("the build ran out of memory: the kernel killed a step because the build's steps together went over %s (%s); give the build more memory or run fewer steps at once (--max-parallelism 1)", budget, msg)
	}
	if loc != "" {
		return &BuildError{Message: loc + ": " + parsePrefix().ReplaceAllString(msg, ""), err: err}
	}
	return errors.New(msg)
}

// offlineBaseError explains a base image the registry could not be asked
// for. On the embedded store the image may be in a containerd on this host:
// an offline host's way out is to copy it from there.
func offlineBaseError(ctx context.Context, cfg engine.Config, st *store.Store, ref, cause string) error {
	msg := fmt.Sprintf("cannot fetch base image %s: the registry is not reachable (%s)", ref, cause)
	if !st.Embedded() {
		return fmt.Errorf("%s; pull it while online with \"kiln pull %s\", or build it locally", msg, ref)
	}
	if name, err := store.NormalizeName(ref); err == nil {
		if at, ok := store.FindInContainerd(ctx, cfg.Address, cfg.Namespace, name); ok {
			return fmt.Errorf("%s; the containerd at %s has it in namespace %s: copy it into kiln's store with \"kiln pull %s %s\"", msg, at.Address, at.Namespace, ref, at.URL())
		}
	}
	return fmt.Errorf("%s; pull it while online with \"kiln pull %s\", copy it from a containerd that has it with \"kiln pull %s containerd://[ADDRESS][/NAMESPACE]\", or build it locally", msg, ref, ref)
}

// stepError describes a failed step by its name, exit code and output.
func stepError(err error, rec *recorder, loc, msg string) *BuildError {
	var ve *solvererrdefs.VertexError
	if !errors.As(err, &ve) {
		return nil
	}
	name, tail := rec.step(digest.Digest(ve.Digest))
	if name == "" {
		return nil
	}
	if loc != "" {
		loc += ": "
	}
	var ee *gwpb.ExitError
	if budget := rec.oomBudget(); budget != "" {
		return &BuildError{Message: loc + oomMessage(name, budget), Output: tail, err: err}
	}
	why := msg
	if errors.As(err, &ee) {
		why = fmt.Sprintf("exit code %d", ee.ExitCode)
	}
	if dir := rec.diskFull(); dir != "" {
		return &BuildError{Message: fmt.Sprintf("%sstep %s failed (%s): %s", loc, name, why, diskMessage(dir)), Output: tail, err: err}
	}
	if ee != nil {
		return &BuildError{Message: fmt.Sprintf("%sstep %s failed with exit code %d", loc, name, ee.ExitCode), Output: tail, err: err}
	}
	return &BuildError{Message: fmt.Sprintf("%sstep %s failed: %s", loc, name, msg), Output: tail, err: err}
}

// freeSpace is what to do when the disk is full.
const freeSpace = "free space, for example with \"kiln prune\" or by removing images, then build again"

// diskMessage says that the file system of the build's snapshots in dir is
// full, and what to do.
func diskMessage(dir string) string {
	return fmt.Sprintf("out of disk space: the file system of the build's snapshots (%s) is full; %s", dir, freeSpace)
}

// outOfDisk notes, for the explanation of a failed build, that the file
// system of eng's snapshots is full.
func (r *recorder) outOfDisk(eng *engine.Engine) {
	if r == nil {
		return
	}
	dir := eng.FullDisk()
	if dir == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fullDisk = dir
}

// diskFull is the directory of the build's snapshots if their file system
// was full when the build failed, or "".
func (r *recorder) diskFull() string {
	if r == nil {
		return ""
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fullDisk
}

// pushError explains a failed push; the image itself was built (and stored,
// unless the output was type=registry), so only the push needs repeating.
func pushError(reg registry.Config, ref, msg string) error {
	if known := reg.ExplainMessage("push", ref, msg); known != nil {
		return fmt.Errorf("cannot push %s: %w", ref, known)
	}
	if networkTrap().MatchString(msg) {
		return fmt.Errorf("cannot push %s: registry %s is not reachable (%s); check the name's registry address", ref, registry.Host(ref), lastCause(msg))
	}
	return fmt.Errorf("cannot push %s: %s", ref, msg)
}

// lastCause is the innermost part of a chain of "doing x: doing y: cause".
func lastCause(msg string) string {
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return msg
}

// clean strips gRPC's status prefix and BuildKit's generic lead-in, which
// say nothing to a user.
func clean(err error) string {
	msg := grpcerrors.FromGRPC(err).Error()
	msg = grpcPrefix().ReplaceAllString(msg, "")
	msg = strings.TrimPrefix(msg, "failed to solve: ")
	return strings.TrimSpace(msg)
}

// location names the Dockerfile line an error points at, with the path
// the user knows the file by.
func location(req *request.Request, src *solvererrdefs.Source) string {
	if src.Info == nil || len(src.Ranges) == 0 {
		return ""
	}
	name := src.Info.Filename
	if df := req.Dockerfile; df.FromStdin || name == df.Name || name == "Dockerfile" {
		name = df.Display
	}
	return fmt.Sprintf("%s:%d", name, src.Ranges[0].Start.Line)
}

// localImageError reports a base image that is in the namespace but lacks a
// requested platform: BuildKit then falls back to the registry, and the
// user would otherwise see a DNS or connection error for an image they have.
func localImageError(ctx context.Context, st *store.Store, req *request.Request, ref string) error {
	name, err := store.NormalizeName(ref)
	if err != nil {
		return nil
	}
	sum, err := st.Summary(ctx, name, "")
	if err != nil {
		return nil
	}
	// The platforms whose every blob is stored; attestations have none.
	var have []ocispecs.Platform
	for _, p := range sum.Platforms {
		if p.Content != store.ContentComplete {
			continue
		}
		if spec, err := platform.Parse(p.Platform); err == nil {
			have = append(have, spec)
		}
	}
	want := req.Platforms
	if len(want) == 0 {
		want = []ocispecs.Platform{platforms.DefaultSpec()}
	}
	var missing []ocispecs.Platform
	for _, w := range want {
		if !slices.ContainsFunc(have, platforms.Only(w).Match) {
			missing = append(missing, w)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("base image %s is in the local store but has no content for %s (it has %s): pull that platform with \"kiln pull --platform %s %s\" or build the base for it",
		name, platform.Describe(missing), describeHave(have), platform.FormatList(missing), ref)
}

func describeHave(ps []ocispecs.Platform) string {
	if len(ps) == 0 {
		return "no platform with complete content"
	}
	return platform.Describe(ps)
}
