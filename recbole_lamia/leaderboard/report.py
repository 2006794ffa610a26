"""Leaderboard outputs: ``<dataset>.csv`` (machine-readable), ``<dataset>.md`` (for people), ``<dataset>.png``.

Every file is written to a temporary name and renamed, so a reader never sees half a table.
"""

import contextlib
import csv
import io
import math
import os
import time

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent leaderboards on one dataset may race there
    fcntl = None

COLUMNS = [
    "row", "model", "status",
    "test_recall@5", "test_recall@10", "test_ndcg@5", "test_ndcg@10", "best_valid_ndcg@10",
    "cold_recall@10", "cold_ndcg@10", "cold_test_cases", "cold_items", "cold_mode", "cold_status", "cold_epochs_run",
    "epochs_run", "max_epochs", "best_epoch", "resumed_from_epoch",
    "train_seconds", "epoch_seconds", "valid_seconds", "eval_seconds", "tokenizer_seconds", "tokenizer_cached",
    "dataset_seconds", "parameters", "peak_rss_gb", "peak_gpu_gb",
    "code_usage", "code_usage_per_level", "collision_rate", "collision_handling", "level_nmi", "semantic_id_length",
    "device", "seed", "max_minutes", "process", "train_samples", "test_cases", "cold_set", "cold_removed_train_samples",
    "selected_features", "overrides", "config_hash", "finished_at", "error",
]

STATUS_NOTES = {
    "early_stopped": "stopped by validation patience (converged)",
    "max_epochs": "reached the epoch limit (may not have converged)",
    "budget": "ran out of --max_minutes (NOT converged; do not compare as a final score)",
    "error": "failed; see Errors",
}


def _write_atomic(path, data, binary=False):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": ""})) as f:
        f.write(data)
    os.replace(tmp, path)


def to_float(value):
    """A CSV cell or Python value as float (NaN when empty or not a number)."""
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def format_cell(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.6g}"
    return str(value)


def read_rows(csv_path):
    """Rows of an existing leaderboard CSV, as dicts of strings (empty list if there is none)."""
    if not os.path.exists(csv_path):
        return []
    with open(csv_path, encoding="utf-8", newline="") as f:
        return [dict(row) for row in csv.DictReader(f)]


def write_csv(path, rows):
    extra = sorted({k for row in rows for k in row} - set(COLUMNS) - {"traceback"})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS + extra, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: format_cell(v) for k, v in row.items()})
    _write_atomic(path, buffer.getvalue())


def _duration(value):
    seconds = to_float(value)
    if not math.isfinite(seconds):
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _number(value, digits=4, percent=False):
    number = to_float(value)
    if not math.isfinite(number):
        return ""
    return f"{100 * number:.1f}%" if percent else f"{number:.{digits}f}"


def _count(value):
    number = to_float(value)
    if not math.isfinite(number):
        return ""
    if number >= 1e6:
        return f"{number / 1e6:.2f}M"
    if number >= 1e3:
        return f"{number / 1e3:.1f}k"
    return f"{int(number)}"


_MD_COLUMNS = [
    # header, key, formatter, best-is-max (None: no highlighting)
    ("Row", "row", str, None), ("Model", "model", str, None), ("Status", "status", str, None),
    ("R@5", "test_recall@5", _number, True), ("R@10", "test_recall@10", _number, True),
    ("N@5", "test_ndcg@5", _number, True), ("N@10", "test_ndcg@10", _number, True),
    ("Valid N@10", "best_valid_ndcg@10", _number, True),
    ("Cold R@10", "cold_recall@10", _number, True), ("Cold N@10", "cold_ndcg@10", _number, True),
    ("Epochs", "epochs_run", str, None), ("Train time", "train_seconds", _duration, None),
    ("Time/epoch", "epoch_seconds", _duration, None), ("Eval (test)", "eval_seconds", _duration, None),
    ("Tokenizer fit", "tokenizer_seconds", _duration, None), ("Params", "parameters", _count, None),
    ("Peak RSS GB", "peak_rss_gb", lambda v: _number(v, 2), None),
    ("Code usage", "code_usage", lambda v: _number(v, percent=True), None),
    ("Collisions", "collision_rate", lambda v: _number(v, percent=True), None),
    ("Level NMI", "level_nmi", lambda v: _number(v, 2), None),
    ("Device", "device", str, None),
]


