//go:build linux

package integration

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// checkOutput is the JSON answer of "kiln build --check --format json": the
// Dockerfile frontend's lint results.
type checkOutput struct {
	Warnings []struct {
		RuleName    string `json:"ruleName"`
		Description string `json:"description"`
		URL         string `json:"url"`
		Detail      string `json:"detail"`
		Location    struct {
			Ranges []struct {
				Start struct {
					Line int `json:"line"`
				} `json:"start"`
			} `json:"ranges"`
		} `json:"location"`
	} `json:"warnings"`
	BuildError *struct {
		Message string `json:"message"`
	} `json:"buildError"`
}

// ruleURL is where BuildKit documents a rule: its name in kebab case.
func ruleURL(rule string) string {
	kebab := regexp.MustCompile(`([a-z0-9])([A-Z])`).ReplaceAllString(rule, "$1-$2")
	kebab = strings.ReplaceAll(kebab, "JSONArgs", "JSON-Args")
	return "https://docs.docker.com/go/dockerfile/rule/" + strings.ToLower(kebab) + "/"
}

// TestChecksCorpus runs "kiln build --check" on one Dockerfile per rule of
// BuildKit's Dockerfile linter (integration/testdata/checks/RULE.Dockerfile)
// and expects exactly that rule, on the line its documentation describes,
// with its description and link, and exit status 1, as buildx gives.
func TestChecksCorpus(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// A base image of a platform other than the host's: BuildKit checks
	// for the host's platform (--platform does not reach its checks).
	e.busyboxBase(t, "checkbase", "linux/arm64")
	ctx := contextDir(t, map[string]string{"a": "a\n", "ignored.txt": "ignored\n"})
	cases := []struct {
		rule     string
		line     int
		buildErr string // the rule's finding also stops the build
	}{
		{rule: "StageNameCasing", line: 1},
		{rule: "FromAsCasing", line: 1},
		{rule: "NoEmptyContinuation", line: 4},
		{rule: "ConsistentInstructionCasing", line: 3},
		{rule: "DuplicateStageName", line: 3},
		{rule: "ReservedStageName", line: 1},
		{rule: "JSONArgsRecommended", line: 3},
		{rule: "MaintainerDeprecated", line: 2},
		{rule: "UndefinedArgInFrom", line: 1, buildErr: "empty platform value from expression $BULIDPLATFORM (did you mean BUILDPLATFORM?)"},
		{rule: "WorkdirRelativePath", line: 2},
		{rule: "UndefinedVar", line: 2},
		{rule: "MultipleInstructionsDisallowed", line: 3},
		{rule: "LegacyKeyValueFormat", line: 2},
		{rule: "InvalidBaseImagePlatform", line: 1},
		{rule: "RedundantTargetPlatform", line: 1},
		{rule: "SecretsUsedInArgOrEnv", line: 2},
		{rule: "InvalidDefaultArgInFrom", line: 2, buildErr: `failed to parse stage name "busybox:"`},
		{rule: "FromPlatformFlagConstDisallowed", line: 1},
		{rule: "CopyIgnoredFile", line: 2},
		{rule: "InvalidDefinitionDescription", line: 6},
		{rule: "ExposeProtoCasing", line: 3},
		{rule: "ExposeInvalidFormat", line: 3},
	}
	for _, c := range cases {
		file := filepath.Join("testdata", "checks", c.rule+".Dockerfile")
		r := e.kiln("build", "--check", "--format", "json", "-f", file, ctx)
		if r.Code != 1 {
			t.Errorf("%s: exit code %d, want 1\n%s", c.rule, r.Code, r.Stderr)
			continue
		}
		var out checkOutput
		if err := json.Unmarshal([]byte(r.Stdout), &out); err != nil {
			t.Errorf("%s: decoding %q: %v", c.rule, r.Stdout, err)
			continue
		}
		if len(out.Warnings) != 1 {
			t.Errorf("%s: want exactly that warning, got %+v", c.rule, out.Warnings)
			continue
		}
		w := out.Warnings[0]
		switch {
		case w.RuleName != c.rule:
			t.Errorf("%s: rule %s", c.rule, w.RuleName)
		case len(w.Location.Ranges) == 0 || w.Location.Ranges[0].Start.Line != c.line:
			t.Errorf("%s: location %+v, want line %d", c.rule, w.Location, c.line)
		case w.URL != ruleURL(c.rule) && c.rule != "InvalidBaseImagePlatform": // the one rule without a page
			t.Errorf("%s: url %s, want %s", c.rule, w.URL, ruleURL(c.rule))
		case w.Description == "" || w.Detail == "":
			t.Errorf("%s: no description or detail: %+v", c.rule, w)
		}
		switch {
		case c.buildErr == "" && out.BuildError != nil:
			t.Errorf("%s: unexpected build error %s", c.rule, out.BuildError.Message)
		case c.buildErr != "" && (out.BuildError == nil || !strings.Contains(out.BuildError.Message, c.buildErr)):
			t.Errorf("%s: build error %+v, want %q", c.rule, out.BuildError, c.buildErr)
		}
	}
	// Checking built nothing: no image but the base.
	if imgs := e.ctr("images", "ls", "-q").ok(t).Stdout; strings.Count(imgs, "\n") != 1 {
		t.Errorf("--check stored images:\n%s", imgs)
	}
}

