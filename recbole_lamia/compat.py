"""Narrow compatibility shims that let RecBole 1.2.1 run on today's stack.

Each breakage is handled on purpose (see README, "Compatibility"):

* ``numpy>=2``: ray 2.6.3 (RecBole pins ``ray<=2.6.3``) uses ``np.bool8``.  **Pin**: ``numpy<2``.
* ray imports ``pkg_resources``, removed from setuptools 81.  **Pin**: ``setuptools<81``.
* pandas 3 makes RecBole's chained ``df[f].fillna(..., inplace=True)`` a no-op (copy-on-write), so
  missing values would silently survive.  **Pin**: ``pandas<3``.
* RecBole's ``sine.py`` calls ``torch.autograd.set_detect_anomaly(True)`` at import, and importing
  ``recbole.model.sequential_recommender`` (which every sequential model's ``get_model`` does) imports
  it: anomaly detection then slows every backward pass of every model about 2x.  **Shim**: switch it
  off again after that import (``disable_recbole_anomaly_detection``); turn it on yourself to debug.
* ``torch>=2.6`` defaults ``torch.load(weights_only=True)``, which refuses RecBole's own checkpoints
  (they pickle the Config object).  **Shim** (this module): RecBole's trainer module gets a ``torch``
  proxy whose ``load`` defaults to ``weights_only=False``, and ``load_data_and_model`` (which imports
  torch locally) is wrapped to allow the same for its one call. The global ``torch.load`` keeps its
  safe default; only checkpoints RecBole itself wrote in ``checkpoint_dir`` go through these paths.
"""

import contextlib
import functools
import importlib
import os
import warnings

import torch


class _TorchWithTrustedCheckpointLoad:
    """Proxy of the ``torch`` module whose ``load`` trusts RecBole's own pickled checkpoints."""

    def __init__(self, torch_module):
        self._torch = torch_module

    def __getattr__(self, name):
        return getattr(self._torch, name)

    @functools.wraps(torch.load)
    def load(self, *args, **kwargs):
        kwargs.setdefault("weights_only", False)
        return self._torch.load(*args, **kwargs)


@contextlib.contextmanager
def _trusted_checkpoint_loading():
    """torch's own switch for calls that do not pass ``weights_only``, set only for the duration."""
    previous = os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
        else:
            os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = previous


def patch_recbole_checkpoint_loading():
    """Let RecBole's Trainer and ``load_data_and_model`` read their checkpoints on torch>=2.6.

    Idempotent. Returns the names of what is patched.
    """
    trainer_module = importlib.import_module("recbole.trainer.trainer")
    if not isinstance(trainer_module.torch, _TorchWithTrustedCheckpointLoad):
        trainer_module.torch = _TorchWithTrustedCheckpointLoad(torch)

    quick_start_module = importlib.import_module("recbole.quick_start.quick_start")
    original = quick_start_module.load_data_and_model
    if not getattr(original, "_recbole_lamia", False):
        @functools.wraps(original)
        def load_data_and_model(model_file):
            with _trusted_checkpoint_loading():
                return original(model_file)

        load_data_and_model._recbole_lamia = True
        quick_start_module.load_data_and_model = load_data_and_model
        importlib.import_module("recbole.quick_start").load_data_and_model = load_data_and_model
    return ["recbole.trainer.trainer.torch", "recbole.quick_start.load_data_and_model"]


def silence_recbole_chained_fillna_warning():
    """pandas 2.x warns on every RecBole ``fillna(inplace=True)``; with ``pandas<3`` pinned it works."""
    warnings.filterwarnings("ignore", message="A value is trying to be set on a copy", category=FutureWarning)


def disable_recbole_anomaly_detection():
    """Undo the ``set_detect_anomaly(True)`` that importing RecBole's sequential models performs."""
    importlib.import_module("recbole.model.sequential_recommender")
    torch.autograd.set_detect_anomaly(False)
