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
