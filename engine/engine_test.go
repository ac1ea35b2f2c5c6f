package engine

import (
	"context"
	"testing"
	"time"

	"github.com/moby/buildkit/solver"
)

// goneResults is a result storage in which no result exists any more.
type goneResults struct{ solver.CacheResultStorage }

func (goneResults) Exists(context.Context, string) bool { return false }

func TestSweepAfterStart(t *testing.T) {
	storage := solver.NewInMemoryCacheStorage()
	if err := storage.AddResult("key", solver.CacheResult{ID: "result", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	keys := &sweepAfterStart{CacheKeyStorage: storage}
	cm := solver.NewCacheManager(context.Background(), "local", keys, goneResults{solver.NewInMemoryResultStorage()})
	if _, err := storage.Load("key", "result"); err != nil {
		t.Fatalf("the cache manager swept the keys at start: %v", err)
	}
	keys.started.Store(true)
	if err := cm.ReleaseUnreferenced(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := storage.Load("key", "result"); err == nil {
		t.Fatal("a sweep after start (as after a prune) kept a result that no longer exists")
	}
}
