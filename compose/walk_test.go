package compose

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// walkPlan is base <- app <- top, and solo on its own.
func walkPlan() *Plan {
	return &Plan{Builds: []*Build{
		{Service: "base", ServiceContexts: map[string]string{}},
		{Service: "solo", ServiceContexts: map[string]string{}},
		{Service: "app", ServiceContexts: map[string]string{"b": "base"}},
		{Service: "top", ServiceContexts: map[string]string{"a": "app"}},
	}}
}

func TestWalkOrderAndParallel(t *testing.T) {
	var mu sync.Mutex
	var finished []string
	// base and solo each wait for the other to start: the walk deadlocks
	// (and the test times out) unless independent builds run side by side.
	started := map[string]chan struct{}{"base": make(chan struct{}), "solo": make(chan struct{})}
	errs := walkPlan().Walk(context.Background(), func(_ context.Context, b *Build) error {
		if ch, ok := started[b.Service]; ok {
			close(ch)
			other := map[string]string{"base": "solo", "solo": "base"}[b.Service]
			select {
			case <-started[other]:
			case <-time.After(10 * time.Second):
				return errors.New("the other independent build never started")
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for _, dep := range b.Needs() {
			found := false
			for _, f := range finished {
				found = found || f == dep
			}
			if !found {
				t.Errorf("%s started before %s, which it needs, finished", b.Service, dep)
			}
		}
		finished = append(finished, b.Service)
		return nil
	})
	for svc, err := range errs {
		if err != nil {
			t.Errorf("%s: %v", svc, err)
		}
	}
	if len(finished) != 4 {
		t.Errorf("built %v, want all four", finished)
	}
}

func TestWalkFailureSkipsDependentsOnly(t *testing.T) {
	boom := errors.New("step failed")
	var mu sync.Mutex
	ran := map[string]bool{}
	errs := walkPlan().Walk(context.Background(), func(_ context.Context, b *Build) error {
		mu.Lock()
		ran[b.Service] = true
		mu.Unlock()
		if b.Service == "base" {
			return boom
		}
		return nil
	})
	if !errors.Is(errs["base"], boom) {
		t.Errorf("base: %v, want its own failure", errs["base"])
	}
	for svc, needs := range map[string]string{"app": "base", "top": "app"} {
		var nb *NotBuiltError
		if !errors.As(errs[svc], &nb) || nb.Needs != needs || ran[svc] {
			t.Errorf("%s: %v (ran %v), want not built for want of %s", svc, errs[svc], ran[svc], needs)
		}
	}
	if errs["solo"] != nil || !ran["solo"] {
		t.Errorf("solo, which needs nothing that failed: %v (ran %v)", errs["solo"], ran["solo"])
	}
	if got := errs["app"].Error(); got != "not built: it needs the image of service base, which was not built" {
		t.Errorf("message %q", got)
	}
}

func TestWalkCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	errs := walkPlan().Walk(ctx, func(context.Context, *Build) error {
		t.Error("a build ran after the walk's context ended")
		return nil
	})
	if !errors.Is(errs["base"], context.Canceled) {
		t.Errorf("base: %v", errs["base"])
	}
}
