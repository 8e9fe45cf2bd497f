#!/usr/bin/env bash
# Install as a stranger would, outside the checkout: one wheel; `pip install .` (the base) into a
# fresh venv whose `sketch-search find` searches a copied gallery on tiny checkpoints from another
# working folder; then the desktop extra beside it (`draw` and `phone` start); then `pipx install .`.
# No run may write under a venv's site-packages (file list and mtimes compared before and after).
# Usage: .ci/install-check.sh [PYTHON]  (PYTHON: the checkout's venv, for the tiny checkpoints)
set -euo pipefail
checkout="$(cd "$(dirname "$0")/.." && pwd)"
dev_python="${1:-$checkout/.venv/bin/python}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# Nothing from the caller's environment may point the program at the checkout or at a real home.
unset SKETCH_SEARCH_HOME XDG_DATA_HOME PYTHONPATH VIRTUAL_ENV
# pip keeps the caller's cache (a temporary HOME would download every wheel again).
export PIP_CACHE_DIR="${PIP_CACHE_DIR:-$(python3 -m pip cache dir 2>/dev/null || echo "$HOME/.cache/pip")}"
export HOME="$tmp/home" HF_HUB_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Every pip run here, pipx's included, takes the CPU torch (see the file).
export PIP_CONSTRAINT="$checkout/.ci/install-constraints.txt"
mkdir -p "$HOME" "$tmp/work"
step() { echo "install check [${SECONDS}s]: $*"; }
fail() { echo "install check FAILED: $*" >&2; exit 1; }

step "pip wheel --no-deps gives one wheel"
"$dev_python" -m pip wheel -q --no-deps "$checkout" -w "$tmp/wheels" >/dev/null
mapfile -t wheels < <(find "$tmp/wheels" -name '*.whl')
[ "${#wheels[@]}" -eq 1 ] || fail "expected one wheel, got: ${wheels[*]}"
# Its top-level names are exactly the stage packages and sketch_search (no main, main2, tools, ...):
# generic names stay out of site-packages' top level.
top_level="$(unzip -Z1 "${wheels[0]}" | cut -d/ -f1 | grep -v '\.dist-info$' | LC_ALL=C sort -u | tr '\n' ' ')"
expected="captioning checkpoints device generation retrieval sketch sketch_search "
[ "$top_level" = "$expected" ] || fail "the wheel's top-level names are: $top_level(expected: $expected)"

# The inputs, outside the checkout.
"$dev_python" -m tools.fixtures.tiny_checkpoints "$tmp/ckpt" >/dev/null
cp -r "$checkout/examples/gallery" "$tmp/gallery"
cp "$checkout/examples/sketches/cat.png" "$tmp/cat.png"

snapshot() {  # every file under a venv's site-packages with its mtime
  find "$1"/lib/python*/site-packages -printf '%p %T@\n' | sort
}
unchanged_by() {  # unchanged_by VENV COMMAND...: run it from the work folder; site-packages untouched
  local venv="$1"; shift
  snapshot "$venv" >"$tmp/before"
  (cd "$tmp/work" && "$@")
  snapshot "$venv" >"$tmp/after"
  if ! diff -q "$tmp/before" "$tmp/after" >/dev/null; then
    diff "$tmp/before" "$tmp/after" | head -20 >&2
    fail "$* wrote under $venv's site-packages"
  fi
}
find_in_gallery() {  # find_in_gallery COMMAND: search the copied gallery; default outputs in ./results
  rm -rf "$tmp/work/results" "$tmp/out.json"
  unchanged_by "$2" "$1" find --image_path "$tmp/cat.png" --gallery "$tmp/gallery" \
    --checkpoints "$tmp/ckpt" --json "$tmp/out.json" >/dev/null
  test -s "$tmp/work/results/cat_results.png" || fail "no results grid in the working folder"
  "$2/bin/python" - "$tmp/out.json" "$tmp/gallery" <<'EOF'
import json, sys
data, gallery = json.load(open(sys.argv[1])), sys.argv[2]
paths = [hit["path"] for hit in data["results"]]
assert len(paths) == 4 and all(p.startswith(gallery + "/") for p in paths), paths
EOF
}

step "pip install <checkout> (the base) into a fresh venv"
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q "$checkout"
"$tmp/venv/bin/pip" check >/dev/null
if "$tmp/venv/bin/python" -c "import mediapipe" 2>/dev/null; then fail "the base installs mediapipe"; fi
unchanged_by "$tmp/venv" "$tmp/venv/bin/sketch-search" --version
# An installed program's models folder is the per-user home, never its install folder.
models="$(cd "$tmp/work" && "$tmp/venv/bin/python" -c 'from checkpoints.layout import models_folder; print(models_folder())')"
[ "$models" = "$HOME/.local/share/sketch-search/models" ] || fail "installed models folder is $models"
step "sketch-search find on tiny checkpoints, from another folder"
find_in_gallery "$tmp/venv/bin/sketch-search" "$tmp/venv"
unchanged_by "$tmp/venv" "$tmp/venv/bin/sketch-search" fetch --help >/dev/null

step "pip install '<checkout>[desktop]' into the same venv"
"$tmp/venv/bin/pip" install -q "$checkout[desktop]"
"$tmp/venv/bin/pip" check >/dev/null
opencvs="$("$tmp/venv/bin/pip" list --format=freeze | grep -ci '^opencv' || true)"
[ "$opencvs" -eq 1 ] || fail "$opencvs OpenCV distributions in the desktop venv"
unchanged_by "$tmp/venv" "$tmp/venv/bin/sketch-search" draw --help >/dev/null
unchanged_by "$tmp/venv" "$tmp/venv/bin/sketch-search" phone --help >/dev/null

step "pipx install <checkout> (pipx from PyPI)"
python3 -m venv "$tmp/pipx-venv"
"$tmp/pipx-venv/bin/pip" install -q pipx
export PIPX_HOME="$tmp/pipx" PIPX_BIN_DIR="$tmp/pipx-bin"
"$tmp/pipx-venv/bin/pipx" install -q "$checkout" >/dev/null
step "the pipx command's find"
find_in_gallery "$tmp/pipx-bin/sketch-search" "$PIPX_HOME/venvs/sketch-search"
[ ! -e "$HOME/.local/share/sketch-search" ] || fail "a search with --checkpoints wrote into the per-user home"
step "passed"
