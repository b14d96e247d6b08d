"""Chapter 3's gated phase and its statistics: gates trained alone on a trained model, the
run-consistency statistic, the layer-stratified null, the control task."""

import numpy as np
import pytest
import torch

from mtlheads import pruning
from mtlheads.data import ewt5
from mtlheads.encoder import tiny_encoder
from mtlheads.gates import HardConcreteGates
from mtlheads.pruning import GatePath, GatePathConfig
from mtlheads.tasks import CONTROL_TASKS, TASKS, build_task
from mtlheads.train import TrainConfig, train


@pytest.fixture(scope="module")
def corpus():
    return ewt5.load()


def tiny_base(corpus, tasks=("pos",)):
    config = TrainConfig(tasks=tasks, epochs=2, train_sentences=48, dev_sentences=16, test_sentences=16,
                         evaluations=1, batch_size=8, lr_encoder=1e-3)
    return train(config, corpus, progress=False, encoder=tiny_encoder(seed=0))


def test_the_gated_phase_trains_only_the_gates_and_a_large_lambda_closes_them(corpus):
    base = tiny_base(corpus)
    encoder = tiny_encoder(seed=5)  # the architecture only: its weights are replaced by the base's
    config = GatePathConfig(base.config, lambdas=(0.0, 30.0), steps=25, lr_gates=0.2, record_every=5)
    path = pruning.gate_path(config, corpus, progress=False, base=base, encoder=encoder)
    trained = {k[len("encoder."):]: v for k, v in base.state_dict.items() if k.startswith("encoder.")}
    assert all(torch.equal(v, trained[k]) for k, v in encoder.state_dict().items())  # the model did not move
    assert path.records.shape == (10, encoder.num_layers, encoder.num_heads) and path.record_steps[-1] == 50
    assert [s["lambda"] for s in path.stages] == [0.0, 30.0] and [s["step"] for s in path.stages] == [25, 50]
    assert path.stages[-1]["kept"].mean() <= 0.25 < path.stages[0]["kept"].mean()  # the penalty closes heads
    assert path.base_dev == {"pos": base.dev["pos"]["accuracy"]}
    survival = path.survival()
    assert ((survival >= 0) & (survival <= 1)).all()
    assert sorted(path.ranking().ravel().tolist()) == list(range(encoder.num_layers * encoder.num_heads))
    assert path.top(3).sum() == 3 and (survival[path.top(3)].min() >= survival[~path.top(3)].max())
    with pytest.raises(ValueError, match=r"lambda 5.0 is not on this path; its lambdas: \[0.0, 30.0\]"):
        path.kept(5.0)


def test_a_gate_path_is_the_same_whatever_drew_random_numbers_before_it(corpus):
    """The gates' sampling noise is seeded by the path, not left to the process's history (which
    differs between a fresh run and one that found other results in the cache)."""
    base = tiny_base(corpus)
    config = GatePathConfig(base.config, lambdas=(0.1, 3.0), steps=6, lr_gates=0.2, record_every=2)
    encoders = tiny_encoder(), tiny_encoder()  # (each seeds torch's generator: made before the histories)
    torch.manual_seed(0)
    first = pruning.gate_path(config, corpus, progress=False, base=base, encoder=encoders[0])
    torch.manual_seed(123)  # another history
    again = pruning.gate_path(config, corpus, progress=False, base=base, encoder=encoders[1])
    assert np.array_equal(first.records, again.records)
    assert [s["dev"] for s in first.stages] == [s["dev"] for s in again.stages]


def test_masking_no_head_gives_the_trained_models_scores_and_masking_all_changes_them(corpus):
    base = tiny_base(corpus)
    layers, heads = 2, 4
    none, every = np.ones((layers, heads), bool), np.zeros((layers, heads), bool)
    kept, removed = pruning.masked_scores(base.config, [none, every], corpus, base=base, encoder=tiny_encoder())
    assert kept["pos"] == base.dev["pos"]["accuracy"]
    assert removed["pos"] != kept["pos"]


def test_a_gate_path_config_names_what_is_wrong():
    base = TrainConfig(tasks=("pos",))
    with pytest.raises(ValueError, match=r"lambdas must be non-negative and increasing, got \(1.0, 0.1\)"):
        GatePathConfig(base, lambdas=(1.0, 0.1))
    with pytest.raises(ValueError, match="starts from a trained ungated TrainConfig"):
        GatePathConfig(TrainConfig(tasks=("pos",), gate_lambda=0.1))
    with pytest.raises(ValueError, match="steps"):
        GatePathConfig(base, steps=0)
    with pytest.raises(ValueError, match="gate init 'normal' is not one of 'constant', 'xavier'"):
        HardConcreteGates(2, 3, init="normal")


def test_xavier_gates_start_unequal_within_glorots_bound_and_by_the_generator():
    first = HardConcreteGates(6, 12, init="xavier", generator=torch.Generator().manual_seed(1)).log_alpha
    again = HardConcreteGates(6, 12, init="xavier", generator=torch.Generator().manual_seed(1)).log_alpha
    other = HardConcreteGates(6, 12, init="xavier", generator=torch.Generator().manual_seed(2)).log_alpha
    bound = np.sqrt(6 / 18)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.abs().max() <= bound and first.std() > 0.2 * bound


