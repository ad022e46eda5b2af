"""The gate, the dry run and the pass read every contended file the same way.

Hypothesis writes boot manifests the way people do (comments, inline comments, blank
lines, commented-out entries that look like entries, CRLF, a byte order mark) and
commits one on a seed repository's main. A lane then asks for some entries. The oracle is
the generator's own model of which lines are entries, never the reader under test:
- the gate's manifest-required check holds exactly when the model has every required
  migration;
- the dry run predicts exactly the entries the model lacks, and the pass adds exactly
  those, once each;
- after the pass the gate agrees with the model again.
Version files likewise (pyproject.toml and server.json with comments, look-alikes in other
tables and members, CRLF, a BOM, the members in any order): the gate says they agree
exactly when the generator gave them one version, the dry run predicts the bump the pass
makes, and the pass changes each file in its field and nowhere else.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrator import dry_run, gate, integrate
from lanes import config, scaffold
from lanes.surfaces import manifest
from tests.conftest import commit_file, git
from tests.test_integrate import WAVE, make_lane, manifest_frag, version_frag

KNOWN = [*scaffold.REQUIRED, "130_programs_index.sql"]

# A line and whether it is an entry (and which).
entry_lines = st.sampled_from(KNOWN).flatmap(
    lambda name: st.sampled_from(
        [
            (name, name),
            (f"  {name}", name),
            (f"{name}  # reviewed offline", name),
            (f"{name}\t# wave 40", name),
        ]
    )
)
other_lines = st.sampled_from(
    [
        ("# autonomath boot manifest", None),
        ("", None),
        ("   ", None),
        ("#049_provenance_strengthen.sql", None),  # commented out: looks like an entry
        ("# 075_am_amendment_diff.sql was applied by hand", None),
    ]
)
manifests = st.tuples(
    st.lists(st.one_of(entry_lines, other_lines), max_size=12),
    st.sampled_from(["\n", "\r\n"]),
    st.booleans(),  # a byte order mark
    st.booleans(),  # a final newline
)


def _text(lines: list[tuple[str, str | None]], newline: str, bom: bool, final: bool) -> str:
    body = newline.join(line for line, _ in lines) + (newline if final and lines else "")
    return ("\ufeff" if bom else "") + body


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(manifests, st.lists(st.sampled_from(KNOWN), min_size=1, max_size=3, unique=True))
def test_gate_dry_run_and_pass_read_the_manifest_alike(
    generated: tuple[list[tuple[str, str | None]], str, bool, bool], asked: list[str]
) -> None:
    lines, newline, bom, final = generated
    model = {entry for _, entry in lines if entry is not None}
    with tempfile.TemporaryDirectory() as tmp:
        repo = scaffold.make_seed_repo(Path(tmp) / "jpcite", Path(tmp) / "wt")
        env_identity(repo)
        commit_file(repo, scaffold.MANIFEST, _text(lines, newline, bom, final))
        cfg = config.load(repo)

        required = next(c for c in gate.verify(cfg).checks if c.name == "manifest-required")
        assert required.ok == set(scaffold.REQUIRED).issubset(model), required.detail

        make_lane(cfg, "ask", {}, [manifest_frag(*asked)])
        predicted = dry_run.predict(config.load(repo), WAVE)
        expected = sorted(set(asked) - model, key=manifest.order_key)
        assert sorted(predicted.manifest_added, key=manifest.order_key) == expected

        result = integrate.integrate(config.load(repo), WAVE)
        assert result.integrated == ["ask"]
        after = git_show(repo, scaffold.MANIFEST)
        assert sorted(result.landings[0].entries, key=manifest.order_key) == expected
        before_lines = Counter(_text(lines, newline, bom, final).lstrip("\ufeff").splitlines())
        after_lines = Counter(after.lstrip("\ufeff").splitlines())
        assert after_lines - before_lines == Counter(expected)  # exactly those, once each
        assert not before_lines - after_lines  # every line kept
        assert after.startswith("\ufeff") == bom and after.count("\ufeff") == int(bom)
        required = next(
            c for c in gate.verify(config.load(repo)).checks if c.name == "manifest-required"
        )
        assert required.ok == set(scaffold.REQUIRED).issubset(model | set(asked))


def env_identity(repo: Path) -> None:
    """The pass commits in a scratch worktree: it needs an author in the repository."""
    git(repo, "config", "user.name", "lanes test")
    git(repo, "config", "user.email", "test@lanes.invalid")


def git_show(repo: Path, path: str) -> str:
    """A file of main, byte for byte (the test helper strips the text; this one does not)."""
    return subprocess.run(
        ["git", "show", f"main:{path}"], cwd=repo, check=True, capture_output=True
    ).stdout.decode("utf-8")


# -- version files ----------------------------------------------------------------------------

SLOT = "@@VERSION@@"  # where the generator put the version field's value
pyproject_templates = st.tuples(
    st.lists(st.sampled_from(["# build settings", "", '# version = "9.9.9"']), max_size=3),
    st.sampled_from(["", "  # keep in step with server.json"]),
    st.booleans(),  # a look-alike table after [project]
).map(
    lambda t: [
        *t[0],
        "[project]",
        'name = "jpcite-api"',
        f'version = "{SLOT}"{t[1]}',
        'description = "version 9.9.9 of nothing"',
        *(["", "[tool.other]", 'version = "9.9.9"'] if t[2] else []),
    ]
)
server_templates = st.permutations(
    [
        '"name": "jpcite"',
        '"description": "version 9.9.9 of the manifest"',
        '"nested": {"version": "9.9.9"}',
        f'"version": "{SLOT}"',
    ]
).map(lambda members: ["{", *[f"  {m}," for m in members[:-1]], f"  {members[-1]}", "}"])
versions = st.sampled_from(["0.3.5", "1.0.0", "2.10.9"])


def _file(lines: list[str], newline: str, bom: bool) -> str:
    return ("\ufeff" if bom else "") + newline.join(lines) + newline


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    pyproject_templates,
    server_templates,
    st.sampled_from(["\n", "\r\n"]),
    st.booleans(),
    st.booleans(),
    versions,
    versions,
)
def test_gate_dry_run_and_pass_read_the_version_files_alike(
    pyproject: list[str],
    server: list[str],
    newline: str,
    bom_toml: bool,
    bom_json: bool,
    ours: str,
    theirs: str,
) -> None:
    templates = {
        "pyproject.toml": _file(pyproject, newline, bom_toml),
        "server.json": _file(server, newline, bom_json),
    }
    with tempfile.TemporaryDirectory() as tmp:
        repo = scaffold.make_seed_repo(Path(tmp) / "jpcite", Path(tmp) / "wt")
        env_identity(repo)
        (repo / "lanes.toml").write_text(f'worktree_root = "{Path(tmp) / "wt"}"\n', "utf-8")
        for name, template in templates.items():
            version = ours if name == "pyproject.toml" else theirs
            (repo / name).write_bytes(template.replace(SLOT, version).encode("utf-8"))
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "generated version files")
        cfg = config.load(repo)
        assert cfg.surfaces.version_files == ["pyproject.toml", "server.json"]

        agree = next(c for c in gate.verify(cfg).checks if c.name == "versions-agree")
        assert agree.ok == (ours == theirs), agree.detail
        if ours != theirs:
            return
        make_lane(cfg, "bump", {}, [version_frag("patch")])
        major, minor, patch = (int(p) for p in ours.split("."))
        new = f"{major}.{minor}.{patch + 1}"
        predicted = dry_run.predict(config.load(repo), WAVE)
        assert (predicted.version, predicted.version_after) == (ours, new)
        result = integrate.integrate(config.load(repo), WAVE)
        assert result.integrated == ["bump"] and result.version == new
        for name, template in templates.items():  # byte for byte, but for the field
            assert git_show(repo, name) == template.replace(SLOT, new)
        agree = next(c for c in gate.verify(config.load(repo)).checks if c.name == "versions-agree")
        assert agree.ok and new in agree.detail
