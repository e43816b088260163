#!/usr/bin/env bash
# Installs the test OIDC provider's npm packages (oidc-provider, pinned in
# integration/oidcprovider/package-lock.json) with `npm ci` when node_modules
# is missing or older than the lock file. Progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/../integration/oidcprovider"
command -v node >/dev/null || { echo "install-oidc-provider: node is not installed (need Node.js >= 18; apt-get install nodejs npm)" >&2; exit 1; }
command -v npm >/dev/null || { echo "install-oidc-provider: npm is not installed (apt-get install npm)" >&2; exit 1; }
if [ -d node_modules/oidc-provider ] && [ node_modules/.package-lock.json -nt package-lock.json ]; then
  echo "install-oidc-provider: node_modules up to date" >&2; exit 0
fi
echo "install-oidc-provider: npm ci in $(pwd)" >&2
npm ci --no-audit --no-fund --loglevel=error >&2
