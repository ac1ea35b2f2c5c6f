package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/kiln-build/kiln/emulation"
	"github.com/kiln-build/kiln/engine"
	"github.com/kiln-build/kiln/internal/errmsg"
	"github.com/kiln-build/kiln/registry"
	"github.com/kiln-build/kiln/rootless"
	"github.com/kiln-build/kiln/snapshot"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/usage"
)

// The messages users saw before the hints moved out of store, word for word.
func TestWithHints(t *testing.T) {
	notFound := &store.NotFoundError{Name: "nosuch:1", Namespace: "default"}
	inUse := &store.InUseError{Name: "docker.io/library/inuse:1", Containers: []string{"user-of-inuse"}}
	layer := store.Blob{Kind: "layer", Digest: dgst("l")}
	incomplete := &store.IncompleteError{Name: "docker.io/library/app:1", Action: "push",
		Missing: []store.MissingContent{{Platform: "linux/amd64", Blobs: []store.Blob{layer}}}, Complete: []string{"linux/arm64"}}
	indexOnly := &store.IncompleteError{Name: "docker.io/library/app:1", Action: "save",
		Missing: []store.MissingContent{{Platform: "index", Blobs: []store.Blob{layer}}}}
	short := dgst("l").Encoded()[:12]
	cases := []struct {
		err  error
		want string
	}{
		{notFound, `image "nosuch:1" not found in namespace default: list images with "kiln images"`},
		{fmt.Errorf("tagging: %w", notFound), `tagging: image "nosuch:1" not found in namespace default: list images with "kiln images"`},
		{errmsg.Join(inUse, notFound), `image docker.io/library/inuse:1 is in use: container user-of-inuse uses it; remove the container first (ctr containers rm user-of-inuse) or remove the image anyway with --force; image "nosuch:1" not found in namespace default: list images with "kiln images"`},
		{incomplete, `image docker.io/library/app:1 is missing content for linux/amd64 (layer sha256:` + short + ` not present); pull it with "kiln pull --platform linux/amd64 app:1" or push with --platform linux/arm64`},
		{fmt.Errorf("cannot add app:1 to list: %w; a manifest list must hold all of its content to be pushed", indexOnly),
			`cannot add app:1 to list: image docker.io/library/app:1 is missing content for index (layer sha256:` + short + ` not present); pull it again with "kiln pull --all-platforms app:1"; a manifest list must hold all of its content to be pushed`},
		{&store.MissingManifestError{Name: "docker.io/library/app:1", Platform: "linux/arm64", Digest: dgst("m")},
			`the linux/arm64 manifest of image docker.io/library/app:1 (` + dgst("m").String() + `) is not in the content store: fetch it with "kiln pull --platform linux/arm64 app:1"`},
		{&store.AbsentPlatformsError{Name: "docker.io/library/app:1", Registry: "docker.io", Absent: []string{"linux/s390x"}, Have: []string{"linux/amd64", "linux/arm64"}},
			`image docker.io/library/app:1 in registry docker.io has no linux/s390x (it has linux/amd64, linux/arm64): pick one of those with --platform, or use --all-platforms`},
		{fmt.Errorf("cannot push r.example.com/a:1: %w", &registry.AuthError{Host: "r.example.com", Op: "push", Name: "r.example.com/a:1", Err: errors.New("401 Unauthorized")}),
			`cannot push r.example.com/a:1: registry r.example.com refused to let kiln push r.example.com/a:1 (401 Unauthorized): log in with "kiln login r.example.com" (kiln, docker and nerdctl share the login) or check that the repository exists and you may push it`},
		{errors.New("plain"), "plain"},
	}
	checkHints(t, cases)
	// Hints keep what the exit code depends on.
	if err := withHints(usage.Wrap(&store.KindError{Kind: "docker"})); !usage.Is(err) || err.Error() != `invalid --store "docker": use auto, containerd or embedded` {
		t.Errorf("withHints lost the usage mark or the words: %v", err)
	}
	if err := withHints(usage.Wrap(notFound)); !usage.Is(err) || !errdefs.IsNotFound(err) {
		t.Errorf("withHints lost the usage mark or the cause: %v", err)
	}
}

