"""A RecBole trainer that saves a resume point every epoch, keeps a time budget and reports progress.

``leaderboard_trainer(base)`` subclasses the trainer RecBole would use for the model (``get_trainer``), so
model-specific ``_train_epoch`` overrides still apply. Its ``fit`` is RecBole's loop (same ``eval_step``,
``early_stopping`` and best-checkpoint rule) plus:

* ``last.pth`` after every epoch: RecBole's checkpoint fields (model, optimizer, epoch, cur_step,
  best_valid_score), written atomically, plus the leaderboard's own (best_valid_result, best epoch,
  timings, stop reason, RNG states, a config fingerprint), in the plugin's safe checkpoint form
  (``utils/checkpoint.py``). ``resume()`` reads it with RecBole's
  ``Trainer.resume_checkpoint``; ``best.pth`` keeps the best-validation weights for the test evaluation.
* a budget in seconds of training (+ validation) time, summed over resumed segments: training stops after
  an epoch when the next one would not finish within it (at least one epoch always runs);
* ``stop_reason``: ``early_stopped`` (validation patience), ``budget`` or ``max_epochs``;
* a mid-epoch resume point in ``last.pth`` every ``save_every_seconds`` (10 minutes by default) of a long epoch
  (``EpochBatches``), so that a stopped session loses at most that much of a TIGER epoch (about 30 CPU minutes).
"""

import math
import os
import signal
import time

from recbole.utils import early_stopping

from recbole_lamia.utils.checkpoint import (
    CheckpointError,
    checkpoint_state,
    load_checkpoint,
    plain_value,
    save_checkpoint,
    set_rng_state,
)

# A mid-epoch resume point costs one checkpoint write (tens of MB for TIGER): often enough to lose little when a
# session stops, rarely enough to cost nothing measurable.
SAVE_EVERY_SECONDS = 600.0


class SimulatedInterruption(RuntimeError):
    """Raised (in-process) after ``interrupt_after_epoch`` or ``interrupt_after_batches`` to simulate a crash;
    tests use it."""


