#!/usr/bin/env bash
# The whole test suite on a fresh machine with Python 3.11: installs Chromium (apt),
# a virtual environment with the pinned requirements, then runs pytest (unit, AppTest
# and real-browser end-to-end tests). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q -r requirements-dev.txt
.venv/bin/python -m pip install -q --no-deps -e .

export PYTHONUNBUFFERED=1
exec .venv/bin/python -m pytest -q -p no:cacheprovider --timeout=600 "$@"
