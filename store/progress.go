package store

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	units "github.com/docker/go-units"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/registry"
)

// progress reports blob transfers, safe for concurrent use. Without live
// it writes one line per event: a blob starts, ends (with its size, time
// and rate), is retried, or was already there. With live (a terminal) the
// blobs in flight are also drawn below those lines, one bar each with the
// bytes moved and the rate, redrawn a few times a second.
type progress struct {
	mu     sync.Mutex
	w      io.Writer
	live   bool
	active []*blobState // in flight, in start order (live only)
	drawn  int          // lines of the live region on the screen
	stop   chan struct{}
	done   chan struct{}
}

// blobState is one blob in flight.
type blobState struct {
	verb  string
	desc  ocispecs.Descriptor
	start time.Time
	pos   atomic.Int64 // bytes of the blob moved so far
	moved atomic.Int64 // bytes moved in this run, for the rate
}

func newProgress(w io.Writer) *progress { return newLiveProgress(w, false) }

// newLiveProgress is newProgress drawing bars when live; close stops the
// drawing.
func newLiveProgress(w io.Writer, live bool) *progress {
	if w == nil {
		w, live = io.Discard, false
	}
	p := &progress{w: w, live: live}
	if live {
		p.stop, p.done = make(chan struct{}), make(chan struct{})
		go p.redraw()
	}
	return p
}

// close stops the live drawing and clears what is left of it.
func (p *progress) close() {
	if !p.live {
		return
	}
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	p.active = nil
}

func (p *progress) redraw() {
	defer close(p.done)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.mu.Lock()
			p.clear()
			p.draw()
			p.mu.Unlock()
		}
	}
}

// blob writes one line about a blob.
func (p *progress) blob(verb string, d ocispecs.Descriptor) {
	p.printf("%s\n", blobLine(verb, d))
}

func blobLine(verb string, d ocispecs.Descriptor) string {
	return fmt.Sprintf("%-8s %-9s %s  %s", verb, blobKind(d.MediaType), shortBlobDigest(blobOf(d)), units.HumanSizeWithPrecision(float64(d.Size), 3))
}

// start reports a transfer that starts; verb is "pulling" or "pushing".
func (p *progress) start(verb string, d ocispecs.Descriptor) *blobState {
	b := &blobState{verb: verb, desc: d, start: time.Now()}
	if !p.live {
		p.blob(verb, d)
		return b
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	p.active = append(p.active, b)
	p.draw()
	return b
}

// finish reports a transfer that ended well, as verb ("pulled",
// "pushed"), with how long it took and its rate.
func (p *progress) finish(b *blobState, verb string) {
	elapsed := time.Since(b.start)
	line := blobLine(verb, b.desc)
	if moved := b.moved.Load(); moved > 0 && elapsed > 0 {
		line += fmt.Sprintf("  in %s, %s/s", elapsed.Round(time.Millisecond), units.HumanSizeWithPrecision(float64(moved)/elapsed.Seconds(), 3))
	}
	p.remove(b)
	p.printf("%s\n", line)
}

// fail drops a transfer that ended in an error, which the caller reports.
func (p *progress) fail(b *blobState) { p.remove(b) }

func (p *progress) remove(b *blobState) {
	if !p.live {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, a := range p.active {
		if a == b {
			p.active = append(p.active[:i], p.active[i+1:]...)
			break
		}
	}
}

// retrying reports that a transfer a bad network broke starts again.
func (p *progress) retrying(verb string, d ocispecs.Descriptor, attempt int, err error) {
	p.printf("%-8s %-9s %s  again (attempt %d of %d): %s\n", verb, blobKind(d.MediaType), shortBlobDigest(blobOf(d)), attempt+1, registry.Attempts, registry.Brief(err))
}

// printf writes a line above the live region.
func (p *progress) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	fmt.Fprintf(p.w, format, args...)
	p.draw()
}

// clear erases the live region; the caller holds mu.
func (p *progress) clear() {
	if p.drawn > 0 {
		// Up to the region's first line, then erase to the end of the screen.
		fmt.Fprintf(p.w, "\x1b[%dA\r\x1b[J", p.drawn)
		p.drawn = 0
	}
}

// draw writes one bar per blob in flight; the caller holds mu.
func (p *progress) draw() {
	if !p.live {
		return
	}
	for _, b := range p.active {
		fmt.Fprintln(p.w, b.bar())
	}
	p.drawn = len(p.active)
}

// bar is a blob's line in the live region: its bar, bytes and rate.
func (b *blobState) bar() string {
	const width = 20
	pos, total := b.pos.Load(), b.desc.Size
	filled := width
	if total > 0 {
		filled = int(min(pos, total) * width / total)
	}
	rate := ""
	if s := time.Since(b.start).Seconds(); s > 0.2 {
		rate = units.HumanSizeWithPrecision(float64(b.moved.Load())/s, 3) + "/s"
	}
	return fmt.Sprintf("%-8s %-9s %s  [%s%s]  %s / %s  %s", b.verb, blobKind(b.desc.MediaType), shortBlobDigest(blobOf(b.desc)),
		strings.Repeat("=", filled), strings.Repeat(" ", width-filled),
		units.HumanSizeWithPrecision(float64(pos), 3), units.HumanSizeWithPrecision(float64(total), 3), rate)
}

// counter counts the bytes read through it into a blob's state; Seek, when
// the reader has it, moves the position, as a resumed transfer does.
type counter struct {
	r io.Reader
	b *blobState
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.b.pos.Add(int64(n))
	c.b.moved.Add(int64(n))
	return n, err
}

func (c *counter) Seek(offset int64, whence int) (int64, error) {
	s, ok := c.r.(io.Seeker)
	if !ok {
		return 0, fmt.Errorf("the transfer of %s cannot resume", c.b.desc.Digest)
	}
	n, err := s.Seek(offset, whence)
	if err == nil {
		c.b.pos.Store(n)
	}
	return n, err
}

// Close closes the reader when it can be closed.
func (c *counter) Close() error {
	if rc, ok := c.r.(io.Closer); ok {
		return rc.Close()
	}
	return nil
}
