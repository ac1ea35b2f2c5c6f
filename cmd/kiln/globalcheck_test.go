package main

import "testing"

// TestGlobalsAreUsageErrors: a bad global option is a usage error, exit 2,
// whichever command meets it, before anything is opened.
func TestGlobalsAreUsageErrors(t *testing.T) {
	root := t.TempDir()
	for _, args := range [][]string{
		{"kiln", "--root", root, "--namespace", "../../x", "images"},
		{"kiln", "--root", root, "images", "--namespace", "a/b"},
		{"kiln", "--root", root, "--namespace", "", "prune"},
		{"kiln", "--root", root, "--gc-keep-storage", "lots", "images"},
		{"kiln", "--root", root, "prune", "--filter", "bogus"},
	} {
		if code := run(args); code != 2 {
			t.Errorf("%q: exit code %d, want 2", args, code)
		}
	}
}
