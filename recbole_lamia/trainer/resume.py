"""Resume points for RecBole's Trainer: an interrupted run continues from its last epoch and ends as the
uninterrupted run would.

After every validated epoch (RecBole's ``fit`` ``callback_fn``), ``ResumePoints.save`` writes
``<checkpoint_dir>/<model>-<dataset>-<settings hash>-resume.pth`` in the plugin's safe checkpoint form: the model,
the optimizer, the epoch, RecBole's early-stopping state, the best result so far and the path of the best checkpoint,
and every random state the next epoch draws from (torch, numpy, python, CUDA, and the training loader's shuffling
generator; with several processes, each rank's). ``restore`` puts all of it back into a freshly built trainer
before ``fit``.
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
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from recbole_lamia.utils.distributed import gather_from_ranks, rank, share_from_rank_zero
from recbole_lamia.utils.errors import UserInputError

# Settings that may change between an interrupted run and its continuation.
RESUMABLE_KEYS = {"epochs", "stopping_step", "show_progress", "state", "eval_batch_size", "worker", "use_gpu",
                  "gpu_id", "device", "checkpoint_dir", "data_path", "semantic_id_cache_dir"}
# Settings that only say how a run was launched: RecBole also reads every --key=value of the command line, so
# --port=... or --config_files=... land in the config. (The number of processes is a setting: it splits the data.)
LAUNCH_KEYS = {"ip", "port", "offset", "group_offset", "config_files"}
# Settings RecBole gives each rank of one run its own value of (it quiets ranks other than 0). Only rank 0 names
# the resume file, so they are left out of the comparison, not of the name.
RANK_KEYS = {"local_rank", "verbose"}


def resume_file(config, left_out=RESUMABLE_KEYS | LAUNCH_KEYS):
    """Where the resume point of ``config``'s run lives: named by the model, the dataset and a hash of the settings
    that must match, so runs of other settings in one ``checkpoint_dir`` keep their own."""
    settings = plain_config(config)["final_config_dict"]
    digest = stable_hash({k: v for k, v in settings.items() if k not in left_out})[:10]
    return os.path.join(config["checkpoint_dir"], f"{config['model']}-{config['dataset']}-{digest}-resume.pth")


def changed_settings(saved, current):
    """Keys whose values differ between two ``plain_config`` dicts, resumable, launch and rank keys left out."""
    keys = (set(saved) | set(current)) - RESUMABLE_KEYS - LAUNCH_KEYS - RANK_KEYS
    return sorted(k for k in keys if saved.get(k) != current.get(k))


class ResumePoints:
    """Writes and restores the resume point of one RecBole trainer and its training loader."""

    def __init__(self, trainer, train_data, path=None):
        self.trainer = trainer
        self.train_data = train_data
        # Every rank uses rank 0's name (a collective call: every rank builds its ResumePoints).
        self.path = path or share_from_rank_zero(resume_file(trainer.config))
        # Points named before the launch keys were left out of the name are still found.
        self.legacy_path = None if path else share_from_rank_zero(resume_file(trainer.config, RESUMABLE_KEYS))

    def save(self, epoch_idx, valid_score=None):
        """RecBole's ``fit`` callback: the state after epoch ``epoch_idx`` (training and validation done)."""
        trainer = self.trainer
        # Each rank draws from its own random states (RecBole seeds rank r with seed + r): all go into the file.
        own_rng = dict(rng_state(), train_loader=self.train_data.generator.get_state())
        every_rank_rng = gather_from_ranks(own_rng)  # a collective: before any rank returns
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
        if len(every_rank_rng) > 1:
            state["rng_per_rank"] = every_rank_rng
        save_checkpoint(state, self.path)

    def restore(self):
        """Load the resume point into the trainer; returns the epoch training continues at.

        Raises ``UserInputError`` (one line) when there is none, or it was written with other settings.
        """
        source = self.path
        if not os.path.exists(source) and self.legacy_path and os.path.exists(self.legacy_path):
            source = self.legacy_path  # read once; the next save writes the current name
        if not os.path.exists(source):
            config = self.trainer.config
            pattern = f"{config['model']}-{config['dataset']}-*-resume.pth"
            others = sorted(glob.glob(os.path.join(config["checkpoint_dir"], pattern)))
            raise UserInputError(f"nothing to resume: no resume point {self.path} for these settings (a run saves "
                                 "one after every validated epoch)"
                                 + (f"; resume points of other settings: {', '.join(others)}." if others else "."))
        state = load_checkpoint(source, map_location=self.trainer.device)
        trainer = self.trainer
        check_semantic_ids(state, trainer.model, source)
        changed = changed_settings(state["config"]["final_config_dict"],
                                   plain_config(trainer.config)["final_config_dict"])
        if changed:
            raise UserInputError(f"cannot resume from {source}: it was written with other settings of "
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
        per_rank = state.get("rng_per_rank") or [state["rng"]]
        own_rng = per_rank[rank()] if rank() < len(per_rank) else state["rng"]
        set_rng_state(own_rng)
        self.train_data.generator.set_state(own_rng["train_loader"])
        getLogger().info(f"Resumed from {source}: training continues at epoch {trainer.start_epoch}"
                         + (" (it had stopped early)" if extra["stopped"] else "") + ".")
        return trainer.start_epoch
