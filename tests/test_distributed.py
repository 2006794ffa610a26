"""Several processes through RecBole's torch.distributed path, on the CPU (gloo)."""

import glob
import os
import re
import socket
import subprocess
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp
import yaml

from recbole_lamia.utils.checkpoint import load_checkpoint
from tests.conftest import TINY_DATASET, tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_zero_first_worker(rank, port, log_file):
    import torch.distributed as dist

    from recbole_lamia.utils.distributed import rank_zero_first, share_from_rank_zero

    dist.init_process_group("gloo", rank=rank, world_size=2, init_method=f"tcp://127.0.0.1:{port}")
    with rank_zero_first():
        with open(log_file, "a") as f:
            f.write(f"start {rank}\n")
        time.sleep(0.3 if rank == 0 else 0.0)
        with open(log_file, "a") as f:
            f.write(f"end {rank}\n")
    shared = share_from_rank_zero(f"from rank {rank}")
    with open(log_file, "a") as f:
        f.write(f"shared {rank} {shared}\n")
    dist.destroy_process_group()


def test_rank_zero_runs_first_and_shares_its_value(tmp_path):
    log_file = str(tmp_path / "log")
    mp.spawn(_rank_zero_first_worker, args=(_free_port(), log_file), nprocs=2, join=True)
    lines = open(log_file).read().splitlines()
    assert lines[:4] == ["start 0", "end 0", "start 1", "end 1"]  # rank 1 waited for rank 0's block
    assert sorted(lines[4:]) == ["shared 0 from rank 0", "shared 1 from rank 0"]


def _summary(stdout):
    values = dict(re.findall(r"(recall@10|ndcg@10)=([0-9.]+)", stdout.split("test:")[1]))
    return {k: float(v) for k, v in values.items()}


def test_two_cpu_processes_train_resume_and_fail_through_torch_distributed(tiny_data_path, tiny_bert_path, tmp_path):
    settings = tiny_config(tiny_data_path, tiny_bert_path, tmp_path, epochs=3)
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(settings))
    command = [sys.executable, "run_recbole_lamia.py", "--model=LAMIA", f"--dataset={TINY_DATASET}",
               f"--config_files={config_file}"]

    def two_processes(*extra):  # a new port each time: the port is not part of the run's settings
        return subprocess.run(command + ["--nproc=2", f"--port={_free_port()}", *extra], capture_output=True,
                              text=True, timeout=600, cwd=ROOT)

    two = two_processes()
    assert two.returncode == 0, two.stderr[-3000:]
    # Stopped after 2 epochs, then resumed to 3: each rank continues from its own random states, so the weights
    # after epoch 3 are the uninterrupted run's.
    split_dir = str(tmp_path / "split")
    short = two_processes("--epochs=2", f"--checkpoint_dir={split_dir}")
    assert short.returncode == 0, short.stderr[-3000:]
    resumed = two_processes("--resume", "--epochs=3", f"--checkpoint_dir={split_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (whole_point,) = glob.glob(str(tmp_path / "saved" / "*-resume.pth"))
    (split_point,) = glob.glob(os.path.join(split_dir, "*-resume.pth"))
    whole, split = load_checkpoint(whole_point), load_checkpoint(split_point)
    assert whole["epoch"] == split["epoch"] == 2 and len(split["rng_per_rank"]) == 2
    for name, tensor in whole["state_dict"].items():
        assert torch.equal(tensor, split["state_dict"][name]), name
    other = two_processes("--resume", "--learning_rate=0.5")  # a rank's error: one line, status 2
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert other.stderr.strip().splitlines()[-1].startswith("error: nothing to resume")
    one = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert one.returncode == 0, one.stderr[-3000:]
    # One tokenizer run: a single codes entry in the cache, written by rank 0 and read by rank 1.
    entries = os.listdir(tmp_path / "semantic_ids" / TINY_DATASET)
    assert len([e for e in entries if e.startswith("codes-") and e.endswith(".npz")]) == 1
    two_metrics, one_metrics = _summary(two.stdout), _summary(one.stdout)
    assert set(two_metrics) == {"recall@10", "ndcg@10"}
    for metric, value in one_metrics.items():  # the same training, in another data order: within noise
        assert abs(two_metrics[metric] - value) <= 0.05, (metric, two_metrics, one_metrics)


def test_too_few_gpu_ids_for_the_processes_is_one_line():
    from recbole_lamia.utils.distributed import check_gpu_ids
    from recbole_lamia.utils.errors import UserInputError

    check_gpu_ids("0,1", 2, cuda_available=True)
    check_gpu_ids((0, 1, 2), 3, cuda_available=True)
    check_gpu_ids("0", 4, cuda_available=False)  # the CPU shim needs no GPU ids
    with pytest.raises(UserInputError, match="--nproc=4 needs 4 GPUs in gpu_id, which names 1 .* --gpu_id=0,1,2,3"):
        check_gpu_ids("0", 4, cuda_available=True)
