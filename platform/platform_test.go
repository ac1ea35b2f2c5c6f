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
	for _, bad := range []string{"", "linux/amd64,", ",", "linux/", "not a platform!", "linux/nope!"} {
		_, err := ParseList([]string{bad})
		if !usage.Is(err) || !strings.HasPrefix(err.Error(), "invalid platform ") {
			t.Errorf("ParseList(%q) = %v, want a usage error starting \"invalid platform\"", bad, err)
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
	for _, s := range []string{"linux/amd64", "arm64,linux/arm/v7", "linux/arm65", "windows/amd64", "", ",", "linux/amd64/v3", "aarch64", "linux/arm/v9/x"} {
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
