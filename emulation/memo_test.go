package emulation

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/platforms"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/kiln-build/kiln/rootless"
)

func TestEmulationMemo(t *testing.T) {
	dir := t.TempDir()
	memoDir = func() (string, error) { return filepath.Join(dir, "run"), nil }
	t.Cleanup(func() { memoDir = rootless.RunDir })

	binfmt := filepath.Join(dir, "binfmt")
	if err := os.MkdirAll(binfmt, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(binfmt, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("register", "")
	write("status", "enabled\n")
	write("qemu-aarch64", "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: PF\n")
	arm64 := []ocispecs.Platform{platforms.MustParse("linux/arm64")}
	runnable := []ocispecs.Platform{platforms.MustParse("linux/amd64"), platforms.MustParse("linux/arm64")}

	key, ok := memoKeyIn(binfmt, arm64)
	if !ok {
		t.Skip("no boot id or user namespace to key on")
	}
	if _, ok := recalled(key); ok {
		t.Fatal("recalled a check that was never made")
	}
	remember(key, runnable)
	got, ok := recalled(key)
	if !ok || len(got) != 2 || platforms.Format(got[1]) != "linux/arm64" {
		t.Fatalf("recalled %v, %v; want %v", got, ok, runnable)
	}

	// Another request, or any change to the handlers, is another check.
	if k, _ := memoKeyIn(binfmt, runnable); k == key {
		t.Error("different platforms share a key")
	}
	write("qemu-aarch64", "disabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: PF\n")
	if k, _ := memoKeyIn(binfmt, arm64); k == key {
		t.Error("disabling the handler kept the key")
	}
	write("qemu-aarch64", "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: PF\n")
	if k, _ := memoKeyIn(binfmt, arm64); k != key {
		t.Error("the same handlers give another key")
	}
	if err := os.Remove(filepath.Join(binfmt, "qemu-aarch64")); err != nil {
		t.Fatal(err)
	}
	if k, _ := memoKeyIn(binfmt, arm64); k == key {
		t.Error("removing the handler kept the key")
	}

	// An expired check is not recalled.
	path, _ := memoPath()
	var m memo
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	c := m.Checks[key]
	c.At = time.Now().Add(-2 * memoTTL)
	m.Checks[key] = c
	b, _ = json.Marshal(m)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := recalled(key); ok {
		t.Error("recalled an expired check")
	}
}

func TestAnyForeign(t *testing.T) {
	host := platforms.MustParse("linux/amd64")
	if anyForeign(host, []ocispecs.Platform{host, platforms.MustParse("linux/amd64/v2")}) {
		t.Error("amd64 variants are not foreign on amd64")
	}
	if !anyForeign(host, []ocispecs.Platform{host, platforms.MustParse("linux/arm64")}) {
		t.Error("arm64 is foreign on amd64")
	}
}
