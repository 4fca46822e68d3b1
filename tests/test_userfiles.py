"""Files the user gives, held to one set of limits (`gridsim.userfiles`): an alias bomb, a
file that is not UTF-8 text, a binary file, a huge file, a document nested too deeply; and
the run directory (`--out`): unusable, or holding an earlier run. Each is exit code 2 with
one line naming the file, before any process starts."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers import gridsim
from test_validation import assert_input_error, base_scenario, validate_error, write_yaml

from gridsim.errors import InputError
from gridsim.userfiles import MAX_BYTES, MAX_DEPTH, MAX_VALUES, check_expansion


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """A valid small scenario with one extra key holding ``levels`` anchors, each a list of
    ``width`` aliases of the one before."""
    lines = ["a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    body = yaml.safe_dump(base_scenario(), sort_keys=False)
    return "x_bomb:\n" + "\n".join("  " + line for line in lines) + "\n" + body


def test_an_alias_bomb_is_refused_before_it_explodes(tmp_path):
    """Nine levels of nine aliases, a few hundred bytes, 387 million values once expanded:
    refused by validate and by run before anything expands them."""
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    assert path.stat().st_size < 2000
    validate_error(path, None, "aliases", f"{MAX_VALUES:,}")
    out = tmp_path / "run"
    result = gridsim("run", str(path), "--out", str(out), "--quiet")
    assert_input_error(result, path, None, "aliases")
    assert not out.exists(), "nothing is written for a refused scenario"


def test_a_file_that_is_not_utf8_is_named_with_its_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    text = yaml.safe_dump(base_scenario(description="caf\u00e9"), sort_keys=False,
                          allow_unicode=True)
    path.write_bytes(text.encode("latin-1"))
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "caf" in row)
    validate_error(path, f"line {line}", "not UTF-8")


def test_a_binary_file_is_not_read_as_a_scenario(tmp_path):
    path = tmp_path / "scenario.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    validate_error(path, None, "binary")


def test_a_huge_file_is_refused_by_its_size(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("# padding\n" * (MAX_BYTES // 10 + 1))
    validate_error(path, None, "limit", f"{MAX_BYTES:,}")


def test_a_wiring_file_nested_too_deeply(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    validate_error(path, None, "nested")


def test_a_yaml_document_nested_beyond_the_limit(tmp_path):
    raw = base_scenario()
    raw["description"] = "ok"
    path = write_yaml(tmp_path, raw)
    path.write_text(path.read_text() + "x_deep: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5)
                    + "\n")
    validate_error(path, None, "nested", str(MAX_DEPTH))


def test_a_component_definition_is_held_to_the_same_limits(tmp_path):
    definition = tmp_path / "mine.json"
    definition.write_bytes(b'{"execute_function": "python x.py", "description": "\xff"}')
    path = write_yaml(tmp_path, base_scenario(
        components={"mine": str(definition)},
        federates={"feeder": {"type": "feeder"}, "mine": {"type": "mine"}}, links=[]))
    assert_input_error(gridsim("validate", str(path)), definition, "line 1", "not UTF-8")


def test_expansion_counts_shared_parts_each_time():
    """The pure check: a list shared ten times counts ten times; within the limit passes."""
    shared = list(range(1000))
    check_expansion("x", {"a": [shared] * 10})
    with pytest.raises(InputError, match="aliases"):
        check_expansion("x", {"a": [[shared] * 1000] * 2})
    deep: list = []
    node = deep
    for _ in range(MAX_DEPTH + 1):
        node.append([])
        node = node[0]
    with pytest.raises(InputError, match="nested"):
        check_expansion("x", deep)


# -- run directories ---------------------------------------------------------------------


@pytest.mark.parametrize("out, words", [("/dev/null", "not a directory"),
                                        ("/proc/x", "cannot write")])
def test_an_unusable_out_is_one_line(tmp_path, out, words):
    path = write_yaml(tmp_path, base_scenario())
    result = gridsim("run", str(path), "--out", out, "--quiet")
    assert_input_error(result, out, "--out", words)


def test_an_earlier_run_is_never_mixed_with_a_new_one(tmp_path):
    """--out on an earlier run: refused; with --force, emptied first (nothing of the earlier
    run survives); --force on a folder that holds no run: refused, folder untouched."""
    path = write_yaml(tmp_path, base_scenario())
    out = tmp_path / "run"
    assert gridsim("run", str(path), "--out", str(out), "--quiet").returncode == 0
    (out / "logs" / "stale.log").write_text("from before")
    assert_input_error(gridsim("run", str(path), "--out", str(out), "--quiet"), out, "--out",
                       "not empty", "--force")
    result = gridsim("run", str(path), "--out", str(out), "--quiet", "--force")
    assert result.returncode == 0, result.stderr
    assert not (out / "logs" / "stale.log").exists()
    assert json.loads((out / "summary.json").read_text())["status"] == "ok"
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep")
    assert_input_error(gridsim("run", str(path), "--out", str(folder), "--quiet", "--force"),
                       folder, "--out", "holds no earlier run")
    assert (folder / "notes.txt").read_text() == "keep"


# -- other inputs and outputs that must be one line ----------------------------------------


def test_a_scenario_without_federates_is_bad_input(tmp_path):
    path = write_yaml(tmp_path, base_scenario(federates={}, links=[]))
    validate_error(path, "federates", "at least one")


@pytest.mark.parametrize("content", [b"", b"this is not a database" * 100])
def test_export_of_an_unreadable_database_is_one_line(tmp_path, content):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "results.sqlite").write_bytes(content)
    result = gridsim("export", str(run_dir))
    assert_input_error(result, run_dir / "results.sqlite", None, "not a readable results")


def test_the_run_table_holds_the_scenarios_seed(tmp_path):
    """results.sqlite's ``run`` table names the run's seed, not the recorder's own."""
    import sqlite3

    path = write_yaml(tmp_path, base_scenario(seed=4242))
    out = tmp_path / "run"
    assert gridsim("run", str(path), "--out", str(out), "--quiet").returncode == 0
    db = sqlite3.connect(out / "results.sqlite")
    try:
        assert db.execute("SELECT value FROM run WHERE key = 'seed'").fetchone() == ("4242",)
    finally:
        db.close()
