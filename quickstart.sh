#!/usr/bin/env bash
# One command: set up a virtual environment (.venv) and open the app on the built-in demo.
#   ./quickstart.sh [DEMO_DIR]
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test]"
exec .venv/bin/unit-trainer demo "${1:-unit-trainer-demo}"
