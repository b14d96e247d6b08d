import pytest
import torch

from mtlheads.heads import GenerativeHead, SpanQAHead


@pytest.fixture
def decoder(tiny):
    torch.manual_seed(0)
    head = GenerativeHead(tiny, num_layers=2, max_length=16)
    head.eval()
    return head


def memory(batch: int = 3, source: int = 7, hidden: int = 32):
    torch.manual_seed(1)
    mask = torch.ones(batch, source, dtype=torch.bool)
    mask[batch // 2, 5:] = False  # one shorter input
    return torch.randn(batch, source, hidden), mask


def test_decoder_starts_from_the_encoders_weights_and_ties_its_embeddings(tiny, decoder):
    top = tiny.model.encoder.layer[-1]
    assert torch.equal(decoder.layers[-1].self_attention.query.weight, top.attention.self.query.weight)
    assert torch.equal(decoder.layers[-1].cross_attention.value.weight, top.attention.self.value.weight)
    assert torch.equal(decoder.layers[-1].ffn_out.weight, top.output.dense.weight)
    assert decoder.word_embeddings is tiny.model.embeddings.word_embeddings


def test_decoder_is_causal_and_ignores_padded_memory(decoder):
    mem, mask = memory()
    tokens = torch.randint(5, 100, (3, 6))
    logits = decoder(tokens, mem, mask)
    assert logits.shape == (3, 6, decoder.word_embeddings.num_embeddings)
    changed = tokens.clone()
    changed[:, 4] = 7
    assert torch.allclose(decoder(changed, mem, mask)[:, :4], logits[:, :4], atol=1e-5)  # the past ignores the future
    noisy = mem.clone()
    noisy[1, 5:] = 100.0
    assert torch.allclose(decoder(tokens, noisy, mask)[1], logits[1], atol=1e-5)


def test_cached_decoding_gives_the_same_tokens_as_recomputing(decoder):
    mem, mask = memory()
    bos, eos = 101, 102
    greedy = decoder.generate(mem, mask, bos, eos, max_new=10, use_cache=True)
    assert greedy == decoder.generate(mem, mask, bos, eos, max_new=10, use_cache=False)
    beam = decoder.generate(mem, mask, bos, eos, max_new=10, beams=3, use_cache=True)
    assert beam == decoder.generate(mem, mask, bos, eos, max_new=10, beams=3, use_cache=False)
    assert all(len(seq) <= 10 and eos not in seq for seq in greedy + beam)


def test_span_head_answers_inside_the_context_and_learns_a_span():
    torch.manual_seed(0)
    head = SpanQAHead(8, max_answer=3)
    states = torch.randn(2, 10, 8)
    context = torch.zeros(2, 10, dtype=torch.bool)
    context[:, 4:9] = True
    for start, end in head.decode(states, context):
        assert 4 <= start <= end <= 8 and end - start < 3
    optimiser = torch.optim.Adam(head.parameters(), lr=0.1)
    starts, ends = torch.tensor([5, 6]), torch.tensor([6, 8])
    for _ in range(200):
        optimiser.zero_grad()
        head.loss(states, context, starts, ends).backward()
        optimiser.step()
    assert head.decode(states, context) == [(5, 6), (6, 8)]


@pytest.fixture
def copier(tiny):
    torch.manual_seed(0)
    head = GenerativeHead(tiny, num_layers=2, max_length=16, copy=True)
    head.eval()
    return head


def test_copying_head_gives_distributions_and_its_target_shortcut_matches_them(copier):
    mem, mask = memory()
    source = torch.randint(5, 100, mask.shape)
    tokens = torch.randint(5, 100, (3, 6))
    logp = copier(tokens, mem, mask, source=source)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(3, 6), atol=1e-4)
    targets = source[:, :6]  # tokens that can be copied
    assert torch.allclose(copier(tokens, mem, mask, source=source, targets=targets),
                          logp.gather(-1, targets[..., None]).squeeze(-1), atol=1e-5)
    with pytest.raises(ValueError, match="source token ids"):
        copier(tokens, mem, mask)


def test_copying_head_never_copies_from_padding_and_decodes_the_same_with_a_cache(copier):
    mem, mask = memory()
    source = torch.randint(5, 100, mask.shape)
    source[1, 5:] = 3  # an id found only under padding
    tokens = torch.randint(5, 100, (3, 4))
    copier.copy_gate.bias.data.fill_(-30.0)  # gate ~ 0: everything is copied
    copied = copier(tokens, mem, mask, source=source).exp()
    assert torch.all(copied[1, :, 3] < 1e-6)  # id 3 sits only under padding
    assert torch.all(copied[0, :, source[0].unique()].sum(-1) > 1 - 1e-4)  # all mass on the source's ids
    copier.copy_gate.bias.data.fill_(0.0)
    bos, eos = 101, 102
    for beams in (1, 3):
        cached = copier.generate(mem, mask, bos, eos, max_new=8, beams=beams, source=source)
        assert cached == copier.generate(mem, mask, bos, eos, max_new=8, beams=beams, use_cache=False, source=source)


def test_a_restricted_output_vocabulary_generates_only_its_tokens_unless_copied(tiny):
    torch.manual_seed(0)
    vocab = torch.tensor([0, 5, 9, 101, 102])
    mem, mask = memory()
    source = torch.full(mask.shape, 50)  # a token outside the output vocabulary
    tokens = torch.randint(5, 100, (3, 4))
    plain = GenerativeHead(tiny, max_length=16, output_vocab=vocab).eval()
    logp = plain(tokens, mem, mask)
    assert torch.allclose(logp[..., vocab].exp().sum(-1), torch.ones(3, 4), atol=1e-5)
    assert torch.isinf(logp[..., 50]).all()
    copier = GenerativeHead(tiny, max_length=16, copy=True, output_vocab=vocab).eval()
    logp = copier(tokens, mem, mask, source=source)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(3, 4), atol=1e-4)
    assert (logp[..., 50].exp() > 0.01).all()  # reachable by copying only
    targets = torch.tensor([[50, 9, 7, 102]] * 3)  # 7: neither in the vocabulary nor the source
    short = copier(tokens, mem, mask, source=source, targets=targets)
    assert torch.allclose(short[:, [0, 1, 3]], logp.gather(-1, targets[..., None]).squeeze(-1)[:, [0, 1, 3]], atol=1e-5)
    assert (short[:, 2] < -20).all()


def test_no_repeat_blocks_exactly_the_tokens_that_would_repeat_an_ngram(decoder):
    from mtlheads.heads import _repeating

    assert _repeating([[1, 2, 3, 1, 2], [4, 4, 4]], 3) == [[3], [4]]
    assert _repeating([[1, 2, 3]], 3) == [[]]
    mem, mask = memory()
    for beams in (1, 2):
        for seq in decoder.generate(mem, mask, 101, 102, max_new=12, beams=beams, no_repeat=2):
            pairs = list(zip([101] + seq, seq))
            assert len(pairs) == len(set(pairs))
