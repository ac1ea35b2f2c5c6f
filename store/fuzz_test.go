package store

import "testing"

// FuzzNormalizeName checks that a normalised name normalises to itself.
func FuzzNormalizeName(f *testing.F) {
	for _, s := range []string{"app", "me/app:1", "localhost:5000/a/b:c", "UPPER", "a@sha256:", "docker.io/library/x:latest", ":", "a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := NormalizeName(s)
		if err != nil {
			return
		}
		again, err := NormalizeName(n)
		if err != nil || again != n {
			t.Fatalf("%q normalised to %q, which normalises to %q (%v)", s, n, again, err)
		}
	})
}
