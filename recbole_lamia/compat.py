"""Narrow compatibility shims that let RecBole 1.2.1 run on today's stack.

Each breakage is handled on purpose (see README, "Compatibility"):

* ``numpy>=2``: ray 2.6.3 (RecBole pins ``ray<=2.6.3``) uses ``np.bool8``.  **Pin**: ``numpy<2``.
* ray imports ``pkg_resources``, removed from setuptools 81.  **Pin**: ``setuptools<81``; its deprecation
  warning, printed at every import of RecBole, is silenced (``silence_ray_pkg_resources_warning``, run when
  the plugin is imported, before RecBole is).
* pandas 3 makes RecBole's chained ``df[f].fillna(..., inplace=True)`` a no-op (copy-on-write), so
  missing values would silently survive.  **Pin**: ``pandas<3``.
* RecBole's ``sine.py`` calls ``torch.autograd.set_detect_anomaly(True)`` at import, and importing
  ``recbole.model.sequential_recommender`` (which every sequential model's ``get_model`` does) imports
  it: anomaly detection then slows every backward pass of every model about 2x.  **Shim**: switch it
  off again after that import (``disable_recbole_anomaly_detection``); turn it on yourself to debug.
* ``torch>=2.6`` defaults ``torch.load(weights_only=True)``, which refuses RecBole's own checkpoints
  (they pickle the Config object, with a pickle protocol the safe loader cannot read). Loading them any other
  way would let a planted file run code. **Shim** (``patch_recbole_checkpoint_loading``): RecBole's Trainer
  writes the plugin's safe checkpoint form instead (``utils/checkpoint.py``: tensors and plain values), its
  module gets a ``torch`` proxy whose ``load`` reads only that form with ``weights_only=True``, and
  ``recbole.quick_start.load_data_and_model`` becomes the plugin's safe one (``recbole_lamia.case_study``).
  Nothing sets ``weights_only=False`` or ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``.
* RecBole unpickles ``<checkpoint_dir>/<dataset>-<Class>.pth`` (a saved dataset) and the saved dataloaders
  whenever such a file exists, so a planted file runs code. **Shim** (``patch_recbole_saved_data_loading``):
  they are read only in a run that sets ``save_dataset`` / ``save_dataloaders`` (the user opted into those
  pickles); otherwise the file is ignored, with a warning, and the data is built afresh. A restored dataset
  whose semantic IDs were made with other tokenizer settings is built afresh too.
* RecBole's sampled evaluation loader (``NegSampleEvalDataLoader``, modes ``uni100`` / ``pop100``) builds each
  batch user by user in Python (gather, repeat, join, concatenate), which cost more than the model's scoring.
  **Shim** (``patch_recbole_sampled_eval_collate``): the same batch, built with one gather and one join; the
  negatives come from the same per-user sampler calls in the same order, so the draws are identical (tested
  field by field against RecBole's loader). Cases it does not cover (a batch transform, dynamic negatives,
  pairwise loaders) keep RecBole's code.
* RecBole drops interactions whose item (or user) has no row in the ``.item`` (``.user``) file without a word.
  **Shim** (``count_dropped_interactions``): the count is logged as a warning.
"""

import importlib
import os
import warnings

import numpy as np
import torch


class _TorchWithSafeCheckpointLoad:
    """Proxy of the ``torch`` module whose ``load`` reads only the plugin's safe checkpoints (weights only)."""

    def __init__(self, torch_module):
        self._torch = torch_module

    def __getattr__(self, name):
        return getattr(self._torch, name)

    def load(self, f, map_location=None, **_ignored):
        from recbole_lamia.utils.checkpoint import load_checkpoint

        return load_checkpoint(f, map_location=map_location)


def _save_safe_checkpoint(self, epoch, verbose=True, **kwargs):
    """RecBole's ``Trainer._save_checkpoint`` with the plugin's safe checkpoint form (same fields)."""
    from recbole.utils import set_color

    from recbole_lamia.utils.checkpoint import checkpoint_state, save_checkpoint

    if not self.config["single_spec"] and self.config["local_rank"] != 0:
        return
    saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
    save_checkpoint(checkpoint_state(self, epoch), saved_model_file)
    if verbose:
        self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")


_save_safe_checkpoint._recbole_lamia = True


