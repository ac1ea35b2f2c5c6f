//go:build linux

package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// linux/arm/v6, the Raspberry Pi Zero and 1, builds and runs under QEMU
// with Debian's armel busybox (armhf needs ARMv7): a RUN step sees the
// platform, the image is an arm/v6 image, and ctr runs it.
func TestBuildArmV6(t *testing.T) {
	armel := filepath.Join(fixturesDir, "rootfs", "armel")
	if _, err := os.Stat(filepath.Join(armel, "bin", "busybox")); err != nil {
		t.Fatalf("the armel busybox fixture is missing (%v): run hack/fixtures.sh (make deps)", err)
	}
	e := newEnv(t)
	dir := contextDir(t, map[string]string{"Dockerfile": `FROM scratch AS base
COPY rootfs/armel/ /
FROM base
ARG TARGETPLATFORM TARGETVARIANT
RUN echo "$TARGETPLATFORM $TARGETVARIANT $(uname -m)" > /built
CMD ["cat", "/built"]
`})
	os.MkdirAll(filepath.Join(dir, "rootfs"), 0o755)
	if out, err := exec.Command("cp", "-a", armel, filepath.Join(dir, "rootfs")).CombinedOutput(); err != nil {
		t.Fatalf("copying the armel rootfs: %v: %s", err, out)
	}
	e.kiln("build", "--platform", "linux/arm/v6", "-t", "pi:1", dir).ok(t)

	raw := e.kiln("inspect", "--platform", "linux/arm/v6", "pi:1").ok(t).Stdout
	var doc struct {
		Config struct {
			Architecture string `json:"architecture"`
			Variant      string `json:"variant"`
		} `json:"config"`
	}
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatalf("kiln inspect: %v\n%s", err, raw)
	}
	if doc.Config.Architecture != "arm" || doc.Config.Variant != "v6" {
		t.Errorf("the image's config is %s/%s, want arm/v6:\n%s", doc.Config.Architecture, doc.Config.Variant, raw)
	}
	out := e.ctr("run", "--rm", "--platform", "linux/arm/v6", "docker.io/library/pi:1", "pi-v6").ok(t).Stdout
	if !strings.HasPrefix(strings.TrimSpace(out), "linux/arm/v6 v6 armv") {
		t.Errorf("the arm/v6 image printed %q, want \"linux/arm/v6 v6 armv...\"", out)
	}
}
