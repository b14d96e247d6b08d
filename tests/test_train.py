import random
import resource
import signal
import subprocess
import sys
import time

import psutil
import pytest
import torch

from mtlheads import cache
from mtlheads.data import ewt5
from mtlheads.encoder import tiny_encoder
from mtlheads.train import (LossBalancer, TrainConfig, length_buckets, planned_steps, sampling_probabilities,
                            train, train_cached, train_many, word_dropout)


@pytest.fixture(scope="module")
def corpus():
    return ewt5.load()


def tiny_run(corpus, **overrides):
    config = TrainConfig(**{"tasks": ("pos", "dep"), "epochs": 2, "train_sentences": 48, "dev_sentences": 16,
                            "test_sentences": 16, "evaluations": 2, "batch_size": 8, **overrides})
    return train(config, corpus, progress=False, encoder=tiny_encoder(seed=0))


def test_same_seed_same_scores_and_weights(corpus):
    first, second = tiny_run(corpus), tiny_run(corpus)
    assert first.test == second.test and first.dev_curve[-1]["dev"] == second.dev_curve[-1]["dev"]
    assert all(torch.equal(first.state_dict[k], second.state_dict[k]) for k in first.state_dict)
    other = tiny_run(corpus, seed=2)
    assert any(not torch.equal(first.state_dict[k], other.state_dict[k]) for k in first.state_dict)


def test_frozen_word_embeddings_stay_as_loaded_while_the_rest_of_the_encoder_trains(corpus):
    key = "model.embeddings.word_embeddings.weight"
    loaded = tiny_encoder(seed=0).state_dict()
    frozen = tiny_run(corpus, tasks=("pos",), freeze_word_embeddings=True).state_dict
    assert torch.equal(frozen["encoder." + key], loaded[key])
    assert not torch.equal(frozen["encoder.model.encoder.layer.0.attention.self.query.weight"],
                           loaded["model.encoder.layer.0.attention.self.query.weight"])
    trained = tiny_run(corpus, tasks=("pos",)).state_dict
    assert not torch.equal(trained["encoder." + key], loaded[key])


def test_sampled_mtl_takes_one_step_per_task_batch_and_joint_one_per_batch(corpus):
    sampled = tiny_run(corpus, epochs=1)
    joint = tiny_run(corpus, epochs=1, mtl_mode="joint")
    assert sampled.steps == 2 * 48 // 8 and joint.steps == 48 // 8
    assert planned_steps(sampled.config, 48) == (2 * 48 // 8, sampled.steps)
    assert sampled.best_step in {d["step"] for d in sampled.dev_curve}


def test_loss_balancer_is_the_papers_weighting():
    balancer = LossBalancer(["a", "b"], window=5)
    for loss in [4.0, 2.0]:
        balancer.update("a", loss)
    assert balancer.weight("a") == 1.0  # b has no loss yet
    for loss in [1.0, 1.0, 1.0, 1.0, 1.0, 0.5]:  # the window keeps the last five: mean 0.9
        balancer.update("b", loss)
    # avg5(a) = 3, avg5(b) = 0.9: w_a = 3.9 / 3, w_b = 3.9 / 0.9
    assert balancer.weight("a") == pytest.approx(3.9 / 3) and balancer.weight("b") == pytest.approx(3.9 / 0.9)


def test_sampling_probabilities_follow_batch_counts_to_the_power():
    probs = sampling_probabilities({"a": 100, "b": 25}, 0.8)
    assert probs["a"] / probs["b"] == pytest.approx(4 ** 0.8) and sum(probs.values()) == pytest.approx(1)


def test_length_buckets_cover_every_sentence_once_with_little_padding():
    rng = random.Random(0)
    lengths = [rng.randint(1, 60) for _ in range(1000)]
    batches = length_buckets(lengths, 32, rng)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches]
    assert max(spread) <= 4


def test_word_dropout_masks_only_ordinary_subwords():
    enc = tiny_encoder()
    batch = enc.tokenize([["a", "few", "words", "here"] * 10])
    tok = enc.tokenizer
    special = {tok.cls_token_id, tok.sep_token_id, tok.pad_token_id}
    dropped = word_dropout(batch, 0.5, tok.mask_token_id, special, torch.Generator().manual_seed(0))
    masked = dropped.input_ids == tok.mask_token_id
    assert 0.3 < masked[0, 1:-1].float().mean() < 0.7
    assert not masked[0, 0] and not masked[0, -1]
    assert torch.equal(word_dropout(batch, 0.0, tok.mask_token_id, special, None).input_ids, batch.input_ids)


