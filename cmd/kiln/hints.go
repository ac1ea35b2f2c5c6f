package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kiln-build/kiln/emulation"
	"github.com/kiln-build/kiln/engine"
	"github.com/kiln-build/kiln/history"
	"github.com/kiln-build/kiln/internal/errmsg"
	"github.com/kiln-build/kiln/registry"
	"github.com/kiln-build/kiln/rootless"
	"github.com/kiln-build/kiln/snapshot"
	"github.com/kiln-build/kiln/store"
)

// withHints adds to the libraries' typed errors the next step for the user,
// which names kiln commands and flags and so is the command line's to say:
// store returns `image "x" not found in namespace default`, kiln prints
// `...: list images with "kiln images"`. Each hint goes right after its
// error's own text, wherever that sits in the message (wrapped in context,
// or joined with other errors), so messages read as they always have. The
// few errors whose sentence starts with the option are said anew (see
// reworded). The result still unwraps to err.
func withHints(err error) error {
	msg := err.Error()
	out := msg
	done := map[string]bool{}
	walkErrors(err, func(e error) {
		text := e.Error()
		if done[text] {
			return
		}
		shown := reworded(e)
		if shown == "" {
			if h := hint(e); h != "" {
				shown = text + h
			}
		}
		if shown == "" {
			return
		}
		done[text] = true
		out = strings.ReplaceAll(out, text, shown)
	})
	if out == msg {
		return err
	}
	return errmsg.New(out, err)
}

// reworded is what kiln says in place of e's own text when that sentence
// names an option the library does not know by its flag, or "".
func reworded(e error) string {
	switch e := e.(type) {
	case *store.KindError:
		return fmt.Sprintf("invalid --store %q: use %s, %s or %s", e.Kind, store.KindAuto, store.KindContainerd, store.KindEmbedded)
	case *engine.KubernetesNamespaceError:
		return fmt.Sprintf("--k8s builds into the namespace %s, not %q: leave out --namespace", store.KubernetesNamespace, e.Namespace)
	case *store.KubernetesError:
		if e.Embedded {
			return "--k8s builds into a Kubernetes node's containerd, not --store embedded: leave out one of them"
		}
		return "--k8s " + e.Error() + "; start it, build as root (its socket is root's), or give its socket with --address"
	case *engine.KeepStorageError:
		return fmt.Sprintf("invalid --gc-keep-storage %q: %s; give a size such as 10GB, a percentage of the disk such as 10%%, or turn the collection off with --gc=false", e.Value, e.Problem)
	}
	return ""
}

// hint is the text to add after e's own message, or "".
func hint(e error) string {
	if h := storeHint(e); h != "" {
		return h
	}
	if h := registryHint(e); h != "" {
		return h
	}
	switch e := e.(type) {
	case *engine.RuncMissingError:
		return ", or use a containerd with --store containerd"
	case *snapshot.ChoiceError:
		return snapshotterHint(e)
	case *rootless.NoSocketError:
		return ", or point --address / CONTAINERD_ADDRESS at its socket"
	case *emulation.InstallError:
		run := installCommand(e.Platforms, e.NeedsRoot)
		switch {
		case errors.Is(e.Err, emulation.ErrNoHandler):
			return fmt.Sprintf("; run %q", run)
		case errors.Is(e.Err, emulation.ErrNeedsRoot):
			return fmt.Sprintf("; run %q (or run kiln inside a user namespace it owns, on Linux 6.7 or newer)", run)
		}
		return fmt.Sprintf("; as root on the host, run %q", run)
	case *emulation.UninstallError:
		return fmt.Sprintf(`; run "sudo kiln emulation uninstall %s"`, e.Platform)
	}
	return ""
}

