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
	return WithHint(err, OptionHint)
}

// WithHint adds to err the hint that hint returns for its message (see
// WithOptionHint), for callers that name the options their own way, such
// as kiln compose's build keys.
func WithHint(err error, hint func(msg string) string) error {
	if err == nil {
		return nil
	}
	h := hint(err.Error())
	if h == "" {
		return err
	}
	var he Hintable
	if errors.As(err, &he) {
		he.AddHint(h)
		return err
	}
	msg := err.Error()
	if m := entitlementTrap().FindString(msg); m != "" {
		msg = m
	}
	return errmsg.New(msg+": "+h, err)
}

// Kinds of what a build can be missing (see Missing).
const (
	MissingEntitlement = "entitlement"
	MissingSecret      = "secret"
	MissingSSH         = "ssh"
)

// Missing says what BuildKit's failure msg reports the build lacked: an
// entitlement (id network.host or security.insecure), a secret or an ssh
// agent (id "" or default for the default one). kind is "" when msg
// reports none of these.
func Missing(msg string) (kind, id string) {
	if m := entitlementTrap().FindStringSubmatch(msg); m != nil {
		return MissingEntitlement, m[1]
	}
	if m := secretTrap().FindStringSubmatch(msg); m != nil {
		return MissingSecret, m[1]
	}
	if m := sshTrap().FindStringSubmatch(msg); m != nil {
		return MissingSSH, m[1]
	}
	return "", ""
}

// OptionHint names the option that fixes the failure BuildKit reported in
// msg, or returns "" when no option would.
func OptionHint(msg string) string {
	kind, id := Missing(msg)
	switch kind {
	case MissingEntitlement:
		step := "RUN --network=host"
		if id == EntitlementSecurityInsecure {
			step = "RUN --security=insecure"
		}
		return fmt.Sprintf("%s needs it granted: pass --allow %s", step, id)
	case MissingSecret:
		return fmt.Sprintf("pass the secret with --secret id=%s,src=FILE or --secret id=%s,env=VARIABLE", id, id)
	case MissingSSH:
		if id == "" || id == "default" {
			return "forward an ssh-agent with --ssh default, or a key with --ssh default=KEYFILE"
		}
		return fmt.Sprintf("forward an ssh-agent or key with --ssh %s=SOCKET|KEYFILE", id)
	}
	return ""
}
