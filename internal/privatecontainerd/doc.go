// Package privatecontainerd runs a containerd of a harness's own (the
// integration tests', the benchmarks'), with its own root, state and socket
// beside any containerd of the host: its config, start-up and stop, the
// daemons started beside it, and the clean-up of what it leaves behind
// (shims, mounts). It runs on Linux only.
package privatecontainerd
