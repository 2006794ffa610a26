"""Checkpoints that load with ``torch.load(weights_only=True)``: nothing in them can run code when read.

RecBole 1.2.1 pickles its ``Config`` object into every checkpoint (with pickle protocol 4, which torch's
weights-only unpickler cannot read at all), so reading one means trusting it to run code. This plugin writes
its checkpoints in a safe form instead (``checkpoint_state``): the same fields RecBole writes (``epoch``,
``cur_step``, ``best_valid_score``, ``state_dict``, ``other_parameter``, ``optimizer``), with the config as
plain values (``config["model"]`` still works, which is all RecBole's ``resume_checkpoint`` reads), plus a
digest of the model's semantic-ID table. ``load_checkpoint`` reads only that form, with ``weights_only=True``;
any other file is refused with one line (``CheckpointError``), never unpickled.
"""

import enum
import hashlib
import os
import pickle
import random
import warnings

import numpy as np
import torch

from recbole_lamia.data.cache import atomic_write
from recbole_lamia.utils.errors import CheckpointError, first_line

CHECKPOINT_FORMAT = "recbole_lamia.checkpoint.v1"


def plain_value(value):
    """``value`` as types a weights-only load accepts: enums by name, tuples as lists, other objects as text."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, np.generic):  # numpy scalars pickle as numpy objects
        return value.item()
    if isinstance(value, enum.Enum):
        return value.name
    for kind in (bool, int, float, str):  # subclasses, e.g. np.float64 is a float
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, dict):
        return {str(k): plain_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_value(v) for v in value]
    return str(value)


def plain_config(config):
    """A RecBole Config as ``{"model", "dataset", "final_config_dict"}`` of plain values."""
    final = getattr(config, "final_config_dict", config)
    return {"model": final["model"], "dataset": final["dataset"],
            "final_config_dict": {k: plain_value(v) for k, v in final.items()}}


def semantic_id_digest(model):
    """``{"shape", "sha256"}`` of the model's semantic-ID table (``item_codes``), or ``None`` for a model
    without one. A checkpoint carries it so that the weights are never paired with other IDs."""
    codes = getattr(model, "item_codes", None)
    if not isinstance(codes, torch.Tensor):
        return None
    array = codes.detach().cpu().to(torch.int64).contiguous().numpy()
    return {"shape": list(array.shape), "sha256": hashlib.sha256(array.tobytes()).hexdigest()}


def rng_state():
    """The torch, numpy, python (and CUDA) random states, as tensors and plain values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
            "python": plain_value(random.getstate()),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state):
    """Restore what ``rng_state`` returned."""
    if not state:
        return
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def encode_other_parameter(values):
    """RecBole's ``other_parameter()`` in a weights-only form. A module (FDSA, SASRecF keep their feature layer
    there) is left out: it is a submodule, so its weights are in the state dict already. numpy arrays and scipy
    sparse matrices (ItemKNN, EASE, ...) become tagged tensors, which ``decode_other_parameter`` turns back."""
    import scipy.sparse

    encoded = {}
    for key, value in (values or {}).items():
        if isinstance(value, torch.nn.Module):
            continue
        if isinstance(value, np.ndarray):
            encoded[key] = {"__numpy__": torch.from_numpy(np.ascontiguousarray(value))}
        elif scipy.sparse.issparse(value):
            csr = value.tocsr()
            encoded[key] = {"__scipy_csr__": [torch.from_numpy(csr.data), torch.from_numpy(csr.indices),
                                              torch.from_numpy(csr.indptr), list(csr.shape), value.format]}
        else:
            encoded[key] = plain_value(value) if not isinstance(value, torch.Tensor) else value
    return encoded


def decode_other_parameter(values):
    """What ``encode_other_parameter`` wrote, with numpy arrays and scipy matrices restored."""
    import scipy.sparse

    decoded = {}
    for key, value in (values or {}).items():
        if isinstance(value, dict) and "__numpy__" in value:
            value = value["__numpy__"].numpy()
        elif isinstance(value, dict) and "__scipy_csr__" in value:
            data, indices, indptr, shape, kind = value["__scipy_csr__"]
            value = scipy.sparse.csr_matrix((data.numpy(), indices.numpy(), indptr.numpy()), shape=shape).asformat(kind)
        decoded[key] = value
    return decoded


def checkpoint_state(trainer, epoch):
    """The safe checkpoint of a RecBole trainer after ``epoch``: RecBole's fields, the config as plain values,
    the semantic-ID digest and the RNG states."""
    model = trainer.model
    return {
        "format": CHECKPOINT_FORMAT,
        "config": plain_config(trainer.config),
        "epoch": epoch,
        "cur_step": trainer.cur_step,
        "best_valid_score": plain_value(trainer.best_valid_score),
        "state_dict": model.state_dict(),
        "other_parameter": encode_other_parameter(model.other_parameter()),
        "optimizer": trainer.optimizer.state_dict(),
        "semantic_ids": semantic_id_digest(model),
        "rng": rng_state(),
    }


def save_checkpoint(state, path):
    """Write ``state`` atomically (a temporary file, then a rename), so a crash never leaves half a file."""
    atomic_write(os.fspath(path), lambda f: torch.save(state, f))


