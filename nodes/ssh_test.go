package nodes

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/usage"
)

// TestSSHAddressRefusesShellSyntax: an ssh:// node's socket path reaches
// the node's shell, so anything but a plain absolute path is refused, in
// nodes files, --node and addresses given to "kiln node".
func TestSSHAddressRefusesShellSyntax(t *testing.T) {
	for _, addr := range []string{
		"ssh://u@h/run/x;touch${IFS}/tmp/pwned;",
		"ssh://u@h/run/x%3Btouch%20/tmp/pwned",
		"ssh://h/run/$(id).sock",
		"ssh://h/run/`id`.sock",
		"ssh://h/run/a b.sock",
		"ssh://h/run/x'y.sock",
		"ssh://h/run/x|y",
		"ssh://h/run/x&&id",
		"ssh://h/run/../etc/x.sock",
		"ssh://h/run/x%0Aid",
		"ssh://u%3Bid@h/run/x.sock",
		"ssh://h%3Bid/run/x.sock",
	} {
		if err := checkAddress(addr); err == nil {
			t.Errorf("checkAddress(%q) accepted it", addr)
		}
		if _, err := ParseAssignment("linux/arm64="+addr, nil); err == nil || !usage.Is(err) {
			t.Errorf("--node linux/arm64=%s = %v, want a usage error", addr, err)
		}
		if _, err := Lookup(nil, addr); err == nil {
			t.Errorf("Lookup(%q) accepted it", addr)
		}
		if _, err := sshDialer(addr); err == nil {
			t.Errorf("sshDialer(%q) accepted it", addr)
		}
	}
	dir := t.TempDir()
	p := write(t, dir, "nodes.toml", "[node.evil]\naddress = \"ssh://u@h/run/x;touch${IFS}/tmp/pwned;\"\n")
	if _, err := Load(t.Context(), p); err == nil || !strings.Contains(err.Error(), "reaches a shell on the node") {
		t.Errorf("Load = %v, want the socket path refused", err)
	}
	for _, addr := range []string{
		"ssh://me@graviton",
		"ssh://me@graviton.example.com:2222/run/buildkit/buildkitd.sock",
		"ssh://root@127.0.0.1:2222/run/user/1000/buildkit/buildkitd.sock",
		"ssh://[::1]:22/var/run/buildkit@1/x_y-z+1.sock",
	} {
		if err := checkAddress(addr); err != nil {
			t.Errorf("checkAddress(%q) = %v", addr, err)
		}
	}
}

// TestSSHDialQuotesTheSocket runs the dialer against a stand-in ssh that
// does what sshd does with the remote command (its words joined, run by a
// shell) and a stand-in buildctl that records its arguments.
func TestSSHDialQuotesTheSocket(t *testing.T) {
	bin := t.TempDir()
	record := filepath.Join(t.TempDir(), "args")
	write(t, bin, "ssh", `#!/bin/sh
while [ "$1" != "--" ]; do shift; done
shift 2
exec sh -c "$*"
`)
	write(t, bin, "buildctl", "#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done > "+record+"\n")
	for _, f := range []string{"ssh", "buildctl"} {
		if err := os.Chmod(filepath.Join(bin, f), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	dial, err := sshDialer("ssh://me@node:2222/run/buildkit@1/buildkitd.sock")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := dial(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, conn) // until the stand-in exits
	conn.Close()
	got, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	if want := "--addr\nunix:///run/buildkit@1/buildkitd.sock\ndial-stdio\n"; string(got) != want {
		t.Errorf("buildctl on the node got %q, want %q", got, want)
	}
	spec := sshSpec{user: "me", host: "node", port: "2222", socket: "/run/x.sock"}
	if got := strings.Join(spec.args(), " | "); got != "-l | me | -p | 2222 | -- | node | buildctl --addr 'unix:///run/x.sock' dial-stdio" {
		t.Errorf("ssh arguments %s", got)
	}
}

// TestShellQuote: what shellQuote makes reaches a shell's command as the
// one word it was, whatever it holds.
func TestShellQuote(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	for _, s := range []string{"plain", "a b", "x;touch${IFS}/tmp/pwned;", "it's", `"$(id)"`, "`id`", "'", ""} {
		out, err := exec.Command("sh", "-c", "printf %s "+shellQuote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("sh got %q (%v) for %q", out, err, s)
		}
	}
}
