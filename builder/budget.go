package builder

import (
	"errors"
	"fmt"

	"github.com/kiln-build/kiln/engine"
	"github.com/kiln-build/kiln/internal/errmsg"
	"github.com/kiln-build/kiln/request"
)

// budgetHint completes an error of a budget the engine cannot enforce
// with the way out: a build without it. Other errors pass unchanged.
func budgetHint(err error) error {
	if !errors.Is(err, engine.ErrBudget) {
		return err
	}
	return errmsg.New(err.Error()+"; or build without a budget: leave out --memory and --cpus (and KILN_MEMORY, KILN_CPUS)", err)
}

// memoryBudget is the --memory option of a budget, as the user reads it
// in an error: "--memory 256MiB".
func memoryBudget(b request.Budget) string {
	return "--memory " + engine.FormatMemory(b.Memory)
}

// outOfMemory notes, for the explanation of a failed build, that the
// kernel killed a step of eng's build for going over its memory budget.
func (r *recorder) outOfMemory(eng *engine.Engine, req *request.Request) {
	if r == nil || req.Budget.Memory == 0 || !eng.OutOfMemory() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.oom = memoryBudget(req.Budget)
}

// oomBudget is the budget a step of the build went over, or "".
func (r *recorder) oomBudget() string {
	if r == nil {
		return ""
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.oom
}

// oomMessage says that step ran out of memory under budget, and what to do.
func oomMessage(step string, budget string) string {
	return fmt.Sprintf("step %s ran out of memory: the kernel killed it because the build's steps together went over %s; give the build more memory or run fewer steps at once (--max-parallelism 1)", step, budget)
}