def _reason(err):
    text = first_line(str(err)) or type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def load_checkpoint(path, map_location="cpu"):
    """Read a checkpoint written by ``save_checkpoint`` with ``weights_only=True``.

    Raises ``CheckpointError`` (one line) for a missing file, a corrupt or truncated one, and a file that holds
    Python objects (a checkpoint of RecBole's own format, or a planted file): those are never unpickled.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of files it then refuses
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's weights-only unpickler names what it refused (every failure's text mentions "weights_only"). A
        # global is a Python object; an operation plain checkpoints never use is one too, or random bytes.
        text = str(err)
        if "Unsupported global" in text:
            raise CheckpointError(
                f"refusing to load {path}: it holds Python objects, and unpickling them could run code. "
                "recbole-lamia loads only checkpoints it wrote itself (plain tensors and values).") from None
        if "Unsupported operand" in text:
            raise CheckpointError(
                f"refusing to load {path}: it is corrupt or holds Python objects (its pickle has an operation "
                "that plain tensors and values never need); it was not unpickled.") from None
        raise CheckpointError(f"{path} is corrupt, truncated or not a checkpoint ({_reason(text)})") from None
    except Exception as err:  # anything else torch.load meets in a file that is not a checkpoint (e.g. KeyError)
        raise CheckpointError(f"{path} is corrupt, truncated or not a checkpoint ({_reason(err)})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a recbole-lamia checkpoint (no '{CHECKPOINT_FORMAT}' marker).")
    state["other_parameter"] = decode_other_parameter(state.get("other_parameter"))
    return state


def check_semantic_ids(state, model, path="checkpoint"):
    """Raise ``CheckpointError`` when the checkpoint was trained with other semantic IDs than ``model`` has."""
    saved, current = state.get("semantic_ids"), semantic_id_digest(model)
    if saved is None or current is None:
        return
    if saved != current:
        raise CheckpointError(
            f"{path} was trained with other semantic IDs (shape {saved['shape']}, sha256 {saved['sha256'][:12]}) "
            f"than the ones built now (shape {current['shape']}, sha256 {current['sha256'][:12]}): the tokenizer "
            "settings, the item text or the encoder changed since. Use the settings it was trained with.")


# Config values that describe the machine or are derived from the model class: recomputed, not restored.
_RECOMPUTED_KEYS = {"model", "dataset", "data_path", "MODEL_TYPE", "MODEL_INPUT_TYPE", "eval_type", "device",
                    "gpu_id", "use_gpu", "local_rank", "single_spec", "nproc", "world_size", "offset",
                    "valid_neg_sample_args", "test_neg_sample_args"}  # the last two: RecBole's, from eval_args
# Values a checkpoint must not choose: they would make this run unpickle files (RecBole's saved dataset and
# dataloaders) or read them from where the checkpoint says. The current run's values are kept.
_NEVER_RESTORED_KEYS = {"save_dataset", "dataset_save_path", "save_dataloaders", "dataloaders_save_path",
                        "checkpoint_dir"}


def training_folder(checkpoint_path, checkpoint_dir):
    """The folder a run was started from, given where its checkpoint is and its relative ``checkpoint_dir``
    (``saved/x.pth`` with ``checkpoint_dir: saved`` was written from the folder holding ``saved/``); None when the
    path does not end in ``checkpoint_dir`` or that is absolute."""
    if not checkpoint_dir or os.path.isabs(checkpoint_dir):
        return None
    folder = os.path.dirname(os.path.abspath(checkpoint_path))
    parts = [part for part in os.path.normpath(checkpoint_dir).split(os.sep) if part not in ("", ".")]
    for part in reversed(parts):
        if os.path.basename(folder) != part:
            return None
        folder = os.path.dirname(folder)
    return folder


def config_from_checkpoint(state, overrides=None, checkpoint_path=None):
    """A RecBole ``Config`` with the settings a checkpoint was trained with (``overrides`` on top).

    The saved settings go through RecBole's ``Config`` as a ``config_dict``, so its own checks and derived values
    (negative sampling, evaluation arguments) are as in training. The device is this machine's. The data folder is
    the one used in training when it still exists; otherwise RecBole's (or the plugin's shipped copy). A relative
    ``semantic_id_cache_dir`` that is not in the current folder is looked up from the folder the run was started
    in (``training_folder``, given ``checkpoint_path``), so the IDs come from the cache wherever the command runs.
    """
    from recbole.config import Config

    from recbole_lamia.utils.command_line import recbole_argv_cleared

    saved = state["config"]
    final, overrides = saved["final_config_dict"], dict(overrides or {})
    config_dict = {k: v for k, v in final.items() if k not in _RECOMPUTED_KEYS | _NEVER_RESTORED_KEYS}
    negatives = final.get("train_neg_sample_args")
    if isinstance(negatives, dict) and negatives.get("distribution") in (None, "none"):
        config_dict["train_neg_sample_args"] = None  # RecBole's form of "no negative sampling" as a setting
    data_path = final.get("data_path")
    if data_path and saved["dataset"] != "ml-100k" and os.path.isdir(data_path):
        config_dict["data_path"] = os.path.dirname(os.path.normpath(data_path))
    cache_dir = final.get("semantic_id_cache_dir")
    root = training_folder(checkpoint_path, final.get("checkpoint_dir")) if checkpoint_path else None
    if cache_dir and not os.path.isabs(cache_dir) and not os.path.isdir(cache_dir) and root \
            and os.path.isdir(os.path.join(root, cache_dir)):
        config_dict["semantic_id_cache_dir"] = os.path.join(root, cache_dir)
    config_dict.update(overrides)
    with recbole_argv_cleared():
        return Config(model=saved["model"], dataset=saved["dataset"], config_dict=config_dict)