def format_seconds(seconds):
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class LeaderboardTrainerMixin:
    """Mixed in before a RecBole trainer class; call ``setup_leaderboard`` right after construction."""

    def setup_leaderboard(self, run_dir, budget_seconds=None, progress=print, label="", fingerprint="",
                          interrupt_after_epoch=None, hard_interrupt=False, accepted_fingerprints=None,
                          save_every_seconds=SAVE_EVERY_SECONDS, interrupt_after_batches=None):
        os.makedirs(run_dir, exist_ok=True)
        self.saved_model_file = os.path.join(run_dir, "best.pth")
        self.last_file = os.path.join(run_dir, "last.pth")
        self.budget_seconds = budget_seconds
        self.progress = progress or (lambda message: None)
        self.label = label
        self.fingerprint = fingerprint  # written into every resume point
        # Fingerprints a checkpoint may carry to be continued (the current one, and older forms of it).
        self.accepted_fingerprints = {fingerprint, *(accepted_fingerprints or ())}
        self.interrupt_after_epoch = interrupt_after_epoch
        self.hard_interrupt = hard_interrupt
        self.save_every_seconds = save_every_seconds  # None: resume points only after whole epochs
        self.interrupt_after_batches = interrupt_after_batches  # (epoch index, batches trained): tests
        self.partial_epoch = None  # from a mid-epoch resume point: {"epoch", "batches", "seconds"}
        self.pending_batch_rng = None  # the random states at that point's batch boundary
        self.train_seconds = 0.0
        self.epoch_seconds = []  # training pass only
        self.valid_seconds = []
        self.best_epoch = None
        self.epochs_done = 0
        self.stop_reason = None
        self.resumed_from_epoch = None

    # ----- resume point -----
    def save_resume_point(self, epoch_idx, partial_epoch=None, train_loader_state=None):
        """``last.pth`` after epoch ``epoch_idx``; with ``partial_epoch``, also the batches of the next epoch
        trained so far, and ``train_loader_state`` the loader's generator as that epoch began."""
        state = checkpoint_state(self, epoch_idx)  # RecBole's fields, RNG states; safe to load
        if train_loader_state is None and getattr(self, "train_generator", None) is not None:
            train_loader_state = self.train_generator.get_state()
        if train_loader_state is not None:  # the training loader's shuffling
            state["rng"]["train_loader"] = train_loader_state
        state["leaderboard"] = plain_value({
            "fingerprint": self.fingerprint,
            "best_valid_result": self.best_valid_result,
            "best_epoch": self.best_epoch,
            "train_seconds": self.train_seconds,
            "epoch_seconds": self.epoch_seconds,
            "valid_seconds": self.valid_seconds,
            "stop_reason": self.stop_reason,
            "partial_epoch": partial_epoch,
        })
        save_checkpoint(state, self.last_file)

    def save_mid_epoch_point(self, epoch_idx, batches, seconds, train_loader_state):
        """A resume point inside epoch ``epoch_idx``, after its first ``batches`` optimizer steps (``seconds`` of
        training); the loader replays the epoch from ``train_loader_state``."""
        self.save_resume_point(epoch_idx - 1, train_loader_state=train_loader_state,
                               partial_epoch={"epoch": epoch_idx, "batches": batches, "seconds": seconds})

    def resume(self):
        """Continue from ``last.pth`` if it exists and was written with the same configuration.

        Returns the epoch training continues at, or None (fresh start).
        """
        if not os.path.exists(self.last_file):
            return None
        try:
            state = load_checkpoint(self.last_file)
        except CheckpointError as err:  # a torn, foreign or unsafe file: start over, never unpickle it
            self.progress(f"{self.label}: {err}; starting from scratch")
            return None
        extra = state.get("leaderboard", {})
        if extra.get("fingerprint") not in self.accepted_fingerprints:
            self.progress(f"{self.label}: checkpoint {self.last_file} was written with another configuration; "
                          "starting from scratch")
            return None
        best_file = self.saved_model_file
        self.resume_checkpoint(self.last_file)  # RecBole: model, optimizer, start_epoch, cur_step, best score
        self.saved_model_file = best_file  # resume_checkpoint points it at the resume file
        self.best_valid_result = extra.get("best_valid_result")
        self.best_epoch = extra.get("best_epoch")
        self.train_seconds = float(extra.get("train_seconds") or 0.0)
        self.epoch_seconds = list(extra.get("epoch_seconds") or [])
        self.valid_seconds = list(extra.get("valid_seconds") or [])
        self.stop_reason = extra.get("stop_reason")
        self.partial_epoch = extra.get("partial_epoch")
        if self.partial_epoch:  # restored after the epoch's finished batches are drawn again (EpochBatches)
            self.pending_batch_rng = state.get("rng")
            self.progress(f"{self.label}: resuming inside epoch {self.start_epoch + 1}, after "
                          f"{self.partial_epoch['batches']} of its batches")
        else:
            set_rng_state(state.get("rng"))
        self.pending_train_generator_state = (state.get("rng") or {}).get("train_loader")  # set in fit
        self.epochs_done = self.start_epoch
        self.resumed_from_epoch = self.start_epoch
        return self.start_epoch

    # ----- training loop -----
    def _mean_epoch_cost(self):
        costs = [t + v for t, v in zip(self.epoch_seconds, self.valid_seconds)]
        return sum(costs) / len(costs) if costs else 0.0

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self.train_generator = train_data.generator
        if getattr(self, "pending_train_generator_state", None) is not None:
            train_data.generator.set_state(self.pending_train_generator_state)
            self.pending_train_generator_state = None
        self.eval_collector.data_collect(train_data)
        if self.config["train_neg_sample_args"].get("dynamic", False):
            train_data.get_model(self.model)
        if self.stop_reason == "early_stopped":  # resumed after convergence: nothing left to train
            return self.best_valid_score, self.best_valid_result
        self.stop_reason = None
        for epoch_idx in range(self.start_epoch, self.epochs):
            if self.budget_seconds is not None and self.train_seconds >= self.budget_seconds:
                self.stop_reason = "budget"
                break
            partial = self.partial_epoch if (self.partial_epoch or {}).get("epoch") == epoch_idx else None
            self.partial_epoch = None
            start = time.time() - (partial["seconds"] if partial else 0.0)  # the epoch's earlier segment counts
            batches = train_data
            if saved and self.config["single_spec"]:  # one process: DistributedSampler epochs are not replayed
                batches = EpochBatches(self, train_data, epoch_idx, start, skip=partial["batches"] if partial else 0,
                                       rng_after_skip=self.pending_batch_rng if partial else None)
            self.pending_batch_rng = None
            train_loss = self._train_epoch(batches, epoch_idx, show_progress=show_progress)
            self.train_loss_dict[epoch_idx] = sum(train_loss) if isinstance(train_loss, tuple) else train_loss
            trained = time.time()
            self.epoch_seconds.append(trained - start)
            if verbose:
                self.logger.info(self._generate_train_loss_output(epoch_idx, start, trained, train_loss))
            valid_note = ""
            if self.eval_step <= 0 or not valid_data:
                if saved:
                    self._save_checkpoint(epoch_idx, verbose=verbose)
                self.best_epoch = epoch_idx
                self.valid_seconds.append(0.0)
            elif (epoch_idx + 1) % self.eval_step == 0:
                valid_score, valid_result = self._valid_epoch(valid_data, show_progress=show_progress)
                self.best_valid_score, self.cur_step, stop_flag, update_flag = early_stopping(
                    valid_score, self.best_valid_score, self.cur_step, max_step=self.stopping_step,
                    bigger=self.valid_metric_bigger)
                if update_flag:
                    if saved:
                        self._save_checkpoint(epoch_idx, verbose=verbose)
                    self.best_valid_result = valid_result
                    self.best_epoch = epoch_idx
                if verbose:
                    self.logger.info(f"epoch {epoch_idx} valid {self.valid_metric}={valid_score:.6f}")
                if callback_fn:
                    callback_fn(epoch_idx, valid_score)
                if stop_flag:
                    self.stop_reason = "early_stopped"
                self.valid_seconds.append(time.time() - trained)
                # RecBole stops at the (stopping_step + 1)-th validation in a row without a gain.
                valid_note = (f", valid {self.valid_metric} {valid_score:.4f} (best {self.best_valid_score:.4f} at "
                              f"epoch {(self.best_epoch or 0) + 1}, patience {self.cur_step}/{self.stopping_step + 1})")
            else:
                self.valid_seconds.append(0.0)
            self.train_seconds += time.time() - start
            self.epochs_done = epoch_idx + 1
            left_epochs = self.epochs - self.epochs_done
            if (self.stop_reason is None and left_epochs > 0 and self.budget_seconds is not None
                    and self.train_seconds + self._mean_epoch_cost() > self.budget_seconds):
                self.stop_reason = "budget"
            if saved:
                self.save_resume_point(epoch_idx)
            eta = 0.0 if self.stop_reason else left_epochs * self._mean_epoch_cost()
            if self.budget_seconds is not None and not self.stop_reason:
                eta = min(eta, max(0.0, self.budget_seconds - self.train_seconds))
            self.progress(f"{self.label} epoch {epoch_idx + 1}/{self.epochs}: train {self.epoch_seconds[-1]:.1f}s"
                          f"{valid_note}; trained {format_seconds(self.train_seconds)}, "
                          f"left <= {format_seconds(eta)}" + (f" [{self.stop_reason}]" if self.stop_reason else ""))
            if self.interrupt_after_epoch is not None and epoch_idx == self.interrupt_after_epoch:
                if self.hard_interrupt:
                    os.kill(os.getpid(), signal.SIGKILL)
                raise SimulatedInterruption(f"simulated interruption after epoch {epoch_idx + 1}")
            if self.stop_reason:
                break
        if self.stop_reason is None:
            self.stop_reason = "max_epochs"
        return self.best_valid_score, self.best_valid_result


