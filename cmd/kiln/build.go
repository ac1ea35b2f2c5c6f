package main

import (
	"os"

	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/builder"
	"github.com/kiln-build/kiln/request"
	"github.com/kiln-build/kiln/usage"
)

func buildCommand() *cli.Command {
	return &cli.Command{
		Name:      "build",
		Usage:     "build an image from a Dockerfile, for one or more platforms, into containerd",
		ArgsUsage: "PATH",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "Dockerfile path (default PATH/Dockerfile; \"-\" reads standard input)"},
			&cli.StringSliceFlag{Name: "tag", Aliases: []string{"t"}, Usage: "name the image, e.g. app or registry.example.com/app:1.0 (repeatable)"},
			&cli.StringSliceFlag{Name: "platform", Usage: "target platforms, e.g. linux/amd64,linux/arm64 (default: this host's)"},
			&cli.StringSliceFlag{Name: "build-arg", Usage: "set a build argument KEY=VALUE; a bare KEY takes its value from the environment"},
			&cli.StringFlag{Name: "target", Usage: "build this stage of a multi-stage Dockerfile"},
			&cli.StringSliceFlag{Name: "label", Usage: "add a label KEY=VALUE to the image"},
			&cli.BoolFlag{Name: "no-cache", Usage: "rebuild every step"},
			&cli.BoolFlag{Name: "pull", Usage: "always ask the registry for base images, even local ones"},
			&cli.StringFlag{Name: "progress", Value: "auto", Usage: "progress output: auto, plain, tty, quiet or rawjson"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only the image digest"},
			&cli.StringFlag{Name: "iidfile", Usage: "write the image digest to this file"},
			&cli.StringFlag{Name: "metadata-file", Usage: "write the build result's metadata to this file as JSON"},
			&cli.StringSliceFlag{Name: "output", Aliases: []string{"o"}, Usage: "where the result goes: type=image (default: containerd), type=registry, type=oci|docker|tar,dest=FILE, type=local,dest=DIR (repeatable)"},
			&cli.BoolFlag{Name: "push", Usage: "also push the image to its registry (shorthand for type=image,push=true)"},
			&cli.BoolFlag{Name: "no-auto-emulation", Usage: "fail instead of registering QEMU handlers for platforms this host cannot run"},
			&cli.StringSliceFlag{Name: "secret", Usage: "expose a secret to RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VARIABLE (repeatable)"},
			&cli.StringSliceFlag{Name: "ssh", Usage: "forward an ssh-agent to RUN --mount=type=ssh: default, or ID=SOCKET|KEYFILE (repeatable)"},
			&cli.StringSliceFlag{Name: "build-context", Usage: "a named context: NAME=DIR, NAME=docker-image://REF or NAME=oci-layout://PATH[:TAG] (repeatable)"},
			&cli.StringSliceFlag{Name: "cache-from", Usage: "import build cache: type=local,src=DIR or type=registry,ref=REF (repeatable)"},
			&cli.StringSliceFlag{Name: "cache-to", Usage: "export build cache: type=local,dest=DIR, type=registry,ref=REF or type=inline; mode=max exports every stage (repeatable)"},
			&cli.StringSliceFlag{Name: "no-cache-filter", Usage: "rebuild these stages without cache (repeatable)"},
			&cli.StringFlag{Name: "network", Usage: "network of RUN steps: default, none or host"},
			&cli.StringSliceFlag{Name: "add-host", Usage: "add HOST:IP to /etc/hosts of RUN steps (repeatable)"},
			&cli.StringFlag{Name: "shm-size", Usage: "size of /dev/shm in RUN steps, e.g. 64m"},
			&cli.StringSliceFlag{Name: "ulimit", Usage: "resource limit of RUN steps, e.g. nofile=1024:2048 (repeatable)"},
			&cli.StringSliceFlag{Name: "allow", Usage: "grant an entitlement: network.host or security.insecure (repeatable)"},
			&cli.StringFlag{Name: "source-date-epoch", Usage: "pin every timestamp to these seconds since 1970 for reproducible digests (default: $SOURCE_DATE_EPOCH)"},
			&cli.StringSliceFlag{Name: "attest", Usage: "attach an attestation: type=provenance[,mode=min|max] (repeatable)"},
			&cli.StringFlag{Name: "provenance", Usage: "shorthand for --attest type=provenance: true, false, mode=min or mode=max"},
			&cli.StringSliceFlag{Name: "annotation", Usage: "annotate the image: KEY=VALUE, or TYPE[PLATFORM]:KEY=VALUE with TYPE manifest, index, manifest-descriptor or index-descriptor (repeatable)"},
			&cli.StringFlag{Name: "compression", Usage: "layer compression: gzip, zstd, estargz or uncompressed (every layer is recompressed)"},
			&cli.StringFlag{Name: "compression-level", Usage: "compression level: 0-9 for gzip and estargz, 1-22 for zstd"},
			&cli.BoolFlag{Name: "buildkitd-gzip", Usage: "compress new gzip layers as buildkitd does (Go's compress/gzip, one core), so layers and digests equal buildkitd's; by default kiln compresses them on every core, the same bytes on any machine but not buildkitd's"},
			&cli.StringFlag{Name: "memory", EnvVars: []string{"KILN_MEMORY"}, Usage: "memory of all build steps together, swap included, e.g. 256m or 1g: a step that goes over it fails as out of memory, kiln itself is outside the budget (default: no limit)"},
			&cli.StringFlag{Name: "cpus", EnvVars: []string{"KILN_CPUS"}, Usage: "CPU quota of all build steps together, e.g. 1.5 (default: no limit)"},
			&cli.StringFlag{Name: "max-parallelism", EnvVars: []string{"KILN_MAX_PARALLELISM"}, Usage: "how many steps run at once, e.g. 1 (default: no limit, as buildkitd)"},
			&cli.StringSliceFlag{Name: "node", Usage: "build platforms on a remote BuildKit node: PLATFORM=ADDRESS (tcp://HOST:PORT, unix://, ssh://), PLATFORM=NAME from nodes.toml, or PLATFORM=local (repeatable); a tcp:// node without TLS needs ,insecure-plaintext=true"},
			&cli.StringFlag{Name: "node-fallback", Value: "fail", Usage: "when a node does not answer: fail, or emulate (build its platforms here)"},
			&cli.StringFlag{Name: "call", Usage: "evaluate a frontend method instead of building: check (the Dockerfile's checks), outline (the build arguments and secrets of the target), targets (the stages), subrequests.describe; add ,format=json or ,ignorestatus=true", DefaultText: "build"},
			&cli.BoolFlag{Name: "check", Usage: "run the Dockerfile's checks without building (shorthand for --call check); exit 1 when one warns"},
			&cli.StringFlag{Name: "format", Usage: "print the answer of --call as text (default) or json"},
			&cli.StringFlag{Name: "on-error", Value: "fail", Usage: "when a RUN step fails: fail, or shell (start /bin/sh on this terminal in the step's container, as the step left it; the build fails when it exits)"},
			&cli.StringFlag{Name: "invoke", Usage: "start this command on this terminal when the build ends: in the result, or in the failed RUN step's container (with --on-error shell only there), e.g. --invoke sh or '[\"sh\", \"-l\"]'"},
		},
		Action: runBuild,
	}
}

