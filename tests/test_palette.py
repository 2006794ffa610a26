"""Palette encoder internals: the last-layer shortcut and the attention masks."""

import torch

from recbole_lamia.tokenizer.palette import aspect_decorrelation, aspect_info_nce, bert_layer_for_last_tokens
from recbole_lamia.tokenizer.text_encoder import LayerStack, load_text_encoder


def test_last_tokens_shortcut_matches_full_bert_layer(tiny_bert_path):
    _, model = load_text_encoder(tiny_bert_path)
    model.eval()
    stack = LayerStack.from_model(model)
    torch.manual_seed(0)
    hidden = torch.randn(3, 9, 32)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[0, 4:6] = False  # padded text tokens
    bias = stack.attention_bias(mask, 2)
    layer = stack.layers[-1]
    full = layer(hidden, attention_mask=bias)
    full = full[0] if isinstance(full, tuple) else full
    short = bert_layer_for_last_tokens(layer, hidden, bias, 2)
    assert torch.allclose(full[:, -2:], short, atol=1e-5)


def test_causal_mask_lets_palette_read_all_text_but_text_not_palette(tiny_opt_path):
    _, model = load_text_encoder(tiny_opt_path)
    stack = LayerStack.from_model(model)
    assert stack.is_causal
    mask = torch.ones(1, 5, dtype=torch.bool)
    allowed = stack.attention_bias(mask, 2)[0, 0] == 0
    assert allowed[4, :5].all()  # last palette token reads everything before it
    assert not allowed[0, 1:].any()  # first text token reads only itself


def test_objectives_behave():
    torch.manual_seed(0)
    z = torch.randn(16, 3, 8)
    assert aspect_info_nce(z, z, 0.1) < aspect_info_nce(z, torch.randn(16, 3, 8), 0.1)
    same = z[:, :1].expand(-1, 3, -1)
    assert aspect_decorrelation(same) > 0.99 and aspect_decorrelation(z) < 0.5


def test_mpnet_layers_with_the_stack_position_bias_reproduce_the_model(tiny_mpnet_path):
    tokenizer, model = load_text_encoder(tiny_mpnet_path)
    model.eval()
    stack = LayerStack.from_model(model)
    batch = tokenizer(["a red lipstick", "shampoo for dry hair with argan oil and a long name"],
                      padding=True, return_tensors="pt")
    mask = batch["attention_mask"].bool()
    with torch.no_grad():
        expected = model(**batch).last_hidden_state
        hidden = model.embeddings(input_ids=batch["input_ids"])
        bias = stack.attention_bias(mask, 0)
        without_bias = hidden
        for layer in stack.layers:
            hidden = layer(hidden, attention_mask=bias, **stack.layer_kwargs(mask, 0))[0]
            without_bias = layer(without_bias, attention_mask=bias)[0]
    assert torch.allclose(hidden[mask], expected[mask], atol=1e-5)
    assert not torch.allclose(without_bias[mask], expected[mask], atol=1e-3)  # the bias matters


def test_mpnet_palette_does_not_depend_on_batch_padding(tiny_mpnet_path):
    from recbole_lamia.tokenizer.palette import PaletteEncoder

    _, model = load_text_encoder(tiny_mpnet_path)
    encoder = PaletteEncoder(LayerStack.from_model(model), palette_size=3, palette_dim=8, tune_layers=2).eval()
    torch.manual_seed(0)
    states = torch.randn(1, 5, 32)
    padded = torch.cat([states, torch.randn(1, 20, 32)], dim=1)
    mask = torch.ones(1, 5, dtype=torch.bool)
    padded_mask = torch.cat([mask, torch.zeros(1, 20, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        alone = encoder(states, mask)[1]
        in_a_padded_batch = encoder(padded, padded_mask)[1]
    assert torch.allclose(alone, in_a_padded_batch, atol=1e-5)


def test_mpnet_position_bias_ignores_the_tokens_a_tuning_view_drops(tiny_mpnet_path):
    _, model = load_text_encoder(tiny_mpnet_path)
    stack = LayerStack.from_model(model)
    full = torch.ones(2, 10, dtype=torch.bool)
    full[1, 7:] = False  # a shorter item, padded
    view = full.clone()
    view[0, 2:5] = False  # dropped tokens, the final special token kept
    view[1, 1] = False
    with torch.no_grad():
        assert torch.equal(stack.layer_kwargs(view, 3)["position_bias"], stack.layer_kwargs(full, 3)["position_bias"])
