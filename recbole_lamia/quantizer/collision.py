"""One deterministic collision rule shared by every quantizer: no two items share a full ID."""

from logging import getLogger

import numpy as np

from recbole_lamia.utils.errors import UserInputError

COLLISION_STRATEGIES = ("reassign", "extra_token")


def _duplicate_mask(codes):
    """True for every item whose full code already belongs to an item with a smaller index."""
    _, first_index = np.unique(codes, axis=0, return_index=True)
    mask = np.ones(len(codes), dtype=bool)
    mask[first_index] = False
    return mask


def add_disambiguation_token(codes):
    """TIGER's rule: append a token that numbers the items sharing a code, in item-index order."""
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    extra = np.zeros(len(codes), dtype=np.int64)
    seen = {}
    for item, group in enumerate(inverse):
        extra[item] = seen.get(group, 0)
        seen[group] = extra[item] + 1
    return np.concatenate([codes, extra[:, None]], axis=1)


def reassign_collisions(codes, candidate_codes, candidate_costs, codebook_sizes):
    """Move each duplicate to the cheapest free code that differs from its own in one level.

    Items that own their code first (smallest index) keep it. Each later duplicate, in item order,
    tries its alternatives per level ranked by extra distortion (ties: lower level, then rank); if all
    ranked alternatives are taken it tries every code of every level, nearest level first.
    """
    codes = codes.copy()
    taken = {tuple(row) for row in codes}
    n_levels = codes.shape[1]
    for item in np.flatnonzero(_duplicate_mask(codes)):
        original = codes[item].copy()
        options = []
        for level in range(n_levels):
            for rank in range(1, candidate_codes.shape[2]):
                options.append((float(candidate_costs[item, level, rank]), level, rank,
                                int(candidate_codes[item, level, rank])))
        options.sort()
        exhaustive = [(np.inf, level, 0, code) for level in range(n_levels) for code in range(codebook_sizes[level])]
        for _, level, _, code in options + exhaustive:
            trial = original.copy()
            trial[level] = code
            key = tuple(trial)
            if key not in taken:
                codes[item] = trial
                taken.add(key)
                break
        else:
            raise ValueError(
                "Could not give every item a distinct semantic ID by reassignment; "
                "use collision_handling: extra_token or a larger codebook_size."
            )
    return codes


def resolve_collisions(codes, strategy, quantizer=None, embeddings=None, n_candidates=8):
    """Return ``(unique_codes, report)`` after applying ``strategy`` (``reassign`` or ``extra_token``).

    ``reassign`` needs a quantizer that ranks alternatives (``candidates``); otherwise it falls back to
    ``extra_token`` with a warning. The report gives the collision rate before and after.
    """
    if strategy not in COLLISION_STRATEGIES:
        raise UserInputError(f"collision_handling must be one of {COLLISION_STRATEGIES}, got '{strategy}'.")
    from recbole_lamia.quantizer.base import collision_rate

    before = collision_rate(codes)
    candidates = None
    if strategy == "reassign" and quantizer is not None and before > 0:
        candidates = quantizer.candidates(embeddings, n_candidates)
        if candidates is None:
            getLogger().warning(f"Quantizer '{quantizer.name}' cannot rank alternative codes; "
                                "collisions get an extra disambiguation token instead.")
            strategy = "extra_token"
    if strategy == "extra_token":
        resolved = add_disambiguation_token(codes)
    elif before > 0:
        try:
            resolved = reassign_collisions(codes, candidates[0], candidates[1], quantizer.codebook_sizes)
        except ValueError as err:
            getLogger().warning(f"{err} Falling back to an extra disambiguation token.")
            strategy = "extra_token"
            resolved = add_disambiguation_token(codes)
    else:
        resolved = codes.copy()
    report = {
        "collision_handling": strategy,
        "collision_rate_before": before,
        "collision_rate_after": collision_rate(resolved),
        "items_moved": int((resolved[:, : codes.shape[1]] != codes).any(axis=1).sum()),
    }
    return resolved, report
