package builder

import "testing"

func TestHasRun(t *testing.T) {
	for df, want := range map[string]bool{
		"FROM busybox\nRUN echo hi\n":                 true,
		"FROM busybox AS a\nrun true\nFROM scratch\n": true,
		"FROM scratch\nCOPY . /\n":                    false,
		"FROM scratch\n# RUN in a comment\n":          false,
		"FROM busybox\nRUN <<EOF\necho hi\nEOF\n":     true,
	} {
		if got := hasRun([]byte(df)); got != want {
			t.Errorf("hasRun(%q) = %v, want %v", df, got, want)
		}
	}
}
