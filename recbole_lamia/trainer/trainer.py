"""Trainers of the plugin's models, found by RecBole's ``get_trainer`` as ``recbole.trainer.<Model>Trainer``."""

from recbole.trainer import TraditionalTrainer


class TextKNNTrainer(TraditionalTrainer):
    """TextKNN learns nothing: like RecBole's ``TraditionalTrainer`` (memory-based models), one pass and one
    validation, whatever ``epochs`` a dataset's YAML sets for the learning models."""
