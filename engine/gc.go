package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	units "github.com/docker/go-units"
	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/cmd/buildkitd/config"
	"github.com/moby/buildkit/util/disk"

	"github.com/kiln-build/kiln/usage"
)

// GCOptions control the garbage collection of the build cache that follows
// every successful build. buildkitd collects in the background; kiln has no
// background, so a build collects when it is done (see
// Engine.CollectGarbage). The zero value collects with buildkitd's default
// policy.
type GCOptions struct {
	// Disabled turns the collection off (--gc=false).
	Disabled bool
	// KeepStorage is how much build cache the collection keeps, as
	// buildkitd's gckeepstorage and docker's builder.gc.defaultKeepStorage:
	// a size such as 10GB, or a percentage of the disk holding the cache
	// such as 10%. Empty keeps what buildkitd's defaults keep on that disk.
	KeepStorage string
}

// gcInterval is how often at most a build checks the cache against the
// policy; buildkitd's controller, too, collects at most once a minute.
// Between checks a build pays one stat of the stamp file (30-140 µs with
// finding the worker, measured). A check lists the cache with BuildKit's
// DiskUsage, 20-40 ms for 304 records after a cached build of 0.3-0.5 s
// (2 shared cores), and prunes only when the policy could free something:
// each rule's prune lists the cache again before containerd collects its
// own garbage (60 ms measured for three rules that freed nothing). Without
// the interval every cached build would pay the listing, 5-10% of its time.
// The listing also measures the layers a build has just made, as
// buildkitd's collection after each build does.
const gcInterval = time.Minute

// gcStamp is the file, in the worker's state directory beside the cache
// metadata it describes, whose modification time is the last check.
const gcStamp = "gc.stamp"

// gcPolicy is a validated GCOptions.
type gcPolicy struct {
	disabled bool
	keep     config.DiskSpace // zero: buildkitd's defaults
}

// Validate checks the options, so that a bad value fails a build before
// it starts, not after it.
func (o GCOptions) Validate() error {
	_, err := o.policy()
	return err
}

// policy validates the options.
func (o GCOptions) policy() (gcPolicy, error) {
	keep, err := ParseKeepStorage(o.KeepStorage)
	if err != nil {
		return gcPolicy{}, err
	}
	return gcPolicy{disabled: o.Disabled, keep: keep}, nil
}

// ParseKeepStorage reads a --gc-keep-storage value: a size such as 512MB or
// 10GB, or a percentage of the disk holding the build cache such as 10%.
// Empty gives the zero DiskSpace, which stands for buildkitd's defaults.
func ParseKeepStorage(s string) (config.DiskSpace, error) {
	if s == "" {
		return config.DiskSpace{}, nil
	}
	bad := func(why string) error {
		return usage.Wrap(&KeepStorageError{Value: s, Problem: why})
	}
	if pct, ok := strings.CutSuffix(s, "%"); ok {
		n, err := strconv.ParseInt(pct, 10, 64)
		if err != nil || n <= 0 || n > 100 {
			return config.DiskSpace{}, bad("a percentage must be a whole number from 1 to 100")
		}
		return config.DiskSpace{Percentage: n}, nil
	}
	n, err := units.RAMInBytes(s)
	if err != nil {
		return config.DiskSpace{}, bad("not a size")
	}
	if n <= 0 {
		// BuildKit reads zero as "unset"; keeping nothing is kiln prune --all.
		return config.DiskSpace{}, bad("it must be more than 0")
	}
	return config.DiskSpace{Bytes: n}, nil
}

// rules returns the prune rules buildkitd applies with gc = true and, when keep
// is set, gckeepstorage = keep: BuildKit's default policy (its
// DefaultGCPolicy), with its sizes worked out for the disk dstat describes,
// as buildkitd's getGCPolicy does.
func (p gcPolicy) rules(dstat disk.DiskStat) []bkclient.PruneInfo {
	policy := config.DefaultGCPolicy(config.GCConfig{GCKeepStorage: p.keep}, dstat)
	out := make([]bkclient.PruneInfo, 0, len(policy))
	for _, r := range policy {
		out = append(out, bkclient.PruneInfo{
			Filter:        r.Filters,
			All:           r.All,
			KeepDuration:  r.KeepDuration.Duration,
			ReservedSpace: r.ReservedSpace.AsBytes(dstat),
			MaxUsedSpace:  r.MaxUsedSpace.AsBytes(dstat),
			MinFreeSpace:  r.MinFreeSpace.AsBytes(dstat),
		})
	}
	return out
}

