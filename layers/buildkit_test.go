package layers

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildkitCode is the BuildKit code (v0.34.2) that package layers relies on without copying
// it: the functions whose behaviour kiln's exporters reproduce or hook into, each with the
// SHA-256 of its source as go/printer prints it. When a BuildKit upgrade changes one,
// TestBuildKitCodeUnchanged fails: read the upstream change, adapt package layers, and record
// the new sum.
var buildkitCode = []struct {
	file, fn, sum string
	why           string
}{
	{"exporter/containerimage/writer.go", "ImageWriter.Commit", "25054873b494506dc0cebb11215855e66530049bcc2eec04c3d1b3de3776fdb1",
		"which epoch and base image each reference is rewritten for (instance.wrap); GetRemotes(createIfNeeded) called once per reference"},
	{"exporter/containerimage/writer.go", "ImageWriter.rewriteRemoteWithEpoch", "0407681ffb9eb771d499cc5efbd1431b5d5f6fd5829b86cbfa502d9766c1e616",
		"rewriter.rewrite does the same, and BuildKit's pass must find nothing left to do"},
	{"exporter/containerimage/writer.go", "ImageWriter.exportLayers", "dca41906f2eeaec17acbe6c2851c4008b09df4f36bf750b0439f7be2fc213b43",
		"the references' GetRemotes is what hands kiln's compression to the cache"},
	{"exporter/containerimage/opts.go", "ImageCommitOpts.Load", "20bf1d2dd3e560b300c487fb9bc7010cac98dc10aac13b8972de76a00bfab118",
		"parseRewrite reads rewrite-timestamp and source-date-epoch as Load does"},
	{"util/converter/converter.go", "NewWithRewriteTimestamp", "43c0aaf96eb149a577df41cdcd14151bf8379fad8b92b6d1cfb65dd32d12d0be",
		"the rewritten-timestamp annotation that skips a layer"},
	{"util/converter/converter.go", "conversion.convert", "0b95dfd8c0d83ff7e26efb0fd6717bcd9d7f23564cc89e3a060f4daa5de6b86b",
		"the descriptor and labels of a rewrite, which rewriter.remembered rebuilds"},
	{"cache/blobs.go", "computeBlobChain", "d442679aa2061d75243e6e0d641166eab9f51a0bf57ad743490276cf0f824224",
		"Compress, NeedsComputeDiffBySelf and the finalizer as gzipType implements them"},
	{"cache/blobs_linux.go", "immutableRef.tryComputeOverlayBlob", "9982931e7df56a0e85990c14aae296fb851c0cbc7388520a690909d0d1564eca",
		"the compressor writes the blob itself, so its digest is the blob's"},
	{"cache/remote.go", "immutableRef.getRemote", "570c647f264481406639476e4081d0d9b740d0eb2093d9bd2980af9a48b4e3ba",
		"NeedsConversion asked only with force-compression"},
	{"worker/base/worker.go", "Worker.Exporter", "dc269e24c789fc6a3887d0a2b0279c47220bfbee59e8e48a207882746a7b0280",
		"the exporters Worker wraps"},
}

// funcSource returns the source of function fn ("Recv.Name" for a method) in file.
func funcSource(t *testing.T, file, fn string) string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok {
			continue
		}
		name := fd.Name.Name
		if fd.Recv != nil && len(fd.Recv.List) == 1 {
			typ := fd.Recv.List[0].Type
			if s, ok := typ.(*ast.StarExpr); ok {
				typ = s.X
			}
			if id, ok := typ.(*ast.Ident); ok {
				name = id.Name + "." + name
			}
		}
		if name != fn {
			continue
		}
		var b bytes.Buffer
		if err := printer.Fprint(&b, fset, fd); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	t.Fatalf("%s has no function %s", file, fn)
	return ""
}

func TestBuildKitCodeUnchanged(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/moby/buildkit").Output()
	if err != nil {
		t.Fatalf("finding BuildKit's module: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	if !strings.HasSuffix(dir, "@v0.34.2") {
		t.Errorf("BuildKit is %s, not v0.34.2: review the functions below and this test", filepath.Base(dir))
	}
	for _, c := range buildkitCode {
		sum := sha256.Sum256([]byte(funcSource(t, filepath.Join(dir, c.file), c.fn)))
		if got := hex.EncodeToString(sum[:]); got != c.sum {
			t.Errorf("BuildKit's %s (%s) is not the one package layers was written against (sha256 %s, recorded %s): it relies on it for %s",
				c.fn, c.file, got, c.sum, c.why)
		}
	}
}
