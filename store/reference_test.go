package store

import (
	"strings"
	"testing"
)

func TestNormalizeName(t *testing.T) {
	cases := map[string]string{
		"app":                           "docker.io/library/app:latest",
		"app:1":                         "docker.io/library/app:1",
		"me/app:1":                      "docker.io/me/app:1",
		"localhost:5000/app":            "localhost:5000/app:latest",
		"registry.example.com/a/b/c:v2": "registry.example.com/a/b/c:v2",
		"docker.io/library/app:latest":  "docker.io/library/app:latest",
	}
	for in, want := range cases {
		got, err := NormalizeName(in)
		if err != nil || got != want {
			t.Errorf("NormalizeName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "UPPER", "a:b:c", "app:", "-app", "app@sha256:abc"} {
		if _, err := NormalizeName(bad); err == nil || !strings.Contains(err.Error(), "invalid image name") {
			t.Errorf("NormalizeName(%q) = %v, want an invalid image name error", bad, err)
		}
	}
}

func TestNormalizeNamesDeduplicates(t *testing.T) {
	got, err := NormalizeNames([]string{"app", "docker.io/library/app:latest", "app:2"})
	if err != nil || strings.Join(got, ",") != "docker.io/library/app:latest,docker.io/library/app:2" {
		t.Errorf("NormalizeNames = %v, %v", got, err)
	}
}
