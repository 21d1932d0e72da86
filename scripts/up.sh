#!/usr/bin/env bash
# README command 1: from a fresh clone to a running, seeded workbench.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/wb up "$@"
