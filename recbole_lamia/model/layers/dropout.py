"""Dropout with a cheaper random mask on CPU, for models whose step time it dominates (TIGER's T5).

PyTorch's CPU dropout draws one Bernoulli sample per element (``bernoulli_``): on T5's 1024-wide feed-forward
activations 2.5 times the time of the matrix product that then reads them, and a sixth of TIGER's training step on
amazon-beauty (``benchmarks/tiger_dropout_cost.py --profile``). Here one 64-bit draw from the same generator gives
four 16-bit uniform integers, each deciding one element: a Bernoulli mask of the same distribution, with ``p``
rounded to a multiple of 1/65536 and the kept elements scaled by ``1 / (1 - p)`` of that rounded ``p``, so the
expected output is still the input. The random stream differs from ``torch.nn.Dropout``'s;
``torch.manual_seed`` (RecBole's ``init_seed``) makes it reproducible all the same. Off the CPU the native, fused
dropout is faster, so it is used there.
"""

import torch
from torch import nn
from torch.nn import functional as F

_LEVELS = 1 << 16  # a 16-bit integer per element


def dropped_levels(p):
    """How many of the 65536 16-bit values drop an element: ``p`` rounded to a multiple of 1/65536."""
    return round(p * _LEVELS)


def keep_from_draws(draws, p):
    """``(keep, scale)`` for int16 ``draws`` uniform on [-32768, 32767]: keep where a draw is at or above the
    ``dropped_levels(p)`` lowest values, and ``1 / (1 - p')`` for the rounded ``p'``."""
    dropped = dropped_levels(p)
    return draws >= dropped - _LEVELS // 2, _LEVELS / (_LEVELS - dropped)


def keep_mask(shape, p, device=None):
    """``(keep, scale)``: a bool mask, each element True with probability ``1 - p'``, and ``1 / (1 - p')``.

    ``p'`` is ``p`` rounded to a multiple of ``1 / 65536`` (0.1 becomes 0.100006). The integers come from
    ``random_`` over the full signed 64-bit range, viewed as four 16-bit integers, each uniform on
    [-32768, 32767].
    """
    numel = 1
    for size in shape:
        numel *= size
    words = torch.empty((numel + 3) // 4, dtype=torch.int64, device=device).random_(-2 ** 63, None)
    return keep_from_draws(words.view(torch.int16)[:numel].view(shape), p)


class CPUFastDropout(nn.Dropout):
    """``nn.Dropout`` (same ``p``, same train/eval behaviour) whose CPU mask comes from ``keep_mask``."""

    def forward(self, input):
        # torch's own where 16 bits cannot express p: no dropout, p near 1, or off the CPU (its fused kernel).
        if not self.training or input.device.type != "cpu" or dropped_levels(self.p) in (0, _LEVELS):
            return F.dropout(input, self.p, self.training, self.inplace)
        keep, scale = keep_mask(input.shape, self.p, input.device)
        mask = keep.to(input.dtype).mul_(scale)
        return input.mul_(mask) if self.inplace else input * mask


def use_cpu_fast_dropout(module):
    """Replace every ``nn.Dropout`` inside ``module`` by a ``CPUFastDropout`` of the same ``p``; returns the count.

    Only the dropout modules change: functional dropout calls (e.g. on T5's attention weights, about a tenth of its
    dropped elements) keep PyTorch's own.
    """
    replaced = 0
    for parent in module.modules():
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, CPUFastDropout(child.p, child.inplace))
                replaced += 1
    return replaced
