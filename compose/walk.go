package compose

import (
	"context"
	"fmt"
	"sync"
)

// NotBuiltError is a build that did not run because a build it needs
// failed or did not run.
type NotBuiltError struct {
	// Service is the service that was not built; Needs the service whose
	// image it needed.
	Service, Needs string
}

func (e *NotBuiltError) Error() string {
	return fmt.Sprintf("not built: it needs the image of service %s, which was not built", e.Needs)
}

// Walk runs fn for every build of the plan, each once the builds it needs
// have succeeded, independent ones at the same time, and returns when all
// are done. The result has every service's error, nil for those built; a
// build whose dependency failed is not run and gets a *NotBuiltError, and
// one not started when ctx ends gets ctx's error. A failure does not stop
// the builds that do not need it, so their images are stored.
func (pl *Plan) Walk(ctx context.Context, fn func(context.Context, *Build) error) map[string]error {
	var mu sync.Mutex
	errs := map[string]error{}
	done := map[string]chan struct{}{}
	for _, b := range pl.Builds {
		done[b.Service] = make(chan struct{})
	}
	var wg sync.WaitGroup
	for _, b := range pl.Builds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done[b.Service])
			err := func() error {
				for _, dep := range b.Needs() {
					<-done[dep]
					mu.Lock()
					failed := errs[dep]
					mu.Unlock()
					if failed != nil {
						return &NotBuiltError{Service: b.Service, Needs: dep}
					}
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				return fn(ctx, b)
			}()
			mu.Lock()
			errs[b.Service] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	return errs
}
