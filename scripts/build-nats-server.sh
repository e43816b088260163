#!/usr/bin/env bash
# Builds nats-server from the Go module proxy and caches the binary (the
# external NATS of the end-to-end suite). Prints the binary's path on stdout;
# progress goes to stderr.
# Concurrent runs wait for each other (flock) instead of building twice.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/cached-build.sh"
version="${NATS_SERVER_VERSION:-v2.15.2}"

build() {
  local bin=$1
  echo "build-nats-server: building github.com/nats-io/nats-server/v2@$version (about a minute; cached at $bin afterwards)" >&2
  if ! go_install "$bin" "github.com/nats-io/nats-server/v2@$version"; then
    echo "build-nats-server: cannot build nats-server $version; check GOPROXY, or set EDGEPASS_NATS_SERVER to an existing nats-server (2.10+, JetStream)" >&2
    exit 1
  fi
}
cached_build nats-server "$version" build
