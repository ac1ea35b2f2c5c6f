package request

import (
	"strings"
	"testing"

	"github.com/kiln-build/kiln/usage"
)

func TestParseCall(t *testing.T) {
	cases := []struct {
		value, format string
		want          *Call // nil: a build
	}{
		{"", "", nil},
		{"build", "", nil},
		{"check", "", &Call{Name: "lint"}},
		{"lint", "", &Call{Name: "lint"}},
		{"outline", "", &Call{Name: "outline"}},
		{"targets,format=json", "", &Call{Name: "targets", Format: "json"}},
		{"targets,format=json", "text", &Call{Name: "targets"}},
		{"outline", "json", &Call{Name: "outline", Format: "json"}},
		{"check,ignorestatus=true", "", &Call{Name: "lint", IgnoreStatus: true}},
		{"subrequests.describe", "", &Call{Name: "subrequests.describe"}},
	}
	for _, c := range cases {
		got, err := ParseCall(c.value, c.format)
		if err != nil {
			t.Errorf("ParseCall(%q, %q): %v", c.value, c.format, err)
			continue
		}
		if (got == nil) != (c.want == nil) || got != nil && *got != *c.want {
			t.Errorf("ParseCall(%q, %q) = %+v, want %+v", c.value, c.format, got, c.want)
		}
	}
	if c, _ := ParseCall("check", ""); c.RequestID() != "frontend.lint" {
		t.Errorf("request id %q", c.RequestID())
	}
}

func TestParseCallErrors(t *testing.T) {
	cases := []struct{ value, format, want string }{
		{"bogus", "", `unknown --call method "bogus"`},
		{"outline,format=yaml", "", `invalid --call format "yaml"`},
		{"outline", "yaml", `invalid --call format "yaml"`},
		{"outline,color=red", "", `invalid --call "outline,color=red"`},
		{"check,ignorestatus=maybe", "", "ignorestatus takes true or false"},
		{"", "json", "--format json needs --call check, outline or targets"},
		{"outline,targets", "", `invalid --call "outline,targets"`},
	}
	for _, c := range cases {
		_, err := ParseCall(c.value, c.format)
		if err == nil || !usage.Is(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseCall(%q, %q) = %v, want a usage error with %q", c.value, c.format, err, c.want)
		}
	}
}

func TestCheckAndCall(t *testing.T) {
	dir := writeContext(t, "FROM scratch\n")
	r, err := parse(&Options{ContextDir: dir, Check: true})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if r.Call == nil || r.Call.Name != "lint" {
		t.Errorf("--check gives %+v, want the lint method", r.Call)
	}
	r, err = parse(&Options{ContextDir: dir, Check: true, Call: "check", CallFormat: "json"})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if r.Call == nil || r.Call.Format != "json" {
		t.Errorf("--check --call check --format json gives %+v", r.Call)
	}
	_, err = parse(&Options{ContextDir: dir, Check: true, Call: "outline"})
	if err == nil || !usage.Is(err) || !strings.Contains(err.Error(), "--check and --call outline ask for two things") {
		t.Errorf("--check --call outline: %v", err)
	}
	r, err = parse(&Options{ContextDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if r.Call != nil {
		t.Errorf("a build has a call: %+v", r.Call)
	}
}
