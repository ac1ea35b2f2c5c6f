package builder

import (
	"strings"
	"sync"

	bkclient "github.com/moby/buildkit/client"
	digest "github.com/opencontainers/go-digest"
)

// tailLines is how many output lines of a failed step kiln repeats in its
// error, enough to show the cause without burying it.
const tailLines = 6

// recorder remembers each step's name and the last lines it printed, so a
// failure can be reported with the step and its output even when the
// progress display was quiet.
type recorder struct {
	mu      sync.Mutex
	names   map[digest.Digest]string
	tails   map[digest.Digest][]string
	partial map[digest.Digest]string
	// oom is the memory budget the build's steps went over (see
	// outOfMemory), or "".
	oom string
	// fullDisk is the directory of the build's snapshots when their file
	// system was full as the build failed (see outOfDisk), or "".
	fullDisk string
}

func newRecorder() *recorder {
	return &recorder{
		names:   map[digest.Digest]string{},
		tails:   map[digest.Digest][]string{},
		partial: map[digest.Digest]string{},
	}
}

func (r *recorder) record(st *bkclient.SolveStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range st.Vertexes {
		r.names[v.Digest] = v.Name
	}
	for _, l := range st.Logs {
		text := r.partial[l.Vertex] + string(l.Data)
		lines := strings.Split(text, "\n")
		r.partial[l.Vertex] = lines[len(lines)-1]
		for _, line := range lines[:len(lines)-1] {
			r.addLine(l.Vertex, line)
		}
	}
}

func (r *recorder) addLine(v digest.Digest, line string) {
	line = strings.TrimRight(line, "\r")
	t := append(r.tails[v], line)
	if len(t) > tailLines {
		t = t[len(t)-tailLines:]
	}
	r.tails[v] = t
}

// step returns the name of a step and its last output lines.
func (r *recorder) step(v digest.Digest) (string, []string) {
	if r == nil {
		return "", nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	tail := append([]string(nil), r.tails[v]...)
	if p := strings.TrimSpace(r.partial[v]); p != "" {
		tail = append(tail, p)
		if len(tail) > tailLines {
			tail = tail[len(tail)-tailLines:]
		}
	}
	return r.names[v], tail
}
