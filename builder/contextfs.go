package builder

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"github.com/tonistiigi/fsutil"

	"github.com/kiln-build/kiln/internal/safeio"
	"github.com/kiln-build/kiln/request"
)

// sparseMinSize is the size from which a file of the build context is
// checked for holes: smaller ones cost little even when sparse.
const sparseMinSize = 64 << 20

// contextFS is a build context as BuildKit's session sends it (fsutil's
// directory walk), with kiln's rules for special files, as docker applies
// them when it sends a context:
//
//   - A unix socket is skipped, with a warning: fsutil would send it as an
//     empty regular file, which no program can use.
//   - A file is opened only if it is still a regular file: one swapped for
//     a named pipe after the walk must not block the transfer forever.
//   - A block device is sent as a block device and lands as one in the
//     context; BuildKit's COPY then re-creates it as a character device
//     (tonistiigi/fsutil copy/copy_nowindows.go copyDevice clears S_IFSOCK
//     from the file type, which turns S_IFBLK into S_IFCHR), which kiln
//     cannot change from outside, so it warns.
//   - A sparse file's holes cannot cross the session: BuildKit writes what
//     it receives, zeros included, so kiln warns with the size it takes.
//
// The warnings go to the build's error stream when the build is over
// (Close), once per path: printed during the build they would tear the
// progress display.
type contextFS struct {
	fsutil.FS
	root string
	// ignored matches what .dockerignore excludes: no warning for those,
	// as BuildKit does not send them. Nil for named contexts.
	ignored *patternmatcher.PatternMatcher
	// stderr receives the warnings; nil drops them (the Dockerfile's
	// directory, of which BuildKit sends only the Dockerfile).
	stderr io.Writer

	mu       sync.Mutex
	warnings map[string]string // by path
}

// newContextFS wraps the build context directory dir. ignored and stderr
// may be nil.
func newContextFS(dir string, ignored *patternmatcher.PatternMatcher, stderr io.Writer) (*contextFS, error) {
	inner, err := fsutil.NewFS(dir)
	if err != nil {
		return nil, err
	}
	// fsutil.NewFS resolves the directory's links; Open must see the same.
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, err
	}
	return &contextFS{FS: inner, root: root, ignored: ignored, stderr: stderr, warnings: map[string]string{}}, nil
}

// Walk walks the context as fsutil does, leaving out sockets.
func (c *contextFS) Walk(ctx context.Context, target string, fn fs.WalkDirFunc) error {
	return c.FS.Walk(ctx, target, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d == nil {
			return fn(path, d, err)
		}
		// Type before Info: once fsutil has made its stat, the socket bit
		// is gone from it.
		switch t := d.Type(); {
		case t&fs.ModeSocket != 0:
			c.warn(path, "warning: skipping socket %s in the build context: a socket cannot be sent (docker skips it too); exclude it in .dockerignore to silence this")
			return nil
		case t&fs.ModeDevice != 0 && t&fs.ModeCharDevice == 0:
			c.warn(path, "warning: block device %s in the build context: RUN --mount sees it as a block device, but COPY and ADD make it a character device (a BuildKit limitation, see README)")
		case t.IsRegular():
			c.checkSparse(path, d)
		}
		return fn(path, d, err)
	})
}

// checkSparse warns about a large file with holes.
func (c *contextFS) checkSparse(path string, d fs.DirEntry) {
	fi, err := d.Info()
	if err != nil || fi.Size() < sparseMinSize {
		return
	}
	var st syscall.Stat_t
	if syscall.Lstat(filepath.Join(c.root, path), &st) != nil {
		return
	}
	if allocated := st.Blocks * 512; allocated < fi.Size()/2 {
		c.warn(path, fmt.Sprintf("warning: sparse file %%s in the build context (%s, %s on disk) is sent and stored whole: BuildKit's context transfer does not keep holes; exclude it in .dockerignore, or create it in a RUN step",
			safeio.FormatSize(fi.Size()), safeio.FormatSize(allocated)))
	}
}

func (c *contextFS) warn(path, format string) {
	if c.stderr == nil {
		return
	}
	if c.ignored != nil {
		if ok, err := c.ignored.MatchesOrParentMatches(filepath.ToSlash(path)); err == nil && ok {
			return
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, seen := c.warnings[path]; !seen {
		c.warnings[path] = fmt.Sprintf(format, path)
	}
}

// Open opens a file of the context for sending, only if it is a regular
// file.
func (c *contextFS) Open(p string) (io.ReadCloser, error) {
	return safeio.OpenRegular(filepath.Join(c.root, p))
}

// Close prints the warnings the walks gathered, once.
func (c *contextFS) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	paths := make([]string, 0, len(c.warnings))
	for p := range c.warnings {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		fmt.Fprintln(c.stderr, c.warnings[p])
	}
	clear(c.warnings)
	return nil
}

// maxIgnoreFileSize bounds the ignore file kiln reads, as BuildKit's
// frontend bounds it.
const maxIgnoreFileSize = request.MaxDockerfileSize

// dockerignore reads the patterns BuildKit's Dockerfile frontend excludes
// from the build context: DOCKERFILE.dockerignore beside the Dockerfile,
// else .dockerignore in the context. It is nil when there is none, or it
// cannot be read (BuildKit then reports the problem).
func dockerignore(ctx context.Context, r *request.Request) *patternmatcher.PatternMatcher {
	for _, p := range []string{filepath.Join(r.Dockerfile.Dir, r.Dockerfile.Name+".dockerignore"), filepath.Join(r.ContextDir, ".dockerignore")} {
		dt, err := safeio.ReadFile(ctx, p, maxIgnoreFileSize)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return nil
		}
		patterns, err := ignorefile.ReadAll(bytes.NewReader(dt))
		if err != nil {
			return nil
		}
		pm, err := patternmatcher.New(patterns)
		if err != nil {
			return nil
		}
		return pm
	}
	return nil
}
