package main

import (
	"regexp"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/pkg/filters"
	bkclient "github.com/moby/buildkit/client"
)

// pruneFilterFields are the fields BuildKit's cache manager filters records
// on (cache/manager.go, adaptUsageInfo). A filter on any other field is
// valid syntax that matches nothing, so "kiln prune --filter bogus" would
// free nothing and say so as if that were the answer.
var pruneFilterFields = []string{"id", "parents", "description", "inuse", "mutable", "immutable", "type", "shared", "private"}

// recordTypes are the values of the type field.
var recordTypes = []string{
	string(bkclient.UsageRecordTypeRegular), string(bkclient.UsageRecordTypeLocalSource),
	string(bkclient.UsageRecordTypeGitCheckout), string(bkclient.UsageRecordTypeCacheMount),
	string(bkclient.UsageRecordTypeFrontend), string(bkclient.UsageRecordTypeInternal),
}

// parsePruneFilters checks --filter values and returns them as BuildKit
// takes them. Each is what buildctl accepts: selectors FIELD, FIELD==VALUE,
// FIELD!=VALUE or FIELD~=REGEXP joined by commas (all must match), or
// buildx's FIELD=VALUE, which means FIELD==VALUE (and id=VALUE means
// id~=VALUE, as in buildx). Several --filter values free records matching any.
func parsePruneFilters(values []string) ([]string, error) {
	out := make([]string, 0, len(values))
	for _, v := range values {
		var selectors []string
		for _, sel := range splitSelectors(v) {
			sel, err := checkPruneSelector(v, strings.TrimSpace(sel))
			if err != nil {
				return nil, err
			}
			selectors = append(selectors, sel)
		}
		out = append(out, strings.Join(selectors, ","))
	}
	return out, nil
}

func checkPruneSelector(filter, sel string) (string, error) {
	field, op, value := cutSelector(sel)
	if field == "until" || field == "unused-for" {
		return "", usageErrorf("invalid --filter %q: kiln prune does not filter by age; free the least recently used cache with --keep-storage SIZE", filter)
	}
	if op == "=" {
		// buildx's form, translated as buildx translates it.
		op = "=="
		if field == "id" {
			op = "~="
		}
		sel = field + op + value
	}
	if field == "" {
		return "", usageErrorf("invalid --filter %q: empty filter; use FIELD, FIELD==VALUE, FIELD!=VALUE or FIELD~=REGEXP, e.g. type==regular", filter)
	}
	if !slices.Contains(pruneFilterFields, field) {
		return "", usageErrorf("invalid --filter %q: unknown field %q; filter on %s", filter, field, strings.Join(pruneFilterFields, ", "))
	}
	if _, err := filters.Parse(sel); err != nil {
		return "", usageErrorf("invalid --filter %q: use FIELD, FIELD==VALUE, FIELD!=VALUE or FIELD~=REGEXP, e.g. type==regular: %w", filter, err)
	}
	if op == "~=" {
		// containerd compiles the expression only when it matches, and
		// then a bad one just matches nothing.
		if _, err := regexp.Compile(strings.Trim(value, `"/`)); err != nil {
			return "", usageErrorf("invalid --filter %q: %w", filter, err)
		}
	}
	if field == "type" && (op == "==" || op == "!=") && !slices.Contains(recordTypes, strings.Trim(value, `"`)) {
		return "", usageErrorf("invalid --filter %q: unknown record type %q; use %s", filter, value, strings.Join(recordTypes, ", "))
	}
	return sel, nil
}

// cutSelector splits one selector into its field, operator (empty, "==",
// "!=", "~=" or buildx's "=") and value.
func cutSelector(sel string) (field, op, value string) {
	i := strings.IndexAny(sel, "=!~")
	if i < 0 {
		return sel, "", ""
	}
	field = strings.TrimSpace(sel[:i])
	rest := sel[i:]
	for _, o := range []string{"==", "!=", "~=", "="} {
		if strings.HasPrefix(rest, o) {
			return field, o, strings.TrimSpace(rest[len(o):])
		}
	}
	return field, rest[:1], rest[1:]
}

// splitSelectors splits a filter at the commas that join its selectors,
// not at commas inside a "quoted" or /regexp/ value.
func splitSelectors(s string) []string {
	var out []string
	var quote rune
	start := 0
	for i, r := range s {
		switch {
		case quote != 0:
			if r == quote && (i == 0 || s[i-1] != '\\') {
				quote = 0
			}
		case r == '"':
			quote = r
		case r == '/' && strings.HasSuffix(strings.TrimSpace(s[start:i]), "~="):
			quote = r
		case r == ',':
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}
