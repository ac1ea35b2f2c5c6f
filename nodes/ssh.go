package nodes

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"

	"github.com/docker/cli/cli/connhelper/commandconn"
)

// An ssh:// node is reached by running "ssh [-l USER] [-p PORT] -- HOST
// buildctl [--addr unix://SOCKET] dial-stdio", as BuildKit's own ssh
// connection helper does. ssh joins the remote command's words with spaces
// and hands them to the remote user's shell, so the socket path would be
// shell syntax there: kiln accepts only a conservative set of characters
// in each part of the address, and quotes the socket for the shell besides.
var (
	sshSocket = regexp.MustCompile(`^/[A-Za-z0-9._/+@-]*$`)
	sshHost   = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9._-]*[A-Za-z0-9_])?$`)
	sshUser   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*$`)
)

// sshSpec is what an ssh:// address says.
type sshSpec struct {
	user, host, port, socket string
}

// parseSSH checks an ssh:// address strictly; the error says what is
// allowed.
func parseSSH(u *url.URL) (sshSpec, error) {
	sp := sshSpec{host: u.Hostname(), port: u.Port(), socket: u.Path}
	if u.User != nil {
		sp.user = u.User.Username()
	}
	switch {
	case u.Opaque != "":
		return sp, fmt.Errorf("write ssh://[USER@]HOST[:PORT][/SOCKET]")
	case sp.host == "":
		return sp, fmt.Errorf("give the host, e.g. ssh://user@host")
	case !sshHost.MatchString(sp.host) && net.ParseIP(sp.host) == nil:
		return sp, fmt.Errorf("the host %q is neither a host name (letters, digits, '.', '_' and '-') nor an IP address", sp.host)
	case u.User != nil && !sshUser.MatchString(sp.user):
		return sp, fmt.Errorf("the user %q has characters kiln does not pass to ssh: use letters, digits, '.', '_' and '-'", sp.user)
	case sp.socket != "" && (!sshSocket.MatchString(sp.socket) || strings.Contains("/"+sp.socket+"/", "/../")):
		// It reaches a shell on the node: no quotes, spaces, ';', '$'...
		return sp, fmt.Errorf("the socket path %q reaches a shell on the node, so kiln takes only an absolute path of letters, digits and '.', '_', '-', '+', '@' and '/', without \"..\"", sp.socket)
	}
	return sp, nil
}

// args returns ssh's arguments: options, "--", the host and the remote
// command as one word, its socket quoted for the remote shell.
func (sp sshSpec) args() []string {
	var args []string
	if sp.user != "" {
		args = append(args, "-l", sp.user)
	}
	if sp.port != "" {
		args = append(args, "-p", sp.port)
	}
	remote := "buildctl"
	if sp.socket != "" {
		remote += " --addr " + shellQuote("unix://"+sp.socket)
	}
	return append(args, "--", sp.host, remote+" dial-stdio")
}

// shellQuote quotes s as one word for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// sshDialer returns the dialer Connect gives BuildKit's client for an
// ssh:// address, in place of BuildKit's connection helper.
func sshDialer(address string) (func(context.Context, string) (net.Conn, error), error) {
	u, err := url.Parse(address)
	if err != nil {
		return nil, err
	}
	sp, err := parseSSH(u)
	if err != nil {
		return nil, fmt.Errorf("invalid address %q: %w", address, err)
	}
	return func(ctx context.Context, _ string) (net.Conn, error) {
		// The connection outlives the dial: ssh runs as long as it does.
		return commandconn.New(context.WithoutCancel(ctx), "ssh", sp.args()...)
	}, nil
}
