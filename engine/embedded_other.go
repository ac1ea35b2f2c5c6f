//go:build !linux

package engine

import (
	"context"
	"errors"
	"io"

	"github.com/moby/buildkit/executor"
	"github.com/moby/buildkit/executor/resources"
	"github.com/moby/buildkit/solver/pb"
	"github.com/moby/buildkit/util/network"
	"github.com/moby/buildkit/worker/base"
	"github.com/moby/buildkit/worker/containerd"

	"github.com/kiln-build/kiln/store"
)

// embeddedWorkerOpt fails off Linux, where runc does not run.
func embeddedWorkerOpt(st *store.Store, namespace, root, name string, steps stepRunc) (base.WorkerOpt, error) {
	return base.WorkerOpt{}, errors.New("kiln's embedded store needs Linux")
}

// sweepRuncSteps has nothing to clean off Linux.
func sweepRuncSteps(ctx context.Context, root string, stderr io.Writer) error { return nil }

// newRuncStepExecutor fails off Linux, where runc does not run.
func newRuncStepExecutor(workerOpts containerd.WorkerOptions, workerRoot string, np map[pb.NetMode]network.Provider, proxy network.ProxyProvider) (executor.Executor, *resources.Monitor, error) {
	return nil, nil, errors.New("running build steps with runc needs Linux")
}

// stepsRunc is empty off Linux: steps are containerd's tasks.
func stepsRunc(rootlessMode bool) string { return "" }
