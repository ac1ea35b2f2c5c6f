package emulation

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/platforms"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/platform"
)

// Package is the Debian/Ubuntu package that ships statically linked QEMU
// user-mode emulators for every architecture in the table.
const Package = "qemu-user-static"

// HandlerFlags are the binfmt_misc flags kiln registers handlers with: F opens
// the interpreter at registration so the handler works in containers and
// other mount namespaces, P passes the original argv[0] to the program.
const HandlerFlags = "FP"

// Arch is one row of kiln's architecture table: a Linux platform, the QEMU
// user-mode emulator that runs it and the ELF header pattern binfmt_misc uses
// to recognise its programs.
type Arch struct {
	// Platform is the normalised OCI platform, e.g. linux/arm64 or linux/arm/v7.
	Platform ocispecs.Platform
	// QEMUArch is QEMU's name for the architecture, e.g. "aarch64"; the
	// emulator is qemu-<QEMUArch>[-static].
	QEMUArch string
	// Magic and Mask are the binfmt_misc pattern (offset 0) as raw bytes, as
	// in QEMU's scripts/qemu-binfmt-conf.sh and Debian's
	// /usr/lib/binfmt.d/qemu-*.conf.
	Magic, Mask string
}

// Handler is the binfmt_misc handler name for the architecture,
// "qemu-<QEMUArch>", the name Debian's qemu-user-static and
// tonistiigi/binfmt register, so handlers they installed are recognised.
func (a Arch) Handler() string { return "qemu-" + a.QEMUArch }

// String is the platform, e.g. "linux/arm/v7".
func (a Arch) String() string { return platforms.Format(a.Platform) }

// registerLine is the line written to binfmt_misc's register file:
// ":name:M:offset:magic:mask:interpreter:flags", bytes escaped as \xHH.
func (a Arch) registerLine(interpreter, flags string) string {
	return fmt.Sprintf(":%s:M:0:%s:%s:%s:%s", a.Handler(), escapeBytes(a.Magic), escapeBytes(a.Mask), interpreter, flags)
}

// matches reports whether an ELF header matches the architecture's pattern,
// as the kernel checks it.
func (a Arch) matches(header []byte) bool {
	return maskedMatch(header, 0, []byte(a.Magic), []byte(a.Mask))
}

