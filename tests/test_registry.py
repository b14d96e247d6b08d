import pytest

from mtlheads.registry import PRETRAINED, RunKey
from mtlheads.tasks import TASKS
from mtlheads.train import TrainConfig


def test_labels_and_settings_come_from_the_key():
    assert RunKey.stl("pos", 1).label == "STL POS" and RunKey.stl("pos", 1).setting == "STL"
    assert RunKey.mtl(1).label == f"MTL-{len(TASKS)}" and RunKey.mtl(1, mtl_mode="joint").setting == f"MTL-{len(TASKS)} joint"
    assert RunKey.mtl(1, ("pos", "ner")).label == "MTL POS+NER"
    assert RunKey.stl("ner", 2, gate_lambda=0.01).label == "STL NER gated (0.01)"
    assert RunKey.pretrained().label == PRETRAINED and RunKey.pretrained().is_pretrained
    config = TrainConfig(tasks=TASKS, seed=3, mtl_mode="joint", gate_lambda=0.5)
    assert RunKey.of(config) == RunKey.mtl(3, mtl_mode="joint", gate_lambda=0.5)
    assert config.label == f"MTL-{len(TASKS)} joint gated (0.5)"
    assert RunKey.of(TrainConfig(tasks=("pos",), mtl_mode="joint")) == RunKey.stl("pos", 1)  # one task: no MTL mode


def test_a_models_role_for_a_task_is_typed_not_parsed():
    assert RunKey.stl("pos", 1).role("pos") == "STL" and RunKey.stl("ner", 1).role("pos") is None
    assert RunKey.mtl(1).role("srl") == f"MTL-{len(TASKS)}" and RunKey.pretrained().role("dep") == PRETRAINED
    pair = RunKey.mtl(1, ("pos", "ner"))
    assert pair.role("ner") == "MTL +POS" and pair.role("pos") == "MTL +NER" and pair.role("dep") is None


def test_bad_keys_name_what_is_valid():
    with pytest.raises(ValueError, match="'lemma'.*valid tasks: pos, ner, dep, con, srl"):
        RunKey.stl("lemma", 1)
    with pytest.raises(ValueError, match="'mixed'.*'sample', 'joint'"):
        RunKey.mtl(1, mtl_mode="mixed")


@pytest.mark.parametrize("profile", ["smoke", "default", "full"])
def test_one_table_holds_every_stem_cell_run_and_the_chapters_select_from_it(profile):
    from mtlheads import experiments, profiles

    knobs = profiles.load(profile, pairwise_mtl="all")
    runs = experiments.stem_cell_runs(knobs)
    assert all(RunKey.of(config) == key for key, config in runs.items())  # each config is its key's run
    gated = [c.base for c in experiments.gate_path_configs(knobs).values()]
    chosen = experiments.stl_mtl_configs(knobs) + gated + [c for c in experiments.probe_models(knobs).values() if c]
    assert {RunKey.of(c) for c in chosen} == set(runs)  # every run is some chapter's, and from the table
    assert all(runs[RunKey.of(c)] == c for c in chosen)
    assert all(c.gate_lambda is None for c in runs.values())  # chapter 3 gates trained models, in pruning
    own = experiments.run_knobs(knobs).get("lr_encoder", TrainConfig.lr_encoder)  # the profile's, else the paper's
    assert all(c.lr_encoder == own for c in runs.values())
    # chapter 3 starts from chapter 2's models (and the control task's, at the same scale)
    stl_mtl = set(map(RunKey.of, experiments.stl_mtl_configs(knobs)))
    assert all(RunKey.of(c) in stl_mtl or c.tasks == ("ctl",) for c in gated)
    assert {c.tasks for c in gated} == {(t,) for t in TASKS} | {("ctl",), TASKS}


def test_sampled_mtl_at_stl_updates_is_its_own_run_and_only_sampled_mtl_has_it():
    key = RunKey.mtl(1, updates="stl")
    assert key.setting == key.label == f"MTL-{len(TASKS)} STL updates" and key != RunKey.mtl(1)
    assert RunKey.of(TrainConfig(tasks=TASKS, updates="stl")) == key
    # joint MTL and STL make one pass per epoch anyway: "stl" names the same run as "epochs"
    assert RunKey.of(TrainConfig(tasks=TASKS, mtl_mode="joint", updates="stl")) == RunKey.mtl(1, mtl_mode="joint")
    assert RunKey.stl("pos", 1) == RunKey(("pos",), 1, updates="stl")
    with pytest.raises(ValueError, match="'twice'.*'epochs', 'stl'"):
        RunKey.mtl(1, updates="twice")


@pytest.mark.parametrize("which, pairs", [("none", set()), ("pos", {("pos", t) for t in TASKS[1:]}),
                                          ("srl", {(t, "srl") for t in TASKS[:-1]}),
                                          ("all", {(a, b) for i, a in enumerate(TASKS) for b in TASKS[i + 1:]})])
def test_pairwise_mtl_picks_the_pairs_and_trains_them_as_the_probed_mtl_5(which, pairs):
    from mtlheads import experiments, profiles

    knobs = profiles.load("default", pairwise_mtl=which)
    keys = experiments.pairwise_keys(knobs)
    seeds = experiments.stl_mtl_seeds(knobs)
    assert sorted(keys, key=repr) == sorted([RunKey.mtl(s, p, mtl_mode="joint") for s in seeds for p in pairs], key=repr)
    runs, probed = experiments.stem_cell_runs(knobs), experiments.probe_models(knobs)
    for key in keys:  # in the one run table, probed, and trained as MTL-5 joint is: one pass, both losses
        assert key in runs and key in probed and runs[key].mtl_mode == experiments.probed_mtl(1).mtl_mode == "joint"
    with pytest.raises(ValueError, match="pairwise_mtl = 'lemma' is not one of the choices; valid: one of 'none', 'all', 'po"):
        profiles.load("default", pairwise_mtl="lemma")
