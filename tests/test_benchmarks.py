"""The benchmark scripts' helpers that results depend on (the scripts themselves run on real data)."""

import importlib.util
import os

import pytest
import torch

from tests.conftest import TINY_DATASET, tiny_config

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def _load(name):
    path = os.path.join(BENCHMARKS, f"{name}.py")
    spec = importlib.util.spec_from_file_location("benchmark_" + name.replace("/", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sweep_keeps_one_valid_score_per_epoch(tiny_data_path, tiny_bert_path, tmp_path):
    sweep = _load("sweep")
    config = tiny_config(tiny_data_path, tiny_bert_path, tmp_path, epochs=3, stopping_step=10)
    threads = torch.get_num_threads()
    try:
        result = sweep.run_one("SASRec", TINY_DATASET, config, threads=1)
    finally:
        torch.set_num_threads(threads)  # run_one sets it for its process; later tests keep theirs
    assert len(result["valid_curve"]) == 3
    assert max(result["valid_curve"]) == result["best_valid"]["ndcg@10"]  # valid_metric is NDCG@10
    assert set(result["test"]) >= {"recall@10", "ndcg@10"}


def test_device_staging_reads_the_rows_gpu_rows_will_run():
    import subprocess

    stage_cache = _load("device/stage_cache")
    default_jobs = subprocess.run(
        ["bash", "-c", 'MAX_MIN=5; source benchmarks/device/default_jobs.sh; printf %s "$DEFAULT_JOBS"'],
        cwd=os.path.dirname(BENCHMARKS), capture_output=True, text=True, check=True).stdout
    rows = stage_cache.rows_from_jobs(default_jobs)
    assert ("TIGER", 2020, {}, {}) in rows and ("LAMIA", 2020, {}, {"codebook_size": 4096}) in rows
    assert rows.count(("LAMIA", 2020, {}, {})) == 1  # the main, cold and cli LAMIA jobs load the same IDs: staged once
    assert "cli LAMIA --nproc=1 --world_size=1" in default_jobs  # the user's command through the distributed path
    # A shared --set stays apart from a ROW:KEY one: the row's own settings come between them.
    jobs = """t_a LAMIA --set LAMIA:codebook_size=1024 --set TIGER:epochs=2 --max_minutes=3
              t_b LAMIA-rqvae --set=codebook_size=8 --seed=3

              t_c TIGER --set TIGER:codebook_size=64"""
    assert stage_cache.rows_from_jobs(jobs) == [("LAMIA", 2020, {}, {"codebook_size": 1024}),
                                                ("LAMIA-rqvae", 3, {"codebook_size": 8}, {}),
                                                ("TIGER", 2020, {}, {"codebook_size": 64})]
    for job in ("t LAMIA --set semantic_id_cache_dir=elsewhere", "t LAMIA --config_files=a.yaml", "LAMIA"):
        with pytest.raises(SystemExit):
            stage_cache.rows_from_jobs(job)
