package request

import (
	"encoding/json"
	"strings"

	"github.com/kiln-build/kiln/usage"
)

// DefaultShell is what --on-error shell starts in the failed step.
const DefaultShell = "/bin/sh"

// Invoke is a command kiln starts in a container of the build, on the
// user's terminal, when it ends: in the container of a RUN step that failed,
// with the step's filesystem as the command left it, its environment,
// working directory, user and mounts; or, after a successful build, in its
// result (--invoke).
type Invoke struct {
	// Args is the command and its arguments.
	Args []string
	// OnErrorOnly starts the command only when a step failed
	// (--on-error shell); otherwise a successful build starts it in its
	// result too (--invoke alone).
	OnErrorOnly bool
}

// ParseInvoke parses --on-error (fail, the default, or shell) and --invoke
// (a command: words split at spaces, or a JSON array of strings).
func ParseInvoke(onError, invoke string) (*Invoke, error) {
	inv := &Invoke{}
	switch onError {
	case "", "fail":
	case "shell":
		inv.OnErrorOnly = true
	default:
		return nil, usage.Errorf("invalid --on-error %q: use fail (the default) or shell", onError)
	}
	switch cmd := strings.TrimSpace(invoke); {
	case cmd == "":
		if !inv.OnErrorOnly {
			return nil, nil
		}
		inv.Args = []string{DefaultShell}
	case strings.HasPrefix(cmd, "["):
		if err := json.Unmarshal([]byte(cmd), &inv.Args); err != nil || len(inv.Args) == 0 || inv.Args[0] == "" {
			return nil, usage.Errorf("invalid --invoke %q: give a command such as \"sh\" or a JSON array such as '[\"sh\", \"-c\", \"ls /\"]'", invoke)
		}
	default:
		inv.Args = strings.Fields(cmd)
	}
	return inv, nil
}

func (r *Request) resolveInvoke(o *Options) error {
	inv, err := ParseInvoke(o.OnError, o.Invoke)
	if err != nil || inv == nil {
		return err
	}
	if r.Call != nil {
		return usage.Errorf("--on-error and --invoke need a build; --call and --check run none")
	}
	if r.Dockerfile.FromStdin {
		return usage.Errorf("--on-error and --invoke need standard input for the command they start: read the Dockerfile from a file, not -f -")
	}
	r.Invoke = inv
	return nil
}