// storeHint is hint for the store's errors.
func storeHint(e error) string {
	switch e := e.(type) {
	case *engine.RootError:
		return rootFixes[e.Fix]
	case *store.NotFoundError:
		return `: list images with "kiln images"`
	case *history.NotFoundError:
		return `: list the recorded builds with "kiln history ls"`
	case *store.InUseError:
		return fmt.Sprintf("; remove the container first (ctr containers rm %s) or remove the image anyway with --force", strings.Join(e.Containers, " "))
	case *store.MissingManifestError:
		return fmt.Sprintf(`: fetch it with "kiln pull --platform %s %s"`, e.Platform, store.FamiliarName(e.Name))
	case *store.AbsentPlatformsError:
		return ": pick one of those with --platform, or use --all-platforms"
	case *store.IncompleteError:
		return incompleteHint(e)
	case *store.DigestError:
		return `, as "kiln images -q" prints`
	case *store.ExistsError:
		name := store.FamiliarName(e.Name)
		return fmt.Sprintf(`: add to it with "kiln manifest create --amend", or remove it first with "kiln manifest rm %s"`, name)
	case *store.NotListError:
		if e.Action == "remove" {
			return fmt.Sprintf(`: remove it with "kiln rm %s"`, e.Given)
		}
		return `: make one with "kiln manifest create"`
	case *store.ArchiveError:
		return `; kiln loads archives written by "kiln save", "docker save" or as OCI image layout tars`
	case *store.StateDirError:
		if e.IsRoot {
			return " (choose another with --root)"
		}
		return " (choose another state directory with --root)"
	case *store.SnapshotterError:
		return "; pick another with --snapshotter"
	case *store.SocketError:
		if e.Missing {
			return `: start it (for example "systemctl start containerd") or point --address / CONTAINERD_ADDRESS at its socket`
		}
		return fmt.Sprintf(": point --address / CONTAINERD_ADDRESS at containerd's socket (usually %s)", store.DefaultAddress)
	case *store.PermissionError:
		if e.Rootless {
			return fmt.Sprintf(": use your own rootless containerd (the default --address, %s), or run kiln as root", rootless.DefaultAddress())
		}
		return ": run kiln as root, or as a member of the socket's group"
	}
	return ""
}

// registryHint is hint for the errors of reaching a registry.
func registryHint(e error) string {
	switch e := e.(type) {
	case *registry.AuthError:
		return fmt.Sprintf(`: log in with "kiln login %s" (kiln, docker and nerdctl share the login) or check that the repository exists and you may %s it`, e.Host, e.Op)
	case *registry.CertificateError:
		return certificateHint(e)
	case *registry.UnreachableError:
		switch {
		case e.TLS:
			return ": check the address; if the registry serves plain HTTP, " + plainHTTPHint(e)
		case e.Loopback:
			return ": check the address and that the registry is running (kiln tries HTTPS, then plain HTTP, on loopback registries; elsewhere --insecure-registry allows plain HTTP)"
		}
		return ": check the address and that the registry is running; if it serves plain HTTP, " + plainHTTPHint(e)
	}
	return ""
}

// plainHTTPHint says how to reach e's registry over plain HTTP.
func plainHTTPHint(e *registry.UnreachableError) string {
	if e.HostsFile != "" {
		return fmt.Sprintf("write server = \"http://%s\" in %s or use --insecure-registry", e.Host, e.HostsFile)
	}
	return "use --insecure-registry"
}

// certificateHint says how to trust the CA of e's server: in its
// hosts.toml, or with --insecure-registry where the command has it (kiln
// build reads only hosts.toml).
func certificateHint(e *registry.CertificateError) string {
	fix := ": trust its CA in a hosts.toml of a --hosts-dir directory"
	if e.HostsFile != "" {
		where := ""
		if e.Mirror() {
			where = fmt.Sprintf(" under [host.\"https://%s\"]", e.Server)
		}
		fix = fmt.Sprintf(": trust its CA with ca = \"/path/to/ca.crt\"%s in %s", where, e.HostsFile)
	}
	if e.Build {
		return fix + ", or skip verifying it with skip_verify = true there"
	}
	return fix + ", or use --insecure-registry"
}

