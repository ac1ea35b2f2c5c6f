package request

import (
	"strconv"
	"strings"

	"github.com/kiln-build/kiln/usage"
)

// Frontend methods --call accepts, by the name the user gives, mapped to the
// name of BuildKit's subrequest ("frontend." + name), as buildx maps them:
// "check" is the Dockerfile frontend's "lint".
var callMethods = map[string]string{
	"check":                "lint",
	"lint":                 "lint",
	"outline":              "outline",
	"targets":              "targets",
	"subrequests.describe": "subrequests.describe",
}

// Call is a frontend method evaluated instead of a build (--call, --check):
// the Dockerfile frontend answers it without running a step or exporting
// anything.
type Call struct {
	// Name is the subrequest's name: lint, outline, targets or
	// subrequests.describe.
	Name string
	// Format is how the answer is printed: "" (text) or "json".
	Format string
	// IgnoreStatus keeps the exit status 0 when the answer says it failed
	// (lint warnings found).
	IgnoreStatus bool
}

// RequestID is the frontend attribute that asks the Dockerfile frontend for
// the method instead of a build.
func (c *Call) RequestID() string { return "frontend." + c.Name }

// ParseCall parses a --call value as buildx does: METHOD[,format=json|text]
// [,ignorestatus=BOOL], METHOD one of build, check, outline, targets and
// subrequests.describe; format, when not empty, is the --format option and
// wins over the one in value. "build" and "" give nil: an ordinary build.
func ParseCall(value, format string) (*Call, error) {
	if value == "" && format == "" {
		return nil, nil
	}
	c := &Call{}
	name := ""
	for _, field := range strings.Split(value, ",") {
		k, v, hasValue := strings.Cut(strings.TrimSpace(field), "=")
		switch {
		case !hasValue && name == "":
			name = k
		case k == "format":
			c.Format = v
		case k == "ignorestatus":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, usage.Errorf("invalid --call %q: ignorestatus takes true or false", value)
			}
			c.IgnoreStatus = b
		default:
			return nil, usage.Errorf("invalid --call %q: use METHOD[,format=json][,ignorestatus=true], METHOD one of build, check, outline, targets", value)
		}
	}
	if format != "" {
		c.Format = format
	}
	switch c.Format {
	case "", "text":
		c.Format = ""
	case "json":
	default:
		return nil, usage.Errorf("invalid --call format %q: use json or text", c.Format)
	}
	if name == "" || name == "build" {
		if c.Format != "" {
			return nil, usage.Errorf("--format %s needs --call check, outline or targets: a build prints no answer", c.Format)
		}
		return nil, nil
	}
	sub, ok := callMethods[name]
	if !ok {
		return nil, usage.Errorf("unknown --call method %q: use build, check, outline, targets or subrequests.describe", name)
	}
	c.Name = sub
	return c, nil
}

func (r *Request) resolveCall(o *Options) error {
	value := o.Call
	if o.Check {
		if value != "" && value != "check" && value != "lint" {
			return usage.Errorf("--check and --call %s ask for two things: give one of them", value)
		}
		value = "check"
	}
	c, err := ParseCall(value, o.CallFormat)
	if err != nil {
		return err
	}
	r.Call = c
	return nil
}
