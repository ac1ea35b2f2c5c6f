package builder

import (
	"slices"
	"strings"

	"github.com/containerd/platforms"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/emulation"
	"github.com/kiln-build/kiln/usage"
)

// ParsePlatforms parses --platform values: each may hold several platforms
// separated by commas, in any form containerd accepts ("arm64",
// "linux/arm/v7", "aarch64"). The result is normalised and de-duplicated in
// the order given.
func ParsePlatforms(values []string) ([]ocispecs.Platform, error) {
	var out []ocispecs.Platform
	seen := map[string]bool{}
	for _, v := range values {
		for _, s := range strings.Split(v, ",") {
			p, err := ParsePlatform(s)
			if err != nil {
				return nil, err
			}
			key := platforms.Format(p)
			if !seen[key] {
				seen[key] = true
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// ParsePlatform parses and normalises one platform and rejects those kiln
// cannot build.
func ParsePlatform(s string) (ocispecs.Platform, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return ocispecs.Platform{}, usage.Errorf("invalid platform \"\": give one like linux/amd64, linux/arm64 or linux/arm/v7")
	}
	p, err := platforms.Parse(s)
	if err != nil {
		return ocispecs.Platform{}, usage.Errorf("invalid platform %q: give one like linux/amd64, linux/arm64 or linux/arm/v7", s)
	}
	p = platforms.Normalize(p)
	if p.OS != "linux" {
		return ocispecs.Platform{}, usage.Errorf("unsupported platform %q: kiln builds Linux images only (linux/amd64, linux/arm64, ...)", s)
	}
	// The emulation table lists every architecture kiln can build for,
	// natively or under QEMU; anything else is a typo.
	if _, err := emulation.LookupArch(p); err != nil {
		return ocispecs.Platform{}, usage.Errorf("unknown architecture %q in platform %q: use one of %s", p.Architecture, s, strings.Join(architectures(), ", "))
	}
	return p, nil
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

// describePlatforms is formatPlatforms for messages.
func describePlatforms(ps []ocispecs.Platform) string {
	return strings.ReplaceAll(formatPlatforms(ps), ",", ", ")
}
