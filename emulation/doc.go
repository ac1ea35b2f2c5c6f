// Package emulation makes foreign-architecture build steps run: it knows the
// architectures kiln builds for, finds out which of them this host actually
// runs (natively or through a binfmt_misc handler), and registers or removes
// QEMU user-mode emulators as binfmt_misc handlers.
//
// Detection never trusts configuration alone: a platform counts as runnable
// only when a tiny probe program for it (BuildKit's util/archutil probes)
// really executes. Handlers are registered with the flags "FP": the kernel
// opens the interpreter at registration (F), so it works inside containers
// and other mount namespaces, and argv[0] is preserved (P).
//
// As root in the initial user namespace handlers are registered on the host
// and are visible to every process. Without root, Linux 6.7 and newer give
// each user namespace its own binfmt_misc instance: inside a user namespace
// whose mount namespace it owns (for example "unshare -Urm", or RootlessKit's
// namespaces) kiln mounts a fresh binfmt_misc at /proc/sys/fs/binfmt_misc
// and registers there; the handlers then serve that user namespace and the
// namespaces nested in it, and the host is unaffected.
package emulation
