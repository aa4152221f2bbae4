#!/usr/bin/env bash
# Runs tests/e2e/status_page_check.mjs (its arguments passed on) with
# playwright-core from npm, installed once into a cache directory
# ($KAPPA_PLAYWRIGHT_DIR, default ~/.cache/kappa/playwright), and Debian's
# chromium (scripts/setup.sh installs it); playwright downloads no browser.
set -euo pipefail
version=1.65.1
dir="${KAPPA_PLAYWRIGHT_DIR:-$HOME/.cache/kappa/playwright}"
command -v node >/dev/null || { echo "status_page_browser: node is missing (scripts/setup.sh installs it)" >&2; exit 3; }
[ -x "${KAPPA_CHROMIUM:-/usr/bin/chromium}" ] || { echo "status_page_browser: ${KAPPA_CHROMIUM:-/usr/bin/chromium} is missing (scripts/setup.sh installs Debian's chromium)" >&2; exit 3; }
if [ "$(node -p "try{require('$dir/node_modules/playwright-core/package.json').version}catch(e){''}")" != "$version" ]; then
  mkdir -p "$dir"
  # A lock, since tests run in parallel; PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: the browser is Debian's.
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 flock "$dir/.lock" npm install --prefix "$dir" --no-audit --no-fund --silent \
    "playwright-core@$version" >&2
fi
export KAPPA_PLAYWRIGHT_DIR="$dir"
exec node "$(dirname "$0")/status_page_check.mjs" "$@"