def markdown_table(rows):
    best = {}
    for _, key, _, bigger in _MD_COLUMNS:
        if bigger is None:
            continue
        values = [to_float(r.get(key)) for r in rows if r.get("status") != "error"]
        values = [v for v in values if math.isfinite(v)]
        if len(values) > 1:
            best[key] = max(values)
    lines = ["| " + " | ".join(h for h, *_ in _MD_COLUMNS) + " |",
             "|" + "|".join("---" if fmt is str else "---:" for _, _, fmt, _ in _MD_COLUMNS) + "|"]
    for row in rows:
        cells = []
        for _, key, fmt, _ in _MD_COLUMNS:
            value = row.get(key)
            text = fmt(value if value is not None else "") if fmt is not str else ("" if value is None else str(value))
            if key == "status" and text == "budget":
                text = "**budget**"
            if key == "epochs_run" and text and row.get("max_epochs") not in (None, ""):
                text = f"{text}/{row['max_epochs']}"
            if key in best and text and to_float(value) == best[key]:
                text = f"**{text}**"
            cells.append(text.replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_markdown(path, dataset, rows, meta=None):
    meta = meta or {}
    out = [f"# Leaderboard: {dataset}", "",
           (f"Updated {time.strftime('%Y-%m-%d %H:%M:%S')}. One shared configuration for every row "
            "(the dataset's properties YAML, same split, filtering, metrics and seed); see `results/README.md` "
            "for how the rows and the cold-start columns are made."), ""]
    if meta:
        out.append("Settings of the run that last wrote this file (each row's own are in the CSV: `device`, "
                   "`max_minutes`, `overrides`, `seed`, `cold_mode`):")
        out.append("")
    for key, value in meta.items():
        out.append(f"* {key}: `{value}`")
    if meta:
        out.append("")
    out += [markdown_table(rows), ""]
    out.append("R@k / N@k: Recall / NDCG at k on the test split (full ranking). Valid N@10: best validation "
               "NDCG@10. Cold: test cases whose target item never occurs in training (see README). Train time: "
               "training + validation wall time (all resumed segments); Time/epoch: one training pass; Eval: one "
               "full-sort pass over the test users; Tokenizer fit: semantic-ID embedding + quantization (stored "
               "with the cached IDs, so it is the original fit time even when the IDs came from the cache). "
               "Level NMI: mean normalised mutual information between the code levels (0: independent aspects, "
               "1: every level repeats the same partition).")
    out.append("")
    out.append("Status: " + "; ".join(f"`{k}` {v}" for k, v in STATUS_NOTES.items()) + ".")
    errors = [r for r in rows if r.get("error")]
    if errors:
        out += ["", "## Errors", ""]
        for row in errors:
            message = " ".join(str(row["error"]).split())
            out.append(f"* **{row.get('row')}**: {message[:600]}")
    out += ["", "## Rows", ""]
    for row in rows:
        out.append(f"* **{row.get('row')}**: model `{row.get('model')}`, overrides `{row.get('overrides') or '{}'}`")
    _write_atomic(path, "\n".join(out) + "\n")


def write_plot(path, dataset, rows):
    """Test NDCG@10 against training time, one point per row; returns False when nothing can be drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, NullFormatter

    points = []
    for row in rows:
        x, y = to_float(row.get("train_seconds")), to_float(row.get("test_ndcg@10"))
        if row.get("status") != "error" and math.isfinite(x) and math.isfinite(y):
            points.append((row, max(x, 1e-3), y, to_float(row.get("tokenizer_seconds"))))
    fig = Figure(figsize=(8, 5.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    labelled = set()
    for row, x, y, tok in points:
        budget = row.get("status") == "budget"
        label = "budget-limited (not converged)" if budget else "finished"
        ax.scatter([x], [y], marker="^" if budget else "o", s=60, facecolors="none" if budget else "C0",
                   edgecolors="C3" if budget else "C0", label=None if label in labelled else label, zorder=3)
        labelled.add(label)
        if math.isfinite(tok) and tok > 0:
            label = "+ tokenizer fit time"
            ax.plot([x, x + tok], [y, y], ":", color="gray", label=None if label in labelled else label, zorder=2)
            ax.scatter([x + tok], [y], marker="|", color="gray", zorder=2)
            labelled.add(label)
        ax.annotate(str(row.get("row")), (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    xs = [x for _, x, _, _ in points] + [x + t for _, x, _, t in points if math.isfinite(t) and t > 0]
    if xs and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: _duration(value)))
    ax.set_xlabel("training time (s): training + validation, all resumed segments")
    ax.set_ylabel("test NDCG@10")
    ax.set_title(f"{dataset}: quality vs training time")
    ax.grid(True, alpha=0.3)
    if points:
        ax.legend(loc="best", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no finished rows yet", ha="center", va="center", transform=ax.transAxes)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    _write_atomic(path, buffer.getvalue(), binary=True)
    return bool(points)


@contextlib.contextmanager
def table_lock(out_dir, dataset):
    """Hold an exclusive lock on ``<out_dir>/.<dataset>.lock`` (a no-op where ``fcntl`` is missing)."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f".{dataset}.lock"), "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def upsert_row(out_dir, dataset, record, meta=None):
    """Replace (or append) ``record`` by its ``row`` name in the table on disk, rewrite the outputs, return the table.

    The read-modify-write holds :func:`table_lock`, so leaderboard processes on one dataset never drop each
    other's rows.
    """
    with table_lock(out_dir, dataset):
        table = read_rows(os.path.join(out_dir, f"{dataset}.csv"))
        names = [r.get("row") for r in table]
        if record["row"] in names:
            table[names.index(record["row"])] = record
        else:
            table.append(record)
        write_outputs(out_dir, dataset, table, meta)
    return table


def write_outputs(out_dir, dataset, rows, meta=None):
    """Write the CSV, the markdown table and the plot; return their paths."""
    paths = {ext: os.path.join(out_dir, f"{dataset}.{ext}") for ext in ("csv", "md", "png")}
    write_csv(paths["csv"], rows)
    write_markdown(paths["md"], dataset, rows, meta)
    write_plot(paths["png"], dataset, rows)
    return paths
