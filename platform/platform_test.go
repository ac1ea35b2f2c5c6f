package platform

import (
	"strings"
	"testing"

	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/usage"
)

func TestParseList(t *testing.T) {
	cases := []struct {
		in   []string
		want string
	}{
		{[]string{"arm64"}, "linux/arm64"},
		{[]string{"linux/amd64,linux/arm64"}, "linux/amd64,linux/arm64"},
		{[]string{"linux/amd64", "linux/arm64,linux/amd64"}, "linux/amd64,linux/arm64"},
		{[]string{"linux/amd64,arm64", "linux/arm64/v8", "windows/amd64"}, "linux/amd64,linux/arm64,windows/amd64"},
		{[]string{"linux/arm/v7", "armhf", "arm"}, "linux/arm/v7"},
		{[]string{"aarch64", "linux/arm64/v8"}, "linux/arm64"},
		{[]string{" linux/riscv64 "}, "linux/riscv64"},
		// ParseList does not judge whether kiln can build a platform.
		{[]string{"linux/arm65"}, "linux/arm65"},
		{nil, ""},
	}
	for _, c := range cases {
		ps, err := ParseList(c.in)
		if err != nil {
			t.Errorf("ParseList(%q): %v", c.in, err)
			continue
		}
		if got := FormatList(ps); got != c.want {
			t.Errorf("ParseList(%q) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestParseListRejects(t *testing.T) {
	for _, bad := range []string{"", "linux/amd64,", ",", "linux/", "not a platform!", "linux/nope!", "0/.", "linux/..", "linux/arm64/."} {
		_, err := ParseList([]string{bad})
		if !usage.Is(err) || !strings.HasPrefix(err.Error(), "invalid platform ") {
			t.Errorf("ParseList(%q) = %v, want a usage error starting \"invalid platform\"", bad, err)
		}
	}
}

// TestParseVariants: a variant its architecture does not have is a typo,
// refused with the valid ones; the real ones parse, normalised.
func TestParseVariants(t *testing.T) {
	for in, want := range map[string]string{
		"linux/amd64/v1": "linux/amd64", "linux/amd64/v3": "linux/amd64/v3", "linux/amd64/V4": "linux/amd64/v4",
		"linux/arm/5": "linux/arm/v5", "linux/arm/v8": "linux/arm/v8",
		"linux/arm64/v8": "linux/arm64", "linux/arm64/v8.2": "linux/arm64/v8.2", "linux/arm64/9.0": "linux/arm64/v9",
		"linux/arm64/v9.7": "linux/arm64/v9.7", "i386": "linux/386",
		// Architectures without a known set of variants are not judged.
		"linux/riscv64/rva22u64": "linux/riscv64/rva22u64",
	} {
		p, err := Parse(in)
		if err != nil || Format(p) != want {
			t.Errorf("Parse(%s) = %s, %v; want %s", in, Format(p), err, want)
		}
	}
	for in, want := range map[string]string{
		"linux/amd64/v9":  `invalid platform "linux/amd64/v9": amd64 has no variant v9; use one of v1, v2, v3, v4`,
		"linux/amd64/v0":  `invalid platform "linux/amd64/v0": amd64 has no variant v0; use one of v1, v2, v3, v4`,
		"linux/arm/v9":    `invalid platform "linux/arm/v9": arm has no variant v9; use one of v5, v6, v7, v8`,
		"linux/arm64/v7":  `invalid platform "linux/arm64/v7": arm64 has no variant v7; use one of v8, v8.1, v8.2, v8.3, v8.4, v8.5, v8.6, v8.7, v8.8, v8.9, v9, v9.1, v9.2, v9.3, v9.4, v9.5, v9.6, v9.7`,
		"linux/arm64/v10": `invalid platform "linux/arm64/v10": arm64 has no variant v10; use one of v8, v8.1, v8.2, v8.3, v8.4, v8.5, v8.6, v8.7, v8.8, v8.9, v9, v9.1, v9.2, v9.3, v9.4, v9.5, v9.6, v9.7`,
		"linux/386/v2":    `invalid platform "linux/386/v2": 386 has no variants; leave out /v2`,
	} {
		_, err := ParseList([]string{"linux/amd64," + in})
		if !usage.Is(err) || err.Error() != want {
			t.Errorf("ParseList(%s) = %v, want the usage error %s", in, err, want)
		}
	}
}

func TestParse(t *testing.T) {
	p, err := Parse(" armhf ")
	if err != nil || p.OS != "linux" || p.Architecture != "arm" || p.Variant != "v7" {
		t.Errorf("Parse(armhf) = %+v, %v", p, err)
	}
	// A comma is not part of one platform.
	if _, err := Parse("linux/amd64,linux/arm64"); err == nil {
		t.Error("Parse accepted two platforms")
	}
	_, err = Parse("")
	if want := `invalid platform "": give one like linux/amd64, linux/arm64 or linux/arm/v7`; err == nil || err.Error() != want {
		t.Errorf("Parse(\"\") = %v, want %s", err, want)
	}
}

func TestFormat(t *testing.T) {
	cases := []struct {
		in   ocispecs.Platform
		want string
	}{
		{ocispecs.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, "linux/arm64"},
		{ocispecs.Platform{OS: "linux", Architecture: "aarch64"}, "linux/arm64"},
		{ocispecs.Platform{OS: "linux", Architecture: "arm"}, "linux/arm/v7"},
		{ocispecs.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}, "linux/arm/v6"},
		{ocispecs.Platform{OS: "linux"}, "unknown"},
		{ocispecs.Platform{}, "unknown"},
	}
	for _, c := range cases {
		if got := Format(c.in); got != c.want {
			t.Errorf("Format(%+v) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestFormatListAndDescribe(t *testing.T) {
	ps, err := ParseList([]string{"amd64,arm64,linux/arm/v7"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := FormatList(ps), "linux/amd64,linux/arm64,linux/arm/v7"; got != want {
		t.Errorf("FormatList = %s, want %s", got, want)
	}
	if got, want := Describe(ps), "linux/amd64, linux/arm64, linux/arm/v7"; got != want {
		t.Errorf("Describe = %s, want %s", got, want)
	}
	if got := FormatList(nil); got != "" {
		t.Errorf("FormatList(nil) = %q", got)
	}
}

// FuzzParseList checks that any --platform value either fails with a
// usage error or gives platforms that parse back to themselves.
func FuzzParseList(f *testing.F) {
	for _, s := range []string{"linux/amd64", "arm64,linux/arm/v7", "linux/arm65", "windows/amd64", "", ",", "linux/amd64/v3", "aarch64", "linux/arm/v9/x", "linux/amd64/v9", "linux/arm64/v9.2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParseList([]string{s})
		if err != nil {
			if !usage.Is(err) {
				t.Fatalf("%q: %v is not a usage error", s, err)
			}
			return
		}
		for _, p := range ps {
			again, err := Parse(Format(p))
			if err != nil || Format(again) != Format(p) {
				t.Fatalf("%q: %s does not parse back to itself: %v %v", s, Format(p), again, err)
			}
		}
	})
}