// TestChecksDirectivesAndBuild: the text form of --check as buildx prints
// it, "# check=skip=" and "# check=error=true" directives, the
// BUILDKIT_DOCKERFILE_CHECK build argument, and the warnings an ordinary
// build prints at its end.
func TestChecksDirectivesAndBuild(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := contextDir(t, map[string]string{
		"a":          "a\n",
		"Dockerfile": "FROM scratch\nCOPY a /\nCMD run-it\n",
		"skip.Dockerfile": "# check=skip=JSONArgsRecommended\n" +
			"FROM scratch\nCOPY a /\nCMD run-it\n",
		"error.Dockerfile": "# check=error=true\n" +
			"FROM scratch\nCOPY a /\nCMD run-it\n",
	})
	df := filepath.Join(ctx, "Dockerfile")

	r := e.kiln("build", "--check", ctx)
	if r.Code != 1 {
		t.Fatalf("--check: exit code %d, want 1\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, want := range []string{
		"Check complete, 1 warning has been found!\n",
		"\nWARNING: JSONArgsRecommended - https://docs.docker.com/go/dockerfile/rule/json-args-recommended/\n" +
			"JSON arguments recommended for CMD to prevent unintended behavior related to OS signals\n" +
			df + ":3\n",
		" 3 | >>> CMD run-it\n",
	} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("--check output lacks %q:\n%s", want, r.Stdout)
		}
	}
	e.kiln("build", "--call", "check,ignorestatus=true", ctx).ok(t)

	r = e.kiln("build", "--check", "-f", filepath.Join(ctx, "skip.Dockerfile"), ctx).ok(t)
	if r.Stdout != "Check complete, no warnings found.\n" {
		t.Errorf("# check=skip: %q", r.Stdout)
	}
	r = e.kiln("build", "--check", "--build-arg", "BUILDKIT_DOCKERFILE_CHECK=skip=JSONArgsRecommended", ctx).ok(t)
	if r.Stdout != "Check complete, no warnings found.\n" {
		t.Errorf("BUILDKIT_DOCKERFILE_CHECK=skip: %q", r.Stdout)
	}

	// # check=error=true: --check fails, and so does the build.
	e.kiln("build", "--check", "-f", filepath.Join(ctx, "error.Dockerfile"), ctx).fails(t, 1, "")
	e.kiln("build", "-f", filepath.Join(ctx, "error.Dockerfile"), ctx).fails(t, 1, "lint violation found for rules: JSONArgsRecommended")
	e.kiln("build", "--build-arg", "BUILDKIT_DOCKERFILE_CHECK=error=true", ctx).fails(t, 1, "lint violation found for rules: JSONArgsRecommended")

	// An ordinary build succeeds and says what the checks found at its end.
	r = e.kiln("build", "--progress", "plain", ctx).ok(t)
	want := "\n 1 warning found (add --debug to see each rule's description, link and lines):\n" +
		" - JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 3)\n"
	if !strings.HasSuffix(r.Stderr, want) {
		t.Errorf("the build's stderr does not end with the warning %q:\n%s", want, r.Stderr)
	}
	r = e.kiln("--debug", "build", "--progress", "plain", ctx).ok(t)
	for _, want := range []string{"More info: https://docs.docker.com/go/dockerfile/rule/json-args-recommended/\n", df + ":3\n"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("--debug: stderr lacks %q", want)
		}
	}
	if r = e.kiln("build", "-q", ctx).ok(t); strings.Contains(r.Stderr, "warning") {
		t.Errorf("-q printed warnings:\n%s", r.Stderr)
	}
}