func incompleteHint(e *store.IncompleteError) string {
	if e.Action == "load" {
		return "" // the content can only come from the archive, as the error says
	}
	var next []string
	if pull := e.Refetch(); len(pull) > 0 {
		next = append(next, fmt.Sprintf(`pull it with "kiln pull --platform %s %s"`, strings.Join(pull, ","), store.FamiliarName(e.Name)))
	} else {
		next = append(next, fmt.Sprintf(`pull it again with "kiln pull --all-platforms %s"`, store.FamiliarName(e.Name)))
	}
	// Of the commands that check, only push takes --platform.
	if len(e.Complete) > 0 && e.Action == "push" {
		next = append(next, fmt.Sprintf("%s with --platform %s", e.Action, strings.Join(e.Complete, ",")))
	}
	return "; " + strings.Join(next, " or ")
}

// snapshotterHint says which snapshotter to choose instead, and how.
func snapshotterHint(e *snapshot.ChoiceError) string {
	switch {
	case e.Embedded && e.Err == nil:
		return fmt.Sprintf(": choose %s with --snapshotter or CONTAINERD_SNAPSHOTTER, or leave it out to let kiln choose", e.HaveList())
	case e.Embedded:
		return fmt.Sprintf(": choose another with --snapshotter (%s), or leave it out to let kiln choose", e.HaveList())
	case e.Err == nil:
		return ": choose one of those with --snapshotter or CONTAINERD_SNAPSHOTTER"
	}
	return fmt.Sprintf(", or choose another with --snapshotter (it has %s)", e.HaveList())
}

// installCommand is the command that registers handlers for ps: with sudo
// when it needs root this process lacks.
func installCommand(ps []string, needsRoot bool) string {
	cmd := "kiln emulation install " + strings.Join(ps, " ")
	if needsRoot {
		cmd = "sudo " + cmd
	}
	return cmd
}

// storeReason says why kiln uses the store sel chose, for kiln info.
func storeReason(sel store.Selection) string {
	switch sel.Why {
	case store.Chosen:
		return fmt.Sprintf("chosen with --store %s or KILN_STORE", sel.Kind)
	case store.AddressGiven:
		return "--address or CONTAINERD_ADDRESS names containerd's socket " + sel.Address
	case store.NoSocket:
		return "no containerd socket at " + sel.Address + " and no --address or CONTAINERD_ADDRESS given"
	case store.KubernetesFound:
		return fmt.Sprintf("no containerd answers at %s; %s's does at %s", sel.Unanswered, sel.Kubernetes, sel.Address)
	case store.KubernetesAsked:
		return fmt.Sprintf("--k8s: %s's containerd answers at %s", sel.Kubernetes, sel.Address)
	}
	return "containerd's socket is at " + sel.Address
}

// snapshotterChosen is kiln info's reason for a snapshotter the user named.
const snapshotterChosen = "chosen with --snapshotter or CONTAINERD_SNAPSHOTTER"

// walkErrors calls fn for err and every error it wraps, depth first,
// following both Unwrap() error and Unwrap() []error (errors.Join).
func walkErrors(err error, fn func(error)) {
	if err == nil {
		return
	}
	fn(err)
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			walkErrors(e, fn)
		}
	default:
		walkErrors(errors.Unwrap(err), fn)
	}
}

// rootFixes word engine.RootFix.
var rootFixes = map[engine.RootFix]string{
	engine.RootFixAnother:    " (choose another with --root)",
	engine.RootFixNew:        "; choose a new directory with --root (kiln creates it)",
	engine.RootFixNewOrEmpty: "; choose a new or empty directory with --root (kiln creates it)",
	engine.RootFixOrNew:      " or choose a new directory with --root (kiln creates it)",
	engine.RootFixElseNew:    ", else choose a new directory with --root (kiln creates it)",
	engine.RootFixAbove:      "; choose a --root inside directories only root and you can change",
}