func runBuild(c *cli.Context) error {
	if c.NArg() != 1 {
		return usage.Errorf("\"kiln build\" needs exactly one build context directory, for example \"kiln build -t app .\"")
	}
	opts := &request.Options{
		ContextDir:       c.Args().First(),
		Dockerfile:       c.String("file"),
		Tags:             c.StringSlice("tag"),
		Platforms:        c.StringSlice("platform"),
		BuildArgs:        c.StringSlice("build-arg"),
		Target:           c.String("target"),
		Labels:           c.StringSlice("label"),
		NoCache:          c.Bool("no-cache"),
		Pull:             c.Bool("pull"),
		Progress:         c.String("progress"),
		Quiet:            c.Bool("quiet"),
		IIDFile:          c.String("iidfile"),
		MetadataFile:     c.String("metadata-file"),
		Outputs:          c.StringSlice("output"),
		Push:             c.Bool("push"),
		NoAutoEmulation:  c.Bool("no-auto-emulation"),
		Secrets:          c.StringSlice("secret"),
		SSH:              c.StringSlice("ssh"),
		BuildContexts:    c.StringSlice("build-context"),
		CacheFrom:        c.StringSlice("cache-from"),
		CacheTo:          c.StringSlice("cache-to"),
		NoCacheFilter:    c.StringSlice("no-cache-filter"),
		Network:          c.String("network"),
		AddHosts:         c.StringSlice("add-host"),
		ShmSize:          c.String("shm-size"),
		Ulimits:          c.StringSlice("ulimit"),
		Allow:            c.StringSlice("allow"),
		SourceDateEpoch:  c.String("source-date-epoch"),
		Attest:           c.StringSlice("attest"),
		Provenance:       c.String("provenance"),
		Annotations:      c.StringSlice("annotation"),
		Compression:      c.String("compression"),
		CompressionLevel: c.String("compression-level"),
		BuildkitdGzip:    c.Bool("buildkitd-gzip"),
		Memory:           c.String("memory"),
		CPUs:             c.String("cpus"),
		MaxParallelism:   c.String("max-parallelism"),
		Nodes:            c.StringSlice("node"),
		NodeFallback:     c.String("node-fallback"),
		Call:             c.String("call"),
		Check:            c.Bool("check"),
		CallFormat:       c.String("format"),
		Debug:            c.Bool("debug"),
		OnError:          c.String("on-error"),
		Invoke:           c.String("invoke"),
		Stdin:            c.App.Reader,
		Stdout:           c.App.Writer,
		Stderr:           c.App.ErrWriter,
	}
	limits, err := historyLimits(c)
	if err != nil {
		return err
	}
	req, err := request.Parse(c.Context, opts)
	if err != nil {
		return err
	}
	defer req.Close()
	if req.Call != nil {
		res, err := builder.Call(c.Context, engineConfig(c), req)
		if err != nil {
			return err
		}
		code, err := printCall(c.App.Writer, res, req.Dockerfile)
		if err != nil {
			return err
		}
		if code != 0 {
			return exitStatus(code)
		}
		return nil
	}
	_, err = builder.Build(c.Context, engineConfig(c), req, builder.WithHistory(limits, os.Args[1:]))
	return err
}
