// Package compose turns a compose project into kiln builds: it reads compose
// files with compose-spec/compose-go (interpolation, .env files, profiles,
// extends and include, as docker compose reads them) and maps every service's
// build section onto the options of one `kiln build`, plus the order the
// builds must run in. It is data only: request.Parse validates each build's
// options, and the caller builds them.
package compose

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/kiln-build/kiln/internal/errmsg"
	"github.com/kiln-build/kiln/internal/owned"
	"github.com/kiln-build/kiln/internal/safeio"
	"github.com/kiln-build/kiln/usage"
)

// maxFileSize bounds a compose file and an env file, as BuildKit bounds a
// Dockerfile: no real one comes near it, and a FIFO or /dev/zero at the
// path must not hang kiln or fill its memory.
const maxFileSize = 16 << 20

// LoadOptions say which compose project to read, as docker compose's
// options before the command do.
type LoadOptions struct {
	// Files are the compose files (-f), merged in order; "-" is standard
	// input. None finds compose.yaml (or docker-compose.yml, with its
	// override file) in the working directory or a parent, or takes
	// $COMPOSE_FILE.
	Files []string
	// ProjectName (-p) names the project; empty takes $COMPOSE_PROJECT_NAME,
	// the files' name: or the project directory's name.
	ProjectName string
	// Profiles (--profile) enable the services of these profiles; none
	// takes $COMPOSE_PROFILES.
	Profiles []string
	// EnvFiles (--env-file) are read for interpolation instead of the
	// project directory's .env.
	EnvFiles []string
	// WorkingDir is the project directory; empty is the first file's
	// directory.
	WorkingDir string
	// Environment is the process environment, KEY=VALUE: it wins over the
	// env files, as in docker compose.
	Environment []string
	// Stdin is read for the file "-"; nil is os.Stdin.
	Stdin io.Reader
}

// Project is a loaded compose project.
type Project struct {
	p *types.Project
}

// Load reads a compose project. Its errors are usage errors: a file that
// is missing or invalid, a key compose does not know, a dependency cycle.
//
// The compose files and env files are checked before compose-go reads
// them (checkFile): regular files of at most 16 MiB, reached through
// nothing another user put in a directory every user may write. Standard
// input is read here, bounded and interruptible (readStdin).
func Load(ctx context.Context, o LoadOptions) (*Project, error) {
	// The order of docker compose's own loading: the process environment
	// wins, .env files fill in, COMPOSE_FILE or the default files name the
	// project, and the project directory's .env is read again once known.
	opts, err := cli.NewProjectOptions(o.Files,
		cli.WithWorkingDirectory(o.WorkingDir),
		cli.WithEnv(o.Environment),
		cli.WithEnvFiles(o.EnvFiles...),
		checkEnvFiles,
		cli.WithDotEnv,
		cli.WithConfigFileEnv,
		cli.WithDefaultConfigPath,
		cli.WithEnvFiles(o.EnvFiles...),
		checkEnvFiles,
		cli.WithDotEnv,
		cli.WithDefaultProfiles(o.Profiles...),
		cli.WithName(o.ProjectName),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		return nil, loadError(err, nil)
	}
	if len(opts.ConfigPaths) == 0 {
		return nil, usage.Errorf("no compose file found in %s or its parents: pass one with -f, or add compose.yaml", workingDir(opts))
	}
	files := slices.Clone(opts.ConfigPaths)
	for _, f := range files {
		if f != "-" {
			if err := checkFile("compose file", f); err != nil {
				return nil, err
			}
		}
	}
	if slices.Contains(files, "-") {
		cleanup, err := readStdin(ctx, opts, o.Stdin)
		if err != nil {
			return nil, err
		}
		defer cleanup()
	}
	p, err := opts.LoadProject(ctx)
	if err != nil {
		return nil, loadError(err, opts.ConfigPaths)
	}
	return &Project{p: p}, nil
}

// checkEnvFiles checks the env files compose-go is about to read;
// /dev/null, which reads as empty, stays usable to set none.
func checkEnvFiles(o *cli.ProjectOptions) error {
	for _, f := range o.EnvFiles {
		if f == os.DevNull {
			continue
		}
		if err := checkFile("env file", f); err != nil {
			return err
		}
	}
	return nil
}

