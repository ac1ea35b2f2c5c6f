package builder

import (
	"context"
	"fmt"
	"os"
	"time"

	bkclient "github.com/moby/buildkit/client"
)

// PruneOptions select what `kiln prune` frees.
type PruneOptions struct {
	// All frees every cache record not in use, not only the unshared ones.
	All bool
	// KeepStorage keeps this many bytes of the most recently used cache.
	KeepStorage int64
	// Filters are BuildKit prune filters, e.g. "type==regular".
	Filters []string
}

// CacheRecord is one entry of the build cache.
type CacheRecord struct {
	ID          string
	Description string
	Size        int64
	InUse       bool
	Shared      bool
	Reclaimable bool
	LastUsed    *time.Time
}

// Prune frees build cache. A kiln process lives too briefly for BuildKit's
// periodic garbage collection to run, so this is how the cache shrinks.
func Prune(ctx context.Context, cfg Config, opts PruneOptions) ([]CacheRecord, error) {
	var out []CacheRecord
	err := withEngine(ctx, cfg, func(eng *engine) error {
		ch := make(chan bkclient.UsageInfo)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for u := range ch {
				out = append(out, record(u))
			}
		}()
		popts := []bkclient.PruneOption{bkclient.WithFilter(opts.Filters), bkclient.WithKeepOpt(0, opts.KeepStorage, 0, 0)}
		if opts.All {
			popts = append(popts, bkclient.PruneAll)
		}
		err := eng.client.Prune(ctx, ch, popts...)
		close(ch)
		<-done
		if err != nil {
			return fmt.Errorf("pruning the build cache: %s", clean(err))
		}
		return nil
	})
	return out, err
}

// DiskUsage lists the build cache records.
func DiskUsage(ctx context.Context, cfg Config) ([]CacheRecord, error) {
	var out []CacheRecord
	err := withEngine(ctx, cfg, func(eng *engine) error {
		du, err := eng.client.DiskUsage(ctx)
		if err != nil {
			return fmt.Errorf("reading build cache usage: %s", clean(err))
		}
		for _, u := range du {
			out = append(out, record(*u))
		}
		return nil
	})
	return out, err
}

func record(u bkclient.UsageInfo) CacheRecord {
	return CacheRecord{
		ID:          u.ID,
		Description: u.Description,
		Size:        u.Size,
		InUse:       u.InUse,
		Shared:      u.Shared,
		Reclaimable: !u.InUse && !u.Shared,
		LastUsed:    u.LastUsedAt,
	}
}

// withEngine opens containerd, takes the state lock and starts the embedded
// BuildKit for one operation.
func withEngine(ctx context.Context, cfg Config, fn func(*engine) error) error {
	in, err := start(ctx, cfg, os.Stderr)
	if err != nil {
		return err
	}
	defer in.Close()
	return fn(in.engine)
}
