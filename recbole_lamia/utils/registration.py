"""Hooks that make RecBole's own entry points see this plugin.

RecBole 1.2.1 has no plugin registry, so we use three narrow hooks, each tested in
``tests/test_registration.py``:

* ``get_model(name)`` imports ``recbole.model.<type>_recommender.<name.lower()>``: we alias our model
  module under that name in ``sys.modules`` (no function is patched).
* ``create_dataset(config)`` looks for ``<Model>Dataset`` in ``recbole.data.dataset``: we set it there.
* ``Config`` reads model and dataset YAML only from RecBole's package folder: we wrap
  ``Config._load_internal_config_dict`` so that it then also reads ``properties/<model>.yaml``,
  ``properties/<dataset>.yaml`` and ``properties/<dataset>/<model>.yaml`` (a model's settings tuned for one
  dataset, which other models on that dataset do not see) of this plugin. User files, ``config_dict`` and
  the command line still override them, as with RecBole's own YAML. The same wrapper points ``data_path``
  at the plugin's ``datasets/`` for a dataset the plugin ships, unless the user set ``data_path`` or
  RecBole's default folder already holds the dataset.
"""

import functools
import os
import sys

import recbole.data.dataset
import recbole.model.sequential_recommender
from recbole.config import Config

from recbole_lamia.utils.paths import resource_dir

PROPERTIES_DIR = resource_dir("properties")

_REGISTERED_MODELS = {}


def register_model(model_class, submodule="sequential_recommender"):
    """Make ``recbole.utils.get_model(model_class.__name__)`` return ``model_class``."""
    module = sys.modules[model_class.__module__]
    alias = f"recbole.model.{submodule}.{model_class.__name__.lower()}"
    sys.modules[alias] = module
    setattr(getattr(recbole.model, submodule), model_class.__name__, model_class)
    _REGISTERED_MODELS[model_class.__name__] = model_class
    return model_class


def register_dataset(dataset_class, model_name):
    """Make ``recbole.data.create_dataset`` build ``dataset_class`` for ``model_name``."""
    setattr(recbole.data.dataset, f"{model_name}Dataset", dataset_class)
    return dataset_class


def register_trainer(trainer_class):
    """Make ``recbole.utils.get_trainer(..., model)`` return ``trainer_class``, named ``<model>Trainer``."""
    import recbole.trainer

    setattr(recbole.trainer, trainer_class.__name__, trainer_class)
    return trainer_class


def registered_models():
    """Names of the models this plugin registered, in registration order."""
    return list(_REGISTERED_MODELS)


def neutral_options(model):
    """``{option: value}``: the options of plugin model ``model`` whose value there reproduces the model from before
    the option existed (its class's ``NEUTRAL_OPTIONS``); empty for other models."""
    return dict(getattr(_REGISTERED_MODELS.get(model), "NEUTRAL_OPTIONS", {}))


def plugin_property_files(model, dataset):
    """The plugin's YAML files that apply to ``model`` on ``dataset`` (existing ones only), later ones winning:
    ``<model>.yaml``, ``<dataset>.yaml``, then ``<dataset>/<model>.yaml`` (the model's settings tuned on that
    dataset)."""
    files = [os.path.join(PROPERTIES_DIR, f"{model}.yaml"), os.path.join(PROPERTIES_DIR, f"{dataset}.yaml"),
             os.path.join(PROPERTIES_DIR, str(dataset), f"{model}.yaml")]
    return [f for f in files if os.path.isfile(f)]


def default_shipped_data_path(dataset, external_config, internal_config):
    """The ``data_path`` of the plugin's unpacked copy of ``dataset``, or ``None`` when the user set ``data_path``,
    RecBole's default folder already holds the dataset, or the plugin does not ship it."""
    from recbole_lamia.data.local_datasets import has_atomic_files, prepare_shipped_dataset

    if "data_path" in external_config or has_atomic_files(internal_config.get("data_path") or "dataset/", dataset):
        return None
    return prepare_shipped_dataset(dataset)


def patch_config_properties():
    """Wrap ``Config._load_internal_config_dict`` to also load the plugin's YAML defaults. Idempotent."""
    original = Config._load_internal_config_dict
    if getattr(original, "_recbole_lamia", False):
        return

    @functools.wraps(original)
    def load_internal_config_dict(self, model, model_class, dataset):
        original(self, model, model_class, dataset)
        for file in plugin_property_files(model, dataset):
            config_dict = self._update_internal_config_dict(file)
            if file == os.path.join(PROPERTIES_DIR, f"{dataset}.yaml"):
                self.parameters["Dataset"] += [k for k in (config_dict or {}) if k not in self.parameters["Dataset"]]
        shipped_path = default_shipped_data_path(dataset, self.external_config_dict, self.internal_config_dict)
        if shipped_path is not None:
            self.internal_config_dict["data_path"] = shipped_path

    load_internal_config_dict._recbole_lamia = True
    Config._load_internal_config_dict = load_internal_config_dict
