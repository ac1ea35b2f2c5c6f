package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/subrequests/lint"
	"github.com/moby/buildkit/frontend/subrequests/outline"
	"github.com/moby/buildkit/frontend/subrequests/targets"
	"github.com/moby/buildkit/solver/pb"

	"github.com/kiln-build/kiln/builder"
	"github.com/kiln-build/kiln/request"
)

const checkedDockerfile = "FROM scratch\nCOPY a /\nCMD run-it\n"

var checkedFile = request.Dockerfile{Name: "Dockerfile", Display: "app/Dockerfile"}

// lintAnswer is the Dockerfile frontend's answer to the lint method, made
// the way the frontend makes it.
func lintAnswer(t *testing.T, warn bool, buildErr string) map[string][]byte {
	t.Helper()
	res := &lint.LintResults{Sources: []*pb.SourceInfo{{Filename: "Dockerfile", Data: []byte(checkedDockerfile)}}}
	if warn {
		res.AddWarning("JSONArgsRecommended", "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals",
			"https://docs.docker.com/go/dockerfile/rule/json-args-recommended/",
			"JSON arguments recommended for CMD to prevent unintended behavior related to OS signals",
			0, []parser.Range{{Start: parser.Position{Line: 3}, End: parser.Position{Line: 3}}})
	}
	if buildErr != "" {
		res.Error = &lint.BuildError{Message: buildErr, Location: pb.Location{SourceIndex: 0, Ranges: []*pb.Range{{Start: &pb.Position{Line: 2}, End: &pb.Position{Line: 2}}}}}
	}
	r, err := res.ToResult(nil)
	if err != nil {
		t.Fatal(err)
	}
	return r.Metadata
}

func TestPrintChecks(t *testing.T) {
	var out bytes.Buffer
	code, err := printCall(&out, &builder.CallResult{Call: &request.Call{Name: "lint"}, Metadata: lintAnswer(t, true, "")}, checkedFile)
	if err != nil || code != 1 {
		t.Fatalf("code %d, err %v, want 1 and no error", code, err)
	}
	for _, want := range []string{
		"Check complete, 1 warning has been found!\n",
		"\nWARNING: JSONArgsRecommended - https://docs.docker.com/go/dockerfile/rule/json-args-recommended/\n",
		"JSON arguments recommended for CMD to prevent unintended behavior related to OS signals\n",
		"app/Dockerfile:3\n",
		" 3 | >>> CMD run-it\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	code, err = printCall(&out, &builder.CallResult{Call: &request.Call{Name: "lint", IgnoreStatus: true}, Metadata: lintAnswer(t, true, "")}, checkedFile)
	if err != nil || code != 0 {
		t.Errorf("ignorestatus=true: code %d, err %v, want 0", code, err)
	}

	out.Reset()
	code, err = printCall(&out, &builder.CallResult{Call: &request.Call{Name: "lint"}, Metadata: lintAnswer(t, false, "")}, checkedFile)
	if err != nil || code != 0 || out.String() != "Check complete, no warnings found.\n" {
		t.Errorf("no warnings: code %d, err %v, output %q", code, err, out.String())
	}

	out.Reset()
	_, err = printCall(&out, &builder.CallResult{Call: &request.Call{Name: "lint"}, Metadata: lintAnswer(t, true, "lint violation found for rules: JSONArgsRecommended")}, checkedFile)
	if err == nil || !strings.HasPrefix(err.Error(), "lint violation found for rules: JSONArgsRecommended\napp/Dockerfile:2\n") {
		t.Errorf("a check that failed returns %v, want the violation with its lines", err)
	}

	out.Reset()
	meta := lintAnswer(t, true, "")
	code, err = printCall(&out, &builder.CallResult{Call: &request.Call{Name: "lint", Format: "json"}, Metadata: meta}, checkedFile)
	if err != nil || code != 1 || out.String() != string(meta["result.json"])+"\n" {
		t.Errorf("json: code %d, err %v, output %q", code, err, out.String())
	}
}

func TestPrintOutlineAndTargets(t *testing.T) {
	o := outline.Outline{Name: "final", Description: "is the last",
		Args:    []outline.Arg{{Name: "GO_VERSION", Value: "1.22", Description: "sets the Go version"}},
		Secrets: []outline.Secret{{Name: "token", Required: true}}}
	res, err := o.ToResult()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code, err := printCall(&out, &builder.CallResult{Call: &request.Call{Name: "outline"}, Metadata: res.Metadata}, checkedFile); err != nil || code != 0 {
		t.Fatalf("code %d, err %v", code, err)
	}
	for _, want := range []string{"TARGET:      final", "DESCRIPTION: is the last", "GO_VERSION", "1.22", "sets the Go version", "SECRET", "token"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("outline lacks %q:\n%s", want, out.String())
		}
	}

	l := targets.List{Targets: []targets.Target{{Name: "base", Description: "is where it starts"}, {Name: "final", Description: "is the last", Default: true}}}
	res, err = l.ToResult()
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code, err := printCall(&out, &builder.CallResult{Call: &request.Call{Name: "targets"}, Metadata: res.Metadata}, checkedFile); err != nil || code != 0 {
		t.Fatalf("code %d, err %v", code, err)
	}
	for _, want := range []string{"TARGET", "base            is where it starts", "final (default) is the last"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("targets lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	printCall(&out, &builder.CallResult{Call: &request.Call{Name: "targets", Format: "json"}, Metadata: res.Metadata}, checkedFile)
	if !strings.HasPrefix(out.String(), "{") || !strings.Contains(out.String(), `"name": "final"`) {
		t.Errorf("targets as json: %s", out.String())
	}
}

func TestOlderVersion(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{{"1.0.0", "1.0.0", false}, {"1.0.0", "1.1.0", true}, {"1.2.0", "1.10.0", true}, {"2.0", "1.9.9", false}} {
		if got := olderVersion(c.a, c.b); got != c.want {
			t.Errorf("olderVersion(%s, %s) = %v", c.a, c.b, got)
		}
	}
}
