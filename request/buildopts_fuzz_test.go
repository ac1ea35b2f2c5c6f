package request

import (
	"strings"
	"testing"

	"github.com/kiln-build/kiln/usage"
)

// FuzzParseSecret checks that any --secret value either parses into a
// secret with an ID and at most one source, or fails as a usage error.
// Seeds: testdata/fuzz/FuzzParseSecret.
func FuzzParseSecret(f *testing.F) {
	for _, s := range []string{"id=token,src=/run/token", "id=k,env=API_KEY", "type=env,id=K", "token", `"id=a,b",src=f`, "id=", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sec, err := ParseSecret(s)
		if err != nil {
			if !usage.Is(err) {
				t.Fatalf("ParseSecret(%q): %v is not a usage error", s, err)
			}
			if strings.Contains(err.Error(), "\n") && !strings.ContainsAny(s, "\r\n") {
				t.Fatalf("ParseSecret(%q): error spans lines: %q", s, err)
			}
			return
		}
		if sec.ID == "" {
			t.Fatalf("ParseSecret(%q) = %+v without an ID", s, sec)
		}
		if sec.File != "" && sec.Env != "" {
			t.Fatalf("ParseSecret(%q) = %+v with two sources", s, sec)
		}
	})
}

// FuzzParseBuildArg checks that any --build-arg value either parses into a
// non-empty key without "=", whose value round-trips, or fails as a usage
// error. Seeds: testdata/fuzz/FuzzParseBuildArg.
func FuzzParseBuildArg(f *testing.F) {
	for _, s := range []string{"A=1", "A=1,2=3", "A=", "FROM_ENV", "=x", "", " A=1"} {
		f.Add(s)
	}
	lookup := func(k string) (string, bool) { return "env:" + k, k == "FROM_ENV" }
	f.Fuzz(func(t *testing.T, s string) {
		k, v, ok, err := ParseBuildArg(s, lookup)
		if err != nil {
			if !usage.Is(err) {
				t.Fatalf("ParseBuildArg(%q): %v is not a usage error", s, err)
			}
			return
		}
		if k == "" || strings.Contains(k, "=") {
			t.Fatalf("ParseBuildArg(%q) gave key %q", s, k)
		}
		if strings.Contains(s, "=") {
			if !ok || k+"="+v != s {
				t.Fatalf("ParseBuildArg(%q) = %q, %q, %v: does not round-trip", s, k, v, ok)
			}
		} else if ok != (k == "FROM_ENV") || (ok && v != "env:"+k) {
			t.Fatalf("ParseBuildArg(%q) = %q, %q, %v: the environment was not used", s, k, v, ok)
		}
	})
}
