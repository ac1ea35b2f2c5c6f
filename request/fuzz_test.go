package request

import (
	"testing"

	"github.com/containerd/platforms"
)

// FuzzParsePlatforms checks that any --platform value either fails with a
// usage error or gives platforms that parse back to themselves.
func FuzzParsePlatforms(f *testing.F) {
	for _, s := range []string{"linux/amd64", "arm64,linux/arm/v7", "linux/arm65", "windows/amd64", "", ",", "linux/amd64/v3", "aarch64", "linux/arm/v9/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParsePlatforms([]string{s})
		if err != nil {
			return
		}
		for _, p := range ps {
			again, err := ParsePlatform(platforms.Format(p))
			if err != nil || platforms.Format(again) != platforms.Format(p) {
				t.Fatalf("%q: %s does not parse back to itself: %v %v", s, platforms.Format(p), again, err)
			}
		}
	})
}

// FuzzParseOutput checks that --output values never panic and that a
// parsed output is one kiln can export.
func FuzzParseOutput(f *testing.F) {
	for _, s := range []string{"type=oci,dest=x.tar", "-", "dir", `type=image,"name=a,b",push=true`, "type=local", "type=", "=,=", `"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := ParseOutput(s)
		if err != nil {
			return
		}
		switch o.Type {
		case "image", "registry":
		case "oci", "docker", "tar", "local":
			if o.Dest == "" {
				t.Fatalf("%q: type %s without a destination", s, o.Type)
			}
		default:
			t.Fatalf("%q: unknown type %q accepted", s, o.Type)
		}
	})
}
