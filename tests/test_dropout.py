"""CPUFastDropout: the Bernoulli mask of torch's dropout from a cheaper draw, and its use in TIGER's T5."""

import pytest
import torch
from torch import nn

from recbole_lamia.model.layers.dropout import CPUFastDropout, keep_from_draws, keep_mask, use_cpu_fast_dropout

N = 1 << 22  # 4M elements: a keep rate is measured to about +-0.00015 (one standard deviation)


def _rounded_p(p):
    return round(p * 65536) / 65536


@pytest.mark.parametrize("p", [0.1, 0.5, 0.03])
def test_mask_keeps_each_element_with_probability_one_minus_p_in_every_16_bit_lane(p):
    torch.manual_seed(0)
    keep, scale = keep_mask((N,), p)
    expected = 1 - _rounded_p(p)
    assert scale == pytest.approx(1 / expected)
    tolerance = 6 * (expected * (1 - expected) / (N / 4)) ** 0.5
    # Each 64-bit draw feeds four elements; a lane with fewer random bits would keep at another rate.
    for lane in range(4):
        assert keep[lane::4].float().mean().item() == pytest.approx(expected, abs=tolerance)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.03, 1 / 65536])
def test_threshold_drops_exactly_the_lowest_rounded_p_share_of_16_bit_values(p):
    every_value = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16)
    keep, scale = keep_from_draws(every_value, p)
    dropped = round(p * 65536)
    assert int((~keep).sum()) == dropped  # each of the 65536 values is one draw: the exact drop probability
    assert not keep[:dropped].any() and keep[dropped:].all()
    assert scale == 65536 / (65536 - dropped)


@pytest.mark.parametrize("p", [1e-6, 0.999995])
def test_p_that_16_bits_cannot_express_falls_back_to_torch_dropout(p):
    torch.manual_seed(5)
    x = torch.ones(1000, 100)
    out = CPUFastDropout(p).train()(x)
    torch.manual_seed(5)
    assert torch.equal(out, torch.nn.functional.dropout(x, p, True))


def test_neighbouring_elements_are_dropped_independently():
    torch.manual_seed(1)
    keep, _ = keep_mask((N,), 0.1)
    dropped = ~keep
    both = (dropped[:-1] & dropped[1:]).float().mean().item()
    rate = dropped.float().mean().item()
    assert both == pytest.approx(rate * rate, abs=6 * (rate * rate / N) ** 0.5)


def test_kept_elements_are_scaled_dropped_ones_are_zero_and_the_mean_is_kept():
    torch.manual_seed(2)
    layer = CPUFastDropout(0.1).train()
    x = torch.rand(N) + 0.5
    out = layer(x)
    kept = out != 0
    scale = 1 / (1 - _rounded_p(0.1))
    torch.testing.assert_close(out[kept], x[kept] * scale)
    assert out.mean().item() == pytest.approx(x.mean().item(), rel=2e-3)


def test_gradient_is_the_upstream_gradient_through_the_same_mask():
    torch.manual_seed(3)
    x = torch.ones(1000, 64, requires_grad=True)
    upstream = torch.randn(1000, 64)
    out = CPUFastDropout(0.2).train()(x)
    out.backward(upstream)
    torch.testing.assert_close(x.grad, upstream * out.detach())  # x is 1, so out is mask * scale


def test_seeded_draws_repeat_and_successive_draws_differ():
    layer = CPUFastDropout(0.1).train()
    x = torch.ones(64, 64)
    torch.manual_seed(4)
    first, second = layer(x), layer(x)
    torch.manual_seed(4)
    assert torch.equal(layer(x), first)
    assert not torch.equal(first, second)


def test_eval_mode_p_zero_and_inplace_behave_as_torch_dropout():
    x = torch.randn(32, 16)
    assert torch.equal(CPUFastDropout(0.1).eval()(x), x)
    assert torch.equal(CPUFastDropout(0.0).train()(x), x)
    assert torch.equal(CPUFastDropout(1.0).train()(x), torch.zeros_like(x))
    y = x.clone()
    out = CPUFastDropout(0.5, inplace=True).train()(y)
    assert out.data_ptr() == y.data_ptr() and (out == 0).any()


def test_replacement_swaps_every_dropout_module_and_leaves_the_weights():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.3), nn.Sequential(nn.Dropout(0.1), nn.Linear(4, 2)))
    before = {name: value.clone() for name, value in model.state_dict().items()}
    assert use_cpu_fast_dropout(model) == 2
    assert [m.p for m in model.modules() if isinstance(m, CPUFastDropout)] == [0.3, 0.1]
    assert not any(type(m) is nn.Dropout for m in model.modules())
    assert model.state_dict().keys() == before.keys()
    assert use_cpu_fast_dropout(model) == 0  # already replaced