def patch_recbole_checkpoint_loading():
    """Make RecBole's Trainer write and read only safe checkpoints, and ``load_data_and_model`` the safe one.

    Idempotent. Returns the names of what is patched.
    """
    trainer_module = importlib.import_module("recbole.trainer.trainer")
    if not isinstance(trainer_module.torch, _TorchWithSafeCheckpointLoad):
        trainer_module.torch = _TorchWithSafeCheckpointLoad(torch)
    trainer_module.Trainer._save_checkpoint = _save_safe_checkpoint

    def load_data_and_model(model_file):
        from recbole_lamia.case_study import load_data_and_model as safe_load_data_and_model

        return safe_load_data_and_model(model_file)

    load_data_and_model._recbole_lamia = True
    load_data_and_model.__doc__ = "The plugin's safe ``load_data_and_model`` (``recbole_lamia.case_study``)."
    for name in ("recbole.quick_start.quick_start", "recbole.quick_start"):
        module = importlib.import_module(name)
        if not getattr(module.load_data_and_model, "_recbole_lamia", False):
            module.load_data_and_model = load_data_and_model
    return ["recbole.trainer.trainer.torch", "recbole.trainer.trainer.Trainer._save_checkpoint",
            "recbole.quick_start.load_data_and_model"]


def _saved_dataset_file(config):
    """The file RecBole's ``create_dataset`` would unpickle (``dataset_save_path``, or its default name for the
    dataset class RecBole picks: ``<Model>Dataset``, else the class of the model type)."""
    from recbole.utils import ModelType

    dataset_module = importlib.import_module("recbole.data.dataset")
    dataset_class = getattr(dataset_module, f"{config['model']}Dataset", None)
    if dataset_class is None:
        by_type = {ModelType.SEQUENTIAL: "SequentialDataset", ModelType.KNOWLEDGE: "KnowledgeBasedDataset"}
        name = by_type.get(config["MODEL_TYPE"], "Dataset")
    else:
        name = dataset_class.__name__
    file = config["dataset_save_path"] or os.path.join(config["checkpoint_dir"], f"{config['dataset']}-{name}.pth")
    return file if os.path.exists(file) else None


def _stale_semantic_ids(dataset, config):
    """Whether a restored semantic-ID dataset was tokenized with other settings than ``config`` asks for."""
    saved = getattr(dataset, "tokenizer_params", None)
    if saved is None:
        return False
    from recbole_lamia.tokenizer.item_tokenizer import tokenizer_params

    ignored = {"show_progress"}  # does not change the IDs
    current = tokenizer_params(config)
    return ({k: v for k, v in saved.items() if k not in ignored}
            != {k: v for k, v in current.items() if k not in ignored})


def patch_recbole_saved_data_loading():
    """Let RecBole unpickle a saved dataset or dataloaders only in runs that opted in. Idempotent."""
    from logging import getLogger

    data_utils = importlib.import_module("recbole.data.utils")
    if getattr(data_utils.create_dataset, "_recbole_lamia", False):
        return
    original_create, original_load = data_utils.create_dataset, data_utils.load_split_dataloaders

    def build_afresh(config):
        previous = config["dataset_save_path"]
        config.final_config_dict["dataset_save_path"] = os.devnull + "/absent"  # a path that cannot exist
        try:
            return original_create(config)
        finally:
            config.final_config_dict["dataset_save_path"] = previous

    def create_dataset(config):
        file = _saved_dataset_file(config)
        if file is None:
            return original_create(config)
        if not config["save_dataset"]:
            getLogger().warning(f"Ignoring the saved dataset {file}: it is a pickle, read only in runs that set "
                                "save_dataset: True. Building the dataset afresh.")
            return build_afresh(config)
        dataset = original_create(config)
        if _stale_semantic_ids(dataset, config):
            getLogger().warning(f"The saved dataset {file} holds semantic IDs made with other tokenizer settings; "
                                "building the dataset afresh.")
            return build_afresh(config)
        return dataset

    def load_split_dataloaders(config):
        if not config["save_dataloaders"]:
            return None  # RecBole then splits the dataset afresh
        return original_load(config)

    create_dataset.__doc__ = original_create.__doc__
    create_dataset._recbole_lamia = True
    data_utils.create_dataset = create_dataset
    data_utils.load_split_dataloaders = load_split_dataloaders
    for name in ("recbole.data", "recbole.quick_start.quick_start"):
        importlib.import_module(name).create_dataset = create_dataset


