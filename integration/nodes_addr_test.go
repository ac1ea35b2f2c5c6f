//go:build linux

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startSocketNode starts a node that also listens on a unix socket under /tmp (short: a
// socket path has a 108-byte limit) and returns the node and the socket's path.
func startSocketNode(t *testing.T) (*bkNode, string) {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "kn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "bk.sock")
	n := startNode(t, nodeOptions{socket: sock})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return n, sock
		}
		if time.Now().After(deadline) {
			t.Fatalf("buildkitd made no socket %s:\n%s", sock, n.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkNodeBuild checks a two-platform build whose arm64 half went to the node at addr: the
// index has both platforms, the progress shows the arm64 step on the node, and the node's
// cache has the arm64 step and not the amd64 one.
func checkNodeBuild(t *testing.T, e *env, n *bkNode, addr, name, stderr string) {
	t.Helper()
	if !strings.Contains(stderr, "building linux/amd64 here, linux/arm64 on node "+addr) {
		t.Errorf("the build did not say where each platform builds:\n%s", stderr)
	}
	img := e.image(t, name)
	var got []string
	for _, m := range img.Index.Manifests {
		if m.Platform != nil {
			got = append(got, m.Platform.OS+"/"+m.Platform.Architecture)
		}
	}
	if strings.Join(got, ",") != "linux/amd64,linux/arm64" {
		t.Errorf("index platforms %v, want linux/amd64,linux/arm64: %+v", got, img.Index.Manifests)
	}
	arm := stepLines(stderr, "build-arm64")
	if len(arm) == 0 {
		t.Fatalf("no arm64 step in the progress:\n%s", stderr)
	}
	for _, l := range arm {
		if !strings.Contains(l, "["+addr+"] [build-arm64") {
			t.Errorf("arm64 step not shown on the node: %q", l)
		}
	}
	if du := n.buildctl(t, "du", "-v").ok(t).Stdout; !strings.Contains(du, "arm64-step") || strings.Contains(du, "amd64-step") {
		t.Errorf("node cache:\n%s", du)
	}
}

// TestNodeUnix: a node reached on a unix socket builds the arm64 half.
func TestNodeUnix(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	needArm64Emulation(t, e)
	n, sock := startSocketNode(t)
	dir := nodeContext(t, nodeDockerfile)
	addr := "unix://" + sock
	r := e.kiln("build", "--progress", "plain", "--platform", "linux/amd64,linux/arm64", "--node", "linux/arm64="+addr, "-t", "app", dir).ok(t)
	checkNodeBuild(t, e, n, addr, "docker.io/library/app:latest", r.Stderr)
}

// TestNodeSSH: a node reached through BuildKit's ssh connection helper, which runs
// "ssh -l USER -p PORT -- HOST buildctl --addr unix://SOCKET dial-stdio", builds the arm64
// half. The test runs its own sshd on loopback with keys of its own; kiln's ssh reads a
// config of the test's through a wrapper first on its PATH (ssh takes ~/.ssh from the
// password database, not from HOME).
func TestNodeSSH(t *testing.T) {
	t.Parallel()
	sshd, err := exec.LookPath("sshd")
	if err != nil {
		sshd = "/usr/sbin/sshd"
	}
	for _, bin := range []string{sshd, "ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is missing: install openssh-server and openssh-client (hack/install-deps.sh)", bin)
		}
	}
	e := newEnv(t)
	needArm64Emulation(t, e)
	n, sock := startSocketNode(t)
	dir := nodeContext(t, nodeDockerfile)

	keys := t.TempDir()
	for _, k := range []string{"host", "client"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(keys, k)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
	}
	pub, err := os.ReadFile(filepath.Join(keys, "client.pub"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(keys, "authorized_keys"), string(pub), 0o600)
	// sshd wants its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	// buildctl is on the remote PATH: the node's tools directory first.
	writeFile(t, filepath.Join(keys, "sshd_config"), fmt.Sprintf(`ListenAddress 127.0.0.1
Port %d
HostKey %s
AuthorizedKeysFile %s
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
PidFile none
SetEnv PATH=%s:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
`, port, filepath.Join(keys, "host"), filepath.Join(keys, "authorized_keys"), toolsDir), 0o600)
	logPath := filepath.Join(keys, "sshd.log")
	cmd := exec.Command(sshd, "-D", "-e", "-f", filepath.Join(keys, "sshd_config"), "-E", logPath)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting sshd: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			log, _ := os.ReadFile(logPath)
			t.Logf("sshd log:\n%s", log)
		}
	})

	// The client side: kiln's ssh uses the test's key and trusts the test's host key.
	bin := t.TempDir()
	writeFile(t, filepath.Join(keys, "ssh_config"), fmt.Sprintf(`Host 127.0.0.1
  IdentityFile %s
  IdentitiesOnly yes
  BatchMode yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
`, filepath.Join(keys, "client")), 0o600)
	realSSH, _ := exec.LookPath("ssh")
	writeFile(t, filepath.Join(bin, "ssh"), fmt.Sprintf("#!/bin/sh\nexec %s -F %s \"$@\"\n", realSSH, filepath.Join(keys, "ssh_config")), 0o755)
	path := "PATH=" + bin + ":" + os.Getenv("PATH")

	// sshd is up when it accepts the test's key and runs buildctl on the node's socket.
	addr := fmt.Sprintf("ssh://root@127.0.0.1:%d%s", port, sock)
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			log, _ := os.ReadFile(logPath)
			t.Fatalf("sshd exited:\n%s", log)
		default:
		}
		out, err := exec.Command(filepath.Join(bin, "ssh"), "-p", fmt.Sprint(port), "-l", "root", "--", "127.0.0.1", "buildctl", "--addr", "unix://"+sock, "debug", "workers").CombinedOutput()
		if err == nil && strings.Contains(string(out), "linux/arm64") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no buildctl through ssh within 15s: %v: %s", err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}

	r := e.kilnEnv([]string{path}, "build", "--progress", "plain", "--platform", "linux/amd64,linux/arm64", "--node", "linux/arm64="+addr, "-t", "app", dir).ok(t)
	checkNodeBuild(t, e, n, addr, "docker.io/library/app:latest", r.Stderr)
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}
