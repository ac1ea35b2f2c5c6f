package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/kiln-build/kiln/internal/safeio"
	"github.com/kiln-build/kiln/registry"
)

const loginDescription = "kiln checks the credentials against the registry (through its hosts.toml, see --hosts-dir)\n" +
	"and stores them as docker login does: with the credential helper the docker config file\n" +
	"($DOCKER_CONFIG/config.json or ~/.docker/config.json) names for the registry (credHelpers,\n" +
	"else credsStore), or in that file itself. docker, nerdctl and kiln then share the login.\n" +
	"SERVER defaults to Docker Hub (docker.io).\n\n" +
	"Without --username, kiln first tries the credentials already stored, then asks for them\n" +
	"on a terminal. In scripts, pipe the password to --password-stdin:\n" +
	"  echo \"$TOKEN\" | kiln login registry.example.com -u ci --password-stdin"

func loginCommand() *cli.Command {
	return &cli.Command{
		Name:        "login",
		Usage:       "log in to a registry: check the credentials and store them where docker and nerdctl find them",
		ArgsUsage:   "[SERVER]",
		Description: loginDescription,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "username", Aliases: []string{"u"}, Usage: "user name"},
			&cli.StringFlag{Name: "password", Aliases: []string{"p"}, Usage: "password or access token (other users of this host can see it: prefer --password-stdin)"},
			&cli.BoolFlag{Name: "password-stdin", Usage: "read the password or access token from standard input"},
			&cli.BoolFlag{Name: "insecure-registry", Usage: "allow plain HTTP and unverified TLS certificates (loopback registries always allow HTTP)"},
		},
		Action: runLogin,
	}
}

func runLogin(c *cli.Context) error {
	if c.NArg() > 1 {
		return usageErrorf("\"kiln login\" takes at most one registry, for example \"kiln login registry.example.com\"")
	}
	server := c.Args().First()
	user, password := c.String("username"), c.String("password")
	switch {
	case c.IsSet("password") && c.Bool("password-stdin"):
		return usageErrorf("give the password with either --password or --password-stdin, not both")
	case c.Bool("password-stdin") && user == "":
		return usageErrorf("--password-stdin needs the user name too: add --username")
	case c.IsSet("username") && user == "":
		return usageErrorf("the user name is empty")
	case c.IsSet("password") && password == "":
		return usageErrorf("the password is empty")
	}
	if password != "" {
		// docker's warning, word for word.
		fmt.Fprintln(c.App.ErrWriter, "WARNING! Using --password via the CLI is insecure. Use --password-stdin.")
	}
	if c.Bool("password-stdin") {
		p, err := readSecret(c.Context, c.App.Reader)
		if err != nil {
			return fmt.Errorf("reading the password from standard input: %w", err)
		}
		if strings.TrimSpace(p) == "" {
			return usageErrorf("the password on standard input is empty")
		}
		password = p
	}
	reg := registryOptions(c)
	_, host := registry.ServerAddress(server)
	if user == "" && password == "" {
		// As docker login: the credentials already stored, if they work.
		if u, p, err := reg.StoredLogin(server); err == nil && u != "" && p != "" {
			fmt.Fprintf(c.App.ErrWriter, "Authenticating with existing credentials... [Username: %s]\n", u)
			_, err := reg.Login(c.Context, server, u, p)
			if err == nil {
				fmt.Fprintln(c.App.Writer, "Login Succeeded")
				return nil
			}
			fmt.Fprintf(c.App.ErrWriter, "the stored credentials did not work: %v\n", err)
		}
	}
	if user == "" || password == "" {
		var err error
		if user, password, err = promptCredentials(c, host, user); err != nil {
			return err
		}
	}
	if _, err := reg.Login(c.Context, server, user, password); err != nil {
		return err
	}
	fmt.Fprintln(c.App.Writer, "Login Succeeded")
	return nil
}

// maxSecret bounds a password or access token on standard input.
const maxSecret = 1 << 20

// readSecret reads a password from r, without the line ending a terminal
// or echo adds; other white space is part of it, as docker keeps it. The
// read is bounded and ends when ctx does (SIGINT, SIGTERM).
func readSecret(ctx context.Context, r io.Reader) (string, error) {
	b, err := safeio.ReadAll(ctx, r, "standard input", maxSecret)
	if err != nil {
		return "", err
	}
	for _, eol := range []string{"\r\n", "\n", "\r"} {
		var ok bool
		if b, ok = bytes.CutSuffix(b, []byte(eol)); ok {
			break
		}
	}
	return string(b), nil
}

// promptCredentials asks for what is missing on the terminal, the password
// without echo. Without a terminal it says how to give them instead.
func promptCredentials(c *cli.Context, host, user string) (string, string, error) {
	in, ok := c.App.Reader.(*os.File)
	if !ok || !term.IsTerminal(int(in.Fd())) {
		return "", "", usageErrorf("kiln login %s needs a user name and a password: give them with --username and --password-stdin (standard input is not a terminal to ask on)", host)
	}
	if user == "" {
		fmt.Fprintf(c.App.ErrWriter, "Username: ")
		line, err := bufio.NewReader(in).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", "", fmt.Errorf("reading the user name: %w", err)
		}
		if user = strings.TrimSpace(line); user == "" {
			return "", "", usageErrorf("the user name is empty")
		}
	}
	fmt.Fprintf(c.App.ErrWriter, "Password: ")
	p, err := term.ReadPassword(int(in.Fd()))
	fmt.Fprintln(c.App.ErrWriter)
	if err != nil {
		return "", "", fmt.Errorf("reading the password: %w", err)
	}
	if len(bytes.TrimSpace(p)) == 0 {
		return "", "", usageErrorf("the password is empty")
	}
	return user, string(p), nil
}

func logoutCommand() *cli.Command {
	return &cli.Command{
		Name:      "logout",
		Usage:     "log out of a registry: remove its credentials from where docker and nerdctl find them",
		ArgsUsage: "[SERVER]",
		Description: "kiln removes the credentials of SERVER (default Docker Hub, docker.io) from the docker\n" +
			"config file or the credential helper it names, as docker logout does.",
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return usageErrorf("\"kiln logout\" takes at most one registry, for example \"kiln logout registry.example.com\"")
			}
			server := c.Args().First()
			_, host := registry.ServerAddress(server)
			found, err := engineConfig(c).Registry.Logout(server)
			if err != nil {
				return err
			}
			if !found {
				fmt.Fprintf(c.App.Writer, "Not logged in to %s\n", host)
				return nil
			}
			fmt.Fprintf(c.App.Writer, "Removing login credentials for %s\n", host)
			return nil
		},
	}
}
