# kiln — see DESIGN.md in the shared notes. `make test` is what CI runs (via .ci/run).
GO      ?= go
PKG     := github.com/kiln-build/kiln
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
# Only stamp the version when the version package exists.
LDFLAGS := $(if $(wildcard version/*.go),-X $(PKG)/version.Version=$(VERSION))
# GOARCH[:GOARM:suffix]: arm is ARMv7 (Raspberry Pi 2 and newer on a 32-bit OS), armv6 the
# Raspberry Pi Zero and 1.
ARCHES  := amd64 arm64 arm:7:arm arm:6:armv6
# A static binary: nothing kiln needs comes from libc (os/user and the DNS
# resolver have pure-Go fallbacks), and without the dynamic loader and libc a
# process starts ~10% faster and maps ~1 MB less (BENCHMARKS.md). The tag
# drops urfave/cli's man-page generator, which kiln does not use.
BUILDENV  := CGO_ENABLED=0
BUILDTAGS := urfave_cli_no_docs

TOOLS    := $(CURDIR)/_output/bin
FIXTURES := $(CURDIR)/_output/fixtures

.PHONY: all build cross deps fmt-check vet unit fuzz integration test demo rootless-containerd bench clean

all: build

build:
	$(BUILDENV) $(GO) build -tags '$(BUILDTAGS)' -ldflags '$(LDFLAGS)' -o bin/kiln ./cmd/kiln

cross:
	@set -e; for spec in $(ARCHES); do \
		arch=$${spec%%:*}; goarm=7; name=$$arch; \
		case $$spec in *:*:*) goarm=$$(echo $$spec | cut -d: -f2); name=$${spec##*:};; esac; \
		echo "building bin/kiln-linux-$$name"; \
		GOOS=linux GOARCH=$$arch GOARM=$$goarm $(BUILDENV) \
			$(GO) build -tags '$(BUILDTAGS)' -ldflags '$(LDFLAGS)' -o bin/kiln-linux-$$name ./cmd/kiln; \
	done

deps:
	hack/install-deps.sh
	hack/build-containerd.sh $(TOOLS)
	hack/build-buildkit.sh $(TOOLS)   # buildkitd nodes for integration/nodes_test.go, buildctl
	hack/build-crictl.sh $(TOOLS)     # crictl for integration/k8s_test.go (containerd's CRI plugin)
	hack/fixtures.sh $(FIXTURES)
	hack/debian-fixtures.sh $(FIXTURES)   # Debian bookworm rootfs tarballs (once per machine, ~5 min)
	hack/vm-kernel.sh $(FIXTURES)         # Debian's kernel for the cgroup v2 VM test (a download)

fmt-check:
	@out="$$(gofmt -l $$(find . -name '*.go' -not -path './_output/*' -not -path './vendor/*'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi; echo "gofmt: ok"

vet:
	$(GO) vet ./...

# Unit tests: every package except the integration suite.
unit:
	@pkgs="$$($(GO) list ./... | grep -v '^$(PKG)/integration$$')"; \
	if [ -z "$$pkgs" ]; then echo "no unit-test packages"; exit 0; fi; \
	echo "$(GO) test ./... (without integration)"; $(GO) test -count=1 $$pkgs

# The real-world corpus (TestRealWorld) alone takes about 8 minutes on 2 cores; CI's limit is 90.
integration:
	KILN_BINARY=$(CURDIR)/bin/kiln KILN_TOOLS=$(TOOLS) KILN_FIXTURES=$(FIXTURES) \
		$(GO) test -count=1 -timeout 60m -v ./integration/...

# A short run of every go test -fuzz target (seed corpora in each package's testdata/fuzz). The
# budget is a count of runs, not a duration: Go 1.26's fuzzing coordinator can fail a target with
# "context deadline exceeded" when a duration ends while a worker is busy (golang/go#75804).
FUZZTIME ?= 20000x
fuzz:
	@set -e; for pkg in $$($(GO) list ./... | grep -v '/integration$$'); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

test: deps build fmt-check vet unit fuzz integration

demo: deps build
	hack/demo.sh

# kiln against buildkitd + buildctl on a private containerd (bench/, BENCHMARKS.md); as root, about
# 15 minutes with the real-world corpus. BENCH_FLAGS adds options, e.g.
# BENCH_FLAGS='-only cached,realworld -realworld-cases fs -baseline /tmp/kiln-old'.
bench: deps build
	$(GO) run ./bench -kiln $(CURDIR)/bin/kiln -tools $(TOOLS) -fixtures $(FIXTURES) $(BENCH_FLAGS)

# Start a rootless containerd for the current (unprivileged) user with RootlessKit; see the script
# for check, status and stop.
rootless-containerd:
	hack/rootless-containerd.sh start

clean:
	rm -rf bin _output
