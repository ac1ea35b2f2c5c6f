package main

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/engine"
	"github.com/kiln-build/kiln/history"
	"github.com/kiln-build/kiln/registry"
	"github.com/kiln-build/kiln/rootless"
	"github.com/kiln-build/kiln/snapshot"
	"github.com/kiln-build/kiln/store"
)

const defaultRoot = "/var/lib/kiln"

// globalFlags are kiln's global options. For an unprivileged user the
// defaults are per user: their rootless containerd's socket and
// $XDG_DATA_HOME/kiln (see package rootless).
func globalFlags() []cli.Flag {
	address, root := store.DefaultAddress, defaultRoot
	if rootless.Enabled() {
		address, root = rootless.DefaultAddress(), rootless.DefaultRoot()
	}
	return []cli.Flag{
		&cli.StringFlag{Name: "store", Usage: "where images are kept: containerd, embedded (kiln's own store under --root, for hosts without containerd) or auto (containerd when --address is given or its socket exists, else embedded)", EnvVars: []string{"KILN_STORE"}, Value: store.KindAuto},
		&cli.StringFlag{Name: "address", Aliases: []string{"a", "H", "host"}, Usage: "containerd socket", EnvVars: []string{"CONTAINERD_ADDRESS"}, Value: address},
		&cli.BoolFlag{Name: "k8s", Usage: "use the containerd of the Kubernetes distribution here (k3s, RKE2, MicroK8s; or the one --address names) and its CRI namespace k8s.io, so that the kubelet runs the images without a registry", EnvVars: []string{"KILN_K8S"}},
		&cli.StringFlag{Name: "namespace", Aliases: []string{"n"}, Usage: "containerd namespace images are stored in", EnvVars: []string{"CONTAINERD_NAMESPACE"}, Value: store.DefaultNamespace},
		&cli.StringFlag{Name: "snapshotter", Usage: "containerd snapshotter build steps run on (default: overlayfs where it works, else fuse-overlayfs, else native; see kiln info)", EnvVars: []string{"CONTAINERD_SNAPSHOTTER"}, Value: snapshot.Default(rootless.Enabled()), DefaultText: "chosen"},
		&cli.StringFlag{Name: "root", Usage: "directory for kiln's own state: the build cache, one per store and namespace under buildkit/, and the embedded store; kiln creates it, or uses an existing one only if it is kiln's (marked .kiln-root, yours, not writable by others)", EnvVars: []string{"KILN_ROOT"}, Value: root},
		&cli.BoolFlag{Name: "gc", Usage: "after a build, free build cache by buildkitd's default garbage collection policy (checked at most once a minute); --gc=false turns it off", EnvVars: []string{"KILN_GC"}, Value: true},
		&cli.StringFlag{Name: "gc-keep-storage", Usage: "build cache the garbage collection keeps: a size such as 10GB, or a percentage of the disk holding --root such as 10% (default: as buildkitd, from the disk's size)", EnvVars: []string{"KILN_GC_KEEP_STORAGE"}},
		&cli.StringSliceFlag{Name: "hosts-dir", Usage: "directory of registry hosts configurations, as containerd and nerdctl read them: HOST[:PORT]/hosts.toml (mirrors, ca, client, skip_verify, server) or docker's HOST[:PORT]/*.crt, *.cert, *.key (repeatable; env " + hostsDirEnv + ", colon-separated)", Value: cli.NewStringSlice(registry.DefaultHostsDirs(rootless.Enabled(), rootless.ConfigHome())...)},
		&cli.IntFlag{Name: "history-max-entries", Usage: "build records kept per store and namespace (kiln history): always the latest this many, older ones until --history-max-age; 0 records nothing", EnvVars: []string{"KILN_HISTORY_MAX_ENTRIES"}, Value: history.DefaultLimits.MaxEntries},
		&cli.DurationFlag{Name: "history-max-age", Usage: "keep build records beyond --history-max-entries until they are this old (buildkitd's rule); 0 keeps only the latest --history-max-entries", EnvVars: []string{"KILN_HISTORY_MAX_AGE"}, Value: history.DefaultLimits.MaxAge},
		&cli.BoolFlag{Name: "debug", Usage: "print BuildKit's and containerd's debug logs, and which registry host served each request"},
	}
}

// hostsDirEnv lists hosts directories, colon-separated, when --hosts-dir
// is not given. nerdctl has no variable for them (only hosts_dir in
// nerdctl.toml), so kiln's is named as its other variables are.
const hostsDirEnv = "KILN_HOSTS_DIR"

// hostsDirs reads --hosts-dir, else $KILN_HOSTS_DIR, else the defaults.
// Relative directories are taken from the working directory.
func hostsDirs(c *cli.Context) []string {
	dirs := c.StringSlice("hosts-dir")
	if env := os.Getenv(hostsDirEnv); env != "" && !c.IsSet("hosts-dir") {
		dirs = filepath.SplitList(env)
	}
	var out []string
	for _, d := range dirs {
		if d == "" {
			continue
		}
		if abs, err := filepath.Abs(d); err == nil {
			d = abs
		}
		out = append(out, d)
	}
	return out
}

