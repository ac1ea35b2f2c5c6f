//go:build linux

package privatecontainerd

import "testing"

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		"/tmp/kiln-it-1/root":     "/tmp/kiln-it-1/root",
		`/tmp/a\040b`:             "/tmp/a b",
		`/tmp/tab\011and\134back`: "/tmp/tab\tand\\back",
		`/tmp/short\04`:           `/tmp/short\04`, // not a whole escape: kept
	} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}
