//go:build linux

package main

import (
	"fmt"
	"sort"
	"strings"
)

// stat is the median, minimum and maximum of a series.
type stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func summarize(xs []float64) stat {
	if len(xs) == 0 {
		return stat{}
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stat{Median: med, Min: s[0], Max: s[len(s)-1]}
}

// row is one line of the report: kiln against its peer.
type row struct {
	Name     string  `json:"name"`
	Unit     string  `json:"unit"`
	Kiln     stat    `json:"kiln"`
	Peer     stat    `json:"peer"`
	PeerName string  `json:"peerName"`
	Ratio    float64 `json:"ratio,omitempty"`
	Target   string  `json:"target,omitempty"`
	Met      *bool   `json:"met,omitempty"`
	Note     string  `json:"note,omitempty"`

	limit   float64 // the target ratio
	higher  bool    // the target is a minimum (throughput), not a maximum
	noRatio bool    // the figures are differences: no ratio
	flat    *bool   // a target judged by the benchmark itself
}

func (r *row) finish() {
	if !r.noRatio && r.Peer.Median > 0 {
		r.Ratio = r.Kiln.Median / r.Peer.Median
	}
	switch {
	case r.flat != nil:
		r.Met = r.flat
	case r.Target != "":
		met := r.Ratio <= r.limit
		if r.higher {
			met = r.Ratio >= r.limit
		}
		r.Met = &met
	}
}

func (r row) format(s stat) string {
	f := "%.0f"
	switch r.Unit {
	case "s":
		f = "%.2f"
	case "MB":
		f = "%.1f"
	}
	if r.noRatio {
		return fmt.Sprintf("%+.1f MB (%s)", s.Median, fmt.Sprintf(f+"–"+f, s.Min, s.Max))
	}
	return fmt.Sprintf(f+" %s ["+f+"–"+f+"]", s.Median, r.Unit, s.Min, s.Max)
}

func markdown(m machine, r *results) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Results\n\n")
	fmt.Fprintf(&b, "- machine: %s, %d cores, %s, Linux %s, cgroup %s\n", m.CPU, m.Cores, m.Memory, m.Kernel, m.Cgroup)
	fmt.Fprintf(&b, "- software: %s; %s; %s; %s; %s\n", m.Kiln, m.Buildkit, m.Containerd, m.QEMU, m.Go)
	fmt.Fprintf(&b, "- load average (1, 5, 15 min): %s at the start, %s at the end; the run took %s\n", m.LoadStart, m.LoadEnd, m.Duration)
	fmt.Fprintf(&b, "- %s; median [min–max]; kiln and the peer alternate, the first of each round rotating\n", m.Runs)
	fmt.Fprintf(&b, "- buildkitd idle after start-up: %.1f MB RSS\n\n", m.BuildkitdIdle)
	fmt.Fprintf(&b, "| benchmark | kiln | peer | kiln / peer | target | met |\n")
	fmt.Fprintf(&b, "| --- | --- | --- | --- | --- | --- |\n")
	for _, x := range r.Rows {
		ratio := "–"
		if x.Ratio > 0 {
			ratio = fmt.Sprintf("**%.2fx**", x.Ratio)
		}
		met := ""
		if x.Met != nil {
			met = "no"
			if *x.Met {
				met = "yes"
			}
		}
		target := x.Target
		if target == "" {
			target = "–"
		}
		fmt.Fprintf(&b, "| %s | %s | %s: %s | %s | %s | %s |\n", x.Name, x.format(x.Kiln), x.PeerName, x.format(x.Peer), ratio, target, met)
	}
	var notes []string
	for _, x := range r.Rows {
		if x.Note != "" {
			notes = append(notes, fmt.Sprintf("- %s: %s", x.Name, x.Note))
		}
	}
	names := make([]string, 0, len(r.Series))
	for k := range r.Series {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		var vs []string
		for _, v := range r.Series[k] {
			vs = append(vs, fmt.Sprintf("%.1f", v))
		}
		notes = append(notes, fmt.Sprintf("- %s: %s", k, strings.Join(vs, ", ")))
	}
	if len(notes) > 0 {
		fmt.Fprintf(&b, "\n%s\n", strings.Join(notes, "\n"))
	}
	return b.String()
}
