# edgepass — the two commands a new user needs are `make demo` and `make test`.
SHELL := /bin/bash
GO ?= go
FUZZTIME ?= 300000x
DAEMON_BIN := daemon/bin/edgepass
# The release: a tag (v0.2.0), or git describe's v0.2.0-3-gabc1234[-dirty].
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)
LDFLAGS := -X github.com/edgepass/edgepass/daemon/version.Version=$(VERSION) -X github.com/edgepass/edgepass/daemon/version.Commit=$(COMMIT)

.PHONY: all build test test-unit test-integration fuzz lint bench demo traefik helm image clean

all: build

## build: compile the plugin (natively, as a check) and the daemon binary
build:
	$(GO) build ./plugin/...
	cd daemon && CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/edgepass ./cmd/edgepass

## image: the daemon's OCI image, built without a container engine, at daemon/bin/edgepass-image.tar
## (docker load -i / podman load -i / skopeo copy oci-archive:…); deploy/Dockerfile is the Docker way
image:
	cd integration && $(GO) run ./cmd/image -version "$(VERSION)" -commit "$(COMMIT)" -out ../daemon/bin/edgepass-image.tar

## test: everything CI runs — unit tests, yaegi tests, NATS tests, short fuzzing, end to end
test: test-unit fuzz test-integration

test-unit:
	GOWORK=off $(GO) vet ./plugin/... ./internal/...
	GOWORK=off $(GO) test -count=1 ./plugin/... ./internal/...
	cd daemon && $(GO) vet ./... && $(GO) test -count=1 -p 1 ./...

# Traefik is built first, visibly: go test would hide a first build's five
# minutes of progress. The harness installs the OIDC provider's npm packages.
test-integration: traefik helm
	cd integration && $(GO) vet ./... && $(GO) test -count=1 -p 1 -timeout 45m ./...

## fuzz: run each fuzz target for $(FUZZTIME) executions (a count: see scripts/fuzz.sh)
fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

## lint: gofmt, go vet, the plugin's imports, and yaegicheck: what Yaegi v0.16.1 (Traefik's interpreter) cannot run
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	GOWORK=off $(GO) vet ./plugin/... ./internal/...
	cd daemon && $(GO) vet ./...
	cd integration && $(GO) vet ./...
	@scripts/check-plugin-stdlib.sh
	GOWORK=off $(GO) run ./internal/yaegicheck/cmd/yaegicheck plugin

## bench: side-by-side throughput (no middleware / plugin / ForwardAuth) and the Go benchmarks
bench:
	scripts/bench.sh

## demo: Traefik + plugin, daemon + embedded NATS, a local OIDC provider and a demo app
# Built, then run (not `go run`, which exits 1 when Ctrl-C stops the demo).
demo:
	cd integration && $(GO) build -o ../daemon/bin/edgepass-demo ./cmd/demo && ../daemon/bin/edgepass-demo

## helm: build the helm CLI (v4) from the Go module proxy once, for the chart tests
helm:
	@scripts/build-helm.sh >/dev/null

## traefik: build Traefik v3.6.12 from the Go module proxy once (cached in ~/.cache/edgepass);
## bench and demo build it themselves when needed (harness.Build), showing its progress
traefik:
	@scripts/build-traefik.sh >/dev/null

clean:
	rm -rf daemon/bin bench-results
