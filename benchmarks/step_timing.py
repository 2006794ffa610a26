"""Shared by the side-by-side training-step benchmarks (``bert4rec_loss_cost.py``, ``tiger_dropout_cost.py``):
their common options, the training data of one model's config, the alternating timed steps, and the result file.
"""

import argparse
import json
import os
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def step_parser(doc, default_batches):
    """An ``ArgumentParser`` with ``--dataset``, ``--data_path``, ``--batches`` and ``--threads``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data_path", default=None, help="default: the plugin's shipped copy or RecBole's")
    parser.add_argument("--batches", type=int, default=default_batches,
                        help="timed batches per model (after one warm-up)")
    parser.add_argument("--threads", type=int, default=1)
    return parser


def parse_step_args(parser):
    """Parsed options; a usage error for ``--batches`` or ``--threads`` below 1."""
    args = parser.parse_args()
    if args.batches < 1 or args.threads < 1:
        parser.error("--batches and --threads must be at least 1")
    return args


def training_data(model, args, **overrides):
    """``(config, train_data)`` for ``model`` on ``args.dataset`` with the dataset's own settings, quiet, on the CPU
    with ``args.threads`` threads; ``overrides`` that are not None go into the config."""
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    import recbole_lamia  # noqa: F401  (registers the plugin's models and dataset settings)

    torch.set_num_threads(args.threads)
    config_dict = {"show_progress": False, "state": "WARNING", "use_gpu": False}
    if args.data_path:
        config_dict["data_path"] = args.data_path
    config_dict.update({key: value for key, value in overrides.items() if value is not None})
    config = Config(model=model, dataset=args.dataset, config_dict=config_dict)
    init_seed(config["seed"], True)
    train_data, _, _ = data_preparation(config, create_dataset(config))
    return config, train_data


def train_step(model, optimizer, batch):
    """One training step as RecBole's trainer runs it; returns the loss."""
    model.train()
    optimizer.zero_grad()
    loss = model.calculate_loss(batch)
    loss.backward()
    optimizer.step()
    return loss.item()


def timed_steps(models, batches, learning_rate, swap_order=False):
    """Alternate training steps of ``models`` (name -> model, the same weights) on the same ``batches``.

    A step is a forward pass, the loss, a backward pass and an Adam update, as the trainer runs it, after
    ``torch.manual_seed(batch index)`` so that both draw the same random numbers where they can. The first batch is a
    warm-up. ``swap_order`` reverses the order of the models on every other batch. Returns ``(seconds, losses)``:
    per model, the seconds of each timed step, and the loss of every step (warm-up first).
    """
    import torch

    optimizers = {name: torch.optim.Adam(m.parameters(), lr=learning_rate) for name, m in models.items()}
    seconds = {name: [] for name in models}
    losses = {name: [] for name in models}
    for index, batch in enumerate(batches):
        order = list(models)[::-1] if swap_order and index % 2 else list(models)
        for name in order:
            torch.manual_seed(index)
            start = time.perf_counter()
            loss = train_step(models[name], optimizers[name], batch)
            if index > 0:
                seconds[name].append(round(time.perf_counter() - start, 3))
            losses[name].append(loss)
        print(f"batch {index}: " + ", ".join(f"{name} loss {losses[name][-1]:.5f}, {sum(seconds[name]):.1f} s"
                                             for name in models), flush=True)
    return seconds, losses


def write_result(name, result):
    """Write ``result`` to ``results/<name>.json`` and print it."""
    from recbole_lamia.utils.files import write_json_atomic

    out = os.path.join(ROOT, "results", f"{name}.json")
    write_json_atomic(out, result, indent=2)
    print(json.dumps(result, indent=2))
    print(f"written: {out}")
