#!/usr/bin/env bash
# Create .venv and install the project into it, from nothing. Idempotent and quick when
# nothing changed. Usage: scripts/bootstrap.sh [extras]   e.g. scripts/bootstrap.sh test
#
# torch: a CPU-only machine gets the CPU wheel (never the multi-GB CUDA build); a machine
# with an NVIDIA driver gets PyPI's CUDA build. Override with WB_TORCH=cpu|cuda|skip.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-}"
PY="${PYTHON:-python3}"
TORCH_VERSION="2.13.0"

if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "Error: ml-workbench needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)

if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  mode="${WB_TORCH:-auto}"
  if [ "$mode" = auto ]; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then mode=cuda; else mode=cpu; fi
  fi
  case "$mode" in
    cuda) echo "bootstrap: installing torch $TORCH_VERSION (CUDA build)"
          "${PIP[@]}" "torch==$TORCH_VERSION" ;;
    cpu)  echo "bootstrap: installing torch $TORCH_VERSION (CPU build)"
          # A CPU wheel this machine keeps in pip's find-links first (no download), its
          # dependencies from PyPI; else PyTorch's CPU index (never PyPI's CUDA build).
          if "${PIP[@]}" --no-index --no-deps "torch==$TORCH_VERSION" 2>/dev/null \
             && .venv/bin/python -c 'import sys, importlib.metadata as m; sys.exit("+cpu" not in m.version("torch"))'; then
            "${PIP[@]}" "torch==$TORCH_VERSION"
          else
            "${PIP[@]}" "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu \
              --extra-index-url https://pypi.org/simple
          fi ;;
    skip) ;;
    *) echo "Error: WB_TORCH must be cpu, cuda or skip (got $mode)" >&2; exit 2 ;;
  esac
fi

target="."
[ -n "$EXTRAS" ] && target=".[$EXTRAS]"
stamp=".venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)-${EXTRAS:-base}"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing ml-workbench $target (first time: about 2 minutes)"
  "${PIP[@]}" -e "$target"
  touch "$stamp"
fi