def count_dropped_interactions():
    """Wrap RecBole's ``Dataset._filter_inter_by_user_or_item``, which silently drops interactions whose user or
    item has no row in the ``.user`` / ``.item`` file, to log how many it dropped. Idempotent."""
    from logging import getLogger

    from recbole.data.dataset import Dataset

    original = Dataset._filter_inter_by_user_or_item
    if getattr(original, "_recbole_lamia", False):
        return

    def _filter_inter_by_user_or_item(self):
        before = len(self.inter_feat)
        original(self)
        dropped = before - len(self.inter_feat)
        if dropped:
            getLogger().warning(f"{dropped} of {before} interactions of [{self.dataset_name}] were dropped: their "
                                "user or item has no row in the .user / .item file (filter_inter_by_user_or_item).")

    _filter_inter_by_user_or_item._recbole_lamia = True
    Dataset._filter_inter_by_user_or_item = _filter_inter_by_user_or_item


def _batched_sampled_collate_fn(loader, index):
    """RecBole's ``NegSampleEvalDataLoader.collate_fn`` for pointwise negative sampling without a transform, built
    with one gather and one join instead of per user. Each user's rows keep RecBole's layout (its positives, then
    one block of negatives per positive copy), and the sampler is called per user exactly as RecBole calls it."""
    from recbole.data.interaction import Interaction

    user_ids = loader.uid_list[np.asarray(index)]
    counts = np.array([loader.uid2items_num[uid] for uid in user_ids], dtype=np.int64)
    starts = np.array([loader.uid2index[uid].start for uid in user_ids], dtype=np.int64)
    # Row i of ``positives`` is the i-th positive of the batch, in RecBole's user order.
    positive_rows = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    positives = loader._dataset[torch.from_numpy(positive_rows)]
    users = positives[loader.uid_field].numpy()
    items = positives[loader.iid_field]

    times, source_rows, item_blocks = loader.times, [], []
    first = 0
    for count in counts:
        rows = slice(first, first + count)
        negatives = loader._sampler.sample_by_user_ids(users[rows], items[rows].numpy(), loader.neg_sample_num)
        source_rows.append(np.tile(np.arange(first, first + count), times))
        item_blocks += [items[rows], negatives]
        first += count
    data = positives[torch.from_numpy(np.concatenate(source_rows))]
    data.update(Interaction({loader.iid_field: torch.cat(item_blocks).to(items.dtype)}))
    data = loader._dataset.join(data)
    labels = torch.cat([torch.cat([torch.ones(count), torch.zeros(count * (times - 1))]) for count in counts])
    data.update(Interaction({loader.label_field: labels}))

    batch_users = torch.arange(len(user_ids))
    counts = torch.from_numpy(counts)
    return data, batch_users.repeat_interleave(counts * times), batch_users.repeat_interleave(counts), items


def patch_recbole_sampled_eval_collate():
    """Let ``NegSampleEvalDataLoader`` build ``uni100`` / ``pop100`` batches in one pass
    (``_batched_sampled_collate_fn``) where that gives RecBole's batch exactly; every other case runs RecBole's
    own ``collate_fn``. Idempotent."""
    from recbole.data.dataloader.general_dataloader import NegSampleEvalDataLoader
    from recbole.data.transform import Equal
    from recbole.utils import InputType

    original = NegSampleEvalDataLoader.collate_fn
    if getattr(original, "_recbole_lamia", False):
        return

    def collate_fn(self, index):
        args = self.neg_sample_args
        batched = (args["distribution"] in ("uniform", "popularity") and args["sample_num"] != "none"
                   and not args.get("dynamic", False) and self.dl_format == InputType.POINTWISE
                   and type(self.transform) is Equal)
        return _batched_sampled_collate_fn(self, index) if batched else original(self, index)

    collate_fn._recbole_lamia = True
    collate_fn.recbole_collate_fn = original
    NegSampleEvalDataLoader.collate_fn = collate_fn


def silence_ray_pkg_resources_warning():
    """ray 2.6.3 warns that ``pkg_resources`` is deprecated on import; with ``setuptools<81`` pinned it works."""
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)


silence_ray_pkg_resources_warning()  # at import: this module is imported before anything imports RecBole


def silence_recbole_chained_fillna_warning():
    """pandas 2.x warns on every RecBole ``fillna(inplace=True)``, and on its ``Series.agg(len)`` when a sequential
    dataset is split; with ``pandas<3`` pinned both work."""
    warnings.filterwarnings("ignore", message="A value is trying to be set on a copy", category=FutureWarning)
    warnings.filterwarnings("ignore", message="using <built-in function len> in Series.agg", category=FutureWarning)


def disable_recbole_anomaly_detection():
    """Undo the ``set_detect_anomaly(True)`` that importing RecBole's sequential models performs."""
    importlib.import_module("recbole.model.sequential_recommender")
    torch.autograd.set_detect_anomaly(False)
