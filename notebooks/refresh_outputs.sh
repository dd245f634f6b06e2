#!/usr/bin/env bash
# Re-run every notebook and save its outputs (after a change in nnx_edu that
# changes what a notebook prints).  The outputs come from a real run on the
# CPU, as nbval expects; then nbstripout drops metadata but keeps the outputs
# and execution counts (nbval needs both).
# Usage: notebooks/refresh_outputs.sh [NOTEBOOK...]   (default: all of them)
set -euo pipefail
cd "$(dirname "$0")/.."
export JAX_PLATFORMS=cpu
bin=${VENV:-.venv}/bin
if [ $# -eq 0 ]; then
  set -- notebooks/*.ipynb notebooks/exercises/*.ipynb notebooks/exercises/solutions/*.ipynb
fi
for notebook in "$@"; do
  echo "running $notebook"
  "$bin/jupyter" nbconvert --to notebook --execute --inplace --log-level=ERROR \
    --ExecutePreprocessor.kernel_name=python3 --ExecutePreprocessor.timeout=600 "$notebook"
done
"$bin/nbstripout" --keep-output --keep-count "$@"
