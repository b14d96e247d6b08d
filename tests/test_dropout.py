"""The cheap dropout (mtlheads.dropout): its rate, scale, gradient, seeding, and where it goes."""

import pytest
import torch
from torch import nn

from mtlheads import dropout
from mtlheads.encoder import tiny_encoder
from mtlheads.heads import Attention, attention_probabilities


def test_drops_at_the_rate_and_scales_the_rest_to_keep_the_expectation():
    torch.manual_seed(0)
    x = torch.full((1000, 1000), 2.0)
    out = dropout.drop(x, 0.1)
    q = dropout.drop_probability(0.1)
    assert q == pytest.approx(0.1, abs=2 ** -17)
    dropped = (out == 0).float().mean().item()
    assert abs(dropped - q) < 0.002  # a million draws: the standard error is 0.0003
    assert torch.allclose(out[out != 0], torch.tensor(2.0 / (1 - q)))
    assert out.mean().item() == pytest.approx(2.0, rel=0.005)


def test_the_gradient_passes_exactly_where_the_input_was_kept():
    torch.manual_seed(1)
    x = torch.randn(64, 96, requires_grad=True)
    out = dropout.drop(x, 0.3)
    out.sum().backward()
    scale = 1 / (1 - dropout.drop_probability(0.3))
    kept = out.detach() != 0
    assert torch.allclose(x.grad[kept], torch.tensor(scale)) and (x.grad[~kept] == 0).all()


def test_torch_seed_fixes_the_mask():
    x = torch.ones(50, 50)
    torch.manual_seed(3)
    first = dropout.drop(x, 0.5)
    torch.manual_seed(3)
    again = dropout.drop(x, 0.5)
    other = dropout.drop(x, 0.5)  # the generator has moved on
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_evaluation_and_zero_rate_pass_the_input_through_and_one_drops_everything():
    x = torch.randn(4, 5)
    assert dropout.drop(x, 0.5, training=False) is x and dropout.drop(x, 0.0) is x
    assert (dropout.drop(x, 1.0) == 0).all()
    with pytest.raises(ValueError, match=r"in \[0, 1\], got 1.5"):
        dropout.drop(x, 1.5)


def test_install_swaps_every_dropout_and_eager_attention_and_back():
    enc = tiny_encoder()
    model = enc.model  # the encoder installs on its model
    assert not any(type(m) is nn.Dropout for m in model.modules())
    probabilities = sorted({m.p for m in model.modules() if isinstance(m, dropout.Dropout)})
    assert probabilities == [0.1] and model.config._attn_implementation == dropout.ATTENTION
    assert not any(m.training for m in model.modules())  # swapped modules keep the model's mode
    dropout.install(model, fast=False)
    assert not any(type(m) is dropout.Dropout for m in model.modules())
    assert model.config._attn_implementation == "eager"


def test_installed_encoder_matches_eager_attention_in_evaluation_with_padding():
    """The registered attention must get eager's additive padding mask (a missing mask changes the
    outputs of the padded sentence)."""
    enc = tiny_encoder()
    batch = enc.tokenize([["a", "much", "longer", "sentence", "than", "the", "next"], ["short"]])
    with torch.no_grad():
        ours = enc.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        dropout.install(enc.model, fast=False)
        eager = enc.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        unmasked = enc.model(input_ids=batch.input_ids).last_hidden_state
    assert torch.allclose(ours, eager, atol=1e-6)
    assert not torch.allclose(ours[1, :2], unmasked[1, :2], atol=1e-4)  # the mask matters here


def test_training_drops_attention_probabilities_at_the_configured_rate():
    enc = tiny_encoder()
    enc.model.config.attention_probs_dropout_prob = 0.5
    for layer in enc.model.encoder.layer:
        layer.attention.self.dropout.p = 0.5
    enc.train()
    torch.manual_seed(0)
    batch = enc.tokenize([["word"] * 40] * 4)
    with torch.no_grad():  # capture keeps the eager path: the probabilities after dropout
        out = enc(batch, capture=True)
    probs = torch.stack(out.subword_attentions)
    assert abs((probs == 0).float().mean().item() - 0.5) < 0.02


def test_decoder_attention_in_training_matches_the_fused_kernel_without_dropout():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 5, 8), torch.randn(2, 4, 7, 8), torch.randn(2, 4, 7, 8)
    mask = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    mask[1, ..., 5:] = False
    fused = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(attention_probabilities(q, k, mask, False) @ v, fused, atol=1e-6)
    x = torch.randn(2, 7, 8)
    causal = nn.functional.scaled_dot_product_attention(x[:, None], x[:, None], x[:, None], is_causal=True)
    assert torch.allclose(attention_probabilities(x[:, None], x[:, None], None, True) @ x[:, None], causal, atol=1e-6)
    attention = dropout.install(Attention(16, 2, 0.5)).train()
    assert isinstance(attention.dropout, dropout.Dropout)


def _out_of_place_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """``dropout.eager_attention`` as transformers writes eager attention: scaled and masked out of place."""
    weights = torch.matmul(query, key.transpose(2, 3)) * (scaling if scaling is not None else query.size(-1) ** -0.5)
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = _drop(torch.softmax(weights, dim=-1), dropout, module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


_drop = dropout.drop


def test_in_place_attention_gives_the_same_training_loss_and_gradients_to_the_bit():
    """The scores are scaled and masked in place (two passes fewer over batch x heads x subwords^2);
    a training step, with dropout and padding, must not change at all (tolerance: none)."""
    from transformers import AttentionInterface

    enc = tiny_encoder()
    enc.train()
    batch = enc.tokenize([["a", "much", "longer", "sentence", "than", "the", "next"], ["short", "one"]])

    def step():
        enc.model.zero_grad(set_to_none=True)
        torch.manual_seed(3)
        loss = enc(batch).words.pow(2).mean()
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in enc.model.named_parameters() if p.grad is not None}

    ours = step()
    AttentionInterface.register(dropout.ATTENTION, _out_of_place_attention)
    try:
        plain = step()
    finally:
        AttentionInterface.register(dropout.ATTENTION, dropout.eager_attention)
    assert torch.equal(ours[0], plain[0])
    assert ours[1].keys() == plain[1].keys() and len(ours[1]) > 10
    assert all(torch.equal(ours[1][n], plain[1][n]) for n in ours[1])
    torch.manual_seed(4)
    assert not torch.equal(enc(batch).words, enc(batch).words)  # dropout is on: the test compares masked steps


def test_in_place_decoder_attention_probabilities_match_out_of_place_ones_with_gradients():
    torch.manual_seed(0)
    q = torch.randn(2, 4, 5, 8, requires_grad=True)
    k = torch.randn(2, 4, 7, 8, requires_grad=True)
    mask = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    mask[1, ..., 5:] = False
    weight = torch.randn(2, 4, 5, 7)
    grads = []
    for probabilities in (attention_probabilities,
                          lambda q, k, m, c: (q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5).masked_fill(~m, float("-inf")).softmax(-1)):
        out = probabilities(q, k, mask, False)
        grads.append((out.detach(), *torch.autograd.grad((out * weight).sum(), (q, k))))
    assert all(torch.equal(a, b) for a, b in zip(*grads))
