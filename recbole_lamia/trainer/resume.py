"""Resume points for RecBole's Trainer: an interrupted run continues from its last epoch and ends as the
uninterrupted run would.

After every validated epoch (RecBole's ``fit`` ``callback_fn``), ``ResumePoints.save`` writes
``<checkpoint_dir>/<model>-<dataset>-resume.pth`` in the plugin's safe checkpoint form: the model, the
optimizer, the epoch, RecBole's early-stopping state, the best result so far and the path of the best checkpoint,
and every random state the next epoch draws from (torch, numpy, python, CUDA, and the training loader's shuffling
generator). ``restore`` puts all of it back into a freshly built trainer before ``fit``.
"""

import glob
import os
from logging import getLogger

from recbole_lamia.data.cache import stable_hash
from recbole_lamia.utils.checkpoint import (
    check_semantic_ids,
    checkpoint_state,
    load_checkpoint,
    plain_config,
    plain_value,
    save_checkpoint,
    set_rng_state,
)
from recbole_lamia.utils.distributed import rank
from recbole_lamia.utils.errors import UserInputError

# Settings that may change between an interrupted run and its continuation.
RESUMABLE_KEYS = {"epochs", "stopping_step", "show_progress", "state", "eval_batch_size", "worker", "use_gpu",
                  "gpu_id", "device", "checkpoint_dir", "data_path", "semantic_id_cache_dir"}


def resume_file(config):
    """Where the resume point of ``config``'s run lives: named by the model, the dataset and a hash of the settings
    that must match, so runs of other settings in one ``checkpoint_dir`` keep their own."""
    settings = plain_config(config)["final_config_dict"]
    digest = stable_hash({k: v for k, v in settings.items() if k not in RESUMABLE_KEYS})[:10]
    return os.path.join(config["checkpoint_dir"], f"{config['model']}-{config['dataset']}-{digest}-resume.pth")


def changed_settings(saved, current):
    """Keys whose values differ between two ``plain_config`` dicts, resumable keys left out."""
    keys = (set(saved) | set(current)) - RESUMABLE_KEYS
    return sorted(k for k in keys if saved.get(k) != current.get(k))


class ResumePoints:
    """Writes and restores the resume point of one RecBole trainer and its training loader."""

    def __init__(self, trainer, train_data, path=None):
        self.trainer = trainer
        self.train_data = train_data
        self.path = path or resume_file(trainer.config)

    def save(self, epoch_idx, valid_score=None):
        """RecBole's ``fit`` callback: the state after epoch ``epoch_idx`` (training and validation done)."""
        trainer = self.trainer
        if rank() != 0:  # one writer; every rank restores from it
            return
        state = checkpoint_state(trainer, epoch_idx)
        state["resume"] = {
            "best_valid_result": plain_value(trainer.best_valid_result),
            "saved_model_file": trainer.saved_model_file,
            "stopped": trainer.cur_step > trainer.stopping_step,  # RecBole's early-stopping rule
            "train_loss": plain_value(trainer.train_loss_dict),
        }
        state["rng"]["train_loader"] = self.train_data.generator.get_state()
        save_checkpoint(state, self.path)

    def restore(self):
        """Load the resume point into the trainer; returns the epoch training continues at.

        Raises ``UserInputError`` (one line) when there is none, or it was written with other settings.
        """
        if not os.path.exists(self.path):
            config = self.trainer.config
            pattern = f"{config['model']}-{config['dataset']}-*-resume.pth"
            others = sorted(glob.glob(os.path.join(config["checkpoint_dir"], pattern)))
            raise UserInputError(f"nothing to resume: no resume point {self.path} for these settings (a run saves "
                                 "one after every validated epoch)"
                                 + (f"; resume points of other settings: {', '.join(others)}." if others else "."))
        state = load_checkpoint(self.path, map_location=self.trainer.device)
        trainer = self.trainer
        check_semantic_ids(state, trainer.model, self.path)
        changed = changed_settings(state["config"]["final_config_dict"],
                                   plain_config(trainer.config)["final_config_dict"])
        if changed:
            raise UserInputError(f"cannot resume from {self.path}: it was written with other settings of "
                                 f"{', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}.")
        trainer.model.load_state_dict(state["state_dict"])
        trainer.model.load_other_parameter(state.get("other_parameter"))
        trainer.optimizer.load_state_dict(state["optimizer"])
        extra = state["resume"]
        trainer.cur_step = state["cur_step"]
        trainer.best_valid_score = state["best_valid_score"]
        trainer.best_valid_result = extra["best_valid_result"]
        trainer.saved_model_file = extra["saved_model_file"]
        trainer.train_loss_dict.update({int(k): v for k, v in (extra.get("train_loss") or {}).items()})
        trainer.start_epoch = trainer.epochs if extra["stopped"] else state["epoch"] + 1
        set_rng_state(state["rng"])
        self.train_data.generator.set_state(state["rng"]["train_loader"])
        getLogger().info(f"Resumed from {self.path}: training continues at epoch {trainer.start_epoch}"
                         + (" (it had stopped early)" if extra["stopped"] else "") + ".")
        return trainer.start_epoch
