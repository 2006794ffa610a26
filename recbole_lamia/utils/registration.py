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
  the command line still override them, as with RecBole's own YAML.
"""

import functools
import os
import sys

import recbole.data.dataset
import recbole.model.sequential_recommender
from recbole.config import Config

PROPERTIES_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "properties"))

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

    load_internal_config_dict._recbole_lamia = True
    Config._load_internal_config_dict = load_internal_config_dict
