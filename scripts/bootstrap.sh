#!/usr/bin/env bash
# Create .venv from the committed uv.lock. Idempotent and quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if ! command -v uv >/dev/null 2>&1; then
  export PATH="$HOME/.local/bin:$PATH"
  command -v uv >/dev/null 2>&1 || "$PYTHON" -m pip install --quiet --user uv \
    || "$PYTHON" -m pip install --quiet uv
fi
stamp=.venv/.synced
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ uv.lock -nt "$stamp" ]; then
  uv sync --frozen --python "$PYTHON"
  touch "$stamp"
fi
bash scripts/install-system-deps.sh
