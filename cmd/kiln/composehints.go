package main

import (
	"fmt"

	"github.com/kiln-build/kiln/request"
)

// composeOptionHint names the build key of a compose file that grants
// what BuildKit's failure msg reports a service's build lacked (see
// request.Missing): the compose counterpart of request.OptionHint, for
// request.WithHint. It lives here, with the other hints, because it names
// a Dockerfile's RUN flags.
func composeOptionHint(msg string) string {
	kind, id := request.Missing(msg)
	switch kind {
	case request.MissingEntitlement:
		if id == request.EntitlementSecurityInsecure {
			return "RUN --security=insecure needs it granted: set privileged: true (or entitlements: [security.insecure]) under build"
		}
		return "RUN --network=host needs it granted: set network: host (or entitlements: [network.host]) under build"
	case request.MissingSecret:
		return fmt.Sprintf("list the secret under build.secrets (a top-level secret %s with file: or environment:, or another secret with target: %s)", id, id)
	case request.MissingSSH:
		if id == "" || id == "default" {
			return "forward an ssh-agent with ssh: [default] under build"
		}
		return fmt.Sprintf("forward an ssh-agent or key with ssh: [%s=SOCKET|KEYFILE] under build", id)
	}
	return ""
}
