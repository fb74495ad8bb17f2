#!/usr/bin/env bash
# Install mygo and its test tools into the active Python environment.
# Without an NVIDIA GPU, take torch's CPU build first: an unpinned torch resolves to a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --upgrade pip
if ! command -v nvidia-smi >/dev/null 2>&1 && ! python -c "import torch" 2>/dev/null; then
  # TORCH_INDEX_URL: where your site serves torch's CPU wheels, if pip's default index does not.
  python -m pip install --quiet "torch==2.13.0" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi
python -m pip install --quiet -e ".[dev]"
