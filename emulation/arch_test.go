package emulation

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/platforms"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/platform"
)

func TestTableCoversPlatforms(t *testing.T) {
	want := map[string]string{ // platform -> QEMU arch
		"linux/amd64":    "x86_64",
		"linux/arm64":    "aarch64",
		"linux/arm/v7":   "arm",
		"linux/arm/v6":   "arm",
		"linux/386":      "i386",
		"linux/riscv64":  "riscv64",
		"linux/ppc64le":  "ppc64le",
		"linux/s390x":    "s390x",
		"linux/mips64le": "mips64el",
		"linux/loong64":  "loongarch64",
	}
	got := map[string]string{}
	for _, a := range Arches() {
		got[a.String()] = a.QEMUArch
		if a.Handler() != "qemu-"+a.QEMUArch {
			t.Errorf("%s: handler %q, want qemu-%s", a, a.Handler(), a.QEMUArch)
		}
		if len(a.Magic) != 20 || len(a.Mask) != 20 {
			t.Errorf("%s: magic/mask lengths %d/%d, want 20", a, len(a.Magic), len(a.Mask))
		}
		if !strings.HasPrefix(a.Magic, "\x7fELF") {
			t.Errorf("%s: magic does not start with the ELF signature", a)
		}
		if p := platforms.Normalize(a.Platform); platforms.Format(p) != a.String() {
			t.Errorf("%s: table platform is not normalised (%s)", a, platforms.Format(p))
		}
	}
	if len(got) != len(want) {
		t.Errorf("table has %d platforms, want %d: %v", len(got), len(want), got)
	}
	for p, q := range want {
		if got[p] != q {
			t.Errorf("%s: QEMU arch %q, want %q", p, got[p], q)
		}
	}
}

// TestTableMatchesProbes checks each row's pattern against the probe program
// for its architecture (BuildKit's), and that no row claims another
// architecture's probe: a wrong pattern would register a handler that never
// fires, or one that hijacks other programs.
func TestTableMatchesProbes(t *testing.T) {
	for _, a := range table {
		for _, b := range table {
			bin, err := probeBinary(b.Platform.Architecture)
			if err != nil {
				t.Fatal(err)
			}
			want := a.QEMUArch == b.QEMUArch
			if got := a.matches(bin); got != want {
				t.Errorf("pattern of %s matches the %s probe: %v, want %v", a, b, got, want)
			}
		}
	}
	// The host's own programs must never match a foreign row.
	self, err := os.ReadFile("/proc/self/exe")
	if err == nil {
		host := HostPlatform()
		for _, a := range table {
			if a.Platform.Architecture != host.Architecture && a.matches(self) {
				t.Errorf("pattern of %s matches this %s test binary", a, host.Architecture)
			}
		}
	}
}

// TestTableAgreesWithDebian compares the table with Debian's binfmt.d lines
// when qemu-user-static is installed: every Debian pattern must claim the
// same programs (kiln's may be wider where current QEMU is, mips64el).
func TestTableAgreesWithDebian(t *testing.T) {
	seen := 0
	for _, a := range table {
		path := "/usr/lib/binfmt.d/qemu-" + a.QEMUArch + ".conf"
		b, err := os.ReadFile(path)
		if err != nil {
			continue // Debian ships no line for the host's own architecture
		}
		seen++
		fields := strings.Split(strings.TrimSpace(string(b)), ":")
		if len(fields) != 8 || fields[1] != a.Handler() || fields[2] != "M" {
			t.Errorf("%s: unexpected line %q", path, b)
			continue
		}
		magic, mask := unescape(t, fields[4]), unescape(t, fields[5])
		if !a.matches(magic) {
			t.Errorf("%s: kiln's pattern does not match Debian's magic", a)
		}
		if a.QEMUArch != "mips64el" && (string(mask) != a.Mask) {
			t.Errorf("%s: mask % x, Debian's % x", a, a.Mask, mask)
		}
	}
	if seen == 0 {
		t.Skip("no /usr/lib/binfmt.d/qemu-*.conf (install qemu-user-static to compare)")
	}
}

func unescape(t *testing.T, s string) []byte {
	t.Helper()
	var out []byte
	for i := 0; i < len(s); {
		if strings.HasPrefix(s[i:], `\x`) && i+4 <= len(s) {
			var v byte
			for _, c := range s[i+2 : i+4] {
				v <<= 4
				switch {
				case c >= '0' && c <= '9':
					v |= byte(c - '0')
				case c >= 'a' && c <= 'f':
					v |= byte(c - 'a' + 10)
				case c >= 'A' && c <= 'F':
					v |= byte(c - 'A' + 10)
				default:
					t.Fatalf("bad escape in %q", s)
				}
			}
			out = append(out, v)
			i += 4
			continue
		}
		out = append(out, s[i])
		i++
	}
	return out
}

