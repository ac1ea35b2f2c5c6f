package request

import (
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/usage"
)

func TestParseBudget(t *testing.T) {
	b, err := ParseBudget("256MiB", "0.5", "2")
	if err != nil {
		t.Fatal(err)
	}
	if b != (Budget{Memory: 256 << 20, CPUs: 0.5, MaxParallelism: 2}) {
		t.Errorf("got %+v", b)
	}
	for _, s := range []string{"256m", "256M", "256MB", "268435456"} {
		if b, err := ParseBudget(s, "", ""); err != nil || b.Memory != 256<<20 {
			t.Errorf("--memory %s: %+v, %v", s, b, err)
		}
	}
	if b, err := ParseBudget("", "", ""); err != nil || b != (Budget{}) {
		t.Errorf("no options: %+v, %v", b, err)
	}
	if b, err := ParseBudget("", "", "0"); err != nil || b.MaxParallelism != 0 {
		t.Errorf("--max-parallelism 0 (no limit): %+v, %v", b, err)
	}
}

func TestParseBudgetErrors(t *testing.T) {
	tooMany := strconv.Itoa(runtime.NumCPU() + 1)
	for _, c := range []struct{ memory, cpus, par, want string }{
		{"lots", "", "", "invalid --memory \"lots\": use a size"},
		{"1m", "", "", "at least 6MiB"},
		{"-5m", "", "", "invalid --memory"},
		{"", "half", "", "invalid --cpus \"half\""},
		{"", "0", "", "from 0.01"},
		{"", tooMany, "", "as this host has"},
		{"", "NaN", "", "invalid --cpus"},
		{"", "", "-1", "invalid --max-parallelism"},
		{"", "", "two", "invalid --max-parallelism"},
	} {
		_, err := ParseBudget(c.memory, c.cpus, c.par)
		if err == nil || !strings.Contains(err.Error(), c.want) || !usage.Is(err) {
			t.Errorf("ParseBudget(%q, %q, %q) = %v, want a usage error containing %q", c.memory, c.cpus, c.par, err, c.want)
		}
	}
}
