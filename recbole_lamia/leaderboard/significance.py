"""Paired significance of the difference between two rows' per-user test scores (``benchmarks/paired_test.py``)."""


def per_user_metrics(ranks, topk):
    """``{metric: [n_users] array}``: Recall@k (hit) and NDCG@k of one target per user, from 1-based ranks."""
    import numpy as np

    ranks = np.asarray(ranks, dtype=np.float64)
    out = {}
    for k in topk:
        hit = ranks <= k
        out[f"recall@{k}"] = hit.astype(np.float64)
        out[f"ndcg@{k}"] = np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0)
    return out


def paired_comparison(a, b, metric, resamples=10000, seed=0):
    """Means, difference, 95 % paired bootstrap interval and two-sided p-value of per-user scores ``a`` and ``b``.

    ``recall@k`` scores (0 or 1 per user) get McNemar's exact test, anything else a sign-flip permutation
    test, whose smallest possible p-value is ``p_min`` = 1 / (resamples + 1). Each metric is tested on its
    own; there is no correction for testing several.
    """
    import numpy as np
    from scipy.stats import binomtest

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"need two equal-length, non-empty score vectors; got {a.shape} and {b.shape}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    binary = metric.startswith("recall")
    if binary and not np.isin(np.concatenate([a, b]), (0.0, 1.0)).all():
        raise ValueError(f"{metric} scores must be 0 or 1 per user for McNemar's test")
    diff = a - b
    rng = np.random.default_rng(seed)
    boot = np.array([diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(resamples)])
    result = {"a": round(float(a.mean()), 5), "b": round(float(b.mean()), 5), "a_minus_b": round(float(diff.mean()), 5),
              "relative": round(float(diff.mean() / b.mean()), 4) if b.mean() > 0 else None,
              "ci95": [round(float(q), 5) for q in np.percentile(boot, [2.5, 97.5])]}
    if binary:
        only_a, only_b = int(((a > 0) & (b == 0)).sum()), int(((b > 0) & (a == 0)).sum())
        result.update(test="McNemar exact", only_a_hits=only_a, only_b_hits=only_b,
                      p_value=float(binomtest(only_a, only_a + only_b).pvalue) if only_a + only_b else 1.0)
    else:
        extreme = 0
        for start in range(0, resamples, 256):  # in chunks: [resamples, n_users] signs at once is gigabytes
            signs = rng.choice((-1.0, 1.0), size=(min(256, resamples - start), len(diff)))
            extreme += int((np.abs(signs @ diff) / len(diff) >= abs(diff.mean()) - 1e-12).sum())
        result.update(test="sign-flip permutation", p_value=float((1 + extreme) / (resamples + 1)),
                      p_min=1 / (resamples + 1))
    return result
