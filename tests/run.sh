#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs the Debian packages the tests use (when run as
# root and they are missing), installs this package with its test extra, then runs ruff and pytest.
# Safe to run again: every step skips what is already there. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(fonts-noto-color-emoji chromium librsvg2-bin)  # emoji rendering; the browser test of the demo; SVG corpora
missing=()
for deb in "${debs[@]}"; do dpkg -s "$deb" >/dev/null 2>&1 || missing+=("$deb"); done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "tests/run.sh: missing Debian packages (${missing[*]}); the tests that need them will be skipped" >&2
  fi
fi

python3 -m pip install -q --disable-pip-version-check -e ".[test]"
python3 -m ruff check .
python3 -m pytest "$@"
