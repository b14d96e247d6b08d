"""Device plumbing, checked on a CPU-only machine.

The training steps run on a model moved to PyTorch's ``meta`` device: a tensor there has a shape
and no data, an operation that mixes it with a host tensor raises, and reading one back to the
host (``.item()``, ``.tolist()``) raises too. So a step that runs on ``meta`` makes every tensor
on the model's device and reads no value back. One kind of read is let through: a boolean-mask
selection (``logits[valid]``) must learn how many elements it keeps, so on a GPU it waits for a
count; the losses select with masks as the paper's decoders do (replacing them would change the
CPU's sums in the last bits), and on ``meta`` such a selection keeps every element.
"""

import pytest
import torch
import torch.fx.experimental._config as fx_config
from torch.utils._python_dispatch import TorchDispatchMode

from mtlheads import devices, numreason, profiles, readersum
from mtlheads.data import ewt5, scitldr, squad
from mtlheads.encoder import tiny_encoder
from mtlheads.model import MultiTaskModel
from mtlheads.train import LossBalancer, TrainConfig, build_model, step_loss
from mtlheads.gates import HardConcreteGates
from mtlheads.tasks import build_task

META = torch.device("meta")


@pytest.fixture(autouse=True)
def mask_selections_keep_everything():
    with fx_config.patch(meta_nonzero_assume_all_nonzero=True):
        yield


class DeviceLog(TorchDispatchMode):
    """The devices of every tensor an operation returns while the mode is on."""

    def __init__(self):
        super().__init__()
        self.devices = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, torch.Tensor):
                self.devices.add(t.device)
        return out


@pytest.fixture(scope="module")
def sentences():
    return list(ewt5.load()["train"].select(range(12)))


def test_a_stem_cell_step_makes_every_tensor_on_the_models_device_and_reads_none_back(sentences):
    torch.manual_seed(0)
    encoder = tiny_encoder()
    tasks = ("pos", "ner", "dep", "con")  # SRL's loss reads the pruner's choices back: by design
    model = MultiTaskModel(encoder, {t: build_task(t, sentences, encoder.hidden_size) for t in tasks},
                           HardConcreteGates(encoder.num_layers, encoder.num_heads)).to(META)
    batch = encoder.tokenize([s["tokens"] for s in sentences[:4]])  # on the host, as the trainer builds it
    num_words = max(len(s["tokens"]) for s in sentences[:4])
    targets = {t: model.decoders[t].targets(sentences[:4], num_words) for t in tasks}
    balancer = LossBalancer(tasks)
    model.train()
    with DeviceLog() as log:
        for _ in range(2):  # the second step weighs the tasks by their (device) loss history
            loss = step_loss(model, batch, targets, balancer, gate_lambda=0.5, bf16=True)
    assert log.devices == {META} and loss.device == META and loss.dim() == 0
    loss.backward()
    assert all(p.grad is not None and p.grad.device == META for p in model.decoders.parameters())


def test_the_loss_balancer_weighs_device_losses_as_it_weighs_floats():
    as_floats, as_tensors = LossBalancer(("a", "b"), window=3), LossBalancer(("a", "b"), window=3)
    for i, (a, b) in enumerate([(2.3, 0.7), (1.9, 0.61), (1.4, 0.9), (1.1, 0.33), (0.9, 0.2)]):
        for balancer, cast in ((as_floats, float), (as_tensors, lambda v: torch.tensor(v))):
            balancer.update("a", cast(torch.tensor(a).item()))
            balancer.update("b", cast(torch.tensor(b).item()))
        assert float(as_tensors.weight("a")) == as_floats.weight("a")  # to the last bit
        assert float(as_tensors.weight("b")) == as_floats.weight("b")


