//go:build !linux

// Command bench measures kiln against buildkitd + buildctl; it runs on Linux only.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "bench: kiln builds on Linux only; run the benchmarks there")
	os.Exit(1)
}
