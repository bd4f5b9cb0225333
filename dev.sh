#!/usr/bin/env bash
# Set-up plus the project's two commands, on a fresh machine with Python 3.11 and pip:
#   ./dev.sh reproduce [headlens reproduce options]   full reproduction on the defaults
#   ./dev.sh test [pytest options]                    the test suite (what CI runs)
# The first call creates .venv and installs everything pinned in constraints.txt (a few
# minutes); later calls reuse it until pyproject.toml or constraints.txt change.
set -euo pipefail
cd "$(dirname "$0")"

venv="${HEADLENS_VENV:-.venv}"
# The gold data of this project's machines and CI sit beside the checkout; an installed
# headlens defaults to the user's data directory instead (see README "Data that finds itself").
if [ -z "${HEADLENS_DATA:-}" ] && [ -d ../shared/data ]; then
  HEADLENS_DATA="$(cd ../shared/data && pwd)"
  export HEADLENS_DATA
fi
python="${PYTHON:-}"
if [ -z "$python" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python="$candidate"; break; fi
  done
fi
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "headlens needs Python >= 3.11 (found $("$python" --version 2>&1)); set PYTHON=..." >&2; exit 1; }

ensure_env() {
  local stamp="$venv/.headlens-installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    echo "setting up $venv (first run: a few minutes) ..." >&2
    "$python" -m venv "$venv"
    # (pip's machine-wide configuration may name extra indexes that do not exist: its
    # warnings about them are noise, so they are filtered out.)
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]' \
      2> >(grep -v "neither a file nor a directory" >&2)
    rm -f "$venv"/.headlens-installed-*
    touch "$stamp"
  fi
}

ensure_browser() {
  # The explorer's tests drive Debian's headless Chromium (no browser download).
  command -v chromium >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the browser tests ..." >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "the browser tests need chromium: apt-get install chromium" >&2
  fi
}

case "${1:-}" in
  reproduce)
    shift; ensure_env
    exec "$venv/bin/headlens" reproduce "$@" ;;
  test)
    shift; ensure_env; ensure_browser
    exec "$venv/bin/python" -m pytest "$@" ;;
  setup)
    ensure_env ;;
  *)
    echo "usage: ./dev.sh reproduce|test|setup [options]" >&2; exit 2 ;;
esac
