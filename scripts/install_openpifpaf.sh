#!/usr/bin/env bash
# Install openpifpaf 0.13.11 (optional pose backend) into a venv as a PATCHED source build.
#
# Why a source build: openpifpaf ships only an sdist on PyPI, pins torch==1.13.1 and compiles a
# C++ torch extension, so it has to be compiled against the venv's own torch (no build isolation).
# It never changes torch, torchvision, numpy or opencv in the venv (see the constraints below).
#
# Usage: scripts/install_openpifpaf.sh [VENV_PYTHON]   (default: .venv/bin/python)
set -euo pipefail

PY="${1:-.venv/bin/python}"
VERSION="0.13.11"
# Small pure-python runtime deps from openpifpaf's install_requires that the venv lacks. pysparkling is
# REQUIRED: `import openpifpaf` registers all bundled plugins and plugins/posetrack/datasets.py imports it
# at module level (it pulls in pytz). python-json-logger: openpifpaf.logger's JSON logs (imported lazily);
# 2.0.7 still ships `pythonjsonlogger.jsonlogger` natively (3.x/4.x keep it only as a deprecated shim).
# (importlib_metadata, also listed, is dropped by patch 2c; pillow is already in the venv.)
RUNTIME_DEPS=(pysparkling==0.6.2 python-json-logger==2.0.7)

log() { echo "[install_openpifpaf] $*"; }
# pip prints one noise line per package for this machine's empty local index mirrors; drop them.
filter_noise() { grep -v "^WARNING: Location" || true; }

if [[ ! -x "$PY" ]]; then
    echo "[install_openpifpaf] ERROR: venv python '$PY' not found or not executable" >&2
    exit 1
fi

# Idempotent: nothing to do when openpifpaf (including its compiled _cpp ops) already imports.
if INSTALLED=$("$PY" -c "import openpifpaf; print(openpifpaf.__version__)" 2>/dev/null); then
    log "openpifpaf $INSTALLED already importable with $PY; nothing to do"
    exit 0
fi

# Preflight: a no-isolation build needs torch + setuptools in the venv and a C++20 compiler (ninja is optional
# but lets torch's BuildExtension compile the 9 sources in parallel).
"$PY" -c "import torch, setuptools" 2>/dev/null \
    || { echo "[install_openpifpaf] ERROR: $PY needs torch and setuptools installed first (make install)" >&2; exit 1; }
command -v "${CXX:-g++}" >/dev/null \
    || { echo "[install_openpifpaf] ERROR: no C++ compiler (${CXX:-g++}); apt-get install g++" >&2; exit 1; }
command -v ninja >/dev/null || log "ninja not found: the C++ build will be serial (slower)"

START=$(date +%s)
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# Freeze what must not change: pip may only add packages around these exact versions.
"$PY" -m pip freeze 2>/dev/null | grep -iE '^(torch|torchvision|numpy|opencv-contrib-python)==' \
    > "$WORK/constraints.txt" || true
log "protected versions: $(tr '\n' ' ' < "$WORK/constraints.txt")"

log "downloading openpifpaf==$VERSION sdist into $WORK"
# --no-build-isolation: pip prepares the sdist's metadata even for `download`, and setup.py imports
# torch while pyproject.toml asks for torch==1.13.1 as a build requirement (unavailable for
# Python 3.11 + this torch); without isolation it uses the venv's torch for that step.
"$PY" -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation \
    "openpifpaf==$VERSION" -d "$WORK" 2>&1 | filter_noise
tar -xzf "$WORK/openpifpaf-$VERSION.tar.gz" -C "$WORK"
SRC="$WORK/openpifpaf-$VERSION"

