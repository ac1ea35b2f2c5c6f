//go:build linux

package integration

import (
	"regexp"
	"strings"
	"testing"
)

// libraryLogLine matches a line of Go's log package as grpc-go and others
// write it ("2026/01/02 15:04:05 ERROR: [transport] ...").
var libraryLogLine = regexp.MustCompile(`(?m)^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d `)

// TestSecurityInvalidUTF8DockerfileLogsNoLibraryLine: a Dockerfile with
// invalid UTF-8 fails with kiln's one-line error, and no library log line
// (grpc-go logged 4-8 KB failing to send the error's status) comes before
// it without --debug.
func TestSecurityInvalidUTF8DockerfileLogsNoLibraryLine(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := contextDir(t, map[string]string{"Dockerfile": "FROM scratch\n\xff\xfe bad instruction\n"})
	r := e.kiln("build", "--progress", "plain", dir).fails(t, 1, "dockerfile parse error on line 2: unknown instruction")
	if libraryLogLine.MatchString(r.Stderr) || strings.Contains(r.Stderr, "[transport]") || len(r.Stderr) > 1024 {
		t.Errorf("stderr has a library's log line or is long (%d bytes):\n%.2000s", len(r.Stderr), r.Stderr)
	}
	// --debug still shows them.
	if r := e.kiln("--debug", "build", "--progress", "plain", dir); !strings.Contains(r.Stderr, "[transport]") {
		t.Errorf("kiln --debug does not show grpc-go's log line:\n%.2000s", r.Stderr)
	}
}