def test_cached_training_returns_the_stored_run(corpus, tmp_path):
    config = TrainConfig(tasks=("pos",), epochs=1, train_sentences=16, dev_sentences=8, test_sentences=8,
                         evaluations=1, batch_size=8)
    store = cache.RunCache(tmp_path)
    first = train_cached(config, corpus, progress=False, cache_store=store)
    second = train_cached(config, corpus, progress=False, cache_store=store)
    assert second.test == first.test and second.train_seconds == first.train_seconds  # not retrained
    assert len(list(tmp_path.iterdir())) == 1


def test_unknown_mtl_mode_is_named():
    with pytest.raises(ValueError, match="TrainConfig.mtl_mode = 'mixed' is not one of the choices; valid: one of "
                                         "'sample', 'joint'"):
        TrainConfig(tasks=("pos",), mtl_mode="mixed")


def test_two_workers_train_the_same_runs_as_one_by_one_and_return_them_in_order(corpus, tmp_path, monkeypatch):
    configs = [TrainConfig(tasks=(t,), epochs=1, train_sentences=16, dev_sentences=8, test_sentences=8,
                           evaluations=1, batch_size=8) for t in ("ner", "pos", "dep")]
    monkeypatch.setenv(cache.CACHE_DIR_VARIABLE, str(tmp_path / "parallel"))
    threads = torch.get_num_threads()
    parallel = train_many(configs, corpus, workers=2)
    assert len(list((tmp_path / "parallel").iterdir())) == 3  # every run stored by its worker
    monkeypatch.setenv(cache.CACHE_DIR_VARIABLE, str(tmp_path / "serial"))
    # at the workers' thread count (thread counts sum some gradients in another order)
    torch.set_num_threads(max(1, threads // 2))
    try:
        serial = train_many(configs, corpus, workers=1)
    finally:
        torch.set_num_threads(threads)
    assert [r.config for r in parallel] == configs
    for p, s in zip(parallel, serial):
        assert p.test == s.test and p.steps == s.steps == planned_steps(p.config, 16)[1]
        assert all(torch.equal(p.state_dict[k], s.state_dict[k]) for k in s.state_dict)


def test_workers_whose_results_the_disk_cannot_hold_return_them_through_the_pipe(corpus, tmp_path, monkeypatch):
    """A file-size limit below a model's size (EFBIG, as a full disk's ENOSPC): nothing is cached,
    yet every run comes back, trained by its worker, not again by the parent."""
    configs = [TrainConfig(tasks=(t,), epochs=1, train_sentences=16, dev_sentences=8, test_sentences=8,
                           evaluations=1, batch_size=8) for t in ("ner", "pos")]
    monkeypatch.setenv(cache.CACHE_DIR_VARIABLE, str(tmp_path / "full"))
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, not kills
    resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, limits[1]))  # 1 MiB; the workers inherit it
    try:
        results = train_many(configs, corpus, workers=2)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, previous)
    assert [r.config for r in results] == configs
    assert all(r.state_dict and r.steps == planned_steps(r.config, 16)[1] for r in results)
    assert [p.name for p in (tmp_path / "full").iterdir()] == []  # no entry, no temporary folder


def test_zero_workers_is_named():
    with pytest.raises(ValueError, match="workers must be at least 1, got 0"):
        train_many([], workers=0)


