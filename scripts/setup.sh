#!/usr/bin/env bash
# Set up cares-integrations in the current Python environment.
#
#   bash scripts/setup.sh           # the core library: numpy, Pillow, pydantic (no torch)
#   bash scripts/setup.sh all       # plus the gate (torch), LangChain, LlamaIndex, training, tests
#   bash scripts/setup.sh gate,langchain   # any comma-separated extras
#
# Extras that need torch (gate, train, test, all) install torch==2.13.0 first when no torch is
# installed. From plain PyPI on Linux that is the CUDA build (about 2.5 GB with its nvidia
# packages). Set TORCH_INDEX_URL to pick a build, e.g.
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu bash scripts/setup.sh all     # CPU only
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 bash scripts/setup.sh all   # CUDA 12.8
# or install your own torch first: it is left alone. Extras that need Tesseract (train, test,
# all) install it and poppler-utils (the corpus's PDF text layer) from Debian packages when
# missing; PP-OCR (rapidocr-onnxruntime) comes with the train extra from PyPI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python}"
EXTRAS="${1:-}"

case ",$EXTRAS," in
  *,all,*|*,test,*|*,train,*|*,gate,*)
    if ! "$PY" -c "import torch" >/dev/null 2>&1; then
      if [ -n "${TORCH_INDEX_URL:-}" ]; then
        echo "setup: no torch found; installing torch==2.13.0 from $TORCH_INDEX_URL"
        "$PY" -m pip install --quiet torch==2.13.0 --index-url "$TORCH_INDEX_URL"
      else
        echo "setup: no torch found; installing torch==2.13.0 from PyPI (on Linux the CUDA build; set TORCH_INDEX_URL for another)"
        "$PY" -m pip install --quiet torch==2.13.0
      fi
    fi
    ;;
esac

SPEC="."
if [ -n "$EXTRAS" ]; then SPEC=".[${EXTRAS}]"; fi
"$PY" -m pip install --quiet -e "$SPEC"

case ",$EXTRAS," in
  *,all,*|*,test,*|*,train,*)
    if ! command -v tesseract >/dev/null 2>&1 || ! command -v pdftotext >/dev/null 2>&1 \
        || [ ! -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
      echo "setup: installing Tesseract OCR, poppler-utils and the DejaVu fonts (Debian packages)"
      SUDO=""; if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq tesseract-ocr tesseract-ocr-eng poppler-utils fonts-dejavu-core >/dev/null
    fi
    ;;
esac
echo "setup: done ($("$PY" -c 'import importlib.util as u, cares_integrations as c; t = u.find_spec("torch"); print("cares-integrations", c.__version__, "torch", "installed" if t else "not installed")'))"