// mayFree reports whether pruning with rules could free any of the records
// du lists. BuildKit's cache manager (cache/manager.go, prune and
// calculateKeepBytes) frees nothing under a rule with a size bound while the
// unshared records total less than the bytes that rule keeps; only a rule
// without one (none of the default policy's) may free records by age alone.
func mayFree(rules []bkclient.PruneInfo, du []*bkclient.UsageInfo, dstat disk.DiskStat) bool {
	var total int64
	for _, u := range du {
		if !u.Shared {
			total += u.Size
		}
	}
	for _, r := range rules {
		keep := keepBytes(total, dstat, r)
		if keep == 0 || total >= keep {
			return true
		}
	}
	return false
}

// keepBytes is BuildKit's calculateKeepBytes (cache/manager.go, v0.34):
// how much of a cache of total bytes rule r keeps; 0 means no bound.
func keepBytes(total int64, dstat disk.DiskStat, r bkclient.PruneInfo) int64 {
	if r.MaxUsedSpace == 0 && r.ReservedSpace == 0 && r.MinFreeSpace == 0 {
		return 0
	}
	keep := r.MaxUsedSpace
	if excess := r.MinFreeSpace - dstat.Free; excess > 0 {
		if keep == 0 {
			keep = total - excess
		} else {
			keep = min(keep, total-excess)
		}
	} else if r.MinFreeSpace != 0 && keep == 0 {
		keep = total
	}
	return max(keep, r.ReservedSpace)
}

// collectGarbage applies the policy to the build cache of e, at most once
// per gcInterval, and returns the records it freed. It runs after a build
// has finished, so nothing holds the build's results any more; like
// buildkitd's collection, the rules free the least recently and least
// often used records first, and images' layers only under the last rule.
func collectGarbage(ctx context.Context, e *Engine, p gcPolicy) ([]CacheRecord, error) {
	if p.disabled {
		return nil, nil
	}
	root := e.worker.WorkerOpt.Root
	stamp := filepath.Join(root, gcStamp)
	if fi, err := os.Stat(stamp); err == nil {
		// A stamp from the future (the clock went back) does not count.
		if age := time.Since(fi.ModTime()); age >= 0 && age < gcInterval {
			return nil, nil
		}
	}
	// Stamped before the check: a collection that fails should fail (and
	// cost, and warn) once an interval, not at every build.
	if err := touch(stamp); err != nil {
		return nil, fmt.Errorf("recording the collection in %s: %w", stamp, err)
	}
	// buildkitd too ignores a disk it cannot stat: percentages then count
	// from BuildKit's fallback of 2GB.
	dstat, _ := disk.GetDiskStat(root)
	rules := p.rules(dstat)
	du, err := e.worker.DiskUsage(ctx, bkclient.DiskUsageInfo{})
	if err != nil {
		return nil, fmt.Errorf("reading build cache usage: %w", err)
	}
	if !mayFree(rules, du, dstat) {
		return nil, nil
	}
	// One prune per rule, in the policy's order, as BuildKit's worker
	// applies them; each recomputes the cache's size and the disk's free
	// space after the rules before it.
	var freed []CacheRecord
	for _, r := range rules {
		recs, err := e.prune(ctx, r)
		freed = append(freed, recs...)
		if err != nil {
			return freed, err
		}
	}
	return freed, nil
}

func touch(path string) error {
	now := time.Now()
	err := os.Chtimes(path, now, now)
	if errors.Is(err, os.ErrNotExist) {
		return os.WriteFile(path, nil, 0o600)
	}
	return err
}

// Collected is what a garbage collection freed.
type Collected struct {
	// Records is how many build cache records were freed; Size their bytes.
	Records int
	Size    int64
}

// CollectGarbage applies the garbage collection policy of the global
// options (Config.GC) to the build cache after a successful build, at most
// once a minute, and returns what it freed, also when it fails part way.
// The caller says so: a build that succeeded stays a success.
func (e *Engine) CollectGarbage(ctx context.Context) (Collected, error) {
	p, err := e.cfg.GC.policy()
	var freed []CacheRecord
	if err == nil {
		freed, err = collectGarbage(ctx, e, p)
	}
	c := Collected{Records: len(freed)}
	for _, r := range freed {
		c.Size += r.Size
	}
	return c, err
}
