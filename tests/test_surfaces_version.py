"""Version files: the field itself, never a look-alike; all files agree or it is an error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lanes import scaffold
from lanes.errors import BadInput, Refused
from lanes.surfaces import version

PYPROJECT = scaffold.PYPROJECT.format(
    version="0.3.5", worktree_root="/tmp", test_command="", manifest=scaffold.MANIFEST
)
# A server.json with traps: the same string in a description, a nested "version" member,
# a "version" inside a string, odd spacing and key order that must survive.
SERVER = (
    '{\n  "name" : "jpcite",\n  "description": "MCP server, version \\"0.3.5\\"",\n'
    '  "packages": [{"version": "0.3.5", "registry": "npm"}],\n'
    '  "version":   "0.3.5",\n  "notes": {"version": "0.3.5"}\n}\n'
)


def test_bumps() -> None:
    assert version.bumped("0.3.5", "patch") == "0.3.6"
    assert version.bumped("0.3.5", "minor") == "0.4.0"
    assert version.bumped("0.3.5", "major") == "1.0.0"
    assert version.largest(["patch", "major", "minor"]) == "major"
    assert version.largest([]) is None
    with pytest.raises(BadInput):
        version.bumped("0.3.5-rc1", "patch")


def test_pyproject_only_the_project_version_changes() -> None:
    out = version.write("pyproject.toml", PYPROJECT, "0.4.0")
    before, after = PYPROJECT.splitlines(), out.splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert changed == [
        (
            'version = "0.3.5"  # keep in step with server.json',
            'version = "0.4.0"  # keep in step with server.json',
        )
    ]
    assert 'description = "jpcite API (version 0.3.5 of the seed)"' in out  # the look-alike


def test_poetry_version_and_literal_string_kept_literal() -> None:
    text = "[tool.poetry]\nname = 'x'\nversion = '1.2.3' # c\n\n[tool.other]\nversion = '1.2.3'\n"
    out = version.write("pyproject.toml", text, "1.3.0")
    assert out == text.replace("version = '1.2.3' # c", "version = '1.3.0' # c")


def test_json_only_the_top_level_member_changes() -> None:
    out = version.write("server.json", SERVER, "0.4.0")
    assert out == SERVER.replace('"version":   "0.3.5"', '"version":   "0.4.0"')
    doc = json.loads(out)
    assert doc["packages"][0]["version"] == "0.3.5" and doc["notes"]["version"] == "0.3.5"


def test_package_json_shape(tmp_path: Path) -> None:
    text = json.dumps({"name": "x", "version": "2.0.0", "dependencies": {"v": "2.0.0"}}, indent=4)
    assert version.write("package.json", text, "2.0.1") == text.replace(
        '"version": "2.0.0"', '"version": "2.0.1"'
    )


def test_files_must_agree_before_a_bump() -> None:
    files = {"pyproject.toml": PYPROJECT, "server.json": SERVER.replace('   "0.3.5"', ' "0.3.6"')}
    with pytest.raises(Refused) as err:
        version.bump_files(files, "minor")
    assert err.value.code == "version-mismatch"
    assert "server.json has 0.3.6" in err.value.message


def test_bump_files_moves_every_file_once() -> None:
    old, new, out = version.bump_files(
        {"pyproject.toml": PYPROJECT, "server.json": SERVER}, "minor"
    )
    assert (old, new) == ("0.3.5", "0.4.0")
    assert {version.read(n, t) for n, t in out.items()} == {"0.4.0"}


@pytest.mark.parametrize(
    ("name", "text", "why"),
    [
        ("server.json", '{"name": "x"}', 'no top-level "version"'),
        ("server.json", '[{"version": "1.0.0"}]', "not a JSON object"),
        ("server.json", '{"version": "1.0.0", "version": "1.0.1"}', "twice"),
        ("server.json", '{"version": "1.0.0",}', "not valid JSON"),
        ("pyproject.toml", "[project]\nname = 'x'\n", "neither"),
        ("pyproject.toml", "[project\n", "not valid TOML"),
    ],
)
def test_unreadable_version_files_are_named(name: str, text: str, why: str) -> None:
    with pytest.raises(BadInput) as err:
        version.read(name, text)
    assert why in err.value.message and name in err.value.message


_semver = st.tuples(*(st.integers(0, 40) for _ in range(3))).map(lambda t: ".".join(map(str, t)))
_noise = st.text(alphabet="abc 0123456789.", max_size=12)


@settings(max_examples=50, deadline=None)
@given(old=_semver, bump=st.sampled_from(["patch", "minor", "major"]), noise=_noise)
def test_setting_a_version_is_deterministic_and_idempotent(old: str, bump: str, noise: str) -> None:
    server = json.dumps(
        {"description": f"{noise} {old}", "version": old, "nested": {"version": old}}, indent=2
    )
    pyproject = PYPROJECT.replace("0.3.5", old)
    files = {"pyproject.toml": pyproject, "server.json": server}
    _, new, once = version.bump_files(files, bump)
    assert version.bump_files(files, bump)[2] == once  # deterministic
    assert version.set_files(once, new) == once  # setting it again changes nothing
    assert json.loads(once["server.json"])["nested"]["version"] == old  # look-alike untouched
    assert json.loads(once["server.json"])["description"] == f"{noise} {old}"
    # bumping by a larger step later lands where that step alone would have
    for larger in ("minor", "major"):
        if version.RANK[larger] > version.RANK[bump]:
            assert version.bumped(new, larger) == version.bumped(old, larger)
