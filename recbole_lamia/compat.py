"""Narrow compatibility shims that let RecBole 1.2.1 run on today's stack.

Each breakage is handled on purpose (see README, "Compatibility"):

* ``numpy>=2``: ray 2.6.3 (RecBole pins ``ray<=2.6.3``) uses ``np.bool8``.  **Pin**: ``numpy<2``.
* ray imports ``pkg_resources``, removed from setuptools 81.  **Pin**: ``setuptools<81``.
* pandas 3 makes RecBole's chained ``df[f].fillna(..., inplace=True)`` a no-op (copy-on-write), so
  missing values would silently survive.  **Pin**: ``pandas<3``.
* ``torch>=2.6`` defaults ``torch.load(weights_only=True)``, which refuses RecBole's own checkpoints
  (they pickle the Config object).  **Shim** (this module): RecBole's trainer and quick-start modules
  get a ``torch`` proxy whose ``load`` defaults to ``weights_only=False``.  Only those two modules are
  affected, and only files RecBole itself wrote in ``checkpoint_dir`` go through them.
"""

import functools
import importlib
import warnings

import torch

# Modules of RecBole that call torch.load on checkpoints written by RecBole's own Trainer.
_CHECKPOINT_LOADING_MODULES = ("recbole.trainer.trainer", "recbole.quick_start.quick_start")


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


def patch_recbole_checkpoint_loading():
    """Let RecBole's Trainer and ``load_data_and_model`` read their checkpoints on torch>=2.6.

    Idempotent. Returns the list of module names that were patched.
    """
    patched = []
    for module_name in _CHECKPOINT_LOADING_MODULES:
        module = importlib.import_module(module_name)
        current = getattr(module, "torch", None)
        if isinstance(current, _TorchWithTrustedCheckpointLoad):
            patched.append(module_name)
            continue
        if current is torch:
            module.torch = _TorchWithTrustedCheckpointLoad(torch)
            patched.append(module_name)
    return patched


def silence_recbole_chained_fillna_warning():
    """pandas 2.x warns on every RecBole ``fillna(inplace=True)``; with ``pandas<3`` pinned it works."""
    warnings.filterwarnings("ignore", message="A value is trying to be set on a copy", category=FutureWarning)
