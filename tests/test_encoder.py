import pytest
import torch

from mtlheads import dropout
from mtlheads.encoder import load_encoder, tiny_encoder

SENTENCES = [["The", "unbelievably", "tall", "giraffe", "ate", "."], ["Hi", "there"]]


def test_tokenization_splits_words_and_pools_their_subwords(tiny):
    batch = tiny.tokenize(SENTENCES)
    pieces = tiny.tokenizer.tokenize("unbelievably")
    assert len(pieces) > 1  # the test needs a word the tokenizer splits
    assert batch.sum_pool[0, 2].sum() == len(pieces)  # position 2 is word 1 ([CLS] is 0)
    with torch.no_grad():
        hidden = tiny.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        out = tiny(batch)
    columns = batch.sum_pool[0, 2].nonzero().squeeze(-1)
    assert torch.allclose(out.words[0, 2], hidden[0, columns].mean(0), atol=1e-6)
    assert torch.allclose(out.words[:, 0], hidden[:, 0])  # [CLS]
    assert batch.word_mask.tolist() == [[True] * 7, [True] * 3 + [False] * 4]


def test_captured_attention_rows_sum_to_one(tiny):
    with torch.no_grad():
        out = tiny.encode(SENTENCES, capture=True)
    batch = tiny.tokenize(SENTENCES)
    for attn in out.subword_attentions:  # (batch, heads, subwords, subwords)
        sums = attn.sum(-1)
        assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)
    # Word level: all mass but what goes to [SEP] (and padding, which gets none) lands on words.
    sep = (batch.input_ids == tiny.tokenizer.sep_token_id).float()
    to_sep = torch.stack([(a * sep[:, None, None]).sum(-1) for a in out.subword_attentions], 1)
    word_rows = out.attentions.sum(-1)  # (batch, layers, heads, 1 + words)
    expected = batch.mean_pool[:, None, None] @ (1 - to_sep)[..., None]
    assert torch.allclose(word_rows, expected.squeeze(-1), atol=1e-5)
    assert out.attentions.shape == (2, tiny.num_layers, tiny.num_heads, 7, 7)
    assert out.contexts.shape == (2, tiny.num_layers, tiny.num_heads, 7, tiny.head_dim)


def test_gate_of_one_changes_nothing_and_masking_a_head_does(tiny):
    batch = tiny.tokenize(SENTENCES)
    with torch.no_grad():
        base = tiny(batch).words
        tiny.head_gates = torch.ones(tiny.num_layers, tiny.num_heads)
        ones = tiny(batch).words
        gates = torch.ones(tiny.num_layers, tiny.num_heads)
        gates[1, 2] = 0.0
        tiny.head_gates = gates
        masked = tiny(batch, capture=True)
    tiny.head_gates = None
    assert torch.equal(base, ones)
    assert not torch.allclose(base, masked.words, atol=1e-4)
    assert masked.contexts[:, 1, 2].abs().max() == 0  # the closed head contributes exactly nothing
    assert masked.contexts[:, 1, 1].abs().max() > 0


def test_per_example_gates(tiny):
    batch = tiny.tokenize(SENTENCES)
    gates = torch.ones(2, tiny.num_layers, tiny.num_heads)
    gates[1, 0] = 0.0  # second sentence: every head of layer 0 closed
    with torch.no_grad():
        tiny.head_gates = gates
        out = tiny(batch, capture=True)
        tiny.head_gates = None
        base = tiny(batch, capture=True)
    assert torch.allclose(out.words[0], base.words[0], atol=1e-6)
    assert out.contexts[1, 0].abs().max() == 0


def test_gate_gradients_reach_the_gate(tiny):
    gates = torch.full((tiny.num_layers, tiny.num_heads), 0.5, requires_grad=True)
    tiny.head_gates = gates
    tiny.encode(SENTENCES).words.sum().backward()
    tiny.head_gates = None
    assert gates.grad is not None and gates.grad.abs().sum() > 0


def test_words_past_the_length_limit_are_masked_not_invented():
    small = tiny_encoder()  # 128 positions
    long_sentence = ["word"] * 200
    batch = small.tokenize([long_sentence])
    assert batch.input_ids.shape[1] == small.max_subwords == 128
    assert batch.word_mask[0, 1:127].all() and not batch.word_mask[0, 127:].any()
    with torch.no_grad():
        out = small(batch)
    assert out.words[0, 150].abs().sum() == 0


def test_packaged_minilm_has_six_layers_of_twelve_heads():
    enc = load_encoder("minilm")
    assert (enc.num_layers, enc.num_heads, enc.head_dim) == (6, 12, 32)
    assert enc.model.config._attn_implementation == dropout.ATTENTION  # eager, with mtlheads' dropout


