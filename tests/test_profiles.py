import pytest

from mtlheads import profiles


def test_profiles_exist_with_the_same_knobs():
    assert {"smoke", "default", "full"} <= set(profiles.available())
    knobs = {name: set(profiles.load(name)) for name in ("smoke", "default", "full")}
    assert knobs["smoke"] == knobs["default"] == knobs["full"]


def test_override_wins_and_none_keeps_profile_value():
    assert profiles.load("smoke", encoder="bert-base-cased")["encoder"] == "bert-base-cased"
    assert profiles.load("smoke", encoder=None)["encoder"] == profiles.load("smoke")["encoder"]


def test_unknown_profile_and_parameter_list_valid_ones():
    with pytest.raises(ValueError, match="unknown profile 'huge'; valid profiles: default, full, smoke"):
        profiles.load("huge")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['epochz'\]"):
        profiles.load("smoke", epochz=3)


def test_every_profile_value_passes_its_knob_check():
    loaded = set(profiles.load("default"))
    sectioned = {prefix + field for section, (_, prefix) in profiles.SECTIONS.items()
                 for field in profiles.section_rules(section)}
    assert loaded - sectioned == set(profiles.KNOBS) and not sectioned & set(profiles.KNOBS)
    assert {"numreason_lr", "readersum_max_source", "epochs", "batch_size"} <= loaded & sectioned
    for name in profiles.available():
        profiles.read(name)  # raises, naming the knob, if any value is out of its range


@pytest.mark.parametrize("knob, value, message", [
    ("train_sentences", 0, r"train_sentences = 0 is out of range; valid: an integer >= 1, or null"),
    ("dev_sentences", -5, r"dev_sentences = -5 is out of range"),
    ("freeze_word_embeddings", "false", r"freeze_word_embeddings = 'false' is a str, not true/false; valid: true or false"),
    ("seeds", "[1, 2]", r"seeds = '\[1, 2\]' is not a non-empty list; valid: a non-empty list, each an integer >= 0"),
    ("seeds", [1, 2.5], r"seeds = \[1, 2.5\] holds 2.5"),
    ("batch_size", 0, r"batch_size = 0 is out of range; valid: an integer >= 1"),
    ("epochs", True, r"epochs = True is a bool, not a number"),
    ("gate_path_lambdas", [0.1, -1.0], r"gate_path_lambdas = \[0.1, -1.0\] holds -1.0"),
    ("gate_top", 1.5, r"gate_top = 1.5 is out of range"),
    ("gate_steps", 0, r"gate_steps = 0 is out of range; valid: an integer >= 1"),
])
def test_a_bad_override_names_knob_value_and_what_is_valid(knob, value, message):
    with pytest.raises(ValueError, match=message):
        profiles.load("smoke", **{knob: value})


def test_a_bad_value_in_a_profile_file_is_named(tmp_path, monkeypatch):
    text = (profiles.PARAMS_DIR / "smoke.yaml").read_text().replace("batch_size: 8", "batch_size: 0")
    (tmp_path / "broken.yaml").write_text(text)
    monkeypatch.setattr(profiles, "PARAMS_DIR", tmp_path)
    with pytest.raises(ValueError, match=r"broken.yaml: stem_cell.batch_size = 0 is out of range"):
        profiles.load("broken")


def test_a_section_sets_its_configs_fields_each_checked_by_the_configs_rules(tmp_path, monkeypatch):
    from mtlheads import numreason

    knobs = profiles.load("default")
    configs = numreason.profile_configs(knobs)
    assert configs[0].lr == knobs["numreason_lr"] and configs[0].max_answer == numreason.NumReasonConfig.max_answer
    with pytest.raises(ValueError, match=r"numreason_lr = -1 is out of range"):
        profiles.load("default", numreason_lr=-1)
    text = (profiles.PARAMS_DIR / "smoke.yaml").read_text()
    for broken, message in [(text.replace("  lr_new: 5.0e-3", "  lr_new: -1"), r"numreason.lr_new = -1 is out of range"),
                            (text.replace("  lr_new: 5.0e-3", "  learning_rate: 1"),
                             r"section numreason = .* its fields: .*lr_new"),
                            (text.replace("  lr_new: 5.0e-3", "  seed: 3"), r"section numreason = .*its fields")]:
        (tmp_path / "broken.yaml").write_text(broken)
        monkeypatch.setattr(profiles, "PARAMS_DIR", tmp_path)
        with pytest.raises(ValueError, match=message):
            profiles.load("broken")