// checkFile refuses the file at path, which compose-go reads in whole,
// unless it is a regular file of at most maxFileSize and nothing on the
// way to it is another user's in a directory every user may write (see
// owned.Resolve): a link in /tmp does not choose what kiln builds. A
// missing file is left to compose-go, which names the option or key it
// came from.
func checkFile(what, path string) error {
	real, err := owned.Resolve(path)
	var oe *owned.Error
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case errors.As(err, &oe):
		return usage.Errorf("%s %s: %s: kiln does not read what another user may have put there; copy the file to a directory of your own", what, displayPath(path), oe)
	case err != nil:
		return usage.Errorf("cannot read %s %s: %w", what, displayPath(path), err)
	}
	fi, err := safeio.CheckRegular(real)
	var notRegular *safeio.NotRegularError
	switch {
	case errors.As(err, &notRegular):
		return usage.Errorf("%s %s is %s: name a regular file", what, displayPath(path), safeio.Kind(notRegular.Mode))
	case err != nil:
		return usage.Errorf("cannot read %s %s: %w", what, displayPath(path), err)
	case fi.Size() > maxFileSize:
		return usage.Errorf("%s %s is larger than %s, the most kiln reads", what, displayPath(path), safeio.FormatSize(maxFileSize))
	}
	return nil
}

// readStdin reads the compose file "-" from stdin (nil: os.Stdin), bounded
// and ending when ctx does, into a private temporary file that stands for
// "-" in o, which compose-go would otherwise read without bound. The
// project directory stays what "-" gives it. cleanup removes the file.
func readStdin(ctx context.Context, o *cli.ProjectOptions, stdin io.Reader) (cleanup func(), err error) {
	if stdin == nil {
		stdin = os.Stdin
	}
	wd, err := o.GetWorkingDir()
	if err != nil {
		return nil, fmt.Errorf("finding the project directory: %w", err)
	}
	data, err := safeio.ReadAll(ctx, stdin, "standard input", maxFileSize)
	var large *safeio.TooLargeError
	switch {
	case errors.Is(err, safeio.ErrInterrupted):
		return nil, err
	case errors.As(err, &large):
		return nil, usage.Errorf("the compose file on standard input is larger than %s, the most kiln reads", safeio.FormatSize(large.Limit))
	case err != nil:
		return nil, fmt.Errorf("reading the compose file from standard input: %w", err)
	}
	dir, err := os.MkdirTemp("", "kiln-compose-")
	if err != nil {
		return nil, fmt.Errorf("storing the compose file from standard input: %w", err)
	}
	cleanup = func() { os.RemoveAll(dir) }
	file := filepath.Join(dir, stdinName)
	if err := os.WriteFile(file, data, 0o600); err != nil {
		cleanup()
		return nil, fmt.Errorf("storing the compose file from standard input: %w", err)
	}
	o.WorkingDir = wd
	for i, f := range o.ConfigPaths {
		if f == "-" {
			o.ConfigPaths[i] = file
		}
	}
	return cleanup, nil
}

// stdinName names the file that holds the compose file read from standard
// input; messages say "standard input" instead (displayPath).
const stdinName = "compose-from-standard-input.yaml"

func workingDir(o *cli.ProjectOptions) string {
	wd, err := o.GetWorkingDir()
	if err != nil {
		return "the working directory"
	}
	return wd
}

// unknownKey is how compose-go's schema validation reports a key the
// compose specification does not have.
var unknownKey = errmsg.Pattern(`(\S+) false schema|(\S+) additional propert(?:y|ies) ('[^']*'(?:, '[^']*')*) not allowed`)

// loadError makes compose-go's error one line that names the file and, for
// a key compose does not know, says so. Paths are shown as the user knows
// them.
func loadError(err error, files []string) error {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	msg = unknownKey().ReplaceAllStringFunc(msg, func(m string) string {
		sub := unknownKey().FindStringSubmatch(m)
		if sub[1] != "" {
			return sub[1] + " is not a compose key: check its spelling and indentation"
		}
		return sub[2] + " has no key " + sub[3] + ": check its spelling and indentation"
	})
	named := false
	for _, f := range files {
		if f != "-" && strings.Contains(msg, f) {
			named = true
			msg = strings.ReplaceAll(msg, f, displayPath(f))
		}
	}
	if !named && len(files) > 0 {
		shown := make([]string, len(files))
		for i, f := range files {
			shown[i] = displayPath(f)
		}
		msg = strings.Join(shown, ", ") + ": " + msg
	}
	return usage.Wrap(errmsg.New("reading the compose project: "+msg, err))
}

// displayPath is a path relative to the working directory when it is
// below it.
func displayPath(p string) string {
	if p == "-" || filepath.Base(p) == stdinName {
		return "standard input"
	}
	if rel, err := filepath.Rel(".", p); err == nil && filepath.IsAbs(p) && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return p
}

// Name is the project's name, which names its images (PROJECT-SERVICE).
func (p *Project) Name() string { return p.p.Name }

// Files are the compose files the project was read from.
func (p *Project) Files() []string { return p.p.ComposeFiles }
