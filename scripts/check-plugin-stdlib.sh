#!/usr/bin/env bash
# Fails when plugin/ imports anything outside the standard library:
# Traefik runs the plugin in Yaegi, which loads nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
mod=$(GOWORK=off go list -m)
bad=$(GOWORK=off go list -deps -f '{{if not .Standard}}{{.ImportPath}}{{end}}' ./plugin/... | grep -v "^$mod/plugin" || true)
if [ -n "$bad" ]; then
  echo "plugin/ imports non-standard packages (Yaegi cannot load them):" >&2
  echo "$bad" >&2
  exit 1
fi
echo "plugin/ imports only the standard library"
