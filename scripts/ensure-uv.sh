#!/usr/bin/env bash
# Print the path of a uv binary, installing uv from PyPI into the user's site if none is found.
set -euo pipefail
if command -v uv >/dev/null 2>&1; then command -v uv; exit 0; fi
user_bin="$(python3 -m site --user-base)/bin"
if [ -x "$user_bin/uv" ]; then echo "$user_bin/uv"; exit 0; fi
echo "uv not found: installing it with pip (python3 -m pip install --user uv)" >&2
python3 -m pip install --quiet --user uv >&2 || python3 -m pip install --quiet --user --break-system-packages uv >&2
echo "$user_bin/uv"
