package request

import "io"

// Progress modes accepted by --progress.
var progressModes = []string{"auto", "plain", "tty", "quiet", "rawjson"}

// Options are the options of one `kiln build`, as given on the command line.
type Options struct {
	// ContextDir is the build context directory.
	ContextDir string
	// Dockerfile is the Dockerfile's path, relative to the working directory
	// as in buildx; empty means ContextDir/Dockerfile and "-" reads Stdin.
	Dockerfile string
	// Tags are the names to store the image under, as the user wrote them.
	Tags []string
	// Platforms are --platform values; each may list several, comma-separated.
	Platforms []string
	// BuildArgs are KEY=VALUE pairs; a bare KEY takes its value from the
	// environment and is dropped when the environment lacks it.
	BuildArgs []string
	// Labels are KEY=VALUE pairs added to the image config.
	Labels []string
	// Target is the stage to build; empty builds the last one.
	Target string
	// NoCache rebuilds every step.
	NoCache bool
	// Pull always asks the registry for base images, even local ones.
	Pull bool
	// Progress is the progress display: auto, plain, tty, quiet or rawjson.
	Progress string
	// Quiet prints nothing but the image digest.
	Quiet bool
	// IIDFile, when set, receives the image digest.
	IIDFile string
	// MetadataFile, when set, receives the build result's metadata as JSON.
	MetadataFile string
	// Outputs are -o/--output values in docker's syntax; none means the
	// containerd image store.
	Outputs []string
	// Push also pushes the image to its registry.
	Push bool
	// NoAutoEmulation fails instead of registering QEMU handlers for
	// platforms this host cannot run.
	NoAutoEmulation bool

	// Secrets are --secret values: id=ID,src=FILE or id=ID,env=VARIABLE.
	Secrets []string
	// SSH are --ssh values: default (the agent at $SSH_AUTH_SOCK) or
	// ID=PATH[,PATH...] with agent sockets or private key files.
	SSH []string
	// BuildContexts are --build-context values: NAME=DIR,
	// NAME=docker-image://REF or NAME=oci-layout://PATH[:TAG][@DIGEST].
	BuildContexts []string
	// CacheFrom and CacheTo are --cache-from and --cache-to values of type
	// local, registry (and, for CacheTo, inline).
	CacheFrom, CacheTo []string
	// NoCacheFilter are stages to rebuild without cache.
	NoCacheFilter []string
	// Network is the network of RUN steps: default, none or host.
	Network string
	// AddHosts are HOST:IP entries added to /etc/hosts of RUN steps.
	AddHosts []string
	// ShmSize is the size of /dev/shm in RUN steps, e.g. 64m.
	ShmSize string
	// Ulimits are NAME=SOFT[:HARD] resource limits of RUN steps.
	Ulimits []string
	// Allow are entitlements granted to the build: network.host,
	// security.insecure.
	Allow []string
	// SourceDateEpoch, when set (or $SOURCE_DATE_EPOCH), pins every
	// timestamp of the image to these seconds since 1970.
	SourceDateEpoch string
	// Attest are --attest values: type=provenance[,mode=min|max].
	Attest []string
	// Provenance is buildx's --provenance shorthand: true, false or
	// mode=min|max.
	Provenance string
	// Annotations are [TYPE[PLATFORM]:]KEY=VALUE annotations of the image.
	Annotations []string
	// Compression is the layer compression: gzip, zstd, estargz or
	// uncompressed; CompressionLevel its level.
	Compression, CompressionLevel string
	// BuildkitdGzip compresses new gzip layers as buildkitd does (Go's
	// compress/gzip on one core), so that layers and digests equal
	// buildkitd's; by default kiln compresses them on every core.
	BuildkitdGzip bool

	// Memory, CPUs and MaxParallelism are the build's budget: --memory
	// (a size), --cpus (fractions allowed) and --max-parallelism (see
	// ParseBudget).
	Memory, CPUs, MaxParallelism string

	// Nodes are --node values, PLATFORM[,PLATFORM]=ADDRESS|NAME|local:
	// where those platforms build (see package nodes).
	Nodes []string
	// NodeFallback is what happens when a node does not answer before the
	// build: FallbackFail (the default) or FallbackEmulate (build its
	// platforms here).
	NodeFallback string
	// NodesFiles are the nodes files to read; nil reads
	// nodes.DefaultFiles().
	NodesFiles []string

	// Call is --call: a frontend method evaluated instead of a build
	// (check, outline, targets), with buildx's ,format=json and
	// ,ignorestatus=true; empty or "build" builds.
	Call string
	// Check is --check, buildx's shorthand for --call check.
	Check bool
	// CallFormat is --format: json or text, the form --call's answer is
	// printed in.
	CallFormat string
	// Debug prints the details of the check warnings a build found (the
	// global --debug).
	Debug bool
	// OnError is --on-error: fail (the default) or shell, which starts a
	// shell in the container of a RUN step that failed.
	OnError string
	// Invoke is --invoke: a command started in the build's result, or in
	// the failed step's container.
	Invoke string

	// Stdin, Stdout and Stderr are the streams the build reads and writes.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}