@pytest.mark.parametrize("field, value, message", [
    ("batch_size", 0, r"TrainConfig.batch_size = 0 is out of range; valid: an integer >= 1"),
    ("train_sentences", 0, r"TrainConfig.train_sentences = 0 is out of range"),
    ("freeze_word_embeddings", "false", r"TrainConfig.freeze_word_embeddings = 'false' is a str"),
    ("seed", "1", r"TrainConfig.seed = '1' is a str, not an integer"),
    ("word_dropout", 1.0, r"TrainConfig.word_dropout = 1.0 is out of range; valid: a number >= 0 and < 1"),
])
def test_a_bad_config_field_is_named_before_any_work(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(tasks=("pos",), **{field: value})


def test_the_chapter_6_and_7_configs_check_their_fields():
    from mtlheads.numreason import NumReasonConfig
    from mtlheads.readersum import ReaderSumConfig

    with pytest.raises(ValueError, match=r"NumReasonConfig.batch_size = 0 is out of range"):
        NumReasonConfig(batch_size=0)
    with pytest.raises(ValueError, match=r"ReaderSumConfig.qa_examples = 0 is out of range"):
        ReaderSumConfig(qa_examples=0)


POOL_SCRIPT = """
import faulthandler, signal, sys, time
from mtlheads.pool import worker_pool
if __name__ == "__main__":
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test asks for the threads' stacks if it hangs
    # Ctrl-C as in a terminal: a process started in the background by a shell without job control
    # inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with worker_pool(2) as (pool, _):
        futures = [pool.submit(time.sleep, 300) for _ in range(2)]
        print("started", flush=True)
        for f in futures:
            f.result()
"""


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["interrupted", "killed"])
def test_workers_end_with_their_parent(how, tmp_path):
    script = tmp_path / "pool.py"
    script.write_text(POOL_SCRIPT)
    errors = open(tmp_path / "stderr.txt", "w")  # a file, not a pipe nobody reads: a full pipe would block the parent
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=errors)
    try:
        assert parent.stdout.readline().strip() == b"started"
        workers = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(workers) < 2:  # the two workers and the resource tracker
            workers = [c for c in psutil.Process(parent.pid).children(recursive=True)
                       if "resource_tracker" not in " ".join(c.cmdline())]
            time.sleep(0.2)
        assert len(workers) == 2
        time.sleep(1)  # the workers are inside their 300-second task
        start = time.monotonic()
        parent.send_signal(how)
        try:
            parent.wait(timeout=30)
        except subprocess.TimeoutExpired:
            parent.send_signal(signal.SIGUSR1)
            time.sleep(2)
            pytest.fail(f"the parent did not end within 30 s of {how.name}; its stderr, with every thread's stack:\n"
                        + (tmp_path / "stderr.txt").read_text()[-6000:])
        returned = time.monotonic() - start
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (alive := [w for w in workers if _running(w)]):
            time.sleep(0.2)
        assert alive == [], f"workers still running after the parent was {how.name}: {alive}"
        if how == signal.SIGINT:
            assert returned < 15  # not the 300 s the workers' tasks would take
    finally:
        if parent.poll() is None:
            parent.kill()
        errors.close()


def _running(process) -> bool:
    """Still running: not gone, and not a zombie (exited, waiting to be reaped by whoever adopted it)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_optimise_clips_steps_every_optimiser_and_stops_when_asked():
    """The one training loop: each step clips the named parameters' gradient norm, steps every
    optimiser and the schedule, and stops at the step ``after_step`` says."""
    from mtlheads import optim

    torch.manual_seed(0)
    clipped, other = torch.nn.Parameter(torch.randn(4)), torch.nn.Parameter(torch.randn(4))
    first, second = torch.optim.SGD([clipped], lr=1.0), torch.optim.SGD([other], lr=1.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(first, lambda s: 1.0)
    before = clipped.detach().clone(), other.detach().clone()
    seen = []

    def step_loss(step):
        loss = 100 * (clipped.sum() + other.sum())
        return loss, {"loss": loss.detach()}

    ran = optim.optimise(5, step_loss, [first, second], schedule, [clipped], 0.1, torch.device("cpu"), "t",
                         progress=False, after_step=lambda s: seen.append(s) or s == 3)
    assert ran == 3 and seen == [1, 2, 3] and schedule.last_epoch == 3
    # the clipped parameter moved 0.1 a step (norm), the other one by its raw gradient (100 each)
    assert torch.linalg.vector_norm(before[0] - clipped.detach()).item() == pytest.approx(0.3, rel=1e-5)
    assert torch.allclose(before[1] - other.detach(), torch.full((4,), 300.0))


def test_both_trainers_split_parameters_the_same_way(corpus):
    """Pretrained (the encoder's trainable weights) and new (the decoders', or a head's fresh
    layers) in the model's order; frozen weights and excluded gates in neither."""
    from mtlheads import optim
    from mtlheads.gates import HardConcreteGates
    from mtlheads.model import MultiTaskModel
    from mtlheads.tasks import build_task

    encoder = tiny_encoder()
    encoder.freeze_word_embeddings()
    gates = HardConcreteGates(encoder.num_layers, encoder.num_heads)
    sentences = list(corpus["train"].select(range(20)))
    model = MultiTaskModel(encoder, {"pos": build_task("pos", sentences, encoder.hidden_size)}, gates)
    pretrained, new, both = optim.split_parameters(model, exclude=tuple(gates.parameters()))
    assert [id(p) for p in pretrained] == [id(p) for p in encoder.parameters() if p.requires_grad]
    assert [id(p) for p in new] == [id(p) for p in model.decoders.parameters()]
    assert [id(p) for p in both] == [id(p) for p in pretrained + new]
    assert not {id(p) for p in gates.parameters()} & {id(p) for p in both}
    assert id(encoder.embedding("word_embeddings").weight) not in {id(p) for p in both}


