#!/usr/bin/env bash
# Set up cares-integrations in the current Python environment.
#
#   bash scripts/setup.sh           # the library (core only)
#   bash scripts/setup.sh all       # plus LangChain (and its agents), LlamaIndex, training and test extras
#
# With no torch installed, a bare torch requirement would pull several GB of CUDA packages, so
# this installs the CPU build torch==2.13.0 first. On a GPU machine, install your CUDA build of
# torch before running this; it is left alone. Extras that need Tesseract (train, test, all)
# install it from Debian packages when it is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python}"
EXTRAS="${1:-}"

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "setup: no torch found; installing the CPU build torch==2.13.0 (GPU users: install your CUDA torch first)"
  "$PY" -m pip install --quiet torch==2.13.0
fi

SPEC="."
if [ -n "$EXTRAS" ]; then SPEC=".[${EXTRAS}]"; fi
"$PY" -m pip install --quiet -e "$SPEC"

case ",$EXTRAS," in
  *,all,*|*,test,*|*,train,*)
    if ! command -v tesseract >/dev/null 2>&1 || [ ! -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
      echo "setup: installing Tesseract OCR and the DejaVu fonts (Debian packages)"
      SUDO=""; if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq tesseract-ocr tesseract-ocr-eng fonts-dejavu-core >/dev/null
    fi
    ;;
esac
echo "setup: done ($("$PY" -c 'import torch, cares_integrations as c; print("cares-integrations", c.__version__, "torch", torch.__version__)'))"