// The typed errors of store, registry, engine, snapshot, rootless and
// emulation, with the hints cmd/kiln adds: word for word the messages kiln
// printed when the libraries named commands and flags themselves.
func TestWithHintsLibraries(t *testing.T) {
	eperm := &fs.PathError{Op: "mkdir", Path: "/r", Err: fs.ErrPermission}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	unknownCA := errors.New("tls: failed to verify certificate: x509: certificate signed by unknown authority")
	checkHints(t, []struct {
		err  error
		want string
	}{
		{usage.Wrap(&store.DigestError{Arg: "sha256:abc"}), `invalid digest "sha256:abc": give "sha256:" and at least 12 hex digits, as "kiln images -q" prints`},
		{&store.ExistsError{Name: "docker.io/library/app:1"}, `image app:1 already exists: add to it with "kiln manifest create --amend", or remove it first with "kiln manifest rm app:1"`},
		{&store.NotListError{Name: "docker.io/library/app:1", Given: "app:1", Action: "annotate"}, `image app:1 is a single manifest, not a manifest list: make one with "kiln manifest create"`},
		{errmsg.Join(&store.NotListError{Name: "docker.io/library/app:1", Given: "app:1", Action: "remove"}), `image app:1 is a single manifest, not a manifest list: remove it with "kiln rm app:1"`},
		{&store.ArchiveError{Err: errors.New("unexpected EOF")}, `loading the image archive: unexpected EOF; kiln loads archives written by "kiln save", "docker save" or as OCI image layout tars`},
		{&store.StateDirError{Doing: "creating kiln's embedded store in", Path: "/r/embedded", Err: eperm}, "creating kiln's embedded store in /r/embedded: mkdir /r: permission denied (choose another state directory with --root)"},
		{&store.SnapshotterError{Snapshotter: "overlayfs", Err: errors.New("broken")}, `checking whether layers are unpacked in snapshotter "overlayfs": broken; pick another with --snapshotter`},
		{fmt.Errorf("pulling app:1: %w", &registry.UnreachableError{Host: "r.example.com", TLS: true, Err: errors.New("tls: bad\ncertificate")}),
			"pulling app:1: cannot reach registry r.example.com over HTTPS (tls: bad certificate): check the address; if the registry serves plain HTTP, use --insecure-registry"},
		{&registry.UnreachableError{Host: "r.example.com", HostsFile: "/h/r.example.com/hosts.toml", Err: refused},
			`cannot reach registry r.example.com (dial tcp: connection refused): check the address and that the registry is running; if it serves plain HTTP, write server = "http://r.example.com" in /h/r.example.com/hosts.toml or use --insecure-registry`},
		{&registry.UnreachableError{Host: "127.0.0.1:5000", Loopback: true, Err: refused},
			"cannot reach registry 127.0.0.1:5000 (dial tcp: connection refused): check the address and that the registry is running (kiln tries HTTPS, then plain HTTP, on loopback registries; elsewhere --insecure-registry allows plain HTTP)"},
		{&registry.CertificateError{Registry: "r.example.com", Server: "m.example.com", HostsFile: "/h/r.example.com/hosts.toml", Err: unknownCA},
			`registry r.example.com (served by m.example.com) presented a TLS certificate signed by an unknown authority (x509: certificate signed by unknown authority): trust its CA with ca = "/path/to/ca.crt" under [host."https://m.example.com"] in /h/r.example.com/hosts.toml, or use --insecure-registry`},
		{&registry.CertificateError{Registry: "r.example.com", Server: "r.example.com", Build: true, Err: unknownCA},
			"registry r.example.com presented a TLS certificate signed by an unknown authority (x509: certificate signed by unknown authority): trust its CA in a hosts.toml of a --hosts-dir directory, or skip verifying it with skip_verify = true there"},
		{&store.SocketError{Address: "/x.sock", Missing: true}, `containerd is not running at /x.sock (no such socket): start it (for example "systemctl start containerd") or point --address / CONTAINERD_ADDRESS at its socket`},
		{&store.SocketError{Address: "/x.sock"}, "containerd address /x.sock is not a socket: point --address / CONTAINERD_ADDRESS at containerd's socket (usually " + store.DefaultAddress + ")"},
		{&store.PermissionError{Address: "/x.sock"}, "cannot reach containerd at /x.sock: permission denied: run kiln as root, or as a member of the socket's group"},
		{&store.PermissionError{Address: "/x.sock", Rootless: true}, "cannot reach containerd at /x.sock: permission denied: use your own rootless containerd (the default --address, " + rootless.DefaultAddress() + "), or run kiln as root"},
		{usage.Wrap(&engine.KeepStorageError{Value: "lots", Problem: "not a size"}), `invalid --gc-keep-storage "lots": not a size; give a size such as 10GB, a percentage of the disk such as 10%, or turn the collection off with --gc=false`},
		{usage.Wrap(&engine.KubernetesNamespaceError{Namespace: "ci"}), `--k8s builds into the namespace k8s.io, not "ci": leave out --namespace`},
		{usage.Wrap(&store.KubernetesError{Embedded: true}), "--k8s builds into a Kubernetes node's containerd, not --store embedded: leave out one of them"},
		{&store.KubernetesError{Sockets: "/k.sock"}, "--k8s found no Kubernetes containerd: none answers at /k.sock (k3s, RKE2, MicroK8s); start it, build as root (its socket is root's), or give its socket with --address"},
		{fmt.Errorf("%w: %w", &engine.RuncMissingError{}, errors.New(`exec: "runc": executable file not found in $PATH`)),
			`kiln's embedded store runs build steps with runc, which is not installed: install the runc package, or use a containerd with --store containerd: exec: "runc": executable file not found in $PATH`},
		{&store.StateDirError{Doing: "creating kiln's state directory", Path: "/r", IsRoot: true, Err: eperm}, "creating kiln's state directory /r: mkdir /r: permission denied (choose another with --root)"},
		{&store.StateDirError{Doing: "opening kiln's lock file", Path: "/r/kiln.lock", Err: eperm}, "opening kiln's lock file /r/kiln.lock: mkdir /r: permission denied (choose another state directory with --root)"},
		{usage.Wrap(&snapshot.ChoiceError{Name: "zfs", Have: []string{"native", "overlayfs"}}), `containerd has no snapshotter "zfs" (it has native, overlayfs): choose one of those with --snapshotter or CONTAINERD_SNAPSHOTTER`},
		{&snapshot.ChoiceError{Name: "blockfile", Err: errors.New("skip plugin")}, "containerd's blockfile snapshotter did not load (skip plugin): fix containerd's configuration, or choose another with --snapshotter (it has none)"},
		{usage.Wrap(&snapshot.ChoiceError{Name: "zfs", Embedded: true, Have: []string{"overlayfs", "native"}}), `the embedded store has no snapshotter "zfs": choose overlayfs, native with --snapshotter or CONTAINERD_SNAPSHOTTER, or leave it out to let kiln choose`},
		{&snapshot.ChoiceError{Name: "overlayfs", Embedded: true, Have: []string{"overlayfs", "native"}, Where: "in /s", Err: errors.New("refused")},
			"the overlayfs snapshotter does not work in /s: refused: choose another with --snapshotter (overlayfs, native), or leave it out to let kiln choose"},
		{&rootless.NoSocketError{User: "me", StateDir: "/run/user/1000/containerd-rootless", Address: "/x.sock"},
			"RootlessKit runs for me (state in /run/user/1000/containerd-rootless) but no containerd socket is at /x.sock: check that containerd started inside it (see its log), or point --address / CONTAINERD_ADDRESS at its socket"},
		{&emulation.PlatformError{Platforms: []string{"linux/arm64"}, Err: &emulation.InstallError{Err: emulation.ErrNoHandler, Platforms: []string{"linux/arm64"}}},
			`platform linux/arm64 cannot run on this host: no binfmt_misc handler runs its programs; run "kiln emulation install linux/arm64"`},
		{&emulation.PlatformError{Platforms: []string{"linux/arm64", "linux/s390x"}, Err: &emulation.InstallError{Err: emulation.ErrNoHandler, Platforms: []string{"linux/arm64", "linux/s390x"}, NeedsRoot: true}},
			`platforms linux/arm64, linux/s390x cannot run on this host: no binfmt_misc handler runs its programs; run "sudo kiln emulation install linux/arm64 linux/s390x"`},
		{&emulation.InstallError{Err: emulation.ErrNeedsRoot, Platforms: []string{"linux/arm64"}, NeedsRoot: true},
			`registering binfmt_misc handlers on the host needs root; run "sudo kiln emulation install linux/arm64" (or run kiln inside a user namespace it owns, on Linux 6.7 or newer)`},
		{&emulation.InstallError{Err: fmt.Errorf("%w (this kernel is 6.1.0)", emulation.ErrKernelTooOld), Platforms: []string{"linux/arm64"}, NeedsRoot: true},
			`binfmt_misc in a user namespace needs Linux 6.7 or newer (this kernel is 6.1.0); as root on the host, run "sudo kiln emulation install linux/arm64"`},
		{&emulation.UninstallError{Handler: "qemu-aarch64", Platform: "linux/arm64", Err: fs.ErrPermission},
			`removing handler qemu-aarch64 needs root: permission denied; run "sudo kiln emulation uninstall linux/arm64"`},
	})
}

