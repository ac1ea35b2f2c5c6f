package builder

import (
	"bytes"
	"strings"
	"testing"

	bkclient "github.com/moby/buildkit/client"
	"github.com/moby/buildkit/solver/pb"

	"github.com/kiln-build/kiln/request"
)

func TestPrintWarnings(t *testing.T) {
	warns := []bkclient.VertexWarning{{
		Short:      []byte("JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 2)"),
		Detail:     [][]byte{[]byte("JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals")},
		URL:        "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/",
		SourceInfo: &pb.SourceInfo{Filename: "Dockerfile", Data: []byte("FROM scratch\nCMD run\n")},
		Range:      []*pb.Range{{Start: &pb.Position{Line: 2}, End: &pb.Position{Line: 2}}},
	}}
	req := &request.Request{Progress: "plain", Dockerfile: request.Dockerfile{Name: "Dockerfile", Display: "app/Dockerfile"}}
	var out bytes.Buffer
	printWarnings(&out, req, warns)
	want := "\n 1 warning found (add --debug to see each rule's description, link and lines):\n - JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 2)\n"
	if out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}

	out.Reset()
	req.Debug = true
	printWarnings(&out, req, warns)
	for _, w := range []string{"More info: https://docs.docker.com/go/dockerfile/rule/json-args-recommended/\n", "app/Dockerfile:2\n", " 2 | >>> CMD run\n", "JSON arguments recommended for ENTRYPOINT/CMD"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("--debug lacks %q:\n%s", w, out.String())
		}
	}

	for _, mode := range []string{"quiet", "rawjson"} {
		out.Reset()
		req.Progress = mode
		printWarnings(&out, req, warns)
		if out.Len() != 0 {
			t.Errorf("--progress %s printed %q", mode, out.String())
		}
	}
}

// A build on nodes runs the frontend once per builder: each warning is
// shown once.
func TestDisplayKeepsEachWarningOnce(t *testing.T) {
	d, err := startDisplay(t.Context(), &request.Request{Progress: "quiet"})
	if err != nil {
		t.Fatal(err)
	}
	w := &bkclient.VertexWarning{Short: []byte("X: y (line 1)"), URL: "u"}
	d.send(&bkclient.SolveStatus{Warnings: []*bkclient.VertexWarning{w}})
	d.send(&bkclient.SolveStatus{Warnings: []*bkclient.VertexWarning{w, {Short: []byte("Z: other")}}})
	if got := d.close(); len(got) != 2 {
		t.Errorf("warnings %v", got)
	}
}
