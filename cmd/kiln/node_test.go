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
		{Node: nodes.Node{Name: "pi", Address: "tcp://10.0.0.5:1234", Platforms: []ocispecs.Platform{arm}}, Reachable: true, BuildKit: "v0.34.2", Platforms: []string{"linux/arm64"}, Restricted: true},
		{Node: nodes.Node{Name: "gone", Address: "tcp://10.0.0.6:1234"}, Error: "connection refused"},
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
		"NAME ADDRESS STATUS BUILDKIT PLATFORMS",
		"pi tcp://10.0.0.5:1234 reachable v0.34.2 linux/arm64 (configured)",
		"gone tcp://10.0.0.6:1234 unreachable - -",
		"gone: connection refused",
	}
	if strings.Join(rows, "\n") != strings.Join(want, "\n") {
		t.Errorf("table:\n%s\nwant rows:\n%s", b.String(), strings.Join(want, "\n"))
	}
}