func checkHints(t *testing.T, cases []struct {
	err  error
	want string
}) {
	t.Helper()
	for _, c := range cases {
		got := withHints(c.err)
		if got.Error() != c.want {
			t.Errorf("withHints(%q)\n got %s\nwant %s", c.err, got, c.want)
		}
		if !errors.Is(got, c.err) {
			t.Errorf("withHints(%q) does not unwrap to the error", c.err)
		}
	}
}

// kiln info's reasons, as the libraries gave them when they named options.
func TestStoreReason(t *testing.T) {
	for sel, want := range map[store.Selection]string{
		{Kind: store.KindEmbedded, Why: store.Chosen}:                                                                "chosen with --store embedded or KILN_STORE",
		{Kind: store.KindContainerd, Why: store.Chosen}:                                                              "chosen with --store containerd or KILN_STORE",
		{Kind: store.KindContainerd, Why: store.AddressGiven, Address: "/s"}:                                         "--address or CONTAINERD_ADDRESS names containerd's socket /s",
		{Kind: store.KindEmbedded, Why: store.NoSocket, Address: "/s"}:                                               "no containerd socket at /s and no --address or CONTAINERD_ADDRESS given",
		{Kind: store.KindContainerd, Why: store.SocketFound, Address: "/s"}:                                          "containerd's socket is at /s",
		{Kind: store.KindContainerd, Why: store.KubernetesFound, Address: "/k", Kubernetes: "k3s", Unanswered: "/s"}: "no containerd answers at /s; k3s's does at /k",
		{Kind: store.KindContainerd, Why: store.KubernetesAsked, Address: "/k", Kubernetes: "k3s"}:                   "--k8s: k3s's containerd answers at /k",
	} {
		if got := storeReason(sel); got != want {
			t.Errorf("storeReason(%+v) = %q, want %q", sel, got, want)
		}
	}
}
