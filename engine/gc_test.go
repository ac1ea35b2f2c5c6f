package engine

import (
	"errors"
	"strings"
	"testing"
	"time"

	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/cmd/buildkitd/config"
	"github.com/moby/buildkit/util/disk"

	"github.com/kiln-build/kiln/usage"
)

func TestParseKeepStorage(t *testing.T) {
	good := map[string]config.DiskSpace{
		"":      {},
		"10GB":  {Bytes: 10 << 30}, // binary, as buildkitd and kiln prune read sizes
		"512mb": {Bytes: 512 << 20},
		"1.5GB": {Bytes: 3 << 29},
		"4096":  {Bytes: 4096},
		"10%":   {Percentage: 10},
		"100%":  {Percentage: 100},
	}
	for in, want := range good {
		got, err := ParseKeepStorage(in)
		if err != nil || got != want {
			t.Errorf("ParseKeepStorage(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"lots", "0", "0GB", "-1GB", "10 %", "0%", "101%", "-5%", "1.5%", "GB", "10GBs"} {
		_, err := ParseKeepStorage(in)
		switch {
		case err == nil:
			t.Errorf("ParseKeepStorage(%q) succeeded, want an error", in)
		case !usage.Is(err):
			t.Errorf("ParseKeepStorage(%q): %v is not a usage error", in, err)
		case !errors.As(err, new(*KeepStorageError)) || strings.Contains(err.Error(), "\n"):
			t.Errorf("ParseKeepStorage(%q): %q is not one line of a *KeepStorageError", in, err)
		}
	}
}

// TestGCOptionsPolicy checks that bad options are a usage error, which a
// build reports before it starts (Validate), and good ones the policy.
func TestGCOptionsPolicy(t *testing.T) {
	if err := (GCOptions{KeepStorage: "lots"}).Validate(); !usage.Is(err) {
		t.Fatalf("Validate with --gc-keep-storage lots: %v, want a usage error", err)
	}
	p, err := GCOptions{Disabled: true, KeepStorage: "2GB"}.policy()
	if err != nil {
		t.Fatal(err)
	}
	if want := (gcPolicy{disabled: true, keep: config.DiskSpace{Bytes: 2 << 30}}); p != want {
		t.Errorf("policy %+v, want %+v", p, want)
	}
}

// TestGCRules checks the rules against buildkitd's documented defaults
// worked out by hand: reserve 10% of the disk up to 10GB, use at most 80%
// up to 100GB, keep 20% free; percentages round up to whole GB.
func TestGCRules(t *testing.T) {
	const GiB = 1 << 30
	day := 24 * time.Hour
	small := disk.DiskStat{Total: 20 * 1e9, Free: 15 * 1e9}
	large := disk.DiskStat{Total: 500 * 1e9, Free: 300 * 1e9}
	bounds := func(reserved, max, free int64) [3]int64 { return [3]int64{reserved, max, free} }
	cases := []struct {
		name  string
		keep  config.DiskSpace
		dstat disk.DiskStat
		want  [3]int64 // reserved, max used, min free of the last three rules
	}{
		// 20GB: 10% is 2e9 bytes (1.86GiB, rounded up to 2e9), 80% 15e9, 20% 4e9.
		{"default on a small disk", config.DiskSpace{}, small, bounds(2e9, 15e9, 4e9)},
		// 500GB: reserve and max hit their caps; 20% is 93.1GiB, rounded up to 94e9.
		{"default on a large disk", config.DiskSpace{}, large, bounds(10e9, 100e9, 94e9)},
		// gckeepstorage alone: the cache is kept to that size, whatever the disk.
		{"keep 5MB", config.DiskSpace{Bytes: 5 << 20}, large, bounds(5<<20, 0, 0)},
		{"keep 10%", config.DiskSpace{Percentage: 10}, large, bounds(47e9, 0, 0)},
		{"keep a percentage of an unknown disk", config.DiskSpace{Percentage: 10}, disk.DiskStat{}, bounds(2e9, 0, 0)},
		{"keep 1GB", config.DiskSpace{Bytes: GiB}, small, bounds(GiB, 0, 0)},
	}
	for _, c := range cases {
		rules := gcPolicy{keep: c.keep}.rules(c.dstat)
		if len(rules) != 4 {
			t.Fatalf("%s: %d rules, want buildkitd's 4", c.name, len(rules))
		}
		first := rules[0]
		if strings.Join(first.Filter, " ") != "type==source.local type==exec.cachemount type==source.git.checkout" ||
			first.KeepDuration != 2*day || first.MaxUsedSpace != 512e6 || first.All {
			t.Errorf("%s: first rule %+v, want local sources and cache mounts unused for 48h over 512MB", c.name, first)
		}
		for i, r := range rules[1:] {
			if got := bounds(r.ReservedSpace, r.MaxUsedSpace, r.MinFreeSpace); got != c.want {
				t.Errorf("%s: rule %d keeps (reserved, max used, min free) %v, want %v", c.name, i+2, got, c.want)
			}
			if len(r.Filter) != 0 {
				t.Errorf("%s: rule %d has filters %v", c.name, i+2, r.Filter)
			}
		}
		if rules[1].KeepDuration != 60*day || rules[2].KeepDuration != 0 || rules[3].KeepDuration != 0 {
			t.Errorf("%s: keep durations %v %v %v, want 60 days, then none", c.name, rules[1].KeepDuration, rules[2].KeepDuration, rules[3].KeepDuration)
		}
		if rules[1].All || rules[2].All || !rules[3].All {
			t.Errorf("%s: only the last rule should free records shared with images", c.name)
		}
	}
}

func TestMayFree(t *testing.T) {
	const MB = 1 << 20
	roomy := disk.DiskStat{Total: 500 * 1e9, Free: 300 * 1e9}
	full := disk.DiskStat{Total: 500 * 1e9, Free: 50 * 1e9} // under the default 94e9 to keep free
	usage := func(sizes ...int64) []*bkclient.UsageInfo {
		var out []*bkclient.UsageInfo
		for _, s := range sizes {
			out = append(out, &bkclient.UsageInfo{Size: s})
		}
		return out
	}
	shared := func(du []*bkclient.UsageInfo) []*bkclient.UsageInfo {
		for _, u := range du {
			u.Shared = true
		}
		return du
	}
	keep5MB := gcPolicy{keep: config.DiskSpace{Bytes: 5 * MB}}
	cases := []struct {
		name   string
		policy gcPolicy
		du     []*bkclient.UsageInfo
		dstat  disk.DiskStat
		want   bool
	}{
		{"empty cache", gcPolicy{}, nil, roomy, false},
		{"small cache, roomy disk", gcPolicy{}, usage(100*MB, 300*MB), roomy, false},
		{"over the first rule's 512MB", gcPolicy{}, usage(600 * MB), roomy, true},
		{"small cache, full disk", gcPolicy{}, usage(100 * MB), full, false},
		{"over the reserve on a full disk", gcPolicy{}, usage(11e9), full, true},
		{"under the kept size", keep5MB, usage(2*MB, 2*MB), roomy, false},
		{"at the kept size", keep5MB, usage(3*MB, 2*MB), roomy, true},
		{"over the kept size", keep5MB, usage(4*MB, 4*MB), roomy, true},
		{"over the kept size but shared with images", keep5MB, shared(usage(4*MB, 4*MB)), roomy, false},
	}
	for _, c := range cases {
		if got := mayFree(c.policy.rules(c.dstat), c.du, c.dstat); got != c.want {
			t.Errorf("%s: mayFree = %v, want %v", c.name, got, c.want)
		}
	}
	// A rule without a size bound frees by age alone: only pruning tells.
	if !mayFree([]bkclient.PruneInfo{{KeepDuration: time.Hour}}, nil, roomy) {
		t.Error("a rule without a size bound should always be tried")
	}
}

// TestKeepBytes runs BuildKit's own cases for calculateKeepBytes
// (cache/manager_test.go, v0.34) on kiln's copy of it.
func TestKeepBytes(t *testing.T) {
	roomy := disk.DiskStat{Total: 10000, Free: 9000}
	tight := disk.DiskStat{Total: 10000, Free: 3000}
	mixed := disk.DiskStat{Total: 10000, Free: 2000} // something else uses 4000
	cases := []struct {
		name  string
		total int64
		dstat disk.DiskStat
		rule  bkclient.PruneInfo
		want  int64
	}{
		{"empty", 1000, roomy, bkclient.PruneInfo{}, 0},
		{"only max", 1000, roomy, bkclient.PruneInfo{MaxUsedSpace: 2000}, 2000},
		{"only free", 7000, tight, bkclient.PruneInfo{MinFreeSpace: 5000}, 5000},
		{"only free with min", 7000, tight, bkclient.PruneInfo{MinFreeSpace: 5000, ReservedSpace: 6000}, 6000},
		{"only free all", 7000, tight, bkclient.PruneInfo{MinFreeSpace: 5000, ReservedSpace: 2000, MaxUsedSpace: 4000}, 4000},
		{"mixed max", 4000, mixed, bkclient.PruneInfo{MaxUsedSpace: 2000}, 2000},
		{"mixed free", 4000, mixed, bkclient.PruneInfo{MinFreeSpace: 5000}, 1000},
		{"mixed free with min", 4000, mixed, bkclient.PruneInfo{MinFreeSpace: 5000, ReservedSpace: 2000}, 2000},
		{"mixed free all", 4000, mixed, bkclient.PruneInfo{MinFreeSpace: 5000, ReservedSpace: 2000, MaxUsedSpace: 4000}, 2000},
	}
	for _, c := range cases {
		if got := keepBytes(c.total, c.dstat, c.rule); got != c.want {
			t.Errorf("%s: keepBytes = %d, want %d", c.name, got, c.want)
		}
	}
}
