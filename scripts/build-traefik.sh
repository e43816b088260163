#!/usr/bin/env bash
# Builds Traefik from the Go module proxy and caches the binary.
# Prints the binary's path on stdout; progress goes to stderr.
# Concurrent runs wait for each other (flock) instead of building twice.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/cached-build.sh"
version="${TRAEFIK_VERSION:-v3.6.12}"

build() {
  local bin=$1
  echo "build-traefik: downloading traefik $version source from the Go module proxy" >&2
  dir=$(GOWORK=off GOFLAGS=-mod=mod go mod download -json "github.com/traefik/traefik/v3@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  if [ -z "$dir" ] || [ ! -d "$dir" ]; then
    echo "build-traefik: cannot download github.com/traefik/traefik/v3@$version; check GOPROXY" >&2; exit 1
  fi
  work=$(mktemp -d)
  trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
  cp -r "$dir/." "$work/src"
  chmod -R u+w "$work/src"
  echo "build-traefik: compiling (about 5 minutes on 2 cores; cached at $bin afterwards)" >&2
  (cd "$work/src" && GOWORK=off CGO_ENABLED=0 go build -trimpath -o "$bin" ./cmd/traefik)
}
cached_build traefik "$version" build