def test_consistency_is_one_for_a_linear_function_of_the_two_runs_and_near_zero_for_noise():
    rng = np.random.default_rng(0)
    a, b = rng.random((6, 12)), rng.random((6, 12))
    assert pruning.consistency(a, b, a) == pytest.approx(1.0)
    assert pruning.consistency(a, b, 0.3 * a + 0.5 * b + 0.1) == pytest.approx(1.0)
    assert pruning.consistency(a, b, rng.random((6, 12))) < 0.35
    # a map half signal, half noise sits between
    assert 0.4 < pruning.consistency(a, b, a + 0.3 * rng.standard_normal((6, 12))) < 0.95
    assert np.isnan(pruning.consistency(a, b, np.ones((6, 12))))


def test_the_layer_stratified_null_explains_a_shared_layer_preference_but_not_shared_heads():
    """Five tasks that each keep all of layer 2 agree perfectly, yet only as their layer counts
    force: the stratified null gives the same coincidences (p = 1), where a null placing heads
    anywhere would call it significant. Tasks keeping the same half of every layer beat it."""
    layer = np.zeros((6, 12), bool)
    layer[2] = True
    test = pruning.layer_stratified_test({t: layer for t in "abcde"}, permutations=500)
    assert test["statistic"] == test["null_mean"] == 10 * 12 and test["p_value"] == 1.0 and test["excess"] == 0
    same = np.zeros((6, 12), bool)
    same[:, :6] = True
    test = pruning.layer_stratified_test({t: same for t in "abcde"}, permutations=500)
    assert test["statistic"] == 10 * 36 and test["null_mean"] == pytest.approx(10 * 72 * 0.25, rel=0.05)
    assert test["p_value"] < 0.01
    rng = np.random.default_rng(3)
    scattered = {t: np.stack([rng.permutation(12) < 6 for _ in range(6)]) for t in "abcde"}
    assert pruning.layer_stratified_test(scattered, permutations=500)["p_value"] > 0.01


def test_same_layer_draws_keep_each_layers_count():
    mask = np.zeros((3, 5), bool)
    mask[0, :2] = mask[2, 4] = True
    draws = pruning.same_layer_draws(mask, 4, seed=1)
    assert all((d.sum(-1) == mask.sum(-1)).all() for d in draws) and any((d != mask).any() for d in draws)


def test_path_survival_ranks_heads_by_how_long_they_stay_open():
    records = np.ones((4, 1, 3))
    records[1:, 0, 0] = 0.0  # head 0 closes after the first record
    records[3:, 0, 1] = 0.0  # head 1 closes at the last
    path = GatePath(GatePathConfig(TrainConfig(tasks=("pos",))), records=records)
    assert path.survival().tolist() == [[0.25, 0.75, 1.0]]
    assert path.ranking().tolist() == [[2, 1, 0]] and path.top(1).tolist() == [[False, False, True]]


def test_the_control_task_tags_a_word_type_always_alike_and_is_not_a_book_task(corpus):
    train_set = list(corpus["train"].select(range(300)))
    task = build_task("ctl", train_set, 8)
    assert CONTROL_TASKS == ("ctl",) and "ctl" not in TASKS
    tags = task.gold({"tokens": ["The", "dog", "the", "DOG", "barked"]})
    assert tags[0] == tags[2] and tags[1] == tags[3] and set(tags) <= set(task.labels)
    many = [t for s in corpus["dev"].select(range(200)) for t in task.gold(s)]
    assert len(set(many)) > 10  # spread over the tag set, not one tag
    assert task.gold(corpus["dev"][0]) == build_task("ctl", train_set, 8).gold(corpus["dev"][0])  # fixed by the word


def test_gate_paths_on_two_workers_train_each_base_once_and_equal_one_by_one(corpus, tmp_path, monkeypatch):
    """The trained run first (both paths start from it), each path after it, in a worker; at the
    workers' thread count, the same paths as one after another in this process."""
    from mtlheads import cache

    base = TrainConfig(tasks=("pos",), epochs=1, train_sentences=16, dev_sentences=8, test_sentences=8,
                       evaluations=1, batch_size=8)
    configs = [GatePathConfig(base, lambdas=(0.1, 1.0), steps=2, record_every=1, lr_gates=lr) for lr in (0.05, 0.2)]
    monkeypatch.setenv(cache.CACHE_DIR_VARIABLE, str(tmp_path / "parallel"))
    parallel = pruning.gate_paths(configs, corpus, workers=2)
    entries = sorted(p.name.split("-")[0] for p in (tmp_path / "parallel").iterdir())
    assert entries == ["gatepath"] * 2 + ["train"]  # the base trained once, every result stored
    monkeypatch.setenv(cache.CACHE_DIR_VARIABLE, str(tmp_path / "serial"))
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // 2))
    try:
        serial = pruning.gate_paths(configs, corpus, workers=1)
    finally:
        torch.set_num_threads(threads)
    assert [p.config for p in parallel] == configs
    for p, s in zip(parallel, serial):
        assert np.array_equal(p.records, s.records) and p.base_dev == s.base_dev
        assert [st["dev"] for st in p.stages] == [st["dev"] for st in s.stages]
