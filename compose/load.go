// Package compose turns a compose project into kiln builds: it reads compose
// files with compose-spec/compose-go (interpolation, .env files, profiles,
// extends and include, as docker compose reads them) and maps every service's
// build section onto the options of one `kiln build`, plus the order the
// builds must run in. It is data only: request.Parse validates each build's
// options, and the caller builds them.
package compose

import (
	"context"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/kiln-build/kiln/internal/errmsg"
	"github.com/kiln-build/kiln/usage"
)

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
}

// Project is a loaded compose project.
type Project struct {
	p *types.Project
}

// Load reads a compose project. Its errors are usage errors: a file that
// is missing or invalid, a key compose does not know, a dependency cycle.
func Load(ctx context.Context, o LoadOptions) (*Project, error) {
	// The order of docker compose's own loading: the process environment
	// wins, .env files fill in, COMPOSE_FILE or the default files name the
	// project, and the project directory's .env is read again once known.
	opts, err := cli.NewProjectOptions(o.Files,
		cli.WithWorkingDirectory(o.WorkingDir),
		cli.WithEnv(o.Environment),
		cli.WithEnvFiles(o.EnvFiles...),
		cli.WithDotEnv,
		cli.WithConfigFileEnv,
		cli.WithDefaultConfigPath,
		cli.WithEnvFiles(o.EnvFiles...),
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
	p, err := opts.LoadProject(ctx)
	if err != nil {
		return nil, loadError(err, opts.ConfigPaths)
	}
	return &Project{p: p}, nil
}

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
	if p == "-" {
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
