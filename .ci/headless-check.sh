#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "$0")/.."

# The headless flow as on Colab: a second venv with numpy 2 and only requirements-headless.txt
# (no mediapipe or adb). The constraint pins torch to the CPU build on this machine's disk;
# on Colab, where the file is not used, its own torch stays.
rm -rf .venv-headless
python3 -m venv .venv-headless
.venv-headless/bin/python -m pip install -q --upgrade pip
.venv-headless/bin/python -m pip install -q -r requirements-headless.txt -c .ci/headless-constraints.txt
.venv-headless/bin/python -m pip check
opencvs="$(.venv-headless/bin/python -m pip list --format=freeze | grep -ci '^opencv' || true)"
if [ "$opencvs" -ne 1 ]; then echo "$opencvs OpenCV distributions in the headless venv" >&2; exit 1; fi
.venv-headless/bin/python -c "import cv2, numpy, torch; assert int(numpy.__version__.split('.')[0]) >= 2, numpy.__version__; print('headless venv: numpy', numpy.__version__, '| opencv', cv2.__version__, '| torch', torch.__version__)"
if .venv-headless/bin/python -c "import mediapipe" 2>/dev/null; then echo "mediapipe in the headless venv" >&2; exit 1; fi
mapfile -t headless_tests < <(grep -v '^#' tests/headless.txt | grep .)
.venv-headless/bin/python -m pytest -q -p no:cacheprovider "${headless_tests[@]}"

# Then a torchvision built for another torch (Colab after torch was replaced): its import fails,
# and main2.py must still run, with one warning (the README's tiny-model command).
.venv-headless/bin/python -m pip install -q --no-deps torchvision==0.24.0
if .venv-headless/bin/python -c "import torchvision" 2>/dev/null; then echo "torchvision 0.24 imports beside this torch: not a mismatch" >&2; exit 1; fi
tiny="$(mktemp -d)"
.venv-headless/bin/python -m tools.fixtures.tiny_checkpoints "$tiny/ckpt"
.venv-headless/bin/python main2.py --image_path examples/sketches/cat.png --gallery examples/gallery \
  --checkpoints "$tiny/ckpt" --index "$tiny/index.sqlite" --output "$tiny/grid.png" --json "$tiny/out.json" >/dev/null
test -s "$tiny/grid.png" && test -s "$tiny/out.json"
rm -rf "$tiny"
echo "headless with a mismatched torchvision: main2.py ran"
