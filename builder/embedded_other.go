//go:build !linux

package builder

import (
	"context"
	"errors"
	"io"

	"github.com/moby/buildkit/worker/base"
)

// newEmbeddedWorker fails off Linux, where runc does not run.
func newEmbeddedWorker(ctx context.Context, cfg Config) (*base.Worker, error) {
	return nil, errors.New("kiln's embedded store needs Linux")
}

// sweepEmbedded has nothing to clean off Linux.
func sweepEmbedded(ctx context.Context, root string, stderr io.Writer) error { return nil }