class EpochBatches:
    """One epoch of the training loader, as ``_train_epoch`` iterates it, with mid-epoch resume points.

    Between two batches (after one optimizer step, before the next batch is drawn) it writes a resume point when
    ``save_every_seconds`` have passed since the last. Continued from such a point, it draws the epoch again from
    the loader state the epoch began with, drops the batches already trained on, then restores the random states
    of that boundary: the run goes on as if it had not stopped. (RecBole's ``_train_epoch`` keeps the epoch's loss
    sum to itself, so the logged loss of a resumed epoch covers only its batches after the resume.)
    Everything else, ``len`` included, is the loader's.
    """

    def __init__(self, trainer, loader, epoch_idx, started, skip=0, rng_after_skip=None):
        self.trainer = trainer
        self.loader = loader
        self.epoch_idx = epoch_idx
        self.started = started
        self.skip = skip
        self.rng_after_skip = rng_after_skip  # the random states at the boundary after ``skip`` batches

    def __len__(self):
        return len(self.loader)

    def __getattr__(self, name):
        if name == "loader":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __iter__(self):
        trainer = self.trainer
        epoch_start_state = self.loader.generator.get_state()
        batches = iter(self.loader)
        for _ in range(self.skip):
            next(batches)
        if self.rng_after_skip is not None:
            set_rng_state(self.rng_after_skip)
        done, last_save = self.skip, time.time()
        while True:
            if (done > self.skip and trainer.save_every_seconds is not None
                    and time.time() - last_save >= trainer.save_every_seconds):
                trainer.save_mid_epoch_point(self.epoch_idx, done, time.time() - self.started, epoch_start_state)
                last_save = time.time()
            if trainer.interrupt_after_batches == (self.epoch_idx, done) and done > self.skip:
                raise SimulatedInterruption(f"simulated interruption after {done} batches of epoch "
                                            f"{self.epoch_idx + 1}")
            try:
                batch = next(batches)
            except StopIteration:
                return
            yield batch
            done += 1


def leaderboard_trainer(base):
    """The leaderboard subclass of the RecBole trainer class ``base``."""
    return type(f"Leaderboard{base.__name__}", (LeaderboardTrainerMixin, base), {})
