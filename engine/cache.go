package engine

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	controlapi "github.com/moby/buildkit/api/services/control"
	bkclient "github.com/moby/buildkit/client"
	"google.golang.org/grpc"
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
	// Shared records hold layers an image in the store also holds.
	Shared bool
	// Reclaimable records are what kiln prune frees: not in use, not
	// shared with an image, and neither BuildKit's internal records nor
	// its frontends', as BuildKit's prune without "all" chooses them.
	Reclaimable bool
	// ReclaimableAll records are what kiln prune --all frees: every
	// record not in use (buildctl du's "Reclaimable").
	ReclaimableAll bool
	LastUsed       *time.Time
}

// newCacheRecord describes one of BuildKit's usage records.
func newCacheRecord(id, description, recordType string, size int64, inUse, shared bool, lastUsed *time.Time) CacheRecord {
	internal := recordType == string(bkclient.UsageRecordTypeInternal) || recordType == string(bkclient.UsageRecordTypeFrontend)
	return CacheRecord{
		ID:             id,
		Description:    description,
		Size:           size,
		InUse:          inUse,
		Shared:         shared,
		Reclaimable:    !inUse && !shared && !internal,
		ReclaimableAll: !inUse,
		LastUsed:       lastUsed,
	}
}

// Prune frees build cache. A kiln process lives too briefly for BuildKit's
// periodic garbage collection to run, so this is how the cache shrinks. It
// starts BuildKit's worker and controller, not the rest of the engine (no
// frontends, sessions or client); messages (waiting for a lock, what was
// cleaned) go to stderr.
func Prune(ctx context.Context, cfg Config, opts PruneOptions, stderr io.Writer) ([]CacheRecord, error) {
	e, err := open(ctx, cfg, nil, stderr)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	if err := e.startController(nil); err != nil {
		return nil, err
	}
	return e.prune(ctx, bkclient.PruneInfo{All: opts.All, Filter: opts.Filters, ReservedSpace: opts.KeepStorage})
}

// DiskUsage lists the build cache records, smallest first. It starts
// BuildKit's worker only; messages go to stderr.
func DiskUsage(ctx context.Context, cfg Config, stderr io.Writer) ([]CacheRecord, error) {
	e, err := open(ctx, cfg, nil, stderr)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	du, err := e.worker.DiskUsage(ctx, bkclient.DiskUsageInfo{})
	if err != nil {
		return nil, fmt.Errorf("reading build cache usage: %w", err)
	}
	// In the order BuildKit's client lists them.
	slices.SortFunc(du, func(a, b *bkclient.UsageInfo) int {
		return cmp.Or(cmp.Compare(a.Size, b.Size), cmp.Compare(a.ID, b.ID))
	})
	out := make([]CacheRecord, 0, len(du))
	for _, u := range du {
		out = append(out, newCacheRecord(u.ID, u.Description, string(u.RecordType), u.Size, u.InUse, u.Shared, u.LastUsedAt))
	}
	return out, nil
}

// prune asks the controller to apply one prune rule and returns the records
// it freed. Going through the controller, rather than to the worker, also
// drops the solver's cache keys of the freed records, as buildkitd does.
func (e *Engine) prune(ctx context.Context, rule bkclient.PruneInfo) ([]CacheRecord, error) {
	req := &controlapi.PruneRequest{
		Filter:        rule.Filter,
		All:           rule.All,
		KeepDuration:  int64(rule.KeepDuration),
		ReservedSpace: rule.ReservedSpace,
		MaxUsedSpace:  rule.MaxUsedSpace,
		MinFreeSpace:  rule.MinFreeSpace,
	}
	s := &pruneStream{ctx: ctx}
	if err := e.controller.Prune(req, s); err != nil {
		return s.freed, fmt.Errorf("pruning the build cache: %w", err)
	}
	return s.freed, nil
}

// pruneStream receives the controller's prune results in this process, in
// place of the gRPC stream buildkitd's clients read them from. The
// controller calls only Context and Send.
type pruneStream struct {
	grpc.ServerStream
	ctx   context.Context
	freed []CacheRecord
}

func (s *pruneStream) Context() context.Context { return s.ctx }

func (s *pruneStream) Send(u *controlapi.UsageRecord) error {
	var lastUsed *time.Time
	if u.LastUsedAt != nil {
		t := u.LastUsedAt.AsTime()
		lastUsed = &t
	}
	s.freed = append(s.freed, newCacheRecord(u.ID, u.Description, u.RecordType, u.Size, u.InUse, u.Shared, lastUsed))
	return nil
}
