package request

import (
	"math"
	"runtime"
	"strconv"
	"strings"

	units "github.com/docker/go-units"

	"github.com/kiln-build/kiln/usage"
)

// minMemory is the smallest --memory kiln takes, docker's: below it a step's
// runtime alone would not fit.
const minMemory = 6 << 20

// Budget is what a build's steps may use together and how many run at once
// (--memory, --cpus, --max-parallelism); zero values limit nothing.
type Budget struct {
	// Memory is the memory of all steps together in bytes, swap included.
	Memory int64
	// CPUs is the CPU quota of all steps together, in CPUs (1.5 is one and
	// a half).
	CPUs float64
	// MaxParallelism is how many steps BuildKit runs at once.
	MaxParallelism int
}

// ParseBudget parses --memory (a size: 256m, 1.5g, 512MiB), --cpus (a
// number of CPUs, fractions allowed) and --max-parallelism (a count; 0 is
// no limit, as buildkitd has it); an empty value limits nothing.
func ParseBudget(memory, cpus, maxParallelism string) (Budget, error) {
	var b Budget
	if s := strings.TrimSpace(memory); s != "" {
		n, err := units.RAMInBytes(s)
		if err != nil {
			return b, usage.Errorf("invalid --memory %q: use a size such as 256m, 1g or 512MiB", memory)
		}
		if n < minMemory {
			return b, usage.Errorf("invalid --memory %q: a build needs at least 6MiB", memory)
		}
		b.Memory = n
	}
	if s := strings.TrimSpace(cpus); s != "" {
		n, err := strconv.ParseFloat(s, 64)
		max := runtime.NumCPU()
		if err != nil || math.IsNaN(n) || math.IsInf(n, 0) {
			return b, usage.Errorf("invalid --cpus %q: use a number of CPUs such as 1 or 1.5", cpus)
		}
		if n < 0.01 || n > float64(max) {
			return b, usage.Errorf("invalid --cpus %q: use from 0.01 to %d, as this host has %d CPUs", cpus, max, max)
		}
		b.CPUs = n
	}
	if s := strings.TrimSpace(maxParallelism); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return b, usage.Errorf("invalid --max-parallelism %q: use how many steps may run at once, such as 1 or 4 (0 for no limit)", maxParallelism)
		}
		b.MaxParallelism = n
	}
	return b, nil
}