def test_chapter_6_and_7_steps_stay_on_the_models_device():
    tiny = tiny_encoder()
    tok = tiny.tokenizer
    questions = squad.load()[:40]
    spans = [e for e in (numreason.span_example(tok, q, 96) for q in questions) if e is not None][:3]
    items = numreason.arithmetic_items(squad.load()[:400])
    arithmetic = [e for e in (numreason.arithmetic_example(tok, i, 96, 16) for i in items) if e is not None][:2]
    qa = [e for e in (readersum.qa_example(tok, q, 96) for q in questions) if e is not None][:2]
    summ = [readersum.summ_example(tok, d["document"], d["summaries"][0], 96, 16) for d in scitldr.load("dev")[:2]]
    models = [(numreason.build(numreason.NumReasonConfig(max_answer=16), tiny_encoder()), spans + arithmetic,
               {"span", "generation", "answer_type"}),
              (readersum.build(readersum.ReaderSumConfig(max_summary=16, output_vocab=50), tiny_encoder()), qa + summ,
               {"qa", "summ"})]
    for model, examples, heads in models:
        batch = model.collate(examples)
        model.to(META).train()
        with DeviceLog() as log:
            losses = model.losses(devices.move(batch, META))
        assert set(losses) == heads and log.devices == {META}
        sum(losses.values()).backward()


def test_a_host_tensor_in_a_step_would_be_caught():
    """The check above can fail: one host tensor mixed into a meta computation raises."""
    with pytest.raises(RuntimeError, match="device"):
        torch.ones(3, device=META) + torch.ones(3)


def test_models_are_built_on_their_configs_device(sentences):
    config = TrainConfig(tasks=("pos",), device="cpu")
    model = build_model(config, sentences, encoder=tiny_encoder())
    assert {p.device for p in model.parameters()} == {torch.device("cpu")}
    result_state = devices.to_host({k: v for k, v in model.state_dict().items()})
    assert all(v.device.type == "cpu" for v in result_state.values())
    assert all(result_state[k].data_ptr() != v.data_ptr() for k, v in model.state_dict().items())  # a copy


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "CPU", "", 0, None])
def test_bad_device_names_are_named_with_the_valid_ones(name):
    with pytest.raises(ValueError, match="valid: 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        devices.canonical(name)


def test_auto_means_cuda_only_where_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.canonical("auto") == "cpu"
    with pytest.raises(ValueError, match="no CUDA device"):
        devices.canonical("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert devices.canonical("auto") == "cuda" and devices.canonical("cuda:1") == "cuda:1"
    with pytest.raises(ValueError, match="valid indices 0 to 1"):
        devices.canonical("cuda:2")


def test_configs_store_where_they_run_and_bf16_only_on_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for config in (TrainConfig(tasks=("pos",)), numreason.NumReasonConfig(), readersum.ReaderSumConfig()):
        assert config.device == "cpu" and config.bf16 is False  # the CPU computes in float32
    assert TrainConfig(tasks=("pos",), device="cpu") == TrainConfig(tasks=("pos",), device="auto")
    assert devices.uses_bf16("cuda:0", True) and not devices.uses_bf16("cuda", False)
    with pytest.raises(ValueError, match="device = 'tpu'"):
        numreason.NumReasonConfig(device="tpu")
    with pytest.raises(ValueError, match="bf16"):
        TrainConfig(tasks=("pos",), bf16="yes")


def test_the_profiles_device_knob_is_checked_and_resolved(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert profiles.load("smoke")["device"] == "cpu"
    with pytest.raises(ValueError, match="no CUDA device"):
        profiles.load("smoke", device="cuda")
    with pytest.raises(ValueError, match="device = 'gpu0'"):
        profiles.load("smoke", device="gpu0")


def test_move_reaches_every_tensor_and_leaves_the_rest():
    batch = {"ids": torch.ones(2), "rows": [torch.zeros(1), 3], "pair": (torch.ones(1), "x"), "n": 4}
    moved = devices.move(batch, META)
    assert moved["ids"].device == META and moved["rows"][0].device == META and moved["pair"][0].device == META
    assert moved["rows"][1] == 3 and moved["pair"][1] == "x" and moved["n"] == 4
    word_batch = tiny_encoder().tokenize([["a", "b"]])
    assert devices.move(word_batch, META).input_ids.device == META


def test_a_deep_copy_of_an_encoder_gates_and_captures_its_own_heads():
    import copy

    original = tiny_encoder()
    clone = copy.deepcopy(original)
    clone.head_gates = torch.zeros(clone.num_layers, clone.num_heads)  # every head of the copy closed
    words = [["the", "cat", "sat"]]
    with torch.no_grad():
        closed = clone.encode(words, capture=True)
        open_ = original.encode(words, capture=True)
    assert closed.contexts is not None and torch.count_nonzero(closed.contexts) == 0
    assert torch.count_nonzero(open_.contexts) > 0  # the original's heads are untouched
    assert not torch.allclose(closed.words, open_.words)
