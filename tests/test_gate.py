"""The pre-deploy gate on seed-shaped repositories: each check holding and failing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from integrator import gate
from lanes import claims, config, scaffold, submit
from lanes.errors import BadInput
from tests.conftest import commit_file, git, lanes_json, origin_of, publish, run_lanes

MANIFEST = scaffold.MANIFEST
VERIFY = ".github/workflows/verify.yml"
WATCH = (
    'id=""; for _ in $(seq 60); do id=$(gh run list --workflow deploy.yml --branch main '
    "--event workflow_dispatch --limit 5 --json databaseId,status "
    """--jq '[.[] | select(.status != "completed")][0].databaseId // empty'); """
    '[ -n "$id" ] && break; sleep 5; done; if [ -n "$id" ]; then gh run watch "$id" '
    "--exit-status; else echo 'no workflow_dispatch run of deploy.yml on main appeared' >&2; "
    "false; fi"
)
WATCH_PUSH = WATCH.replace("workflow_dispatch", "push")


def check(repo: Path, name: str, wave: str | None = None) -> gate.Check:
    report = gate.verify(config.load(repo), wave)
    return next(c for c in report.checks if c.name == name)


def failed(repo: Path, wave: str | None = None) -> list[str]:
    return gate.verify(config.load(repo), wave).failed


# -- the clean seed ----------------------------------------------------------------------------


def test_the_seed_passes_and_says_how_to_deploy(seed_repo: Path) -> None:
    report = gate.verify(config.load(seed_repo))
    assert report.ok and report.failed == []
    assert [c.name for c in report.checks] == list(gate.CHECKS)
    statuses = {c.name: c.status for c in report.checks}
    assert statuses == {
        **{name: "pass" for name in gate.CHECKS},
        "wave-integrated": "none",  # no wave yet
        "main-linear": "none",
    }
    assert report.next == [
        "gh workflow run deploy.yml --ref main",
        WATCH,
        "gh workflow run verify --ref main",
    ]
    assert report.main == git(seed_repo, "rev-parse", "main")


# -- RC3: the manifest ---------------------------------------------------------------------------


def test_rc3_an_empty_manifest_on_a_fresh_volume_names_all_five(seed_repo: Path) -> None:
    commit_file(seed_repo, MANIFEST, "# autonomath boot manifest\n# (Wave 22: shipped empty)\n")
    c = check(seed_repo, "manifest-required")
    assert not c.ok
    for name in scaffold.REQUIRED:
        assert name in c.detail
    assert "lacks 5 of the 5 required migrations" in c.detail
    assert "lanes fragment manifest 049_provenance_strengthen.sql" in c.detail
    assert failed(seed_repo) == ["manifest-required"]  # an empty manifest names no missing file


def test_one_missing_required_migration_is_named_alone(seed_repo: Path) -> None:
    kept = [r for r in scaffold.REQUIRED if not r.startswith("090")]
    commit_file(seed_repo, MANIFEST, "\n".join(kept) + "\n")
    c = check(seed_repo, "manifest-required")
    assert not c.ok and "lacks 1 of the 5" in c.detail and "090_law_article_body_en.sql" in c.detail
    assert "049_provenance" not in c.detail


def test_a_required_name_with_no_file_is_not_offered_as_a_fragment(seed_repo: Path) -> None:
    guard = seed_repo / "scripts" / "schema_guard.py"
    text = guard.read_text(encoding="utf-8").replace(
        '"049_provenance_strengthen.sql"', '"049_provenance_strengthen"'
    )
    text = text.replace(
        "AM_REQUIRED_MIGRATIONS = [", 'AM_REQUIRED_MIGRATIONS = [\n    "999_gone.sql",'
    )
    commit_file(seed_repo, "scripts/schema_guard.py", text)
    c = check(seed_repo, "manifest-required")
    assert not c.ok and "lacks 2 of the 6" in c.detail
    assert "lanes fragment manifest" not in c.detail  # neither could be added as it is
    assert "999_gone.sql is not a file in scripts/migrations: commit the migration" in c.detail
    assert "may mean 049_provenance_strengthen.sql" in c.detail


def test_an_entry_without_its_file_is_named(seed_repo: Path) -> None:
    text = (seed_repo / MANIFEST).read_text(encoding="utf-8") + "261_legal_chain_v2.sql\n"
    commit_file(seed_repo, MANIFEST, text)
    c = check(seed_repo, "manifest-entries-exist")
    assert not c.ok
    assert "261_legal_chain_v2.sql" in c.detail and "scripts/migrations" in c.detail


def test_a_missing_manifest_fails_both_checks(seed_repo: Path) -> None:
    git(seed_repo, "rm", "-q", MANIFEST)
    git(seed_repo, "commit", "-qm", "drop the manifest")
    assert failed(seed_repo) == ["manifest-required", "manifest-entries-exist"]
    assert "is not in main's tree" in check(seed_repo, "manifest-entries-exist").detail


def test_a_required_list_that_is_not_a_literal_fails_with_the_reason(seed_repo: Path) -> None:
    commit_file(
        seed_repo, "scripts/schema_guard.py", "AM_REQUIRED_MIGRATIONS = sorted(glob('*'))\n"
    )
    c = check(seed_repo, "manifest-required")
    assert not c.ok and "not a list, tuple or set literal" in c.detail


def test_the_required_file_is_never_executed(seed_repo: Path, tmp_path: Path) -> None:
    marker = tmp_path / "schema_guard_ran"
    guard = (
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('executed')\n"
        f"AM_REQUIRED_MIGRATIONS = {scaffold.REQUIRED!r}\n"
    )
    commit_file(seed_repo, "scripts/schema_guard.py", guard)
    assert check(seed_repo, "manifest-required").ok
    rc, doc = lanes_json(seed_repo, "verify")
    assert rc == 0 and doc["ok"]
    assert not marker.exists()


def test_a_text_file_required_list(seed_repo: Path) -> None:
    _configure(
        seed_repo,
        'required = "scripts/schema_guard.py:AM_REQUIRED_MIGRATIONS"',
        'required = "ops/required.txt"',
    )
    commit_file(
        seed_repo,
        "ops/required.txt",
        "# fresh volume\n049_provenance_strengthen.sql\n999_new.sql\n",
    )
    c = check(seed_repo, "manifest-required")
    assert not c.ok and "999_new.sql" in c.detail and "049" not in c.detail


def test_the_committed_main_is_checked_not_the_checkout(seed_repo: Path) -> None:
    (seed_repo / MANIFEST).write_text("# emptied, not committed\n", encoding="utf-8")
    assert check(seed_repo, "manifest-required").ok
    git(seed_repo, "commit", "-qam", "empty the manifest")
    assert not check(seed_repo, "manifest-required").ok


# -- versions -------------------------------------------------------------------------------------


def test_versions_that_disagree_name_both_files_and_versions(seed_repo: Path) -> None:
    server = json.loads((seed_repo / "server.json").read_text(encoding="utf-8"))
    server["version"] = "0.3.6"
    commit_file(seed_repo, "server.json", json.dumps(server, indent=2) + "\n")
    c = check(seed_repo, "versions-agree")
    assert not c.ok
    assert c.detail == "pyproject.toml has 0.3.5 but server.json has 0.3.6"


def test_a_version_file_without_a_version_is_named(seed_repo: Path) -> None:
    commit_file(seed_repo, "server.json", '{"name": "jpcite"}\n')
    c = check(seed_repo, "versions-agree")
    assert not c.ok and c.status == "fail"
    assert "server.json" in c.detail and 'no top-level "version"' in c.detail


# -- RC4: the deploy chain ----------------------------------------------------------------------

GUARDED = scaffold.VERIFY.replace(
    "      - name: healthz\n",
    "      - name: healthz\n        if: github.event.workflow_run.event == 'push'\n",
)


def test_rc4_a_chained_workflow_without_dispatch_fails(seed_repo: Path) -> None:
    commit_file(seed_repo, VERIFY, scaffold.VERIFY.replace("  workflow_dispatch: {}\n", ""))
    c = check(seed_repo, "deploy-chain")
    assert not c.ok
    assert (
        ".github/workflows/verify.yml is triggered by workflow_run and has no workflow_dispatch"
        in c.detail
    )


def test_rc4_a_guard_on_the_parents_event_fails(seed_repo: Path) -> None:
    commit_file(seed_repo, VERIFY, GUARDED)
    c = check(seed_repo, "deploy-chain")
    assert not c.ok
    assert c.detail.startswith(".github/workflows/verify.yml: job smoke, step 'healthz'")
    assert "`if: github.event.workflow_run.event == 'push'`" in c.detail
    assert gate.verify(config.load(seed_repo)).next == []


def test_a_guard_that_holds_under_dispatch_passes(seed_repo: Path) -> None:
    text = scaffold.VERIFY.replace(
        "      - name: healthz\n",
        "      - name: healthz\n        if: ${{ github.event_name == 'workflow_dispatch' || "
        "github.event.workflow_run.conclusion == 'success' }}\n",
    )
    commit_file(seed_repo, VERIFY, text)
    assert check(seed_repo, "deploy-chain").ok


def test_a_parent_name_that_matches_nothing_is_named(seed_repo: Path) -> None:
    commit_file(
        seed_repo, VERIFY, scaffold.VERIFY.replace("workflows: [deploy]", "workflows: [Deploy API]")
    )
    c = check(seed_repo, "deploy-chain")
    assert not c.ok and "follows 'Deploy API'" in c.detail and "no workflow is named so" in c.detail


def test_broken_yaml_is_reported_by_file(seed_repo: Path) -> None:
    commit_file(seed_repo, ".github/workflows/cron.yaml", "name: cron\non: [push\njobs:\n")
    c = check(seed_repo, "deploy-chain")
    assert not c.ok and c.detail.startswith(".github/workflows/cron.yaml is not valid YAML (line")


def test_a_deploy_workflow_without_dispatch_fails(seed_repo: Path) -> None:
    deploy = ".github/workflows/deploy.yml"
    text = (seed_repo / deploy).read_text(encoding="utf-8").replace("  workflow_dispatch: {}\n", "")
    commit_file(seed_repo, deploy, text)
    c = check(seed_repo, "deploy-chain")
    assert (
        not c.ok
        and "has no workflow_dispatch trigger, so `gh workflow run` cannot start it" in c.detail
    )


def test_next_follows_the_chain_transitively(seed_repo: Path) -> None:
    commit_file(
        seed_repo,
        ".github/workflows/acceptance-criteria-ci.yml",
        "name: acceptance criteria\non:\n  workflow_run:\n    workflows: [verify]\n"
        "  workflow_dispatch:\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: ./acceptance.sh\n",
    )
    publish(seed_repo)  # on a remote: else next starts with the push of main, rightly
    assert gate.verify(config.load(seed_repo)).next == [
        "gh workflow run deploy.yml --ref main",
        WATCH,
        "gh workflow run verify --ref main",
        "gh workflow run 'acceptance criteria' --ref main",
    ]


# -- migration numbers --------------------------------------------------------------------------


def test_two_migrations_with_one_number_are_named(seed_repo: Path) -> None:
    commit_file(seed_repo, "scripts/migrations/261_legal_chain_v2.sql", "SELECT 1;\n")
    commit_file(seed_repo, "scripts/migrations/261_am_amendment_index.sql", "SELECT 2;\n")
    commit_file(seed_repo, "scripts/migrations/130_programs_index.down.sql", "SELECT 3;\n")
    c = check(seed_repo, "migration-numbers-unique")
    assert not c.ok
    assert c.detail == (
        "migrations in scripts/migrations share a number: "
        "261: 261_am_amendment_index.sql, 261_legal_chain_v2.sql; renumber the later one(s)"
    )


# -- the wave -----------------------------------------------------------------------------------


def _lane(cfg: config.Config, wave: str, lane: str, rel: str, text: str) -> Path:
    result = claims.claim(cfg, wave, lane, "agent-1")
    worktree = Path(result.worktree)
    commit_file(worktree, rel, text, f"{lane}: work")
    return worktree


def test_a_submitted_lane_not_integrated_fails_until_its_trailer_is_on_main(
    seed_repo: Path,
) -> None:
    cfg = config.load(seed_repo)
    _lane(cfg, "44", "api-dim-a", "src/dim_a.py", "A = 1\n")
    _lane(cfg, "44", "api-dim-b", "src/dim_b.py", "B = 1\n")  # claimed, not submitted
    submit.submit(cfg, "44", "api-dim-a")
    c = check(seed_repo, "wave-integrated", "44")
    assert not c.ok
    assert c.detail == (
        "wave 44: submitted but not integrated: api-dim-a (run `lanes integrate 44`)"
    )
    # The integrator landed it but died before the ledger line: main's trailers decide.
    git(
        seed_repo,
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "api-dim-a: work\n\nLanes-Wave: 44\nLanes-Lane: api-dim-a\nLanes-Fragments: none",
    )
    c = check(seed_repo, "wave-integrated", "44")
    assert c.ok and c.detail.endswith("not in this deploy: api-dim-b claimed")  # said, not hidden


def test_a_trailer_of_another_wave_does_not_count(seed_repo: Path) -> None:
    cfg = config.load(seed_repo)
    _lane(cfg, "44", "api-dim-a", "src/dim_a.py", "A = 1\n")
    submit.submit(cfg, "44", "api-dim-a")
    git(
        seed_repo,
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "x\n\nLanes-Wave: 43\nLanes-Lane: api-dim-a",
    )
    assert not check(seed_repo, "wave-integrated", "44").ok


def test_a_live_lane_touching_a_contended_surface_is_named(seed_repo: Path) -> None:
    cfg = config.load(seed_repo)
    _lane(cfg, "44", "ops-bump", "server.json", '{"version": "9.9.9"}\n')
    c = check(seed_repo, "wave-integrated", "44")
    assert not c.ok
    assert (
        "lane ops-bump (lanes/44/ops-bump) changes contended files: server.json (version)"
        in c.detail
    )


def test_without_a_wave_every_wave_with_a_ledger_is_checked(seed_repo: Path) -> None:
    cfg = config.load(seed_repo)
    _lane(cfg, "44", "a", "src/a.py", "A = 1\n")
    _lane(cfg, "45", "b", "src/b.py", "B = 1\n")
    submit.submit(cfg, "45", "b")
    report = gate.verify(cfg)
    assert report.waves == ["44", "45"]
    c = next(c for c in report.checks if c.name == "wave-integrated")
    assert not c.ok and c.detail.startswith("wave 45: submitted but not integrated: b")


def test_a_merge_commit_on_main_since_the_wave_base_fails(seed_repo: Path) -> None:
    cfg = config.load(seed_repo)
    _lane(cfg, "44", "a", "src/a.py", "A = 1\n")
    assert check(seed_repo, "main-linear", "44").ok
    git(seed_repo, "checkout", "-qb", "hotfix")
    commit_file(seed_repo, "src/hotfix.py", "H = 1\n")
    git(seed_repo, "checkout", "-q", "main")
    commit_file(seed_repo, "src/other.py", "O = 1\n")
    git(seed_repo, "merge", "-q", "--no-ff", "-m", "Merge branch 'hotfix'", "hotfix")
    merge = git(seed_repo, "rev-parse", "HEAD")
    c = check(seed_repo, "main-linear", "44")
    assert not c.ok
    assert f"{merge[:12]} \"Merge branch 'hotfix'\"" in c.detail
    assert "1 merge commit(s) since" in c.detail and "wave 44's base" in c.detail


def test_a_merge_before_the_wave_base_is_not_the_waves_business(seed_repo: Path) -> None:
    git(seed_repo, "checkout", "-qb", "old")
    commit_file(seed_repo, "src/old.py", "O = 1\n")
    git(seed_repo, "checkout", "-q", "main")
    commit_file(seed_repo, "src/new.py", "N = 1\n")
    git(seed_repo, "merge", "-q", "--no-ff", "-m", "old merge", "old")
    _lane(config.load(seed_repo), "44", "a", "src/a.py", "A = 1\n")
    assert check(seed_repo, "main-linear", "44").ok


def test_verify_with_a_wave_is_recorded_in_its_ledger(seed_repo: Path) -> None:
    cfg = config.load(seed_repo)
    _lane(cfg, "44", "a", "src/a.py", "A = 1\n")
    submit.submit(cfg, "44", "a")
    gate.verify(cfg, "44")
    last = claims.ledger(cfg, "44").events()[-1]
    assert last.event == "verify"
    assert last.details["ok"] is False and last.details["failed"] == ["wave-integrated"]
    assert claims.ledger(cfg, "44").verify().ok


def test_an_unknown_wave_is_bad_input(seed_repo: Path) -> None:
    with pytest.raises(BadInput) as caught:
        gate.verify(config.load(seed_repo), "99")
    assert caught.value.code == "unknown-wave"


# -- configuration ------------------------------------------------------------------------------


def _configure(repo: Path, old: str, new: str) -> None:
    path = repo / "pyproject.toml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_unwritten_surfaces_are_discovered_and_checked_as_if_written(seed_repo: Path) -> None:
    written = gate.verify(config.load(seed_repo))
    assert {row["status"] for row in written.surfaces} == {"configured"}
    text = (seed_repo / "pyproject.toml").read_text(encoding="utf-8")
    (seed_repo / "pyproject.toml").write_text(
        text.split("[tool.lanes.manifest]")[0], encoding="utf-8"
    )
    git(seed_repo, "commit", "-qam", "lanes: only the top-level keys")
    publish(seed_repo)  # on a remote: origin in step again, as when `written` was read
    report = gate.verify(config.load(seed_repo))
    assert [(c.name, c.status) for c in report.checks] == [
        (c.name, c.status) for c in written.checks
    ]
    assert report.ok and report.next == written.next
    assert {row["surface"]: row["status"] for row in report.surfaces} == {
        "manifest": "discovered",
        "required": "discovered",
        "version": "discovered",
        "deploy": "discovered",
    }
    commit_file(seed_repo, MANIFEST, "# shipped empty\n")
    assert failed(seed_repo) == ["manifest-required"]


def test_a_surface_switched_off_is_off_never_a_pass(seed_repo: Path) -> None:
    (seed_repo / "lanes.toml").write_text(
        "[manifest]\nenabled = false\n[deploy]\nenabled = false\n", encoding="utf-8"
    )
    commit_file(seed_repo, MANIFEST, "# shipped empty\n")
    report = gate.verify(config.load(seed_repo))
    statuses = {c.name: c.status for c in report.checks}
    assert statuses["manifest-required"] == statuses["manifest-entries-exist"] == "off"
    assert statuses["deploy-chain"] == "off" and statuses["migration-numbers-unique"] == "off"
    assert statuses["versions-agree"] == "pass"  # [version] absent: discovered and checked
    assert report.ok and report.next == []  # nothing to dispatch: the deploy is off
    human = run_lanes(seed_repo, "verify")
    assert human.returncode == 0
    assert "off" in human.stdout and "not checked" in human.stderr


def test_a_malformed_required_value_is_bad_configuration(seed_repo: Path) -> None:
    _configure(seed_repo, ":AM_REQUIRED_MIGRATIONS", ":AM-REQUIRED")
    with pytest.raises(BadInput):
        gate.verify(config.load(seed_repo))


# -- the CLI, as a user runs it -----------------------------------------------------------------


def test_cli_passes_on_the_seed_with_the_commands_to_deploy(
    seed_repo: Path, coord_mode: str
) -> None:
    rc, doc = lanes_json(seed_repo, "verify")
    assert rc == 0
    assert doc["schema_version"] == 1 and doc["ok"] is True
    assert doc["next"] == [
        "gh workflow run deploy.yml --ref main",
        WATCH,
        "gh workflow run verify --ref main",
    ]
    assert {c["name"] for c in doc["checks"]} == set(gate.CHECKS)
    assert {c["status"] for c in doc["checks"]} == {"pass", "none"}
    human = run_lanes(seed_repo, "verify")
    assert human.returncode == 0
    assert "pass" in human.stdout and "gh workflow run deploy.yml --ref main" in human.stdout
    # The seed has no remote: the person is told to push before dispatching, and that the
    # deploy also runs on a push (it would deploy twice). On a remote, the seed's main is
    # on origin already: nothing to push, and the push that brought it may have deployed.
    if coord_mode == "local":
        assert "no upstream" in human.stderr and "also runs on a push to main" in human.stderr
    else:
        assert "no upstream" not in human.stderr
        assert "the push that brought this commit may already have deployed it" in human.stderr


def test_cli_fails_with_exit_4_and_every_failing_check(seed_repo: Path) -> None:
    commit_file(seed_repo, MANIFEST, "# empty\n")
    commit_file(seed_repo, VERIFY, GUARDED)
    proc = run_lanes(seed_repo, "verify", "--json")
    assert proc.returncode == 4
    doc = json.loads(proc.stdout)  # one document: the checks, not an error
    assert doc["ok"] is False and doc["next"] == []
    assert doc["failed"] == ["manifest-required", "deploy-chain"]
    assert [c["name"] for c in doc["checks"] if not c["ok"]] == doc["failed"]
    human = run_lanes(seed_repo, "verify")
    assert human.returncode == 4
    assert "FAIL" in human.stdout and "manifest-required" in human.stdout
    assert "gate failed: manifest-required, deploy-chain" in human.stderr


def test_cli_bad_input_is_exit_2_with_an_error_document(seed_repo: Path) -> None:
    rc, doc = lanes_json(seed_repo, "verify", "99")
    assert rc == 2 and doc["error"] == "unknown-wave"
    rc, doc = lanes_json(seed_repo, "verify", "Bad Wave")
    assert rc == 2 and doc["error"] == "bad-wave"


def test_real_workflows_in_the_repository(seed_repo: Path) -> None:
    corpus = Path(__file__).parent / "data" / "workflows" / "Igotsty1e__levelchannel"
    for source in corpus.iterdir():
        rel = f".github/workflows/{source.name}"
        (seed_repo / rel).write_bytes(source.read_bytes())
        git(seed_repo, "add", rel)
    git(seed_repo, "commit", "-qm", "the levelchannel workflows")
    c = check(seed_repo, "deploy-chain")
    assert not c.ok
    assert (
        "staging-promote.yml is triggered by workflow_run and has no workflow_dispatch" in c.detail
    )
    assert (
        "job promote is guarded by `if: ${{ github.event.workflow_run.conclusion == 'success' }}`"
        in c.detail
    )
    assert "staging-e2e.yml is triggered" not in c.detail  # it has workflow_dispatch
    assert "verify.yml" not in c.detail  # the seed's own chain is still fine


def test_next_pushes_main_first_when_the_remote_is_behind(seed_repo: Path, tmp_path: Path) -> None:
    if origin_of(seed_repo) is None:  # on a remote, the seed's own origin serves
        remote = tmp_path / "origin.git"
        git(tmp_path, "init", "-q", "--bare", str(remote))
        git(seed_repo, "remote", "add", "origin", str(remote))
    git(seed_repo, "push", "-q", "-u", "origin", "main")
    report = gate.verify(config.load(seed_repo))
    assert report.next[0] == "gh workflow run deploy.yml --ref main"  # in step: no push
    assert not any("no upstream" in w for w in report.warnings)
    assert any("also runs on a push to main" in w for w in report.warnings)
    commit_file(seed_repo, "src/app.py", '"""v2"""\n')
    report = gate.verify(config.load(seed_repo))
    # The deploy runs on a push: next pushes, waits for the push's run, then dispatches the
    # chain; it never dispatches the deploy a second time.
    assert report.next == [
        "git push origin main:main",
        WATCH_PUSH,
        "gh workflow run verify --ref main",
    ]
    assert any("the push below deploys" in w for w in report.warnings)


def test_no_double_deploy_warning_when_the_deploy_does_not_run_on_push(seed_repo: Path) -> None:
    deploy = (seed_repo / ".github/workflows/deploy.yml").read_text(encoding="utf-8")
    commit_file(
        seed_repo,
        ".github/workflows/deploy.yml",
        deploy.replace("  push:\n    branches: [main]\n", "  push:\n    branches: [release/*]\n"),
    )
    report = gate.verify(config.load(seed_repo))
    assert report.ok and not any("runs on a push" in w for w in report.warnings)


def test_an_empty_required_list_fails_rather_than_proving_nothing(seed_repo: Path) -> None:
    commit_file(seed_repo, "scripts/schema_guard.py", "AM_REQUIRED_MIGRATIONS = []\n")
    commit_file(seed_repo, MANIFEST, "# shipped empty\n")
    c = check(seed_repo, "manifest-required")
    assert c.status == "fail" and "is empty" in c.detail


def test_messages_are_not_cut_at_80_columns_off_a_terminal(seed_repo: Path) -> None:
    commit_file(seed_repo, MANIFEST, "# shipped empty\n")
    proc = run_lanes(seed_repo, "verify", env={"COLUMNS": ""})
    long_lines = [line for line in proc.stderr.splitlines() if len(line) > 80]
    assert long_lines, proc.stderr
