import math

import torch

from mtlheads.data import ewt5
from mtlheads.encoder import tiny_encoder
from mtlheads.gates import BETA, GAMMA, ZETA, HardConcreteGates, evaluation_gates
from mtlheads.train import TrainConfig, train


def test_penalty_equals_a_monte_carlo_estimate_of_open_gates():
    torch.manual_seed(0)
    gates = HardConcreteGates(3, 4)
    with torch.no_grad():
        gates.log_alpha.copy_(torch.randn(3, 4) * 2)
    gates.train()
    samples = torch.stack([gates() for _ in range(20000)])
    open_share = (samples > 0).float().mean(0)
    assert torch.allclose(open_share, gates.expected_open(), atol=0.02)
    assert math.isclose(gates.penalty().item(), (open_share.sum(-1).mean()).item(), abs_tol=0.05)
    # the closed form itself: P(g > 0) = sigmoid(log_alpha - beta log(-gamma / zeta))
    expected = torch.sigmoid(gates.log_alpha - BETA * math.log(-GAMMA / ZETA))
    assert torch.allclose(gates.expected_open(), expected)


def test_evaluation_gates_are_deterministic_and_within_zero_one():
    gates = HardConcreteGates(2, 3).eval()
    with torch.no_grad():
        gates.log_alpha.copy_(torch.tensor([[-10.0, 0.0, 10.0], [-1.0, 1.0, 3.0]]))
    first, second = gates(), gates()
    assert torch.equal(first, second)
    assert first[0, 0] == 0 and first[0, 2] == 1 and ((first >= 0) & (first <= 1)).all()
    assert gates.open_mask().tolist() == [[False, True, True], [True, True, True]]


def test_closed_gate_removes_the_heads_contribution_exactly():
    enc = tiny_encoder()
    gates = torch.ones(enc.num_layers, enc.num_heads)
    gates[0, 1] = 0.0
    sentences = [["Gates", "close", "heads", "."]]
    with torch.no_grad():
        enc.head_gates = gates
        gated = enc.encode(sentences, capture=True)
        # the same output when that head's value projection is zeroed instead
        enc.head_gates = None
        dim = enc.head_dim
        value = enc.model.encoder.layer[0].attention.self.value
        saved = value.weight.data.clone(), value.bias.data.clone()
        value.weight.data[dim:2 * dim] = 0
        value.bias.data[dim:2 * dim] = 0
        zeroed = enc.encode(sentences)
        value.weight.data, value.bias.data = saved
    assert gated.contexts[:, 0, 1].abs().max() == 0
    assert torch.allclose(gated.words, zeroed.words, atol=1e-6)


def tiny_gated_run(gate_lambda):
    config = TrainConfig(tasks=("pos",), epochs=8, train_sentences=64, dev_sentences=16, test_sentences=16,
                         evaluations=1, batch_size=16, gate_lambda=gate_lambda, lr_gates=0.2, lr_encoder=1e-5)
    result = train(config, ewt5.load(), progress=False, encoder=tiny_encoder(num_layers=2, num_heads=4))
    log_alpha = result.state_dict["gates.log_alpha"]
    return (evaluation_gates(log_alpha) > 1e-3).float().mean().item()


def test_large_lambda_closes_most_gates_and_zero_lambda_none():
    assert tiny_gated_run(0.0) == 1.0
    assert tiny_gated_run(5.0) <= 0.25