// elfPattern builds a 20-byte ELF identification + e_type + e_machine pattern.
// class: 1 (32-bit) or 2 (64-bit); data: 1 (little) or 2 (big endian).
func elfPattern(class, data byte, machine uint16) string {
	b := []byte{0x7f, 'E', 'L', 'F', class, data, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if data == 1 {
		b = append(b, 2, 0, byte(machine), byte(machine>>8)) // ET_EXEC, little endian
	} else {
		b = append(b, 0, 2, byte(machine>>8), byte(machine))
	}
	return string(b)
}

// The masks ignore EI_OSABI (and, where QEMU does, parts of EI_ABIVERSION)
// and the low bit of e_type, so both ET_EXEC and ET_DYN (PIE) programs match.
// mips64le follows current QEMU and ignores EI_ABIVERSION entirely (Debian
// 12's table still checks it, and misses programs with ABI version 5, such
// as BuildKit's mips64le probe).
const (
	maskCommon  = "\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
	maskX86     = "\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
	maskPPC64LE = "\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\x00"
	maskS390X   = "\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff"
	maskMIPS64E = "\xff\xff\xff\xff\xff\xff\xff\x00\x00\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
	maskLoong64 = "\xff\xff\xff\xff\xff\xff\xff\xfc\x00\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
)

func linux(arch, variant string) ocispecs.Platform {
	return ocispecs.Platform{OS: "linux", Architecture: arch, Variant: variant}
}

// table is kiln's architecture table. linux/arm/v6 and linux/arm/v7 share the
// qemu-arm handler.
var table = []Arch{
	{Platform: linux("amd64", ""), QEMUArch: "x86_64", Magic: elfPattern(2, 1, 62), Mask: maskX86},
	{Platform: linux("arm64", ""), QEMUArch: "aarch64", Magic: elfPattern(2, 1, 183), Mask: maskCommon},
	{Platform: linux("arm", "v7"), QEMUArch: "arm", Magic: elfPattern(1, 1, 40), Mask: maskCommon},
	{Platform: linux("arm", "v6"), QEMUArch: "arm", Magic: elfPattern(1, 1, 40), Mask: maskCommon},
	{Platform: linux("386", ""), QEMUArch: "i386", Magic: elfPattern(1, 1, 3), Mask: maskX86},
	{Platform: linux("riscv64", ""), QEMUArch: "riscv64", Magic: elfPattern(2, 1, 243), Mask: maskCommon},
	{Platform: linux("ppc64le", ""), QEMUArch: "ppc64le", Magic: elfPattern(2, 1, 21), Mask: maskPPC64LE},
	{Platform: linux("s390x", ""), QEMUArch: "s390x", Magic: elfPattern(2, 2, 22), Mask: maskS390X},
	{Platform: linux("mips64le", ""), QEMUArch: "mips64el", Magic: elfPattern(2, 1, 8), Mask: maskMIPS64E},
	{Platform: linux("loong64", ""), QEMUArch: "loongarch64", Magic: elfPattern(2, 1, 258), Mask: maskLoong64},
}

// Arches returns a copy of kiln's architecture table, one row per platform.
func Arches() []Arch { return slices.Clone(table) }

// AllPlatforms returns every platform in the table, in table order.
func AllPlatforms() []ocispecs.Platform {
	out := make([]ocispecs.Platform, len(table))
	for i, a := range table {
		out[i] = a.Platform
	}
	return out
}

// ErrUnknownPlatform is wrapped by errors for platforms that are not in
// kiln's architecture table or cannot be parsed.
var ErrUnknownPlatform = errors.New("unknown platform")

// LookupArch returns the table row for a platform. Variants the table does
// not list (linux/arm/v5, linux/arm/v8, linux/amd64/v3, linux/arm64/v9) map
// to their architecture's row, with Platform set to the platform asked for.
func LookupArch(p ocispecs.Platform) (Arch, error) {
	p = platforms.Normalize(p)
	if p.OS != "linux" {
		return Arch{}, fmt.Errorf("%w %s: emulation only runs Linux programs", ErrUnknownPlatform, platforms.Format(p))
	}
	var byArch *Arch
	for i, a := range table {
		if a.Platform.Architecture != p.Architecture {
			continue
		}
		if a.Platform.Variant == p.Variant {
			return a, nil
		}
		if byArch == nil {
			byArch = &table[i]
		}
	}
	if byArch != nil {
		a := *byArch
		a.Platform = p
		return a, nil
	}
	return Arch{}, fmt.Errorf("%w %s: kiln emulates %s", ErrUnknownPlatform, platforms.Format(p), strings.Join(tablePlatformNames(), ", "))
}

func tablePlatformNames() []string {
	var names []string
	for _, a := range table {
		names = append(names, platforms.Format(a.Platform))
	}
	return names
}

// ParsePlatforms parses platform arguments such as "arm64", "linux/arm64",
// "aarch64" or "linux/arm/v7" (several may be joined with commas), and "all"
// for every platform in the table. The result is normalised, de-duplicated
// and in the order given. Every platform must be in the table.
func ParsePlatforms(args []string) ([]ocispecs.Platform, error) {
	var out []ocispecs.Platform
	seen := map[string]bool{}
	add := func(p ocispecs.Platform) {
		if k := platform.Format(p); !seen[k] {
			seen[k] = true
			out = append(out, p)
		}
	}
	for _, arg := range args {
		for _, s := range strings.Split(arg, ",") {
			s = strings.TrimSpace(s)
			if strings.EqualFold(s, "all") {
				for _, p := range AllPlatforms() {
					add(p)
				}
				continue
			}
			p, err := ParsePlatform(s)
			if err != nil {
				return nil, err
			}
			add(p)
		}
	}
	return out, nil
}

// ParsePlatform parses and normalises one platform with platform.Parse and
// checks that it is in the architecture table. Its errors wrap
// ErrUnknownPlatform and, unlike platform.Parse's, mention "all", which
// the emulation commands accept.
func ParsePlatform(s string) (ocispecs.Platform, error) {
	p, err := platform.Parse(s)
	if err != nil {
		return ocispecs.Platform{}, fmt.Errorf("%w %q: give one like linux/arm64, arm64 or linux/arm/v7, or \"all\"", ErrUnknownPlatform, s)
	}
	a, err := LookupArch(p)
	if err != nil {
		return ocispecs.Platform{}, err
	}
	return a.Platform, nil
}

// HostPlatform is the platform this host runs natively (normalised).
func HostPlatform() ocispecs.Platform {
	return platforms.Normalize(platforms.DefaultSpec())
}

// runsNatively reports whether host runs p's programs without emulation by
// its definition: the same architecture, and for ARM a variant no newer than
// the host's. Other natively runnable pairs (386 on most amd64 kernels, arm
// on arm64 CPUs with AArch32) are found by probing instead.
func runsNatively(host, p ocispecs.Platform) bool {
	if host.OS != p.OS || host.Architecture != p.Architecture {
		return false
	}
	if p.Architecture != "arm" {
		return true
	}
	return armLevel(p.Variant) <= armLevel(host.Variant)
}

func armLevel(variant string) int {
	if len(variant) == 2 && variant[0] == 'v' && variant[1] >= '5' && variant[1] <= '8' {
		return int(variant[1] - '0')
	}
	return 7
}

// escapeBytes renders every byte as \xHH, the form binfmt_misc's register
// file parses (a raw ':' or '\' would break the line).
func escapeBytes(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "\\x%02x", s[i])
	}
	return b.String()
}

// maskedMatch is the kernel's test: every byte of data at offset, masked,
// equals the magic.
func maskedMatch(data []byte, offset int, magic, mask []byte) bool {
	if offset < 0 || len(data) < offset+len(magic) {
		return false
	}
	for i := range magic {
		m := byte(0xff)
		if mask != nil {
			if i >= len(mask) {
				return false
			}
			m = mask[i]
		}
		if (data[offset+i]^magic[i])&m != 0 {
			return false
		}
	}
	return true
}
