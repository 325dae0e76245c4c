#!/usr/bin/env bash
# Set up the project's virtualenv (idempotent), then run the demo or the tests.
#   ./quickstart.sh demo [--days N] [--bad-day]   the main job: demo backfill + certificate
#   ./quickstart.sh test [pytest args]            the test suite (what CI runs)
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "rlx_assets needs Python 3.11 or 3.12 as '$PYTHON'; set PYTHON=/path/to/python3.11." >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# Install quietly; show pip's output only if it fails.
if ! { .venv/bin/python -m pip install --disable-pip-version-check --upgrade pip &&
       .venv/bin/python -m pip install --disable-pip-version-check -e '.[dev]'; } \
     > .venv/install.log 2>&1; then
  cat .venv/install.log >&2
  echo "Installing the dependencies failed; the log above says why (.venv/install.log)." >&2
  exit 1
fi

command=${1:-}
shift || true
case "$command" in
  demo)
    exec .venv/bin/rlx-assets demo "$@"
    ;;
  test)
    set +e
    .venv/bin/python -m pytest "$@"
    status=$?
    set -e
    if [ "$status" -eq 5 ]; then
      echo "pytest collected no tests: treating that as a failure of the suite itself." >&2
      exit 1
    fi
    exit "$status"
    ;;
  *)
    echo "usage: ./quickstart.sh demo|test [args]" >&2
    exit 2
    ;;
esac
