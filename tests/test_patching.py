"""Ablating and patching heads (``mtlheads.patching``) on tiny random encoders and real EWT5 words."""

import copy

import numpy as np
import pytest
import torch

from mtlheads import patching
from mtlheads.data import ewt5
from mtlheads.encoder import tiny_encoder


@pytest.fixture(scope="module")
def batch():
    encoder = tiny_encoder()
    sentences = [s["tokens"] for s in ewt5.load()["dev"].select(range(6))]
    return encoder.tokenize(sentences)


def heads_of(encoder, *chosen):
    mask = np.zeros((encoder.num_layers, encoder.num_heads), bool)
    for layer, head in chosen:
        mask[layer, head] = True
    return mask


@torch.no_grad()
def test_zero_ablating_a_head_equals_zeroing_its_value_projection(batch):
    encoder = tiny_encoder(num_layers=3, num_heads=4)
    layer, head = 1, 2
    with patching.ablated(encoder, heads_of(encoder, (layer, head))):
        ablated = encoder(batch).words
    zeroed = copy.deepcopy(encoder)
    value = zeroed.layer_part(zeroed.layers[layer], "value")
    rows = slice(head * zeroed.head_dim, (head + 1) * zeroed.head_dim)
    value.weight[rows] = 0.0
    value.bias[rows] = 0.0
    assert torch.allclose(ablated, zeroed(batch).words, atol=1e-6)
    assert not torch.allclose(ablated, encoder(batch).words, atol=1e-3)  # the head mattered
    assert torch.equal(encoder(batch).words, tiny_encoder(num_layers=3, num_heads=4)(batch).words)  # no hook left


@torch.no_grad()
def test_mean_ablation_puts_each_heads_mean_output_at_every_position(batch):
    encoder = tiny_encoder()
    means = patching.head_means(encoder, [batch])
    real = batch.attention_mask.bool()
    first = patching.record_heads(encoder, batch)[0].view(*batch.input_ids.shape, encoder.num_heads, -1)
    assert torch.allclose(means[0], first[real].mean(0), atol=1e-6)  # padding left out
    chosen = heads_of(encoder, (0, 1), (1, 3))
    with patching.ablated(encoder, chosen, means=means):
        recorded = patching.record_heads(encoder, batch)
    for layer, head in [(0, 1), (1, 3)]:
        outputs = recorded[layer].view(*batch.input_ids.shape, encoder.num_heads, -1)[:, :, head]
        assert torch.allclose(outputs, means[layer, head].expand_as(outputs))
    untouched = recorded[0].view(*batch.input_ids.shape, encoder.num_heads, -1)[:, :, 0]
    assert torch.equal(untouched, first[:, :, 0])  # a head not chosen, below the ablation: as before


@torch.no_grad()
def test_patching_a_model_with_its_own_run_changes_nothing(batch):
    encoder = tiny_encoder()
    everything = np.ones((encoder.num_layers, encoder.num_heads), bool)
    assert torch.equal(patching.patch_run(encoder, encoder, batch, everything).words, encoder(batch).words)


@torch.no_grad()
def test_patching_every_head_from_b_gives_bs_output_and_some_heads_something_between(batch):
    a = tiny_encoder(seed=0)
    b = copy.deepcopy(a)  # B differs from A in its queries, keys and values only
    torch.manual_seed(1)
    for layer in b.layers:
        for role in ("query", "key", "value"):
            b.layer_part(layer, role).weight.add_(0.3 * torch.randn_like(b.layer_part(layer, role).weight))
    everything = np.ones((a.num_layers, a.num_heads), bool)
    a_out, b_out = a(batch).words, b(batch).words
    assert not torch.allclose(a_out, b_out, atol=1e-2)
    assert torch.allclose(patching.patch_run(a, b, batch, everything).words, b_out, atol=1e-5)
    top_layer = np.zeros_like(everything)
    top_layer[-1] = True  # the last layer's heads from B: the layers below compute as A's
    partial = patching.patch_run(a, b, batch, top_layer)
    assert not torch.allclose(partial.words, a_out, atol=1e-3) and not torch.allclose(partial.words, b_out, atol=1e-3)
    assert torch.equal(a(batch).words, a_out)  # no hook left behind


@torch.no_grad()
def test_live_patching_equals_patch_run_on_every_batch_and_leaves_no_hook(batch):
    a = tiny_encoder(seed=0)
    b = copy.deepcopy(a)
    torch.manual_seed(2)
    for layer in b.layers:
        b.layer_part(layer, "value").weight.add_(0.3 * torch.randn_like(b.layer_part(layer, "value").weight))
    chosen = heads_of(a, (0, 1), (1, 0))
    other = a.tokenize([["A", "second", "batch", "."], ["Of", "two", "sentences"]])
    with patching.patched_from(a, b, chosen):
        live = [a(batch).words, a(other).words]  # each batch patched from b's run on it
    assert torch.allclose(live[0], patching.patch_run(a, b, batch, chosen).words, atol=1e-6)
    assert torch.allclose(live[1], patching.patch_run(a, b, other, chosen).words, atol=1e-6)
    assert not torch.allclose(live[0], a(batch).words, atol=1e-3)
    with patching.patched_from(a, copy.deepcopy(a), np.ones((a.num_layers, a.num_heads), bool)):
        assert torch.allclose(a(batch).words, tiny_encoder(seed=0)(batch).words, atol=1e-6)  # a with itself
    assert torch.equal(a(batch).words, tiny_encoder(seed=0)(batch).words)  # no hook left
    with pytest.raises(ValueError, match="source and target differ in shape"):
        with patching.patched_from(a, tiny_encoder(num_layers=3), chosen):
            pass


def test_bad_heads_and_mismatched_runs_are_named(batch):
    encoder = tiny_encoder()
    with pytest.raises(ValueError, match=r"heads must be a boolean \(layers, heads\) = \(2, 4\) mask, got shape \(4, 2\)"):
        with patching.ablated(encoder, np.ones((4, 2), bool)):
            pass
    with pytest.raises(ValueError, match=r"means must be \(layers, heads, head_dim\) = \(2, 4, 8\), got shape \(2, 4\)"):
        with patching.ablated(encoder, heads_of(encoder, (0, 0)), means=torch.zeros(2, 4)):
            pass
    other = encoder.tokenize([["A", "short", "one", "."]])
    recorded = patching.record_heads(encoder, other)
    with pytest.raises(ValueError, match=r"layer 0: the recorded head outputs are \(1, 6, 32\), this run's"):
        with patching.patched(encoder, heads_of(encoder, (0, 0)), recorded):
            encoder(batch)
    with pytest.raises(ValueError, match="source and target differ in shape"):
        patching.patch_run(encoder, tiny_encoder(num_layers=3), batch, heads_of(encoder, (0, 0)))
    assert torch.equal(encoder(other).words, tiny_encoder()(other).words)  # the failed blocks left no hook
