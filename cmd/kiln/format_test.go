package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/usage"
)

func dgst(s string) digest.Digest { return digest.FromString(s) }

func fixedTime() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }

func sampleSummaries() []store.ImageSummary {
	created := fixedTime()
	return []store.ImageSummary{{
		Name:        "docker.io/library/app:1",
		Digest:      dgst("index"),
		Snapshotter: "overlayfs",
		Size:        2_100_000,
		Created:     created,
		Platforms: []store.PlatformSummary{
			{Platform: "linux/amd64", Digest: dgst("amd64"), Content: store.ContentComplete, Unpacked: true, Size: 1_070_000, Created: &created},
			{Platform: "linux/arm64", Digest: dgst("arm64"), Content: store.ContentPartial, Missing: []store.Blob{{Kind: "layer", Digest: dgst("l"), Size: 10}}, Size: 1_000},
		},
	}}
}

func TestWriteImageRowsTable(t *testing.T) {
	var b bytes.Buffer
	f, _ := parseRowFormat("table")
	now := fixedTime().Add(5 * time.Minute)
	if err := writeImageRows(&b, imageRows(sampleSummaries()), f, tableOptions{Now: now}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("want a header and one row, got:\n%s", b.String())
	}
	if f := strings.Fields(lines[0]); strings.Join(f, " ") != "NAME DIGEST PLATFORMS SIZE CREATED" {
		t.Errorf("header %q", lines[0])
	}
	want := []string{"docker.io/library/app:1", dgst("index").Encoded()[:12], "linux/amd64,linux/arm64(partial)", "2.1MB", "5", "minutes", "ago"}
	if got := strings.Fields(lines[1]); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("row %q, want fields %q", lines[1], want)
	}
	b.Reset()
	_ = writeImageRows(&b, imageRows(sampleSummaries()), f, tableOptions{Now: now, NoTrunc: true})
	if !strings.Contains(b.String(), dgst("index").String()) {
		t.Errorf("--no-trunc does not show the full digest:\n%s", b.String())
	}
}

func TestWriteImageRowsJSONAndTemplate(t *testing.T) {
	var b bytes.Buffer
	f, err := parseRowFormat("json")
	if err != nil {
		t.Fatal(err)
	}
	if err := writeImageRows(&b, imageRows(sampleSummaries()), f, tableOptions{}); err != nil {
		t.Fatal(err)
	}
	var row map[string]any
	if err := json.Unmarshal(b.Bytes(), &row); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, b.String())
	}
	for k, want := range map[string]any{
		"name": "docker.io/library/app:1", "digest": dgst("index").String(), "size": 2.1e6,
		"complete": false, "created": "2026-01-02T03:04:05Z",
	} {
		if row[k] != want {
			t.Errorf("json %s = %v, want %v", k, row[k], want)
		}
	}
	if fmt.Sprint(row["platforms"]) != "[linux/amd64 linux/arm64]" || fmt.Sprint(row["partial"]) != "[linux/arm64]" {
		t.Errorf("json platforms %v partial %v", row["platforms"], row["partial"])
	}

	b.Reset()
	f, err = parseRowFormat(`{{.Name}} {{join .Platforms ","}} {{size .Size}} {{json .Partial}}`)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeImageRows(&b, imageRows(sampleSummaries()), f, tableOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != "docker.io/library/app:1 linux/amd64,linux/arm64 2.1MB [\"linux/arm64\"]\n" {
		t.Errorf("template output %q", got)
	}

	f, _ = parseRowFormat("{{.NoSuchField}}")
	if err := writeImageRows(&b, imageRows(sampleSummaries()), f, tableOptions{}); !usage.Is(err) {
		t.Errorf("a template naming a missing field gave %v, want a usage error", err)
	}
}

func TestWritePlatformRows(t *testing.T) {
	rows := platformRows(sampleSummaries())
	if len(rows) != 2 || rows[0].Index != dgst("index") || rows[1].Content != store.ContentPartial || rows[0].Snapshotter != "overlayfs" {
		t.Fatalf("rows %+v", rows)
	}
	var b bytes.Buffer
	f, _ := parseRowFormat("table")
	if err := writePlatformRows(&b, rows, f, tableOptions{Now: fixedTime().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if strings.Join(strings.Fields(lines[0]), " ") != "NAME PLATFORM DIGEST CONTENT UNPACKED SIZE CREATED" {
		t.Errorf("header %q", lines[0])
	}
	if got := strings.Fields(lines[1]); got[1] != "linux/amd64" || got[3] != "complete" || got[4] != "yes" {
		t.Errorf("amd64 row %q", lines[1])
	}
	if got := strings.Fields(lines[2]); got[1] != "linux/arm64" || got[3] != "partial" || got[4] != "no" || got[6] != "-" {
		t.Errorf("arm64 row %q", lines[2])
	}
	b.Reset()
	f, _ = parseRowFormat("json")
	_ = writePlatformRows(&b, rows, f, tableOptions{})
	dec := json.NewDecoder(&b)
	var got []platformRow
	for dec.More() {
		var r platformRow
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if len(got) != 2 || got[1].Missing[0].Kind != "layer" || got[0].Created == nil || got[1].Created != nil {
		t.Errorf("json rows %+v", got)
	}
}

func TestParseRowFormatRejects(t *testing.T) {
	for _, s := range []string{"yaml", "{{.Name", "{{"} {
		if _, err := parseRowFormat(s); !usage.Is(err) {
			t.Errorf("parseRowFormat(%q) = %v, want a usage error", s, err)
		}
	}
}

func TestAgo(t *testing.T) {
	now := fixedTime()
	for d, want := range map[time.Duration]string{0: "Less than a second ago", 3 * time.Second: "3 seconds ago", 2 * time.Hour: "2 hours ago"} {
		at := now.Add(-d)
		if got := ago(&at, now); got != want {
			t.Errorf("ago(%v) = %q, want %q", d, got, want)
		}
	}
	if got := ago(nil, now); got != "-" {
		t.Errorf("ago(nil) = %q", got)
	}
}
