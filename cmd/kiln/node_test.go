package main

import (
	"bytes"
	"strings"
	"testing"

	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/nodes"
)

func TestWriteNodeTable(t *testing.T) {
	arm := ocispecs.Platform{OS: "linux", Architecture: "arm64"}
	sts := []nodes.Status{
		{Node: nodes.Node{Name: "pi", Address: "tcp://10.0.0.5:1234", Platforms: []ocispecs.Platform{arm}, TLS: nodes.TLS{CA: "/ca.pem"}}, Transport: "tls", Reachable: true, BuildKit: "v0.34.2", Platforms: []string{"linux/arm64"}, Restricted: true},
		{Node: nodes.Node{Name: "gone", Address: "tcp://10.0.0.6:1234", Source: "/etc/kiln/nodes.toml"}, Transport: "plaintext", Error: "connection refused"},
		{Node: nodes.Node{Name: "lab", Address: "tcp://10.0.0.7:1234", InsecurePlaintext: true}, Transport: "plaintext", Reachable: true, BuildKit: "v0.34.2", Platforms: []string{"linux/arm64"}},
		{Node: nodes.Node{Name: "sock", Address: "unix:///run/b.sock"}, Transport: "unix", Reachable: true, BuildKit: "v0.34.2", Platforms: []string{"linux/amd64"}},
	}
	var b bytes.Buffer
	if err := writeNodeTable(&b, sts); err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, l := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
		rows = append(rows, strings.Join(strings.Fields(l), " "))
	}
	want := []string{
		"NAME ADDRESS TRANSPORT STATUS BUILDKIT PLATFORMS",
		"pi tcp://10.0.0.5:1234 tls reachable v0.34.2 linux/arm64 (configured)",
		"gone tcp://10.0.0.6:1234 plaintext (refused) unreachable - -",
		"lab tcp://10.0.0.7:1234 plaintext (accepted) reachable v0.34.2 linux/arm64",
		"sock unix:///run/b.sock unix reachable v0.34.2 linux/amd64",
		"gone: connection refused",
		"node gone (tcp://10.0.0.6:1234) is plain tcp:// without TLS: the registry credentials, secrets and ssh agents a build hands it would cross the network unencrypted; give it TLS settings in a [node.gone.tls] table of /etc/kiln/nodes.toml (see docs/nodes.md), or accept the risk with insecure-plaintext = true in its table there",
	}
	if strings.Join(rows, "\n") != strings.Join(want, "\n") {
		t.Errorf("table:\n%s\nwant rows:\n%s", b.String(), strings.Join(want, "\n"))
	}
}