def test_length_buckets_compare_tuple_lengths_in_order():
    """The trainer buckets by (subwords, words): subword counts decide, word counts break ties."""
    rng = random.Random(0)
    lengths = [(rng.randint(3, 40), rng.randint(1, 30)) for _ in range(400)]
    batches = length_buckets(lengths, 8, rng)
    assert sorted(i for b in batches for i in b) == list(range(400))
    first = sorted(batches, key=lambda b: min(lengths[i] for i in b))
    for earlier, later in zip(first, first[1:]):
        assert max(lengths[i] for i in earlier) <= min(lengths[i] for i in later)


def test_subword_counts_are_the_unpadded_lengths_tokenize_gives():
    enc = tiny_encoder()
    sentences = [["a", "much", "longer", "sentence", "than", "the", "next"], ["short"], ["unbelievably"] * 200]
    counts = enc.subword_counts(sentences)
    assert counts == enc.tokenize(sentences).attention_mask.sum(-1).tolist()
    assert counts[2] == enc.max_subwords and counts[1] < counts[0]


def test_sampled_mtl_at_stl_updates_plans_an_stl_runs_steps():
    from mtlheads.tasks import TASKS

    stl = TrainConfig(tasks=("pos",), epochs=2, batch_size=8)
    assert planned_steps(TrainConfig(tasks=TASKS, epochs=2, batch_size=8, updates="stl"), 48) == planned_steps(stl, 48)
    assert planned_steps(TrainConfig(tasks=TASKS, epochs=2, batch_size=8), 48)[1] == len(TASKS) * planned_steps(stl, 48)[1]


def test_evaluation_steps_follow_the_fractions_or_spread_evenly_and_always_end_the_run():
    from mtlheads.train import evaluation_steps

    assert evaluation_steps(TrainConfig(tasks=("pos",), eval_fractions=[0.125, 0.25, 0.5, 0.75]), 250) == {
        31, 62, 125, 188, 250}
    assert evaluation_steps(TrainConfig(tasks=("pos",), evaluations=3), 90) == {30, 60, 90}
    assert evaluation_steps(TrainConfig(tasks=("pos",), eval_fractions=[0.001]), 50) == {1, 50}
    with pytest.raises(ValueError, match="eval_fractions.*holds 1.5"):
        TrainConfig(tasks=("pos",), eval_fractions=[0.5, 1.5])


def test_a_constant_schedule_holds_the_rate_after_the_warm_up_and_linear_decays_it_to_zero():
    from mtlheads import optim

    def rates(decay):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=1.0)
        schedule = optim.warmup_then_decay(opt, 20, 0.1, decay=decay)
        out = []
        for _ in range(20):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            schedule.step()
        return out

    constant, linear = rates(False), rates(True)
    assert constant[:2] == [0.5, 1.0] and constant[2:] == [1.0] * 18
    assert linear[:2] == [0.5, 1.0] and linear[-1] == pytest.approx(1 / 18) and linear == sorted(linear[:2]) + sorted(linear[2:], reverse=True)


def test_evaluation_scores_each_sentence_alone_whatever_the_batch(corpus):
    from mtlheads.train import build_model, corpus_split, eval_batch_size, evaluate

    train_set = corpus_split(corpus, "train", 32)
    model = build_model(TrainConfig(tasks=("pos", "ner", "dep")), train_set, tiny_encoder(seed=0))
    sentences = corpus_split(corpus, "dev", 40)
    assert evaluate(model, sentences, batch_size=40) == evaluate(model, sentences, batch_size=3) == evaluate(model, sentences)
    assert eval_batch_size(torch.device("cpu")) == 16 and eval_batch_size(torch.device("meta")) == 64
