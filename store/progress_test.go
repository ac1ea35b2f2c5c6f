package store

import (
	"bytes"
	"io"
	"strings"
	"testing"

	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestProgressLines: without a terminal, one line per event, the end
// with its time and rate.
func TestProgressLines(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out)
	d := ocispecs.Descriptor{MediaType: ocispecs.MediaTypeImageLayerGzip, Digest: dgst("layer"), Size: 2 << 20}
	b := p.start("pulling", d)
	io.Copy(io.Discard, &counter{r: bytes.NewReader(make([]byte, 2<<20)), b: b})
	p.finish(b, "pulled")
	p.close()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "pulling  layer     "+shortBlobDigest(blobOf(d))+"  2.1MB") ||
		!strings.HasPrefix(lines[1], "pulled   layer") || !strings.Contains(lines[1], "/s") || strings.Contains(out.String(), "\x1b") {
		t.Errorf("progress:\n%s", out.String())
	}
}

// TestProgressLive: on a terminal the blobs in flight are bars, redrawn in
// place, and what ended stays as a line above them.
func TestProgressLive(t *testing.T) {
	var out bytes.Buffer
	p := newLiveProgress(&out, true)
	d := ocispecs.Descriptor{MediaType: ocispecs.MediaTypeImageLayerGzip, Digest: dgst("layer"), Size: 1000}
	other := ocispecs.Descriptor{MediaType: ocispecs.MediaTypeImageConfig, Digest: dgst("config"), Size: 10}
	b := p.start("pushing", d)
	c := p.start("pushing", other)
	b.pos.Store(500)
	if bar := b.bar(); !strings.Contains(bar, "[==========          ]  500B / 1kB") {
		t.Errorf("bar at half: %q", bar)
	}
	p.finish(c, "pushed")
	p.finish(b, "pushed")
	p.close()
	s := out.String()
	if !strings.Contains(s, "\x1b[1A\r\x1b[J") || !strings.Contains(s, "pushed   config") || !strings.Contains(s, "pushed   layer") {
		t.Errorf("live progress:\n%q", s)
	}
	// What is left on the screen: the lines of what ended, no bar.
	if last := s[strings.LastIndex(s, "\x1b[J")+len("\x1b[J"):]; !strings.HasPrefix(last, "pushed   layer") || strings.Count(last, "\n") != 1 || strings.Contains(last, "[=") {
		t.Errorf("after the last redraw: %q, want only the layer's line", last)
	}
}