// TestCallOutlineAndTargets: --call outline names the target's build
// arguments and secrets, --call targets the stages, with the descriptions
// the Dockerfile's comments give, as text and as JSON; mistakes are usage
// errors.
func TestCallOutlineAndTargets(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := contextDir(t, map[string]string{
		"a": "a\n",
		"Dockerfile": "# VERSION sets the version\nARG VERSION=1.2\n" +
			"# base is where it starts\nFROM scratch AS base\n" +
			"# NAME names it\nARG NAME=x\n" +
			"RUN --mount=type=secret,id=token,required=true true\n" +
			"\n# final is the image\nFROM base AS final\nCOPY a /\n",
	})
	r := e.kiln("build", "--call", "outline", ctx).ok(t)
	for _, want := range []string{"TARGET:      final\n", "DESCRIPTION: is the image\n", "NAME        x       names it", "SECRET   REQUIRED\ntoken    true"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("outline lacks %q:\n%s", want, r.Stdout)
		}
	}
	r = e.kiln("build", "--call", "targets", ctx).ok(t)
	for _, want := range []string{"TARGET          DESCRIPTION\n", "base            is where it starts\n", "final (default) is the image\n"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("targets lacks %q:\n%s", want, r.Stdout)
		}
	}
	var outline struct {
		Name    string `json:"name"`
		Args    []struct{ Name, Value, Description string }
		Secrets []struct {
			Name     string
			Required bool
		}
	}
	mustJSON(t, e.kiln("build", "--call", "outline", "--format", "json", "--target", "base", ctx).ok(t).Stdout, &outline)
	if outline.Name != "base" || len(outline.Args) != 1 || outline.Args[0].Name != "NAME" || outline.Args[0].Value != "x" ||
		len(outline.Secrets) != 1 || outline.Secrets[0].Name != "token" || !outline.Secrets[0].Required {
		t.Errorf("outline of base as JSON: %+v", outline)
	}
	var targets struct {
		Targets []struct {
			Name, Description string
			Default           bool
		}
	}
	mustJSON(t, e.kiln("build", "--call", "targets,format=json", ctx).ok(t).Stdout, &targets)
	if len(targets.Targets) != 2 || targets.Targets[1].Name != "final" || !targets.Targets[1].Default || targets.Targets[0].Description != "is where it starts" {
		t.Errorf("targets as JSON: %+v", targets)
	}

	e.kiln("build", "--call", "bogus", ctx).fails(t, 2, `unknown --call method "bogus"`)
	e.kiln("build", "--format", "json", ctx).fails(t, 2, "--format json needs --call check, outline or targets")
	e.kiln("build", "--check", "--call", "targets", ctx).fails(t, 2, "--check and --call targets ask for two things")
}
