"""Fragments: validated when dropped; bad ones get exit 2 and change nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lanes import claims, config, fragments
from lanes.errors import BadInput
from lanes.surfaces import deploy as deploy_surface
from tests.conftest import lanes_json, snapshot


@pytest.fixture
def lane(seed_repo: Path) -> Path:
    rc, doc = lanes_json(seed_repo, "claim", "44", "a", "--agent", "bot")
    assert rc == 0
    return Path(doc["worktree"])


def test_fragments_are_stored_in_drop_order_and_logged(lane: Path, cfg: config.Config) -> None:
    rc, doc = lanes_json(lane, "fragment", "manifest", "261_legal_chain_v2.sql", "262_x.sql")
    assert rc == 0 and doc["entries"] == ["261_legal_chain_v2.sql", "262_x.sql"]
    (lane / "patch.yml").write_text("- op: add\n  path: /jobs/deploy/env/REGION\n  value: nrt\n")
    assert lanes_json(lane, "fragment", "version", "minor")[0] == 0
    assert lanes_json(lane, "fragment", "deploy", "patch.yml")[0] == 0
    found = fragments.read_all(cfg.claim_dir("44", "a") / claims.FRAGMENTS)
    assert [f.kind for _, f in found] == ["manifest", "version", "deploy"]
    deploy = found[2][1]
    assert isinstance(deploy, fragments.DeployFragment)
    assert deploy.patch[0].to_json() == {
        "op": "add",
        "path": "/jobs/deploy/env/REGION",
        "value": "nrt",
    }
    kinds = [
        e.details.get("kind") for e in claims.ledger(cfg, "44").events() if e.event == "fragment"
    ]
    assert kinds == ["manifest", "version", "deploy"]


# A billion laughs in a few hundred bytes: refused before anything expands.
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)

PATCHES: dict[str, str | bytes] = {
    "not-a-list.json": '{"op": "add", "path": "/a", "value": 1}',
    "unknown-op.json": '[{"op": "merge", "path": "/a", "value": 1}]',
    "no-value.json": '[{"op": "add", "path": "/a"}]',
    "no-from.json": '[{"op": "move", "path": "/a"}]',
    "bad-pointer.json": '[{"op": "remove", "path": "jobs/deploy"}]',
    "extra-member.json": '[{"op": "remove", "path": "/a", "exec": "rm -rf /"}]',
    "broken.yml": "- op: add\n  path: [unclosed\n",
    "empty.json": "[]",
    "bad-escape.json": '[{"op": "remove", "path": "/a~2b"}]',
    # YAML can hold what JSON cannot: each would crash the writer or be silently changed.
    "date.yml": "- {op: add, path: /a, value: 2024-01-01}\n",
    "binary.yml": "- {op: add, path: /a, value: !!binary aGVsbG8=}\n",
    "set.yml": "- {op: add, path: /a, value: !!set {x, y}}\n",
    "int-key.yml": "- {op: add, path: /a, value: {1: one}}\n",
    "complex-key.yml": "- {op: add, path: /a, value: {[1, 2]: x}}\n",
    "nan.yml": "- {op: add, path: /a, value: .nan}\n",
    "not-utf8.json": b"\xff\xfe[]",
    "deep.json": "[" * 5000,
    "deep-valid.json": '[{"op": "add", "path": "/a", "value": ' + "[" * 800 + "]" * 800 + "}]",
    "huge.json": "[" + " " * (deploy_surface.PATCH_FILE_LIMIT + 1) + "]",
    # Input that parses but is not sane (issue 8): refused at the door, all of it.
    "alias-bomb.yml": BOMB + "- {op: add, path: /a, value: *i}\n",
    "anchor.yml": "- {op: add, path: /a, value: &v {x: 1}}\n- {op: add, path: /b, value: *v}\n",
    "nul-pointer.json": '[{"op": "remove", "path": "/jobs/\\u0000"}]',
    "lone-surrogate.json": '[{"op": "add", "path": "/a", "value": "\\ud800"}]',
    "huge-int.json": '[{"op": "add", "path": "/a", "value": ' + "9" * 5000 + "}]",
    "nested-300.json": '[{"op": "add", "path": "/a", "value": ' + "[" * 300 + "]" * 300 + "}]",
}


@pytest.mark.parametrize("name", sorted(PATCHES))
def test_invalid_deploy_patches_exit_2_and_change_nothing(
    lane: Path, seed_repo: Path, name: str
) -> None:
    text = PATCHES[name]
    (lane / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    before = snapshot(seed_repo, lane, skip=())
    rc, doc = lanes_json(lane, "fragment", "deploy", name)
    assert rc == 2, doc
    assert doc["error"] == "bad-fragment" and doc["hint"]
    assert snapshot(seed_repo, lane, skip=()) == before


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("version", "huge"), "bad-bump"),
        (("version", "MINOR"), "bad-bump"),
        (("manifest", "../escape.sql"), "bad-entry"),
        (("manifest", "dir/file.sql"), "bad-entry"),
        (("manifest", ".hidden"), "bad-entry"),
        (("deploy", "missing.yml"), "bad-fragment"),
        (("deploy", "/dev/zero"), "bad-fragment"),
    ],
)
def test_invalid_fragments_exit_2_and_change_nothing(
    lane: Path, seed_repo: Path, args: tuple[str, ...], code: str
) -> None:
    before = snapshot(seed_repo, lane, skip=())
    rc, doc = lanes_json(lane, "fragment", *args)
    assert (rc, doc["error"]) == (2, code)
    assert snapshot(seed_repo, lane, skip=()) == before


def test_fragments_are_refused_once_submitted(lane: Path) -> None:
    assert lanes_json(lane, "submit")[0] == 0
    rc, doc = lanes_json(lane, "fragment", "version", "patch")
    assert rc == 4 and doc["error"] == "lane-not-open"


def test_stored_fragment_files_are_plain_json(lane: Path, cfg: config.Config) -> None:
    lanes_json(lane, "fragment", "version", "patch")
    (path,) = (cfg.claim_dir("44", "a") / claims.FRAGMENTS).glob("*.json")
    assert json.loads(path.read_text()) == {"kind": "version", "bump": "patch"}


def test_a_stored_fragment_edited_into_a_bad_one_is_named(lane: Path, cfg: config.Config) -> None:
    lanes_json(lane, "fragment", "manifest", "261_legal_chain_v2.sql")
    frag_dir = cfg.claim_dir("44", "a") / claims.FRAGMENTS
    (path,) = frag_dir.glob("*.json")
    path.write_text('{"kind": "manifest", "entries": ["../../etc"]}')
    with pytest.raises(BadInput) as err:
        fragments.read_all(frag_dir)
    assert path.name in err.value.message and "../../etc" in err.value.message


def test_withdraw_moves_a_fragment_aside_and_logs_it(lane: Path, cfg: config.Config) -> None:
    keep = lanes_json(lane, "fragment", "version", "patch")[1]["fragment"]
    printed = lanes_json(lane, "fragment", "version", "major")[1]["fragment"]
    drop = Path(printed).name
    rc, doc = lanes_json(lane, "fragment", "withdraw", printed)  # the path, as it was printed
    assert rc == 0 and doc["withdrawn"] == [str(cfg.claim_dir("44", "a") / "withdrawn" / drop)]
    frag_dir = cfg.claim_dir("44", "a") / claims.FRAGMENTS
    assert [str(p) for p, _ in fragments.read_all(frag_dir)] == [keep]
    assert (cfg.claim_dir("44", "a") / "withdrawn" / drop).is_file()  # kept, not deleted
    logged = [e.details for e in claims.ledger(cfg, "44").events() if e.event == "fragment"]
    assert logged[-1] == {"withdrawn": drop}
    before = snapshot(cfg.main_checkout, lane, skip=())
    rc, doc = lanes_json(lane, "fragment", "withdraw", drop)  # already gone
    assert (rc, doc["error"]) == (2, "unknown-fragment")
    assert f"{Path(keep).name} (version: patch)" in doc["hint"]
    assert doc["fragments"] == {Path(keep).name: {"kind": "version", "bump": "patch"}}
    rc, doc = lanes_json(lane, "fragment", "withdraw", "../claim.json")
    assert rc == 2
    assert snapshot(cfg.main_checkout, lane, skip=()) == before
    assert lanes_json(lane, "submit")[0] == 0
    rc, doc = lanes_json(lane, "fragment", "withdraw", Path(keep).name)
    assert rc == 4 and doc["error"] == "lane-not-open"


def test_a_corrupt_stored_fragment_can_be_withdrawn(lane: Path, cfg: config.Config) -> None:
    lanes_json(lane, "fragment", "version", "patch")
    bad = Path(lanes_json(lane, "fragment", "manifest", "261_legal_chain_v2.sql")[1]["fragment"])
    bad.write_text('{"kind": "manifest", "entries": ["../x"]}')
    rc, doc = lanes_json(lane, "submit")
    assert rc == 2 and f"lanes fragment withdraw {bad.name}" in doc["hint"]
    rc, doc = lanes_json(lane, "fragment", "withdraw", "nope.json")
    assert rc == 2 and f"{bad.name} (does not parse)" in doc["hint"]
    assert lanes_json(lane, "fragment", "withdraw", bad.name)[0] == 0
    assert lanes_json(lane, "submit")[0] == 0


def test_a_fragment_for_a_surface_switched_off_is_exit_2_and_an_absent_one_is_discovered(
    seed_repo: Path, worktree_root: Path
) -> None:
    (seed_repo / "lanes.toml").write_text(
        f'worktree_root = "{worktree_root}"\n[manifest]\nenabled = false\n'
    )
    wt = Path(lanes_json(seed_repo, "claim", "44", "b", "--agent", "bot")[1]["worktree"])
    rc, doc = lanes_json(wt, "fragment", "manifest", "049_provenance_strengthen.sql")
    assert (rc, doc["error"], doc["status"]) == (2, "no-surface", "off")
    assert "enabled = false" in doc["message"]
    # [version] and [deploy] are absent: discovered on main, so their fragments are taken.
    assert lanes_json(wt, "fragment", "version", "patch")[0] == 0


@pytest.mark.parametrize(
    "op",
    [
        {"op": "remove", "path": "/jobs/\u0000"},
        {"op": "add", "path": "/a", "value": "\ud800"},
        {"op": "add", "path": "/a", "value": json.loads("[" * 40 + "]" * 40)},
    ],
)
def test_a_fragment_file_written_by_hand_is_judged_like_a_dropped_one(
    lane: Path, cfg: config.Config, op: dict[str, object]
) -> None:
    """The same validation on read: submit refuses it naming the file, and the pass would
    bounce that lane alone (plan reads fragments through the same reader)."""
    frag_dir = cfg.claim_dir("44", "a") / claims.FRAGMENTS
    name = "00000000000000000001-deploy-abcdef.json"
    doc = {"kind": "deploy", "patch": [op], "source": "by-hand"}
    (frag_dir / name).write_text(json.dumps(doc), encoding="utf-8")
    rc, out = lanes_json(lane, "submit")
    assert (rc, out["error"]) == (2, "bad-fragment") and name in out["message"]


@pytest.mark.parametrize(
    "name",
    [
        "00000000000000000001-manifest-abcdef\nLanes-Lane: other.json",
        "00000000000000000001-manifest-abcdef.json\nLanes-Lane: other",
        "notes.json",
        "00000000000000000001-version-abcdef.json",  # holds a manifest fragment
    ],
)
def test_a_fragment_name_read_back_from_disk_is_validated(
    lane: Path, cfg: config.Config, name: str
) -> None:
    """Names go into trailers: one with a newline forged another lane's landing."""
    frag_dir = cfg.claim_dir("44", "a") / claims.FRAGMENTS
    doc = {"kind": "manifest", "entries": ["049_provenance_strengthen.sql"]}
    (frag_dir / name).write_text(json.dumps(doc), encoding="utf-8")
    rc, out = lanes_json(lane, "submit")
    assert (rc, out["error"]) == (2, "bad-fragment"), out
    assert repr(name) in out["message"] or name in out["message"]
