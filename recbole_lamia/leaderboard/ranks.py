"""Reload a trained leaderboard row and rank every test target, for analyses the table cannot give.

``benchmarks/cold_ranks.py`` (cold-start items against warm ones) and ``benchmarks/paired_test.py`` (two rows
compared user by user) both start from a phase folder of ``python -m recbole_lamia.leaderboard``
(``<checkpoint_dir>/<dataset>/<row>/<phase>``, holding ``spec.json`` and ``best.pth``).
"""

import json
import os
from collections import namedtuple

LoadedPhase = namedtuple("LoadedPhase", "spec config dataset cold_items test_data model checkpoint result valid_data")


def load_phase(run_dir, data_path=None, require_cold=False):
    """Rebuild a phase's data and model exactly as the leaderboard's child did, with ``best.pth`` loaded.

    Returns a ``LoadedPhase`` (spec, config, dataset, cold_items, test_data, model in eval mode, checkpoint, the
    phase's ``result.json``, and valid_data, the validation split the row was tuned and early-stopped on).
    Stops with a clear message when ``run_dir`` is not a phase folder, has no best checkpoint, has not
    finished (no finished ``result.json`` of this spec: its ``best.pth`` would be from a run still going or a
    failed one), or (with ``require_cold``) was trained without cold-start items.
    """
    from recbole.data import create_dataset

    import recbole_lamia  # noqa: F401  (registers LAMIA and TIGER)
    from recbole_lamia.leaderboard.child import FINISHED, phase_config, phase_data_and_model
    from recbole_lamia.utils.checkpoint import check_semantic_ids, load_checkpoint

    spec_file = os.path.join(run_dir, "spec.json")
    if not os.path.exists(spec_file):
        raise SystemExit(f"{spec_file} does not exist: --run_dir must be a leaderboard phase folder, "
                         "<checkpoint_dir>/<dataset>/<row>/<phase>.")
    with open(spec_file, encoding="utf-8") as f:
        spec = json.load(f)
    cold = spec.get("cold_start") or {}
    if require_cold and not float(cold.get("ratio") or 0):
        raise SystemExit(f"{run_dir} was trained without cold-start items (cold_start ratio 0).")
    result_file = os.path.join(run_dir, "result.json")
    result = {}
    if os.path.exists(result_file):
        with open(result_file, encoding="utf-8") as f:
            result = json.load(f)
    if result.get("status") not in FINISHED or result.get("fingerprint") not in (
            spec.get("fingerprint"), *spec.get("accepted_fingerprints", ())):
        raise SystemExit(f"{run_dir} has no finished result of its current spec ({result_file}): the row is "
                         "still training or failed, so its best.pth is not the one the table reports.")
    checkpoint_file = os.path.join(run_dir, "best.pth")
    if not os.path.exists(checkpoint_file):
        raise SystemExit(f"{checkpoint_file} does not exist: the row has no best checkpoint yet.")
    extra = {"checkpoint_dir": run_dir, "show_progress": False}
    if data_path:
        extra["data_path"] = os.path.abspath(data_path)
    config = phase_config(spec, **extra)
    dataset = create_dataset(config)
    cold_items, _, (_, valid_data, test_data), model = phase_data_and_model(config, dataset, cold)
    checkpoint = load_checkpoint(checkpoint_file, map_location=config["device"])
    check_semantic_ids(checkpoint, model, checkpoint_file)
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    return LoadedPhase(spec, config, dataset, cold_items, test_data, model, checkpoint, result, valid_data)


def target_ranks(model, test_data, n_items, uid_field, device, desc=None):
    """``(users, items, ranks)``: every full-sort case's user, target item and 1-based rank.

    ``test_data`` is a full-sort evaluation loader: the test split, or the validation split for analyses that
    must not look at test.

    Scores every item as RecBole's full-sort evaluation does (padding and the user's training items masked);
    items scored equal to the target do not push it down. A target whose score is not finite (outside a
    beam-search row's beam, or NaN) is not retrieved and gets the last rank, ``n_items - 1``.
    ``desc``, when given, shows a progress bar over the test batches with that label.
    """
    import numpy as np
    import torch

    users, items, ranks = [], [], []
    with torch.no_grad():
        batches = test_data
        if desc:
            from tqdm import tqdm

            batches = tqdm(test_data, desc=desc, total=len(test_data), unit="batch")
        for interaction, history_index, positive_u, positive_i in batches:
            interaction = interaction.to(device)
            scores = model.full_sort_predict(interaction).view(-1, n_items)
            scores[:, 0] = -np.inf
            if history_index is not None:
                scores[history_index] = -np.inf
            positive_u, positive_i = positive_u.to(scores.device), positive_i.to(scores.device)
            target_scores = scores[positive_u, positive_i]
            rank = (scores[positive_u] > target_scores.unsqueeze(1)).sum(1) + 1
            ranks.append(torch.where(torch.isfinite(target_scores), rank, torch.full_like(rank, n_items - 1)).cpu())
            users.append(interaction[uid_field][positive_u].cpu())
            items.append(positive_i.cpu())
    return torch.cat(users).numpy(), torch.cat(items).numpy(), torch.cat(ranks).numpy().astype(np.int64)
