package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	units "github.com/docker/go-units"
	digest "github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/usage"
)

// rowFormat is how "kiln images" writes its rows: a table, JSON (one object
// per line, as docker does) or a Go template applied to each row.
type rowFormat struct {
	kind string // "table", "json" or "template"
	tmpl *template.Template
}

// parseRowFormat parses a --format value: "table" (or empty), "json", or a Go
// template such as '{{.Name}} {{.Digest}}'.
func parseRowFormat(s string) (rowFormat, error) {
	switch s {
	case "", "table":
		return rowFormat{kind: "table"}, nil
	case "json":
		return rowFormat{kind: "json"}, nil
	}
	if !strings.Contains(s, "{{") {
		return rowFormat{}, usage.Errorf("invalid --format %q: use table, json or a Go template such as '{{.Name}} {{.Digest}}'", s)
	}
	t, err := template.New("format").Funcs(templateFuncs).Parse(s)
	if err != nil {
		return rowFormat{}, usage.Errorf("invalid --format template %q: %w", s, err)
	}
	return rowFormat{kind: "template", tmpl: t}, nil
}

var templateFuncs = template.FuncMap{
	"join": strings.Join,
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"size": func(n int64) string { return humanSize(n) },
}

// imageRow is one row of "kiln images". Templates see these field names;
// JSON uses the tags.
type imageRow struct {
	Name   string        `json:"name"`
	Digest digest.Digest `json:"digest"`
	// Platforms lists the image's platforms (attestations excluded).
	Platforms []string `json:"platforms"`
	// Partial lists the platforms whose content is incomplete.
	Partial  []string  `json:"partial"`
	Complete bool      `json:"complete"`
	Size     int64     `json:"size"`
	Created  time.Time `json:"created"`
}

// platformRow is one row of "kiln images --platforms".
type platformRow struct {
	Name string `json:"name"`
	// Index is the digest of the image's index (or manifest).
	Index    digest.Digest `json:"index"`
	Platform string        `json:"platform"`
	// Digest is the platform's manifest.
	Digest digest.Digest `json:"digest"`
	// Content is "complete" or "partial".
	Content     string       `json:"content"`
	Missing     []store.Blob `json:"missing,omitempty"`
	Unpacked    bool         `json:"unpacked"`
	Snapshotter string       `json:"snapshotter"`
	Size        int64        `json:"size"`
	Created     *time.Time   `json:"created,omitempty"`
}

// imageRows turns summaries into rows for "kiln images".
func imageRows(sums []store.ImageSummary) []imageRow {
	rows := make([]imageRow, 0, len(sums))
	for _, s := range sums {
		r := imageRow{Name: s.Name, Digest: s.Digest, Platforms: []string{}, Partial: []string{}, Complete: s.Complete, Size: s.Size, Created: s.Created}
		for _, p := range s.Platforms {
			r.Platforms = append(r.Platforms, p.Platform)
			if p.Content != store.ContentComplete {
				r.Partial = append(r.Partial, p.Platform)
			}
		}
		rows = append(rows, r)
	}
	return rows
}

// platformRows turns summaries into rows for "kiln images --platforms".
func platformRows(sums []store.ImageSummary) []platformRow {
	rows := []platformRow{}
	for _, s := range sums {
		for _, p := range s.Platforms {
			rows = append(rows, platformRow{
				Name: s.Name, Index: s.Digest, Platform: p.Platform, Digest: p.Digest,
				Content: p.Content, Missing: p.Missing, Unpacked: p.Unpacked, Snapshotter: s.Snapshotter,
				Size: p.Size, Created: p.Created,
			})
		}
	}
	return rows
}

// tableOptions adjust table output.
type tableOptions struct {
	// NoTrunc prints full digests instead of their first 12 hex digits.
	NoTrunc bool
	// Now is the time CREATED is relative to; zero means time.Now().
	Now time.Time
}

// writeImageRows writes rows of "kiln images" in format f.
func writeImageRows(w io.Writer, rows []imageRow, f rowFormat, opts tableOptions) error {
	items := make([]any, len(rows))
	for i := range rows {
		items[i] = rows[i]
	}
	header := []string{"NAME", "DIGEST", "PLATFORMS", "SIZE", "CREATED"}
	return writeRows(w, f, items, header, func(i int) []string {
		r := rows[i]
		plats := make([]string, len(r.Platforms))
		partial := map[string]bool{}
		for _, p := range r.Partial {
			partial[p] = true
		}
		for j, p := range r.Platforms {
			plats[j] = p
			if partial[p] {
				plats[j] += "(partial)"
			}
		}
		list := strings.Join(plats, ",")
		if list == "" {
			list = "-"
		}
		return []string{r.Name, shortDigest(r.Digest, opts.NoTrunc), list, humanSize(r.Size), ago(&r.Created, opts.Now)}
	})
}

// writePlatformRows writes rows of "kiln images --platforms" in format f.
func writePlatformRows(w io.Writer, rows []platformRow, f rowFormat, opts tableOptions) error {
	items := make([]any, len(rows))
	for i := range rows {
		items[i] = rows[i]
	}
	header := []string{"NAME", "PLATFORM", "DIGEST", "CONTENT", "UNPACKED", "SIZE", "CREATED"}
	return writeRows(w, f, items, header, func(i int) []string {
		r := rows[i]
		unpacked := "no"
		if r.Unpacked {
			unpacked = "yes"
		}
		return []string{r.Name, r.Platform, shortDigest(r.Digest, opts.NoTrunc), r.Content, unpacked, humanSize(r.Size), ago(r.Created, opts.Now)}
	})
}

func writeRows(w io.Writer, f rowFormat, items []any, header []string, cells func(int) []string) error {
	switch f.kind {
	case "json":
		return writeJSONLines(w, items)
	case "template":
		for _, it := range items {
			if err := f.tmpl.Execute(w, it); err != nil {
				return usage.Errorf("applying the --format template: %w", err)
			}
			if _, err := io.WriteString(w, "\n"); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for i := range items {
		fmt.Fprintln(tw, strings.Join(cells(i), "\t"))
	}
	return tw.Flush()
}

// shortDigest shows a digest as docker shows IDs: 12 hex digits.
func shortDigest(d digest.Digest, full bool) string {
	if full || d.Validate() != nil {
		return d.String()
	}
	enc := d.Encoded()
	if len(enc) > 12 {
		enc = enc[:12]
	}
	return enc
}

func humanSize(n int64) string {
	return units.HumanSizeWithPrecision(float64(n), 3)
}

// ago formats a time as docker's CREATED column does ("5 minutes ago").
func ago(t *time.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	if now.IsZero() {
		now = time.Now()
	}
	// As docker: "Less than a second ago" for an image made this second.
	return units.HumanDuration(now.Sub(*t)) + " ago"
}
