package request

import (
	"strings"
	"testing"

	"github.com/kiln-build/kiln/platform"
	"github.com/kiln-build/kiln/usage"
)

// Parsing is tested in the platform package; these cases are the build's
// policy on top of it.
func TestParseBuildable(t *testing.T) {
	ps, err := ParseBuildable([]string{"linux/amd64,aarch64", "linux/arm/v7", "linux/riscv64"})
	if got, want := platform.FormatList(ps), "linux/amd64,linux/arm64,linux/arm/v7,linux/riscv64"; err != nil || got != want {
		t.Errorf("ParseBuildable = %s, %v; want %s", got, err, want)
	}
}

func TestParseBuildableRejects(t *testing.T) {
	cases := map[string]string{
		"linux/arm65":   `unknown architecture "arm65"`,
		"windows/amd64": "Linux images only",
		"":              `invalid platform ""`,
		"linux/":        `invalid platform "linux/"`,
		"amd64/v2":      "Linux images only",
	}
	for in, want := range cases {
		_, err := ParseBuildable([]string{in})
		if err == nil || !strings.Contains(err.Error(), want) || !usage.Is(err) {
			t.Errorf("ParseBuildable(%q) = %v, want a usage error containing %q", in, err, want)
		}
	}
}

func TestParseBuildableOne(t *testing.T) {
	if p, err := parseBuildableOne("linux/amd64,amd64"); err != nil || platform.Format(p) != "linux/amd64" {
		t.Errorf("parseBuildableOne(linux/amd64,amd64) = %v, %v", p, err)
	}
	if _, err := parseBuildableOne("linux/amd64,linux/arm64"); err == nil || !strings.Contains(err.Error(), "give one platform") {
		t.Errorf("parseBuildableOne of two platforms: %v", err)
	}
}
