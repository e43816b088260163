#!/usr/bin/env bash
# Builds the helm CLI from the Go module proxy and caches the binary (the
# chart tests in integration/deploy run `helm lint` and `helm template`).
# Prints the binary's path on stdout; progress goes to stderr.
# Concurrent runs wait for each other (flock) instead of building twice.
# EDGEPASS_HELM names an existing helm (v3.8+ or v4) to use instead.
set -euo pipefail
if [ -n "${EDGEPASS_HELM:-}" ]; then
  if [ ! -x "$EDGEPASS_HELM" ]; then echo "build-helm: EDGEPASS_HELM=$EDGEPASS_HELM is not an executable" >&2; exit 1; fi
  echo "$EDGEPASS_HELM"; exit 0
fi
. "$(dirname "${BASH_SOURCE[0]}")/lib/cached-build.sh"
version="${HELM_VERSION:-v4.3.2}"

build() {
  local bin=$1 major="${version%%.*}"
  echo "build-helm: building helm.sh/helm/$major/cmd/helm@$version from the Go module proxy (a few minutes on 2 cores; cached at $bin afterwards)" >&2
  if ! go_install "$bin" "helm.sh/helm/$major/cmd/helm@$version" \
    -ldflags "-X helm.sh/helm/$major/internal/version.version=$version"; then
    echo "build-helm: cannot build helm $version; check GOPROXY, or set EDGEPASS_HELM to an existing helm binary" >&2
    exit 1
  fi
}
cached_build helm "$version" build