func TestParsePlatforms(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{[]string{"arm64"}, "linux/arm64"},
		{[]string{"aarch64"}, "linux/arm64"},
		{[]string{"linux/arm64"}, "linux/arm64"},
		{[]string{"linux/arm64/v8"}, "linux/arm64"},
		{[]string{"linux/arm/v7"}, "linux/arm/v7"},
		{[]string{"arm"}, "linux/arm/v7"},
		{[]string{"linux/arm"}, "linux/arm/v7"},
		{[]string{"armhf"}, "linux/arm/v7"},
		{[]string{"linux/arm/v6"}, "linux/arm/v6"},
		{[]string{"armel"}, "linux/arm/v6"},
		{[]string{"x86_64"}, "linux/amd64"},
		{[]string{"i386"}, "linux/386"},
		{[]string{"linux/riscv64,linux/s390x"}, "linux/riscv64 linux/s390x"},
		{[]string{"arm64", "linux/arm64"}, "linux/arm64"},
		{[]string{"mips64le", "loong64", "ppc64le"}, "linux/mips64le linux/loong64 linux/ppc64le"},
		{[]string{"all"}, "linux/amd64 linux/arm64 linux/arm/v7 linux/arm/v6 linux/386 linux/riscv64 linux/ppc64le linux/s390x linux/mips64le linux/loong64"},
		{[]string{"arm64", "ALL"}, "linux/arm64 linux/amd64 linux/arm/v7 linux/arm/v6 linux/386 linux/riscv64 linux/ppc64le linux/s390x linux/mips64le linux/loong64"},
	} {
		ps, err := ParsePlatforms(tc.in)
		if err != nil {
			t.Errorf("ParsePlatforms(%q): %v", tc.in, err)
			continue
		}
		if got := strings.Join(platform.Strings(ps), " "); got != tc.want {
			t.Errorf("ParsePlatforms(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{"", "bogus", "windows/amd64", "linux/mips64", "linux/ppc64", "linux/sparc64", "linux/*"} {
		_, err := ParsePlatforms([]string{bad})
		if !errors.Is(err, ErrUnknownPlatform) {
			t.Errorf("ParsePlatforms(%q): error %v, want ErrUnknownPlatform", bad, err)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("ParsePlatforms(%q): multi-line error %q", bad, err)
		}
	}
}

func TestLookupArchARMVariants(t *testing.T) {
	a, err := LookupArch(ocispecs.Platform{OS: "linux", Architecture: "arm", Variant: "v5"})
	if err != nil || a.QEMUArch != "arm" || a.String() != "linux/arm/v5" {
		t.Errorf("linux/arm/v5: %+v, %v", a, err)
	}
	a, err = LookupArch(ocispecs.Platform{OS: "linux", Architecture: "arm", Variant: "v6"})
	if err != nil || a.String() != "linux/arm/v6" {
		t.Errorf("linux/arm/v6: %+v, %v", a, err)
	}
	a, err = LookupArch(ocispecs.Platform{OS: "linux", Architecture: "amd64", Variant: "v3"})
	if err != nil || a.QEMUArch != "x86_64" || a.String() != "linux/amd64/v3" {
		t.Errorf("linux/amd64/v3: %+v, %v", a, err)
	}
}

func TestRunsNatively(t *testing.T) {
	p := func(s string) ocispecs.Platform { return platforms.MustParse(s) }
	for _, tc := range []struct {
		host, p string
		want    bool
	}{
		{"linux/amd64", "linux/amd64", true},
		{"linux/amd64", "linux/arm64", false},
		{"linux/amd64", "linux/386", false}, // decided by probing, not by definition
		{"linux/arm64", "linux/arm64", true},
		{"linux/arm64", "linux/amd64", false},
		{"linux/arm64", "linux/arm/v7", false},
		{"linux/arm/v7", "linux/arm/v6", true},
		{"linux/arm/v7", "linux/arm/v7", true},
		{"linux/arm/v6", "linux/arm/v7", false},
	} {
		if got := runsNatively(platforms.Normalize(p(tc.host)), platforms.Normalize(p(tc.p))); got != tc.want {
			t.Errorf("runsNatively(%s, %s) = %v, want %v", tc.host, tc.p, got, tc.want)
		}
	}
}

func TestRegisterLine(t *testing.T) {
	a, _ := LookupArch(platforms.MustParse("linux/arm64"))
	got := a.registerLine("/usr/bin/qemu-aarch64-static", HandlerFlags)
	want := `:qemu-aarch64:M:0:\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:FP`
	if got != want {
		t.Errorf("register line\n got %s\nwant %s", got, want)
	}
}

const aarch64Entry = `enabled
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: POCF
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
`

func TestParseHandler(t *testing.T) {
	h, err := parseHandler("qemu-aarch64", aarch64Entry)
	if err != nil {
		t.Fatal(err)
	}
	if !h.Enabled || h.Interpreter != "/usr/libexec/qemu-binfmt/aarch64-binfmt-P" || h.Flags != "POCF" || h.Offset != 0 || len(h.Magic) != 20 || len(h.Mask) != 20 {
		t.Errorf("parsed %+v", h)
	}
	if !h.IsQEMU() {
		t.Error("IsQEMU = false for Debian's handler")
	}
	arm64, _ := LookupArch(platforms.MustParse("linux/arm64"))
	amd64, _ := LookupArch(platforms.MustParse("linux/amd64"))
	if !h.Matches(probeHeaderOr(arm64)) {
		t.Error("handler does not match the arm64 probe")
	}
	if h.Matches(probeHeaderOr(amd64)) {
		t.Error("handler matches the amd64 probe")
	}
	want := ":qemu-aarch64:M:0:" + escapeBytes(arm64.Magic) + ":" + escapeBytes(arm64.Mask) + ":/usr/libexec/qemu-binfmt/aarch64-binfmt-P:POCF"
	if got := h.registerLine(); got != want {
		t.Errorf("registerLine\n got %s\nwant %s", got, want)
	}
	if got := platformsOfHandler(h); strings.Join(got, ",") != "linux/arm64" {
		t.Errorf("platformsOfHandler = %v", got)
	}

	d, err := parseHandler("qemu-arm", strings.Replace(strings.Replace(aarch64Entry, "enabled", "disabled", 1), "0200b700", "02002800", 1))
	if err != nil {
		t.Fatal(err)
	}
	if d.Enabled || d.Matches(probeHeaderOr(arm64)) {
		t.Errorf("disabled handler: %+v", d)
	}

	ext, err := parseHandler("python3.11", "enabled\ninterpreter /usr/bin/python3.11\nflags: \nextension .pyc\n")
	if err != nil || ext.Extension != ".pyc" || ext.Matches(probeHeaderOr(arm64)) || ext.IsQEMU() {
		t.Errorf("extension handler: %+v, %v", ext, err)
	}

	for _, tc := range []struct {
		name, interp string
		want         bool
	}{
		{"qemu-aarch64", "/usr/bin/qemu-aarch64-static", true},
		{"qemu-aarch64", "/usr/bin/box64", false},
		{"aarch64", "/usr/bin/qemu-aarch64-static", false},
		{"rosetta", "/media/rosetta/rosetta", false},
	} {
		if got := (Handler{Name: tc.name, Interpreter: tc.interp}).IsQEMU(); got != tc.want {
			t.Errorf("IsQEMU(%s, %s) = %v", tc.name, tc.interp, got)
		}
	}
	if _, err := parseHandler("x", "enabled\nmagic zz\n"); err == nil {
		t.Error("bad magic parsed")
	}
}

func TestParseKernelRelease(t *testing.T) {
	for in, want := range map[string][2]int{
		"6.18.44-fc-v769":    {6, 18},
		"6.7.0":              {6, 7},
		"6.1.0-28-amd64":     {6, 1},
		"5.15.0-1034-azure":  {5, 15},
		"6.10-rc1":           {6, 10},
		"garbage":            {0, 0},
		"4.19.0+1-something": {4, 19},
	} {
		maj, min := parseKernelRelease(in)
		if maj != want[0] || min != want[1] {
			t.Errorf("parseKernelRelease(%q) = %d.%d, want %d.%d", in, maj, min, want[0], want[1])
		}
	}
}

func TestIsInitialUIDMap(t *testing.T) {
	if !isInitialUIDMap("         0          0 4294967295\n") {
		t.Error("initial map not recognised")
	}
	if isInitialUIDMap("         0       1001          1\n") {
		t.Error("unprivileged map taken for the initial one")
	}
}

func TestInterpreterLookup(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvQEMUDir, dir)
	t.Setenv("PATH", "")
	// A static ELF program (the amd64 probe) stands in for an emulator.
	static, err := probeBinary("amd64")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "qemu-kilntest-static"), static, 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := Interpreter("kilntest")
	if err != nil || got != filepath.Join(dir, "qemu-kilntest-static") {
		t.Errorf("Interpreter = %q, %v", got, err)
	}

	// A dynamically linked emulator is passed over, and said so.
	dyn := dynamicELF(t)
	if dyn != "" {
		b, _ := os.ReadFile(dyn)
		if err := os.WriteFile(filepath.Join(dir, "qemu-kilndyn"), b, 0o755); err != nil {
			t.Fatal(err)
		}
		_, err := Interpreter("kilndyn")
		if !errors.Is(err, ErrNoInterpreter) || !strings.Contains(err.Error(), "dynamically linked") {
			t.Errorf("dynamic emulator: %v", err)
		}
	}

	// Not executable: ignored.
	if err := os.WriteFile(filepath.Join(dir, "qemu-kilnnox-static"), static, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Interpreter("kilnnox")
	want := `no QEMU interpreter for kilnnox found; install it with "apt-get install qemu-user-static"`
	if !errors.Is(err, ErrNoInterpreter) || err.Error() != want {
		t.Errorf("missing emulator: %v, want %s", err, want)
	}
}

// dynamicELF returns a dynamically linked program of this system, or "".
func dynamicELF(t *testing.T) string {
	for _, p := range []string{"/bin/sh", "/bin/true", "/usr/bin/env"} {
		if s, err := isStatic(p); err == nil && !s {
			return p
		}
	}
	t.Log("no dynamically linked program found; skipping that case")
	return ""
}
