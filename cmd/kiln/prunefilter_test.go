package main

import (
	"strings"
	"testing"

	"github.com/kiln-build/kiln/usage"
)

func TestParsePruneFilters(t *testing.T) {
	good := map[string]string{
		"type==regular":                       "type==regular",
		"type!=exec.cachemount":               "type!=exec.cachemount",
		"inuse":                               "inuse",
		"type==regular,shared":                "type==regular,shared",
		`description~="a,b",private`:          `description~="a,b",private`,
		"description~=/pip|npm/,mutable":      "description~=/pip|npm/,mutable",
		"type=source.local":                   "type==source.local",
		"id=abc123":                           "id~=abc123",
		" type == regular , immutable ":       "type == regular,immutable",
		`id~=/^[a-z]+,x/,type=regular`:        `id~=/^[a-z]+,x/,type==regular`,
		"parents~=sha256":                     "parents~=sha256",
		`type=="source.git.checkout"`:         `type=="source.git.checkout"`,
		`description!="pulled from registry"`: `description!="pulled from registry"`,
	}
	for in, want := range good {
		got, err := parsePruneFilters([]string{in})
		if err != nil || len(got) != 1 || got[0] != want {
			t.Errorf("parsePruneFilters(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := map[string]string{
		"bogus":           `invalid --filter "bogus": unknown field "bogus"; filter on id, parents, description, inuse, mutable, immutable, type, shared, private`,
		"type==regualr":   `invalid --filter "type==regualr": unknown record type "regualr"; use regular, source.local, source.git.checkout, exec.cachemount, frontend, internal`,
		"type==regular,x": `invalid --filter "type==regular,x": unknown field "x"`,
		"until=24h":       `invalid --filter "until=24h": kiln prune does not filter by age; free the least recently used cache with --keep-storage SIZE`,
		"type==":          `invalid --filter "type==": use FIELD, FIELD==VALUE`,
		"type>5":          `invalid --filter "type>5": unknown field "type>5"`,
		"type~=(":         `invalid --filter "type~=(": error parsing regexp`,
		"":                `invalid --filter "": empty filter`,
		"inuse,":          `invalid --filter "inuse,": empty filter`,
	}
	for in, want := range bad {
		_, err := parsePruneFilters([]string{"inuse", in})
		if !usage.Is(err) || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("parsePruneFilters(%q) = %v, want a usage error starting %q", in, err, want)
		}
	}
}