// gcOptions reads the global garbage collection flags; a build validates them
// before it starts.
func gcOptions(c *cli.Context) engine.GCOptions {
	return engine.GCOptions{Disabled: !c.Bool("gc"), KeepStorage: c.String("gc-keep-storage")}
}

// engineConfig reads the global flags.
func engineConfig(c *cli.Context) engine.Config {
	namespace := c.String("namespace")
	if c.Bool("k8s") && !c.IsSet("namespace") {
		namespace = store.KubernetesNamespace
	}
	return engine.Config{
		Store:          c.String("store"),
		Address:        store.TrimScheme(c.String("address")),
		AddressSet:     c.IsSet("address"),
		Namespace:      namespace,
		Kubernetes:     c.Bool("k8s"),
		Snapshotter:    c.String("snapshotter"),
		SnapshotterSet: c.IsSet("snapshotter"),
		Root:           c.String("root"),
		Rootless:       rootless.Enabled(),
		GC:             gcOptions(c),
		Registry:       registry.Config{HostsDirs: hostsDirs(c), Warnings: c.App.ErrWriter},
	}
}

// reorder lets options follow arguments, as docker and nerdctl allow
// ("kiln build . -t app"), and global options follow the command
// ("kiln build --namespace ci ."): urfave/cli stops at the first argument
// and knows global options only before the command.
func reorder(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	var global, rest []string
	i := 1
	// Global options before the command stay where they are.
	for ; i < len(args) && strings.HasPrefix(args[i], "-") && args[i] != "--"; i++ {
		global = append(global, args[i])
		if takesValue(app.Flags, args[i]) && i+1 < len(args) {
			i++
			global = append(global, args[i])
		}
	}
	if i >= len(args) {
		return args
	}
	cmd := findCommand(app.Commands, args[i])
	if cmd == nil {
		return args
	}
	// Each command on the way to the one that runs ("kiln compose build")
	// keeps the options it owns: those before its subcommand, and those
	// given after it that only it knows ("kiln compose build -f x.yaml").
	chain := []*cli.Command{cmd}
	own := [][]string{{args[i]}}
	i++
	for i < len(args) {
		a := args[i]
		if len(cmd.Subcommands) > 0 && strings.HasPrefix(a, "-") && a != "-" && a != "--" {
			dst := &own[len(own)-1]
			switch {
			case isFlag(cmd.Flags, a):
				*dst = append(*dst, a)
				if takesValue(cmd.Flags, a) && i+1 < len(args) {
					i++
					*dst = append(*dst, args[i])
				}
			case isFlag(app.Flags, a):
				global = append(global, a)
				if takesValue(app.Flags, a) && i+1 < len(args) {
					i++
					global = append(global, args[i])
				}
			default:
				return args // an unknown option: urfave/cli reports it
			}
			i++
			continue
		}
		sub := findCommand(cmd.Subcommands, a)
		if sub == nil {
			break
		}
		cmd = sub
		chain = append(chain, sub)
		own = append(own, []string{a})
		i++
	}
	var flags, positional []string
	for ; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			positional = append(positional, args[i+1:]...)
			i = len(args)
		case a == "-" || !strings.HasPrefix(a, "-"):
			positional = append(positional, a)
		case isFlag(app.Flags, a) && !isFlag(cmd.Flags, a):
			global = append(global, a)
			if takesValue(app.Flags, a) && i+1 < len(args) {
				i++
				global = append(global, args[i])
			}
		default:
			dst, owner := &flags, cmd
			for j := len(chain) - 2; j >= 0 && !isFlag(cmd.Flags, a); j-- {
				if isFlag(chain[j].Flags, a) {
					dst, owner = &own[j], chain[j]
					break
				}
			}
			*dst = append(*dst, a)
			if takesValue(owner.Flags, a) && i+1 < len(args) {
				i++
				*dst = append(*dst, args[i])
			}
		}
	}
	for _, o := range own {
		rest = append(rest, o...)
	}
	rest = append(rest, flags...)
	if len(positional) > 0 {
		rest = append(rest, "--")
		rest = append(rest, positional...)
	}
	out := append([]string{args[0]}, global...)
	return append(out, rest...)
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

func flagName(arg string) (string, bool) {
	name := strings.TrimLeft(arg, "-")
	name, _, hasValue := strings.Cut(name, "=")
	return name, hasValue
}

func lookupFlag(flags []cli.Flag, arg string) cli.Flag {
	name, _ := flagName(arg)
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}

func isFlag(flags []cli.Flag, arg string) bool { return lookupFlag(flags, arg) != nil }

// takesValue reports whether arg is a flag whose value is the next argument.
func takesValue(flags []cli.Flag, arg string) bool {
	if _, hasValue := flagName(arg); hasValue {
		return false
	}
	f := lookupFlag(flags, arg)
	if f == nil {
		return false
	}
	if df, ok := f.(cli.DocGenerationFlag); ok {
		return df.TakesValue()
	}
	return true
}