log "patching $SRC"
# Patch 1: openpifpaf compiles its _cpp extension with -std=c++17, but current torch headers need C++20
# ("#error C++20 or later compatible compiler is required to use ATen", std::strong_ordering).
sed -i "s/-std=c++17/-std=c++20/; s#/std:c++17#/std:c++20#" "$SRC/setup.py"
# Patch 2: relax the exact torch/torchvision pins (torch==1.13.1, torchvision==0.14.1) in
# install_requires and the build requirements, so pip accepts the venv's torch instead of trying
# to downgrade it (there is no torch 1.13 wheel for this setup anyway).
sed -i "s/'torch==1.13.1'/'torch>=1.13'/; s/'torchvision==0.14.1'/'torchvision>=0.14'/" "$SRC/setup.py"
sed -i 's/"torch==1.13.1"/"torch>=1.13"/' "$SRC/pyproject.toml"
# Patch 2b: the coreml extra pins numpy<1.24; relax it so no resolver ever sees a numpy downgrade.
sed -i "s/'numpy<1.24',/'numpy',/" "$SRC/setup.py"
# Patch 2c: importlib_metadata is listed only "temporary for pytest" (openpifpaf never imports it);
# drop it so `pip check` stays clean without adding a backport that could shadow importlib.metadata.
sed -i "/'importlib_metadata!=3.8.0',/d" "$SRC/setup.py"
"$PY" - "$SRC/src/openpifpaf" <<'PYEOF'
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1])
n_cmap = n_load = 0
for path in root.rglob("*.py"):
    text = path.read_text(encoding="utf-8")
    new = text
    # Patch 3: matplotlib 3.9 removed matplotlib.cm.get_cmap; openpifpaf calls it at IMPORT time
    # (visualizer/cif.py, caf.py, cifdet.py), so `import openpifpaf` crashes without this.
    # The colormap registry (matplotlib.colormaps) has had .get_cmap since matplotlib 3.6.
    new = new.replace("matplotlib.cm.get_cmap(", "matplotlib.colormaps.get_cmap(")
    # plugins/apollocar3d binds only `mplcm` (import matplotlib.cm as mplcm): also bind `matplotlib`.
    if "mplcm.get_cmap(" in new:
        new = re.sub(r"^([ \t]*)import matplotlib\.cm as mplcm$", r"\1import matplotlib\n\1import matplotlib.cm as mplcm",
                     new, flags=re.M)
        new = new.replace("mplcm.get_cmap(", "matplotlib.colormaps.get_cmap(")
    # Patch 3b: Colormap.set_bad is pending deprecation in matplotlib 3.11 and warns at import time
    # (visualizer/cif.py, caf.py, cifdet.py); with_extremes (matplotlib >= 3.4) returns the same colormap copy.
    new = re.sub(r"^([ \t]*)(\w+)\.set_bad\('white', alpha=0\.5\)$", r"\1\2 = \2.with_extremes(bad=('white', 0.5))",
                 new, flags=re.M)
    n_cmap += new != text
    # Patch 4: torch >= 2.6 defaults torch.load(weights_only=True), which refuses openpifpaf
    # checkpoints (pickled whole nn.Modules). Restore the old behaviour explicitly; only load
    # checkpoints you trust.
    newer = re.sub(r"torch\.load\((\w+(?:\.\w+)*)\)", r"torch.load(\1, weights_only=False)", new)
    n_load += newer != new
    if newer != text:
        path.write_text(newer, encoding="utf-8")
print(f"[install_openpifpaf] patched get_cmap in {n_cmap} files, torch.load in {n_load} files")
if n_cmap == 0 or n_load == 0:
    sys.exit("[install_openpifpaf] ERROR: expected patch sites not found; sdist layout changed?")
PYEOF
grep -q -- "-std=c++20" "$SRC/setup.py" || { echo "C++20 patch failed" >&2; exit 1; }
grep -q "'torch>=1.13'" "$SRC/setup.py" || { echo "torch pin patch failed" >&2; exit 1; }

log "building and installing (compiles the C++ extension against $("$PY" -c 'import torch; print("torch", torch.__version__)'); takes a few minutes)"
# --no-build-isolation: build against the venv's torch (the extension's ABI must match it).
# --no-deps: never let pip touch torch/torchvision/numpy/opencv. --no-cache-dir: do not keep a wheel
# that is only valid for this exact torch ABI in pip's cache.
MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$PY" -m pip install --no-cache-dir --no-build-isolation --no-deps "$SRC" 2>&1 | filter_noise

log "installing runtime deps: ${RUNTIME_DEPS[*]}"
"$PY" -m pip install --quiet -c "$WORK/constraints.txt" "${RUNTIME_DEPS[@]}" 2>&1 | filter_noise

"$PY" -c "import openpifpaf, pythonjsonlogger.jsonlogger, pysparkling; print('[install_openpifpaf] ok: openpifpaf', openpifpaf.__version__)"
"$PY" -m pip freeze 2>/dev/null | grep -iE '^(torch|torchvision|numpy|opencv-contrib-python)==' \
    | diff -q - "$WORK/constraints.txt" >/dev/null \
    || { echo "[install_openpifpaf] ERROR: protected package versions changed" >&2; exit 1; }
log "done in $(( $(date +%s) - START ))s"
