package request

import (
	"errors"
	"fmt"

	"github.com/kiln-build/kiln/internal/errmsg"
)

var (
	entitlementTrap = errmsg.Pattern(`(network\.host|security\.insecure) is not allowed`)
	secretTrap      = errmsg.Pattern(`secret (\S+): not found`)
	sshTrap         = errmsg.Pattern(`no SSH key "([^"]*)" forwarded from the client`)
)

// Hintable is an error that takes a hint into its own message, such as a
// failed step whose message comes before the lines the step printed.
type Hintable interface {
	error
	// AddHint appends hint to the error's message.
	AddHint(hint string)
}

// WithOptionHint tells the user which kiln option a build was missing: an
// entitlement, a secret or an ssh agent the Dockerfile asks for. A
// Hintable error in err's chain takes the hint itself.
func WithOptionHint(err error) error {
	if err == nil {
		return nil
	}
	hint := OptionHint(err.Error())
	if hint == "" {
		return err
	}
	var h Hintable
	if errors.As(err, &h) {
		h.AddHint(hint)
		return err
	}
	msg := err.Error()
	if m := entitlementTrap().FindString(msg); m != "" {
		msg = m
	}
	return errmsg.New(msg+": "+hint, err)
}

// OptionHint names the option that fixes the failure BuildKit reported in
// msg, or returns "" when no option would.
func OptionHint(msg string) string {
	if m := entitlementTrap().FindStringSubmatch(msg); m != nil {
		step := "RUN --network=host"
		if m[1] == EntitlementSecurityInsecure {
			step = "RUN --security=insecure"
		}
		return fmt.Sprintf("%s needs it granted: pass --allow %s", step, m[1])
	}
	if m := secretTrap().FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("pass the secret with --secret id=%s,src=FILE or --secret id=%s,env=VARIABLE", m[1], m[1])
	}
	if m := sshTrap().FindStringSubmatch(msg); m != nil {
		id := m[1]
		if id == "" || id == "default" {
			return "forward an ssh-agent with --ssh default, or a key with --ssh default=KEYFILE"
		}
		return fmt.Sprintf("forward an ssh-agent or key with --ssh %s=SOCKET|KEYFILE", id)
	}
	return ""
}
