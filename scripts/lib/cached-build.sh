# Sourced by the build-*.sh scripts: the cache, lock and go install steps
# they share.
#
# cached_build NAME VERSION BUILD prints the path of the cached binary
# $EDGEPASS_CACHE/NAME-VERSION (default cache ~/.cache/edgepass). When it is
# not there yet it takes a lock, so concurrent runs wait for each other
# instead of building twice, and runs the function BUILD with a temporary
# path in the cache to write the binary to, then renames it into place (one
# filesystem: a build killed half way never leaves a binary that looks
# cached). BUILD reports progress on stderr and exits non-zero when it cannot
# build.
cached_build() {
  local name=$1 version=$2 build=$3
  local cache="${EDGEPASS_CACHE:-$HOME/.cache/edgepass}"
  local bin="$cache/$name-$version"
  if [ -x "$bin" ]; then echo "$bin"; return 0; fi
  mkdir -p "$cache"
  exec 9>"$cache/$name-$version.lock"
  if ! flock -n 9; then
    echo "build-$name: another build of $name $version is running; waiting for it" >&2
    flock 9
  fi
  if [ -x "$bin" ]; then echo "$bin"; return 0; fi
  rm -f "$bin.tmp"
  "$build" "$bin.tmp"
  mv -f "$bin.tmp" "$bin"
  echo "$bin"
}

# go_install BIN PACKAGE@VERSION [GO INSTALL FLAGS...] builds PACKAGE in
# module mode (static, -trimpath) with go install into a temporary GOBIN,
# removed when the script exits, and moves the one binary it installs to
# BIN; it fails, with go's output on stderr, when go install does.
go_install() {
  local bin=$1 pkg=$2
  shift 2
  gobin=$(mktemp -d)
  trap 'rm -rf "$gobin"' EXIT
  GOWORK=off GOBIN="$gobin" CGO_ENABLED=0 go install -trimpath "$@" "$pkg" >&2 && mv "$gobin"/* "$bin"
}
