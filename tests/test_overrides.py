"""Command-line KEY=VALUE overrides, shared by the leaderboard and the benchmark scripts."""

import pytest

from recbole_lamia.leaderboard.runner import parse_sets
from recbole_lamia.utils.overrides import parse_overrides, parse_pairs, parse_value


def test_values_are_read_as_yaml():
    assert parse_overrides(["epochs=5", "use_contrastive=False", "hidden=[64, 128]", "name=x=y"]) == {
        "epochs": 5, "use_contrastive": False, "hidden": [64, 128], "name": "x=y"}
    assert parse_value("[unclosed") == "[unclosed"  # not YAML: kept as text


def test_comma_list_and_empty_text():
    assert parse_pairs("quantizer=pq,pq_subspaces=16") == {"quantizer": "pq", "pq_subspaces": 16}
    assert parse_pairs("") == {}


@pytest.mark.parametrize("item", ["epochs", "=5"])
def test_item_without_key_or_equals_sign_stops_with_the_option_name(item):
    with pytest.raises(SystemExit, match="--set expects KEY=VALUE"):
        parse_overrides([item])


def test_leaderboard_sets_split_shared_and_per_row():
    shared, per_row = parse_sets(["epochs=3", "LAMIA:codebook_size=4096"])
    assert shared == {"epochs": 3}
    assert per_row == {"LAMIA": {"codebook_size": 4096}}


@pytest.mark.parametrize("item", ["LAMIA:epochs", ":epochs=3", "LAMIA:=3"])
def test_leaderboard_set_rejects_a_missing_equals_sign_row_or_key(item):
    with pytest.raises(SystemExit, match="--set expects KEY=VALUE"):
        parse_sets([item])


def test_leaderboard_set_strips_row_and_key():
    assert parse_sets(["LAMIA : epochs=3"]) == ({}, {"LAMIA": {"epochs": 3}})
