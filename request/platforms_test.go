package request

import (
	"strings"
	"testing"

	"github.com/kiln-build/kiln/usage"
)

func TestParsePlatforms(t *testing.T) {
	cases := []struct {
		in   []string
		want string
	}{
		{[]string{"arm64"}, "linux/arm64"},
		{[]string{"linux/amd64,linux/arm64"}, "linux/amd64,linux/arm64"},
		{[]string{"linux/amd64", "linux/arm64,linux/amd64"}, "linux/amd64,linux/arm64"},
		{[]string{"linux/arm/v7", "armhf", "arm"}, "linux/arm/v7"},
		{[]string{"aarch64", "linux/arm64/v8"}, "linux/arm64"},
		{[]string{" linux/riscv64 "}, "linux/riscv64"},
		{nil, ""},
	}
	for _, c := range cases {
		ps, err := ParsePlatforms(c.in)
		if err != nil {
			t.Errorf("ParsePlatforms(%q): %v", c.in, err)
			continue
		}
		if got := formatPlatforms(ps); got != c.want {
			t.Errorf("ParsePlatforms(%q) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestParsePlatformsRejects(t *testing.T) {
	cases := map[string]string{
		"linux/arm65":   `unknown architecture "arm65"`,
		"windows/amd64": "Linux images only",
		"":              `invalid platform ""`,
		"linux/":        `invalid platform "linux/"`,
		"amd64/v2":      "Linux images only",
	}
	for in, want := range cases {
		_, err := ParsePlatforms([]string{in})
		if err == nil || !strings.Contains(err.Error(), want) || !usage.Is(err) {
			t.Errorf("ParsePlatforms(%q) = %v, want a usage error containing %q", in, err, want)
		}
	}
}
