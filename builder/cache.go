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
		var err error
		out, err = prune(ctx, eng.client, bkclient.PruneInfo{All: opts.All, Filter: opts.Filters, ReservedSpace: opts.KeepStorage})
		return err
	})
	return out, err
}

// prune asks the controller to apply one prune rule and returns the records
// it freed. Going through the controller, rather than to the worker, also
// drops the solver's cache keys of the freed records, as buildkitd does.
func prune(ctx context.Context, c *bkclient.Client, rule bkclient.PruneInfo) ([]CacheRecord, error) {
	var out []CacheRecord
	ch := make(chan bkclient.UsageInfo)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for u := range ch {
			out = append(out, record(u))
		}
	}()
	popts := []bkclient.PruneOption{
		bkclient.WithFilter(rule.Filter),
		bkclient.WithKeepOpt(rule.KeepDuration, rule.ReservedSpace, rule.MaxUsedSpace, rule.MinFreeSpace),
	}
	if rule.All {
		popts = append(popts, bkclient.PruneAll)
	}
	err := c.Prune(ctx, ch, popts...)
	close(ch)
	<-done
	if err != nil {
		return out, fmt.Errorf("pruning the build cache: %s", clean(err))
	}
	return out, nil
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
