package main

import (
	"encoding/json"
	"io"

	"github.com/urfave/cli/v2"
)

// jsonFormat reads the --format flag of the commands that print a table or
// JSON, and reports whether it asks for JSON.
func jsonFormat(c *cli.Context) (bool, error) {
	switch format := c.String("format"); format {
	case "table":
		return false, nil
	case "json":
		return true, nil
	default:
		return false, usageErrorf("invalid --format %q: use table or json", format)
	}
}

// writeJSON writes v as indented JSON and a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeJSONLines writes one JSON object per item and line, as docker's
// --format json does.
func writeJSONLines[T any](w io.Writer, items []T) error {
	enc := json.NewEncoder(w)
	for _, it := range items {
		if err := enc.Encode(it); err != nil {
			return err
		}
	}
	return nil
}