def test_unknown_encoder_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown encoder 'no-such-encoder': valid names are \['minilm'\]"):
        load_encoder("no-such-encoder")


def test_evaluation_passes_use_the_fused_kernel_with_the_same_outputs_and_gates(tiny, monkeypatch):
    calls = []
    fused_kernel = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(1) or fused_kernel(*a, **k))
    batch = tiny.tokenize(SENTENCES)
    gates = torch.ones(tiny.num_layers, tiny.num_heads)
    gates[0, 1] = 0.0
    tiny.head_gates = gates
    try:
        eager = tiny(batch).words  # gradients on: the eager kernel
        assert not calls
        with torch.no_grad():
            fused = tiny(batch).words
            assert len(calls) == tiny.num_layers
            captured = tiny(batch, capture=True).words  # attention maps asked for: eager again
            assert len(calls) == tiny.num_layers
    finally:
        tiny.head_gates = None
    assert torch.allclose(eager, fused, atol=1e-5) and torch.equal(eager.detach(), captured)
    assert tiny.model.config._attn_implementation == dropout.ATTENTION  # restored after every pass


def test_a_local_checkpoints_contents_enter_the_run_key(tmp_path):
    from mtlheads.encoder import fingerprint
    from mtlheads.train import TrainConfig, run_inputs

    checkpoint = tmp_path / "my-bert"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text('{"num_hidden_layers": 6}')
    (checkpoint / "model.safetensors").write_bytes(b"weights v1")
    config = TrainConfig(tasks=("pos",), encoder=str(checkpoint))
    before = run_inputs(config)["encoder"]
    (checkpoint / "model.safetensors").write_bytes(b"weights v2")  # same name and size, other weights
    assert run_inputs(config)["encoder"] != before
    assert fingerprint("minilm") == fingerprint("minilm") and not fingerprint("minilm").startswith("hub:")
    assert fingerprint("some-org/some-hub-model") == "hub:some-org/some-hub-model"


def test_module_paths_are_named_by_the_encoder_adapter_alone():
    """A second architecture is one row of ``encoder.ARCHITECTURES``: no other module spells a path."""
    import re
    from pathlib import Path

    import mtlheads
    from mtlheads.encoder import ARCHITECTURES

    paths = {p for a in ARCHITECTURES.values() for p in vars(a).values()}
    alternatives = "|".join(re.escape(p) for p in sorted(paths, key=len, reverse=True))
    pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")  # whole paths: not encoder.layers
    found = []
    for path in Path(mtlheads.__file__).parent.rglob("*.py"):
        if path.name != "encoder.py":
            found += [f"{path.name}: {m.group()}" for m in pattern.finditer(path.read_text())]
    assert found == []


def test_an_unsupported_architecture_is_named_with_the_supported_ones():
    from transformers import GPT2Config, GPT2Model

    from mtlheads.encoder import Encoder, tiny_encoder

    model = GPT2Model(GPT2Config(n_layer=1, n_head=2, n_embd=8, attn_implementation="eager"))
    with pytest.raises(ValueError, match=r"'gpt2' is not supported; supported: \['bert'\]"):
        Encoder(model, tiny_encoder().tokenizer)


def test_the_adapter_gives_parts_by_role_and_freezes_the_bottom():
    from mtlheads.encoder import tiny_encoder

    enc = tiny_encoder(num_layers=3)
    assert len(enc.layers) == 3
    assert enc.layer_part(enc.layers[0], "query") is enc.model.encoder.layer[0].attention.self.query
    assert enc.embedding("word_embeddings") is enc.model.embeddings.word_embeddings
    enc.freeze_bottom(2)
    frozen = {n for n, p in enc.model.named_parameters() if not p.requires_grad}
    assert all(n.startswith(("embeddings.", "encoder.layer.0.", "encoder.layer.1.")) for n in frozen)
    assert any(n.startswith("encoder.layer.1.") for n in frozen)
    assert all(p.requires_grad for p in enc.layers[2].parameters())
    assert 0 < enc.word_embedding_share() < 1


def test_length_order_sorts_by_subwords_then_words():
    """A sentence of few long words sorts by its subwords (what the encoder pads to), not its word count."""
    enc = tiny_encoder()
    sentences = [["a"] * 6, ["unbelievably", "incomprehensibilities"], ["a", "b"], ["a"] * 3]
    counts = enc.subword_counts(sentences)
    order = enc.length_order(sentences)
    assert [counts[i] for i in order] == sorted(counts)
    assert order.index(1) > order.index(3)  # two words, more subwords than three one-subword words
    assert sorted(order) == list(range(len(sentences)))
