import pytest
import torch

from mtlheads.heads import GenerativeHead, SpanQAHead


@pytest.fixture
def decoder(tiny):
    torch.manual_seed(0)
    head = GenerativeHead(tiny.model, num_layers=2, max_length=16)
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
