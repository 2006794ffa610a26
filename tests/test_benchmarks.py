"""The benchmark scripts' helpers that results depend on (the scripts themselves run on real data)."""

import importlib.util
import os

from tests.conftest import TINY_DATASET, tiny_config

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def _load(name):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", os.path.join(BENCHMARKS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sweep_keeps_one_valid_score_per_epoch(tiny_data_path, tiny_bert_path, tmp_path):
    sweep = _load("sweep")
    config = tiny_config(tiny_data_path, tiny_bert_path, tmp_path, epochs=3, stopping_step=10)
    result = sweep.run_one("SASRec", TINY_DATASET, config, threads=1)
    assert len(result["valid_curve"]) == 3
    assert max(result["valid_curve"]) == result["best_valid"]["ndcg@10"]  # valid_metric is NDCG@10
    assert set(result["test"]) >= {"recall@10", "ndcg@10"}
