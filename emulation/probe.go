package emulation

//go:generate go run gen_probes.go

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"sync"
)

var (
	probeMu    sync.Mutex
	probeCache = map[string][]byte{}
)

// probeBinary returns the uncompressed probe program for a GOARCH.
func probeBinary(goarch string) ([]byte, error) {
	probeMu.Lock()
	defer probeMu.Unlock()
	if b, ok := probeCache[goarch]; ok {
		return b, nil
	}
	gz, ok := probeBinaries[goarch]
	if !ok {
		return nil, fmt.Errorf("no probe program for %s", goarch)
	}
	r, err := gzip.NewReader(bytes.NewReader([]byte(gz)))
	if err != nil {
		return nil, fmt.Errorf("decompressing the %s probe program: %w", goarch, err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("decompressing the %s probe program: %w", goarch, err)
	}
	probeCache[goarch] = b
	return b, nil
}

// probeHeaderOr returns the first bytes of a's probe program, which is what
// binfmt_misc matches handlers against, or a's own magic if there is none.
func probeHeaderOr(a Arch) []byte {
	b, err := probeBinary(a.Platform.Architecture)
	if err != nil {
		return []byte(a.Magic)
	}
	if len(b) > 128 {
		b = b[:128]
	}
	return b
}

// probeSucceeded interprets a probe's exit status: BuildKit's amd64 probe
// exits with 64 + its x86-64 micro-architecture level, the others with 0.
func probeSucceeded(goarch string, exitCode int) bool {
	if goarch == "amd64" {
		return exitCode >= 65 && exitCode <= 68
	}
	return exitCode == 0
}
