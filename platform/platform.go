// Package platform is kiln's one parser and formatter of platforms: every
// --platform value, nodes.toml entry and message goes through it, so
// "aarch64", "arm64" and "linux/arm64/v8" mean the same everywhere.
//
// It is a leaf: it wraps containerd's platforms package and imports nothing
// of kiln but usage.
package platform

import (
	"fmt"
	"strings"

	"github.com/containerd/platforms"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/usage"
)

// Parse parses one platform in any form containerd accepts ("arm64",
// "linux/arm/v7", "aarch64"), ignoring surrounding space, and returns it
// normalised. An empty or malformed value is a usage error. Parse does not
// check that kiln can build or run the platform; callers with a policy
// (builder, emulation) check that themselves.
func Parse(s string) (ocispecs.Platform, error) {
	s = strings.TrimSpace(s)
	p, err := platforms.Parse(s)
	if s == "" || err != nil {
		return ocispecs.Platform{}, usage.Errorf("invalid platform %q: give one like linux/amd64, linux/arm64 or linux/arm/v7", s)
	}
	p = platforms.Normalize(p)
	for _, part := range []string{p.OS, p.Architecture, p.Variant} {
		// containerd takes "." and ".." as names, but formatting them
		// (a path join) drops them: "0/." would print as "0".
		if part == "." || part == ".." {
			return ocispecs.Platform{}, usage.Errorf("invalid platform %q: give one like linux/amd64, linux/arm64 or linux/arm/v7", s)
		}
	}
	if err := checkVariant(p); err != nil {
		return ocispecs.Platform{}, usage.Errorf("invalid platform %q: %w", s, err)
	}
	return p, nil
}

// variants are the CPU variants of the architectures that have them, as
// containerd's platform matcher and the OCI image specification know them:
// the x86-64 micro-architecture levels, the ARM architecture versions, and
// the ARMv8 and ARMv9 extensions. Any other variant of these architectures
// is a typo that would name a platform no image has ("linux/amd64/v9").
// Architectures not listed here are not judged.
var variants = map[string][]string{
	"amd64": {"v1", "v2", "v3", "v4"},
	"arm":   {"v5", "v6", "v7", "v8"},
	"arm64": {"v8", "v8.1", "v8.2", "v8.3", "v8.4", "v8.5", "v8.6", "v8.7", "v8.8", "v8.9", "v9", "v9.1", "v9.2", "v9.3", "v9.4", "v9.5", "v9.6", "v9.7"},
	"386":   {},
}

// checkVariant refuses a variant its architecture does not have. p is
// normalised: the default variants (amd64 v1, arm64 v8) are empty.
func checkVariant(p ocispecs.Platform) error {
	valid, known := variants[p.Architecture]
	if !known || p.Variant == "" {
		return nil
	}
	for _, v := range valid {
		if v == p.Variant {
			return nil
		}
	}
	if len(valid) == 0 {
		return fmt.Errorf("%s has no variants; leave out /%s", p.Architecture, p.Variant)
	}
	return fmt.Errorf("%s has no variant %s; use one of %s", p.Architecture, p.Variant, strings.Join(valid, ", "))
}

// ParseList parses --platform values: each may hold several platforms
// separated by commas. The result is normalised and de-duplicated in the
// order given ("arm64" and "linux/arm64/v8" are one platform); no values
// give an empty list.
func ParseList(values []string) ([]ocispecs.Platform, error) {
	var out []ocispecs.Platform
	seen := map[string]bool{}
	for _, v := range values {
		for _, s := range strings.Split(v, ",") {
			p, err := Parse(s)
			if err != nil {
				return nil, err
			}
			if key := Format(p); !seen[key] {
				seen[key] = true
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// Format formats p normalised, as "linux/arm/v7". A platform without an OS
// or an architecture (a manifest that does not say) is "unknown".
func Format(p ocispecs.Platform) string {
	if p.OS == "" || p.Architecture == "" {
		return "unknown"
	}
	return platforms.Format(platforms.Normalize(p))
}

// Strings formats each platform with Format.
func Strings(ps []ocispecs.Platform) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = Format(p)
	}
	return out
}

// FormatList joins platforms with commas, as BuildKit's "platform"
// attribute and the --platform flag take them: "linux/amd64,linux/arm64".
func FormatList(ps []ocispecs.Platform) string {
	return strings.Join(Strings(ps), ",")
}

// Describe joins platforms for messages: "linux/amd64, linux/arm64".
func Describe(ps []ocispecs.Platform) string {
	return strings.Join(Strings(ps), ", ")
}
