#!/usr/bin/env bash
# Print the path of a uv binary, installing uv from PyPI into the user's site if none is found.
#
# It must work whichever python3 comes first on PATH: inside `uv run` that is the project's venv, where the user
# site is disabled and `python3 -m site --user-base` exits 1. So the lookup asks site.getuserbase() (which answers
# in a venv too) of the base interpreter, and installs with the base interpreter, never into the venv.
set -euo pipefail

# The Makefile exports the uv it found; scripts it runs reuse that one.
if [ -n "${UV:-}" ] && [ -x "${UV}" ]; then echo "$UV"; exit 0; fi
if command -v uv >/dev/null 2>&1; then command -v uv; exit 0; fi

base_python="$(python3 -c 'import sys; print(getattr(sys, "_base_executable", "") or sys.executable)')"
user_bin="$("$base_python" -c 'import site; print(site.getuserbase())')/bin"
for candidate in "$user_bin/uv" "$HOME/.local/bin/uv"; do
    if [ -x "$candidate" ]; then echo "$candidate"; exit 0; fi
done

echo "uv not found: installing it with pip ($base_python -m pip install --user uv)" >&2
"$base_python" -m pip install --quiet --user uv >&2 \
    || "$base_python" -m pip install --quiet --user --break-system-packages uv >&2
[ -x "$user_bin/uv" ] || { echo "ensure-uv.sh: pip installed uv, but not at $user_bin/uv" >&2; exit 1; }
echo "$user_bin/uv"
