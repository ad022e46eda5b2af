"""Version files: the field itself, never a look-alike; all files agree or it is an error."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lanes import scaffold
from lanes.errors import BadInput, Refused
from lanes.surfaces import version, version_formats

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


# -- every kind of version file ---------------------------------------------------------

BOM = "\ufeff"


def _crlf_bom(text: str) -> str:
    return BOM + text.replace("\n", "\r\n")


@pytest.mark.parametrize(
    ("name", "text", "old", "new_text"),
    [
        (
            "pyproject.toml",
            '[project]\nname = "x"\ndynamic = ["readme"]\nversion = "1.2.3"\n',
            "1.2.3",
            '[project]\nname = "x"\ndynamic = ["readme"]\nversion = "2.0.0"\n',
        ),
        (  # poetry 2: the version stays under [tool.poetry], [project] says it is dynamic
            "pyproject.toml",
            '[project]\nname = "x"\ndynamic = ["version"]\n\n[tool.poetry]\nversion = "1.2.3"\n',
            "1.2.3",
            '[project]\nname = "x"\ndynamic = ["version"]\n\n[tool.poetry]\nversion = "2.0.0"\n',
        ),
        (  # [tool] split around other tables: tomlkit's out-of-order tables
            "pyproject.toml",
            "[tool.ruff]\nline-length = 1\n[tool.poetry]\nversion = '1.2.3'\n"
            "[tool.mypy]\nstrict = true\n[tool.poetry.dependencies]\nversion = '9.9.9'\n",
            "1.2.3",
            "[tool.ruff]\nline-length = 1\n[tool.poetry]\nversion = '2.0.0'\n"
            "[tool.mypy]\nstrict = true\n[tool.poetry.dependencies]\nversion = '9.9.9'\n",
        ),
        (
            "Cargo.toml",
            '[package]\nname = "x"\nversion = "1.2.3" # the crate\n\n[dependencies]\n'
            'serde = { version = "1.2.3" }\n\n[dependencies.tokio]\nversion = "1.2.3"\n',
            "1.2.3",
            '[package]\nname = "x"\nversion = "2.0.0" # the crate\n\n[dependencies]\n'
            'serde = { version = "1.2.3" }\n\n[dependencies.tokio]\nversion = "1.2.3"\n',
        ),
        (
            "crates/core/Cargo.toml",
            "[workspace]\nmembers = ['a']\n\n[workspace.package]\nversion = '1.2.3'\n"
            "\n[workspace.dependencies]\nfoo = { version = '1.2.3' }\n",
            "1.2.3",
            "[workspace]\nmembers = ['a']\n\n[workspace.package]\nversion = '2.0.0'\n"
            "\n[workspace.dependencies]\nfoo = { version = '1.2.3' }\n",
        ),
        (  # the root crate inherits from the [workspace.package] of this very file
            "Cargo.toml",
            '[package]\nname = "x"\nversion.workspace = true\n\n[workspace.package]\n'
            'version = "1.2.3"\n',
            "1.2.3",
            '[package]\nname = "x"\nversion.workspace = true\n\n[workspace.package]\n'
            'version = "2.0.0"\n',
        ),
        (
            "setup.cfg",
            "[metadata]\nname = x\n# version = 1.2.3\ndescription = version 1.2.3\n"
            "version=1.2.3\nclassifiers =\n    version = 1.2.3\n\n[bdist_rpm]\nversion = 1.2.3\n",
            "1.2.3",
            "[metadata]\nname = x\n# version = 1.2.3\ndescription = version 1.2.3\n"
            "version=2.0.0\nclassifiers =\n    version = 1.2.3\n\n[bdist_rpm]\nversion = 1.2.3\n",
        ),
        (
            "setup.cfg",
            "[metadata]\nversion : 1.2.3  \n",
            "1.2.3",
            "[metadata]\nversion : 2.0.0  \n",
        ),
        ("build.gradle", "version = '1.2.3'\n", "1.2.3", "version = '2.0.0'\n"),
        ("build.gradle", 'version "1.2.3" // ci\n', "1.2.3", 'version "2.0.0" // ci\n'),
        (
            "app/build.gradle",
            "plugins {\n    id 'java'\n}\ngroup = 'x'\nversionCode = 3\nversion = \"1.2.3\";\n"
            'dependencies {\n    implementation "x:y:1.2.3"\n}\nallprojects {\n'
            "    version = '1.2.3'\n}\next {\nversion = '1.2.3'\n}\n"
            "/*\nversion = '1.2.3'\n*/\ndef notes = '''\nversion = '1.2.3'\n'''\n",
            "1.2.3",
            "plugins {\n    id 'java'\n}\ngroup = 'x'\nversionCode = 3\nversion = \"2.0.0\";\n"
            'dependencies {\n    implementation "x:y:1.2.3"\n}\nallprojects {\n'
            "    version = '1.2.3'\n}\next {\nversion = '1.2.3'\n}\n"
            "/*\nversion = '1.2.3'\n*/\ndef notes = '''\nversion = '1.2.3'\n'''\n",
        ),
        (
            "build.gradle.kts",
            'plugins {\n    kotlin("jvm") version "1.2.3"\n}\nversion = "1.2.3"\n'
            'val notes = """\nversion = "1.2.3"\n"""\nval c = \'{\'\n',
            "1.2.3",
            'plugins {\n    kotlin("jvm") version "1.2.3"\n}\nversion = "2.0.0"\n'
            'val notes = """\nversion = "1.2.3"\n"""\nval c = \'{\'\n',
        ),
        (
            "src/pkg/__init__.py",
            '"""The package.\n\n__version__ = "1.2.3"\n"""\n# __version__ = "1.2.3"\n'
            "__version__ = '1.2.3'  # release\n\nclass A:\n    __version__ = '1.2.3'\n\n"
            "def f() -> str:\n    __version__ = '1.2.3'\n    return __version__\n",
            "1.2.3",
            '"""The package.\n\n__version__ = "1.2.3"\n"""\n# __version__ = "1.2.3"\n'
            "__version__ = '2.0.0'  # release\n\nclass A:\n    __version__ = '1.2.3'\n\n"
            "def f() -> str:\n    __version__ = '1.2.3'\n    return __version__\n",
        ),
        (  # ast counts columns in UTF-8 bytes, and ends lines at a lone CR too
            "pkg/__init__.py",
            'café = "é"; __version__ = "1.2.3"\rx = 1\r__all__ = ["café"]\n',
            "1.2.3",
            'café = "é"; __version__ = "2.0.0"\rx = 1\r__all__ = ["café"]\n',
        ),
        (
            "pkg/__init__.py",
            'x = 1\r"""é\r"""\r__version__ = "1.2.3"\r',
            "1.2.3",
            'x = 1\r"""é\r"""\r__version__ = "2.0.0"\r',
        ),
        (
            "pkg/_version.py",
            'x = "é"\n__version__: str = "1.2.3"\n',
            "1.2.3",
            'x = "é"\n__version__: str = "2.0.0"\n',
        ),
        (
            "web/package.json",
            '{"name": "x", "version": "1.2.3", "engines": {"version": "1.2.3"}}',
            "1.2.3",
            '{"name": "x", "version": "2.0.0", "engines": {"version": "1.2.3"}}',
        ),
    ],
)
def test_each_kind_of_file_has_its_field_read_and_set(
    name: str, text: str, old: str, new_text: str
) -> None:
    assert version.read(name, text) == old
    assert version.write(name, text, "2.0.0") == new_text
    # the same file with a BOM and CRLF line endings: read alike, both kept on write
    assert version.read(name, _crlf_bom(text)) == old
    assert version.write(name, _crlf_bom(text), "2.0.0") == _crlf_bom(new_text)


def test_tomlkit_alone_does_not_take_a_bom_so_lanes_sets_it_aside() -> None:
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    text = BOM + '[project]\r\nname = "x"\r\nversion = "1.2.3"\r\n'
    with pytest.raises(TOMLKitError):
        tomlkit.parse(text)
    out = version.write("pyproject.toml", text, "1.3.0")
    assert out == text.replace("1.2.3", "1.3.0")
    assert out.startswith(BOM) and out.count("\r\n") == 3 and "\n" not in out.replace("\r\n", "")


@pytest.mark.parametrize(
    ("name", "text", "why"),
    [
        (
            "pyproject.toml",
            '[project]\nname = "x"\ndynamic = ["version"]\n',
            "[project] declares the version dynamic: lanes reads it where it is written, "
            "e.g. __version__ in the package",
        ),
        ("pyproject.toml", '[project]\nversion = "1"\ndynamic = ["version"]\n', "both sets"),
        ("pyproject.toml", "[project]\nversion = 1\n", "not a one-line string"),
        ("pyproject.toml", '[project]\nversion = """1.2.3"""\n', "not a one-line string"),
        ("pyproject.toml", '\ufeff[project\nversion = "1"\n', "not valid TOML"),
        ("Cargo.toml", '[package]\nname = "x"\nversion.workspace = true\n', "inherits"),
        ("Cargo.toml", "[package]\nversion = { workspace = true }\n", "version.workspace = true"),
        ("Cargo.toml", '[package]\nname = "x"\n', "neither [package].version"),
        (
            "Cargo.toml",
            '[package]\nversion = "1.2.3"\n[workspace.package]\nversion = "1.2.3"\n',
            "both [package].version and [workspace.package].version",
        ),
        ("setup.cfg", "[metadata]\nversion = attr: pkg.__version__\n", "attr: pkg.__version__"),
        ("setup.cfg", "[metadata]\nversion = file: VERSION\n", "from file: VERSION"),
        ("setup.cfg", "[metadata]\nname = x\n[options]\nversion = 1.2.3\n", "no version = X"),
        ("setup.cfg", "[metadata]\nversion = 1.2.3\nversion = 1.2.4\n", "2 times"),
        ("setup.cfg", "[metadata]\nversion = 1.2.3  # the release\n", "not one word"),
        ("setup.cfg", "[metadata]\nversion =\n", "is empty"),
        ("setup.cfg", "[metadata]\nversion = 1.2.3\n    .post1\n", "continues"),
        ("setup.cfg", "name = x\n[metadata]\nversion = 1.2.3\n", "not a valid INI"),
        ("build.gradle", "version = project.findProperty('v')\n", "property or computed"),
        ("build.gradle", 'version = "$base.1"\n', "property or computed"),
        ("build.gradle", 'version = "1.2" + suffix\n', "property or computed"),
        ("build.gradle.kts", "version = libs.versions.app.get()\n", "property or computed"),
        ("build.gradle", "version = '1.2.3'\nversion = '1.2.4'\n", "2 times at the top level"),
        ("build.gradle", "allprojects {\n    version = '1.2.3'\n}\n", "no top-level version"),
        ("build.gradle", "// version = '1.2.3'\nimplementation 'x:y:1.2.3'\n", "no top-level"),
        ("build.gradle", "/* version\nversion = '1.2.3'\n", "*/ is missing"),
        ("build.gradle", "}\nversion = '1.2.3'\n", "closes nothing"),
        ("pkg/__init__.py", "from ._version import __version__\n", "imported from ._version"),
        (
            "pkg/__init__.py",
            "from importlib.metadata import version\n__version__ = version('pkg')\n",
            "__version__ is computed",
        ),
        ("pkg/__init__.py", "__version__ = '1.2.3'\n__version__ = '1.2.4'\n", "2 times"),
        ("pkg/__init__.py", "__version__ = '1.2.3'\n__version__ += '.dev'\n", "2 times"),
        (
            "pkg/__init__.py",
            "try:\n    from ._v import __version__\nexcept ImportError:\n    __version__ = '0'\n",
            "2 times",
        ),
        ("pkg/__init__.py", "if True:\n    __version__ = '1.2.3'\n", "not assigned on its own"),
        ("pkg/__init__.py", "__version__ = v = '1.2.3'\n", "not assigned on its own"),
        (
            "pkg/__init__.py",
            "__version__ = '1.2.3'\ndef f():\n    global __version__\n",
            "2 times",
        ),
        ("pkg/__init__.py", "__version__ = '''1.2.3'''\n", "not a plain one-line string"),
        ("pkg/__init__.py", "__version__ = r'1.2.3'\n", "not a plain one-line string"),
        ("pkg/__init__.py", "__version__ = '1.2' '.3'\n", "not a plain one-line string"),
        ("pkg/__init__.py", "__version__ = 1\n", "computed"),
        ("pkg/__init__.py", "VERSION = '1.2.3'\n", "does not assign __version__"),
        ("pkg/__init__.py", "__version__ = '1.2.3\n", "not valid Python"),
        ("server.json", '{"version": 3}', "not a string"),
        ("VERSION", "1.2.3\n", "does not know where this kind of file keeps its version"),
    ],
)
def test_a_version_lanes_cannot_set_is_unreadable_with_the_reason(
    name: str, text: str, why: str
) -> None:
    for variant in (text, _crlf_bom(text)):
        with pytest.raises(BadInput) as err:
            version.read(name, variant)
        assert err.value.code == "bad-version-file"
        assert why in err.value.message, err.value.message
        assert err.value.message.startswith(f"cannot read the version of {name}: ")
        with pytest.raises(BadInput):
            version.write(name, variant, "2.0.0")


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("pkg/__init__.py", "__version__ = '1.2.3'\n"),
        ("build.gradle", "version = '1.2.3'\n"),
        ("setup.cfg", "[metadata]\nversion = 1.2.3\n"),
        ("pyproject.toml", "[project]\nversion = '1.2.3'\n"),
    ],
)
def test_a_version_that_would_need_escaping_is_refused(name: str, text: str) -> None:
    for bad in ("1.2.3'", '1.2.3"', "1.2.3 # x", "1.2\n3", "$v"):
        with pytest.raises(BadInput) as err:
            version.write(name, text, bad)
        assert err.value.code == "bad-version"
    assert version.write("server.json", '{"version": "1"}', 'a "b"') == '{"version": "a \\"b\\""}'


def test_the_write_checks_that_only_the_field_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    # let a version through that, written unescaped, ends the string early: the field lanes
    # reads back is not what it wrote, and the write says so instead of returning it
    monkeypatch.setattr(version_formats, "_PLAIN_VERSION", re.compile(r".+", re.DOTALL))
    with pytest.raises(BadInput) as err:
        version.write("build.gradle", "version = '1.2.3'\n", "2.0.0' // x")
    assert "more than its field" in err.value.message


def test_declares_version_sees_a_bom_and_an_annotation() -> None:
    assert version.declares_version("p/__init__.py", BOM + '__version__ = "1"\n')
    assert version.declares_version("p/__init__.py", '"""Doc."""\n__version__: Final = "1"\n')
    assert not version.declares_version("p/__init__.py", 'if x:\n    __version__ = "1"\n')
    assert not version.declares_version("p/__init__.py", "__version__ == other\n")
    assert not version.declares_version("p/__init__.py", "# __version__ = '1'\n")


# -- the property: any version file, any shape around the field ------------------------

_release = st.from_regex(
    r"(0|[1-9][0-9]{0,2})(\.(0|[1-9][0-9]{0,2})){2}(-rc\.[0-9])?", fullmatch=True
)

# Noise that goes around the field: look-alikes (in comments, strings, other tables, nested
# members, indented blocks), blank lines and ordinary lines. Each entry is one or more lines.
_TOML_TOP = ["", '# version = "9.9.9"', "# the build"]
_TOML_FILL = ["", '# version = "9.9.9"']
_PYPROJECT_IN = [
    'name = "demo"',
    'description = "version 9.9.9 of it"',
    'keywords = ["version", "9.9.9"]',
    'authors = [{ name = "a", email = "version@x.invalid" }]',
]
_PYPROJECT_TABLES = [
    '[tool.other]\nversion = "9.9.9"',
    '[build-system]\nrequires = ["setuptools"]  # version = "9.9.9"',
    "[tool.lanes]\nproject = 'x'\n# version = '9.9.9'",
    '[tool.poetry.dependencies]\nversion = "9.9.9"',
]
_CARGO_IN = ['name = "demo"', 'edition = "2021"', 'description = "version 9.9.9"']
_CARGO_TABLES = [
    '[dependencies]\nserde = { version = "9.9.9", features = ["derive"] }',
    "[dependencies.tokio]\nversion = '9.9.9'",
    '[workspace.dependencies]\nfoo = { version = "9.9.9" }',
    '[dev-dependencies]\n# version = "9.9.9"\nbar = "9.9.9"',
]
_CFG_FILL = ["", "# version = 9.9.9", "; version = 9.9.9"]
_CFG_IN = [
    "name = demo",
    "description = version 9.9.9",
    "classifiers =\n    Version :: 9.9.9\n    version = 9.9.9",
]
_CFG_SECTIONS = [
    "[options]\ninstall_requires =\n    requests>=2\n    version = 9.9.9",
    "[bdist_rpm]\nversion = 9.9.9",
    "[tool:pytest]\n# version = 9.9.9\naddopts = -q",
]
_GRADLE = [
    "",
    "plugins {\n    id 'java'\n}",
    '// version = "9.9.9"',
    '/*\nversion = "9.9.9"\n*/',
    'dependencies {\n    implementation "x:y:9.9.9"\n}',
    "allprojects {\n    version = '9.9.9'\n}",
    "ext {\nversion = '9.9.9'\n}",
    "versionCode = 9",
    "group = 'com.example'",
    "description = 'version = \"9.9.9\"'",
    'def notes = """\nversion = "9.9.9"\n"""',
    'tasks.register("v") {\n    doLast { println("version = 9.9.9") }\n}',
]
_PYTHON = [
    "",
    "import os",
    '# __version__ = "9.9.9"',
    "NOTE = '__version__ = \"9.9.9\"'",
    'version = "9.9.9"',
    '"""Notes.\n\n__version__ = "9.9.9"\n"""',
    'def f() -> str:\n    __version__ = "9.9.9"\n    return __version__',
    "class A:\n    __version__ = '9.9.9'",
    "if os.name:\n    pass",
]
_JSON_MEMBERS = [
    '"name": "demo"',
    '"description": "version 9.9.9"',
    '"nested": {"version": "9.9.9"}',
    '"packages": [{"version": "9.9.9", "registry": "npm"}]',
    '"versions": "9.9.9"',
    '"note": "\\"version\\": \\"9.9.9\\""',
]


def _split(
    draw: st.DrawFn, pool: list[str], filler: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    """Distinct entries of `pool` (keys, tables, sections: no two alike) and any number of
    `filler` lines (blank lines, comments), shuffled, split between before and after the field."""
    chosen = draw(st.lists(st.sampled_from(pool), unique=True, max_size=len(pool)))
    mixed = draw(
        st.permutations(chosen + (draw(st.lists(st.sampled_from(filler))) if filler else []))
    )
    cut = draw(st.integers(0, len(mixed)))
    return mixed[:cut], mixed[cut:]


@st.composite
def version_files(draw: st.DrawFn) -> tuple[str, str, str, str]:
    """(name, before, quote, after): the file is before + the quoted version + after."""
    kind = draw(st.sampled_from(["pyproject", "cargo", "setup.cfg", "gradle", "kts", "py", "json"]))
    quote = draw(st.sampled_from(['"', "'"]))
    if kind in ("pyproject", "cargo"):
        name, header, inside, pool = (
            ("pyproject.toml", ["[project]", "[tool.poetry]"], _PYPROJECT_IN, _PYPROJECT_TABLES)
            if kind == "pyproject"
            else ("Cargo.toml", ["[package]", "[workspace.package]"], _CARGO_IN, _CARGO_TABLES)
        )
        early, late = _split(draw, pool)
        above, below = _split(draw, inside, _TOML_FILL)
        top = draw(st.lists(st.sampled_from(_TOML_FILL)))
        head = [*top, *early, draw(st.sampled_from(header)), *above]
        key = draw(st.sampled_from(["version = ", "version=", "version   =  "]))
        tail = draw(st.sampled_from(["", "  # keep in step", ' #version = "9.9.9"']))
        rest = [*below, *late]
    elif kind == "setup.cfg":
        name, quote = "setup.cfg", ""
        early, late = _split(draw, _CFG_SECTIONS)
        above, below = _split(draw, _CFG_IN, _CFG_FILL)
        head = [*draw(st.lists(st.sampled_from(_CFG_FILL))), *early, "[metadata]", *above]
        key = draw(st.sampled_from(["version = ", "version=", "version : ", "version:"]))
        tail = draw(st.sampled_from(["", "  ", "\t"]))
        rest = [*below, *late]
    elif kind in ("gradle", "kts"):
        name = draw(st.sampled_from(["build.gradle", "app/build.gradle"]))
        name += ".kts" if kind == "kts" else ""
        head, rest = _split(draw, _GRADLE, _GRADLE)
        key = draw(st.sampled_from(["version = ", "version=", "version "]))
        tail = draw(st.sampled_from(["", " // the release", ";"]))
    elif kind == "py":
        name = draw(st.sampled_from(["pkg/__init__.py", "src/pkg/_version.py"]))
        head, rest = _split(draw, _PYTHON, _PYTHON)
        key = draw(st.sampled_from(["__version__ = ", "__version__: str = ", "__version__:str="]))
        tail = draw(st.sampled_from(["", "  # the release"]))
    else:
        name, quote = draw(st.sampled_from(["package.json", "server.json", "web/x.json"])), '"'
        early, late = _split(draw, _JSON_MEMBERS)
        indent = draw(st.sampled_from(["  ", "\t", ""]))
        head = ["{", *(f"{indent}{m}," for m in early)]
        key = indent + draw(st.sampled_from(['"version": ', '"version":', '"version" :  ']))
        tail = "," if late else ""
        rest = [*(f"{indent}{m}," for m in late[:-1]), *(f"{indent}{m}" for m in late[-1:]), "}"]
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    bom = draw(st.sampled_from(["", BOM]))
    final = draw(st.sampled_from(["\n", ""]))
    before = bom + "".join(line + "\n" for line in head) + key
    after = tail + "".join("\n" + line for line in rest) + final
    return name, before.replace("\n", newline), quote, after.replace("\n", newline)


def _masked(text: str, start: int, end: int) -> str:
    return text[:start] + "<the field>" + text[end:]


@settings(max_examples=400, deadline=None)
@given(doc=version_files(), old=_release, new=_release)
def test_any_version_file_round_trips_and_changes_only_its_field(
    doc: tuple[str, str, str, str], old: str, new: str
) -> None:
    name, before, quote, after = doc
    text = before + quote + old + quote + after
    assert version.read(name, text) == old
    out = version.write(name, text, new)
    assert version.read(name, out) == new
    field = len(before), len(before) + len(quote + new + quote)
    assert out[field[0] : field[1]] == quote + new + quote
    assert _masked(out, *field) == _masked(
        text, len(before), len(before) + len(quote + old + quote)
    )
    assert version.write(name, out, new) == out  # idempotent
    assert version.write(name, out, old) == text  # and back, byte for byte


@settings(max_examples=50, deadline=None)
@given(
    docs=st.lists(version_files(), min_size=1, max_size=5),
    old=_semver,
    bump=st.sampled_from(version.BUMPS),
)
def test_a_bump_moves_every_kind_of_file_together(
    docs: list[tuple[str, str, str, str]], old: str, bump: str
) -> None:
    files = {
        f"{i}/{name}": before + quote + old + quote + after
        for i, (name, before, quote, after) in enumerate(docs)
    }
    got_old, new, out = version.bump_files(files, bump)
    assert (got_old, new) == (old, version.bumped(old, bump))
    for i, (name, before, quote, after) in enumerate(docs):
        assert out[f"{i}/{name}"] == before + quote + new + quote + after
