package emulation

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Handler is one registered binfmt_misc entry, as read from
// /proc/sys/fs/binfmt_misc/<name>.
type Handler struct {
	// Name is the entry's file name, e.g. "qemu-aarch64".
	Name string
	// Enabled is false when the entry was disabled (echo 0 > entry).
	Enabled bool
	// Interpreter is the program the kernel runs with the binary.
	Interpreter string
	// Flags are the entry's flag letters, e.g. "PF" or "POCF".
	Flags string
	// Offset, Magic and Mask are set for magic (M) entries.
	Offset      int
	Magic, Mask []byte
	// Extension is set for extension (E) entries.
	Extension string
}

// parseHandler parses the text of a binfmt_misc entry file:
//
//	enabled
//	interpreter /usr/bin/qemu-aarch64-static
//	flags: PF
//	offset 0
//	magic 7f454c46...
//	mask ffffffff...
func parseHandler(name, text string) (Handler, error) {
	h := Handler{Name: name}
	for _, line := range strings.Split(text, "\n") {
		key, value, _ := strings.Cut(strings.TrimSpace(line), " ")
		value = strings.TrimSpace(value)
		var err error
		switch key {
		case "enabled":
			h.Enabled = true
		case "disabled":
			h.Enabled = false
		case "interpreter":
			h.Interpreter = value
		case "flags:":
			h.Flags = value
		case "offset":
			h.Offset, err = strconv.Atoi(value)
		case "magic":
			h.Magic, err = hex.DecodeString(value)
		case "mask":
			h.Mask, err = hex.DecodeString(value)
		case "extension":
			h.Extension = value
		}
		if err != nil {
			return Handler{}, fmt.Errorf("parsing binfmt_misc entry %s: line %q: %w", name, line, err)
		}
	}
	if h.Interpreter == "" {
		return Handler{}, fmt.Errorf("parsing binfmt_misc entry %s: no interpreter line", name)
	}
	return h, nil
}

// Matches reports whether the handler, if enabled, claims a program whose
// first bytes are header.
func (h Handler) Matches(header []byte) bool {
	if !h.Enabled || h.Magic == nil {
		return false
	}
	return maskedMatch(header, h.Offset, h.Magic, h.Mask)
}

// IsQEMU reports whether kiln may treat the handler as a QEMU emulator it
// can remove: its name starts with "qemu-" and its interpreter path contains
// "qemu".
func (h Handler) IsQEMU() bool {
	return strings.HasPrefix(h.Name, "qemu-") && strings.Contains(h.Interpreter, "qemu")
}

// registerLine renders the handler back in the register file's format, to
// register it again elsewhere (another binfmt_misc instance) as it was.
func (h Handler) registerLine() string {
	flags := h.Flags
	if h.Extension != "" {
		return fmt.Sprintf(":%s:E::%s::%s:%s", h.Name, strings.TrimPrefix(h.Extension, "."), h.Interpreter, flags)
	}
	return fmt.Sprintf(":%s:M:%d:%s:%s:%s:%s", h.Name, h.Offset, escapeBytes(string(h.Magic)), escapeBytes(string(h.Mask)), h.Interpreter, flags)
}
