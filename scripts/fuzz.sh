#!/usr/bin/env bash
# Runs every fuzz target in plugin/ and daemon/ for FUZZTIME each (default
# 300000x: an execution count, not a duration — a duration trips a race in Go's
# fuzzing coordinator, golang/go#75804, that fails a target with a bare
# "context deadline exceeded" and no crasher). Seed corpora also run in plain
# `go test`; this explores beyond them.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-300000x}"
found=0
while read -r f; do
  dir=$(dirname "$f")
  case "$dir" in
    daemon/*) mod=daemon; pkg="./${dir#daemon/}" ;;
    *) mod=.; pkg="./$dir" ;;
  esac
  for fn in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$f"); do
    found=$((found+1))
    echo "fuzz: $fn in $dir for $fuzztime"
    (cd "$mod" && go test -run='^$' -fuzz="^${fn}\$" -fuzztime="$fuzztime" "$pkg")
  done
done < <(grep -rl --include='*_test.go' '^func Fuzz' plugin daemon | sort)
if [ "$found" -eq 0 ]; then echo "fuzz: no fuzz targets found" >&2; exit 1; fi
echo "fuzz: $found targets ran for $fuzztime each"
