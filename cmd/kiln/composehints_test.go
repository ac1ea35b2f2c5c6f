package main

import (
	"strings"
	"testing"
)

func TestComposeOptionHint(t *testing.T) {
	for msg, want := range map[string]string{
		"network.host is not allowed":                   "network: host",
		"security.insecure is not allowed":              "privileged: true",
		"secret token: not found":                       "build.secrets (a top-level secret token",
		`no SSH key "" forwarded from the client`:       "ssh: [default]",
		`no SSH key "deploy" forwarded from the client`: "ssh: [deploy=SOCKET|KEYFILE]",
		"process \"/bin/sh -c false\" did not complete": "",
	} {
		if got := composeOptionHint(msg); want == "" && got != "" || !strings.Contains(got, want) {
			t.Errorf("composeOptionHint(%q) = %q, want %q in it", msg, got, want)
		}
	}
}
