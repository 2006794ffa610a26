"""Several processes through RecBole's own engine (``torch.distributed``), on GPUs or, for tests, on the CPU.

``run_recbole_lamia.py --nproc=N`` starts N processes as RecBole's ``run_recbole.py`` does: each builds its
Config with ``local_rank``, RecBole joins the process group, splits the data with a ``DistributedSampler``,
wraps the model in ``DistributedDataParallel`` and averages the evaluation across ranks.

RecBole 1.2.1 hard-codes the ``nccl`` backend and a CUDA device. ``patch_recbole_cpu_distributed`` is a narrow
shim for machines without CUDA: the process group uses ``gloo``, the device is the CPU, and the Trainer wraps
the model in ``DistributedDataParallel`` without ``device_ids`` (which CPU modules refuse). With CUDA, RecBole's
own code runs unchanged, after a one-line check that ``gpu_id`` names ``nproc`` GPUs (RecBole asserts it).
"""

import contextlib
import functools
import importlib
import os

import torch
import torch.distributed as dist


def is_distributed():
    """Whether this process is one rank of an initialised process group of several."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank():
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


@contextlib.contextmanager
def rank_zero_first():
    """Rank 0 runs the block first while the others wait at a barrier, then they run it: for work whose result
    rank 0 writes to a cache the others then read (the item tokenizer)."""
    if not is_distributed():
        yield
        return
    if rank() != 0:
        dist.barrier()
    yield
    if rank() == 0:
        dist.barrier()


def share_from_rank_zero(value):
    """``value`` as rank 0 has it, on every rank (e.g. the best-checkpoint path, which RecBole names by time)."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_from_ranks(value):
    """``[value of rank 0, value of rank 1, ...]`` on every rank (``[value]`` when not distributed); a collective."""
    if not is_distributed():
        return [value]
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def _init_cpu_device(config_dict):
    """RecBole's distributed ``_init_device`` with gloo and the CPU."""
    dist.init_process_group(backend="gloo", rank=config_dict["local_rank"] + config_dict["offset"],
                            world_size=config_dict["world_size"],
                            init_method=f"tcp://{config_dict['ip']}:{config_dict['port']}")
    config_dict["device"] = torch.device("cpu")
    config_dict["single_spec"] = False
    if config_dict["local_rank"] != 0:  # as RecBole: only rank 0 logs
        config_dict.update(state="error", show_progress=False, verbose=False)


def patch_recbole_cpu_distributed():
    """Let RecBole's distributed path run on machines without CUDA (gloo, CPU). Idempotent."""
    from recbole.config import Config

    original_init_device = Config._init_device
    if getattr(original_init_device, "_recbole_lamia", False):
        return

    @functools.wraps(original_init_device)
    def _init_device(self):
        config = self.final_config_dict
        if "local_rank" in config:  # one line instead of RecBole's assert
            check_gpu_ids(config.get("gpu_id", 0), config.get("nproc", 1), torch.cuda.is_available())
        if "local_rank" not in self.final_config_dict or torch.cuda.is_available():
            return original_init_device(self)
        self.final_config_dict["gpu_id"] = str(self.final_config_dict["gpu_id"])
        return _init_cpu_device(self.final_config_dict)

    _init_device._recbole_lamia = True
    Config._init_device = _init_device

    trainer_module = importlib.import_module("recbole.trainer.trainer")
    original_trainer_init = trainer_module.AbstractTrainer.__init__

    @functools.wraps(original_trainer_init)
    def trainer_init(self, config, model):
        if config["single_spec"] or config["device"].type != "cpu":
            return original_trainer_init(self, config, model)
        self.config, self.model = config, model
        # CPU modules take no device_ids; SyncBatchNorm is CUDA-only (no model here uses batch norm).
        self.distributed_model = torch.nn.parallel.DistributedDataParallel(model)

    trainer_module.AbstractTrainer.__init__ = trainer_init


def _run_rank(local_rank, model, dataset, config_file_list, config_dict, resume, queue):
    """One spawned rank: RecBole's ``run_recboles`` for the plugin's ``run``; rank 0 returns the result.

    A ``UserInputError`` is also sent to the parent, which reports it as one line; the rank still fails, so that
    ``torch.multiprocessing`` stops the other ranks instead of leaving them waiting for it.
    """
    import recbole_lamia  # noqa: F401  (registers the plugin in the spawned process)
    from recbole_lamia.quick_start import run
    from recbole_lamia.utils.errors import UserInputError

    try:
        result = run(model, dataset, config_file_list=config_file_list,
                     config_dict=dict(config_dict, local_rank=local_rank), resume=resume)
    except UserInputError as err:
        queue.put(("error", str(err)))
        raise
    if local_rank == 0:
        queue.put(("result", result))
    dist.destroy_process_group()


def check_gpu_ids(gpu_id, nproc, cuda_available):
    """Raise ``UserInputError`` when ``nproc`` processes would run on CUDA with fewer GPUs named in ``gpu_id``
    (RecBole checks it with a bare ``assert`` in every rank's ``Config``)."""
    from recbole_lamia.utils.errors import UserInputError

    parts = gpu_id if isinstance(gpu_id, (tuple, list)) else str(gpu_id).split(",")
    named = [part for part in parts if str(part).strip()]
    if cuda_available and len(named) < nproc:
        example = ",".join(str(i) for i in range(nproc))
        raise UserInputError(f"--nproc={nproc} needs {nproc} GPUs in gpu_id, which names {len(named)} "
                             f"('{gpu_id}'): add --gpu_id={example} (or the ids of the GPUs to use).")


def spawn_run(model, dataset, config_file_list=None, nproc=1, world_size=-1, ip="localhost", port="5678",
              group_offset=0, resume=False):
    """Train and evaluate with ``nproc`` processes on this machine (``world_size`` in all, over several
    machines), as RecBole's ``run_recbole.py`` does; returns rank 0's result dict.

    Raises ``UserInputError`` (one line) when a rank raised one.
    """
    import torch.multiprocessing as mp

    from recbole_lamia.utils.errors import UserInputError

    world_size = nproc if world_size == -1 else world_size
    config_dict = {"world_size": world_size, "ip": ip, "port": str(port), "nproc": nproc, "offset": group_offset}
    queue = mp.get_context("spawn").SimpleQueue()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # N ranks on a CPU share its cores
    try:
        mp.spawn(_run_rank, args=(model, dataset, config_file_list, config_dict, resume, queue), nprocs=nproc,
                 join=True)
    except mp.ProcessRaisedException:
        messages = []
        while not queue.empty():
            kind, value = queue.get()
            if kind == "error":
                messages.append(value)
        if messages:
            raise UserInputError(messages[0]) from None
        raise
    while not queue.empty():
        kind, value = queue.get()
        if kind == "result":
            return value
    return None
