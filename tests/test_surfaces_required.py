"""The required-migrations list: FILE:NAME read with ast (never run), or one entry a line."""

from __future__ import annotations

from pathlib import Path

import pytest

from lanes import scaffold
from lanes.errors import BadInput, Refused
from lanes.surfaces import required

SPEC = required.RequiredSpec("scripts/schema_guard.py", "AM_REQUIRED_MIGRATIONS")


def test_the_seed_schema_guard_is_read() -> None:
    text = scaffold.SCHEMA_GUARD.format(items="\n".join(f'    "{n}",' for n in scaffold.REQUIRED))
    assert required.read(SPEC, text) == scaffold.REQUIRED


@pytest.mark.parametrize(
    "source",
    [
        "AM_REQUIRED_MIGRATIONS = ['a.sql', 'b.sql']\n",
        "AM_REQUIRED_MIGRATIONS = ('a.sql', 'b.sql')\n",
        "AM_REQUIRED_MIGRATIONS: list[str] = ['a.sql', 'b.sql']\n",
        "from typing import Final\nAM_REQUIRED_MIGRATIONS: Final = frozenset({'a.sql', 'b.sql'})\n",
        "X = AM_REQUIRED_MIGRATIONS = ['a.sql', 'b.sql']\n",
        "AM_REQUIRED_MIGRATIONS = ['old.sql']\nAM_REQUIRED_MIGRATIONS = ['a.sql', 'b.sql']\n",
        "AM_REQUIRED_MIGRATIONS: list[str]\nAM_REQUIRED_MIGRATIONS = ['a.sql', 'b.sql']\n",
        "AM_REQUIRED_MIGRATIONS = [\n    'a.sql',  # why a\n    'b' '.sql',\n]\n",
    ],
)
def test_literal_forms(source: str) -> None:
    assert sorted(required.read(SPEC, source)) == ["a.sql", "b.sql"]


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("OTHER = ['a.sql']\n", "assigns no AM_REQUIRED_MIGRATIONS at module level"),
        ("def f():\n    AM_REQUIRED_MIGRATIONS = ['a.sql']\n", "assigns no AM_REQUIRED_MIGRATIONS"),
        ("AM_REQUIRED_MIGRATIONS = load()\n", "is `load()`, not a list, tuple or set literal"),
        ("BASE = ['a']\nAM_REQUIRED_MIGRATIONS = BASE + ['b']\n", "not a list, tuple or set"),
        ("AM_REQUIRED_MIGRATIONS = ['a.sql', 49]\n", "holds `49`, which is not a string literal"),
        ("AM_REQUIRED_MIGRATIONS = ['a.sql']\nAM_REQUIRED_MIGRATIONS += ['b.sql']\n", "line 2"),
        ("AM_REQUIRED_MIGRATIONS = [\n", "is not valid Python (line 1)"),
    ],
)
def test_what_cannot_be_read_without_running_it_is_refused_with_a_reason(
    source: str, says: str
) -> None:
    with pytest.raises(Refused) as caught:
        required.read(SPEC, source)
    assert says in caught.value.message


def test_the_file_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    source = (
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('ran')\n"
        "AM_REQUIRED_MIGRATIONS = ['a.sql']\n"
        f"AM_REQUIRED_MIGRATIONS = [pathlib.Path({str(marker)!r}).write_text('ran')]\n"
    )
    with pytest.raises(Refused):
        required.read(SPEC, source)
    ok = source.rsplit("\n", 2)[0] + "\n"  # without the last, non-literal assignment
    assert required.read(SPEC, ok) == ["a.sql"]
    assert not marker.exists()


def test_a_text_file_holds_one_entry_a_line() -> None:
    spec = required.parse_spec("scripts/required.txt")
    text = "# required on a fresh volume\n\n049_a.sql\n  075_b.sql  \n# 090_c.sql\n"
    assert required.read(spec, text) == ["049_a.sql", "075_b.sql"]


def test_specs() -> None:
    assert required.parse_spec("scripts/schema_guard.py:AM_REQUIRED_MIGRATIONS") == SPEC
    assert required.parse_spec("req.txt") == required.RequiredSpec("req.txt", None)
    assert str(SPEC) == "scripts/schema_guard.py:AM_REQUIRED_MIGRATIONS"


@pytest.mark.parametrize(
    "value",
    [
        "/etc/passwd",
        "../outside.py:X",
        "scripts/guard.py:",
        ":NAME",
        "guard.py:not-a-name",
        "scripts/schema_guard.py",
    ],
)
def test_malformed_specs_are_bad_configuration(value: str) -> None:
    with pytest.raises(BadInput) as caught:
        required.parse_spec(value)
    assert caught.value.exit_code == 2
    assert "FILE:NAME" in caught.value.hint
