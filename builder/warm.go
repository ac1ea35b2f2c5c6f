package builder

import (
	"bytes"
	"slices"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/util/archutil"

	"github.com/kiln-build/kiln/request"
)

// warmPlatforms starts BuildKit's survey of the platforms this host runs
// when steps are sure to run: --no-cache and a RUN in the Dockerfile of one
// of the builds.
// Before the first step of a process runs, BuildKit executes a probe
// program for each of ten architectures (util/archutil) to decide whether a
// step needs an emulator of its own: 100-200 ms that buildkitd spends once,
// at its start, and kiln in every build that runs a step. Started here, the
// probes overlap with connecting to containerd and starting BuildKit
// instead of delaying the first step. The returned function waits for them,
// so that none outlives the build.
func warmPlatforms(reqs ...*request.Request) (wait func()) {
	if !slices.ContainsFunc(reqs, func(r *request.Request) bool { return r.NoCache && hasRun(r.Dockerfile.Content) }) {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		archutil.SupportedPlatforms(false)
	}()
	return func() { <-done }
}

// hasRun reports whether a Dockerfile has a RUN instruction.
func hasRun(dockerfile []byte) bool {
	res, err := parser.Parse(bytes.NewReader(dockerfile))
	if err != nil {
		return false
	}
	for _, n := range res.AST.Children {
		if strings.EqualFold(n.Value, "run") {
			return true
		}
	}
	return false
}
