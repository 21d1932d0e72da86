#!/usr/bin/env bash
# README command 2: install what the tests need, then run lint and the whole suite.
# Tests start their own Redis, workers, API and SMTP servers on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh test

# Debian packages for the browser test and the compose check; best effort (tests that need
# them skip with a reason when they are missing, e.g. on a laptop without root).
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "test: installing ${need[*]} (Debian)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") \
    >/tmp/wb-apt.log 2>&1 || echo "test: apt-get failed (see /tmp/wb-apt.log); those tests will skip"
fi

.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
