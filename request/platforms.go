package request

import (
	"slices"
	"strings"

	"github.com/containerd/platforms"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/emulation"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/usage"
)

// ParsePlatforms parses --platform values: each may hold several platforms
// separated by commas, in any form containerd accepts ("arm64",
// "linux/arm/v7", "aarch64"). The result is normalised and de-duplicated in
// the order given, and holds only platforms kiln can build.
func ParsePlatforms(values []string) ([]ocispecs.Platform, error) {
	ps, err := store.ParsePlatforms(values)
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		if err := checkBuildable(p); err != nil {
			return nil, err
		}
	}
	return ps, nil
}

// ParsePlatform parses and normalises one platform and rejects those kiln
// cannot build.
func ParsePlatform(s string) (ocispecs.Platform, error) {
	ps, err := ParsePlatforms([]string{s})
	if err != nil {
		return ocispecs.Platform{}, err
	}
	if len(ps) != 1 {
		return ocispecs.Platform{}, usage.Errorf("invalid platform %q: give one platform, like linux/arm64", s)
	}
	return ps[0], nil
}

// checkBuildable rejects platforms no Linux runtime here could run.
func checkBuildable(p ocispecs.Platform) error {
	s := platforms.Format(p)
	if p.OS != "linux" {
		return usage.Errorf("unsupported platform %q: kiln builds Linux images only (linux/amd64, linux/arm64, ...)", s)
	}
	// The emulation table lists every architecture kiln can build for,
	// natively or under QEMU; anything else is a typo.
	if _, err := emulation.LookupArch(p); err != nil {
		return usage.Errorf("unknown architecture %q in platform %q: use one of %s", p.Architecture, s, strings.Join(architectures(), ", "))
	}
	return nil
}

func architectures() []string {
	var out []string
	for _, a := range emulation.Arches() {
		if !slices.Contains(out, a.Platform.Architecture) {
			out = append(out, a.Platform.Architecture)
		}
	}
	return out
}

// formatPlatforms joins platforms as BuildKit's "platform" attribute wants.
func formatPlatforms(ps []ocispecs.Platform) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = platforms.Format(p)
	}
	return strings.Join(s, ",")
}
