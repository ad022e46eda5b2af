"""Discovery of the contended surfaces: on real workflows, and on repositories built here."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from lanes import config, discover
from lanes.config import Settings, settings_from
from lanes.surfaces import workflows as wf
from tests.conftest import commit_file, git

CORPUS = Path(__file__).parent / "data" / "workflows"

# What a careful reader calls each repository's deploy workflow, from the files in its folder
# (one real repository's .github/workflows each, partial; see SOURCES.md). One file: the
# deploy; several: ambiguous, every candidate listed; none: no workflow there deploys.
EXPECTED_DEPLOY: dict[str, list[str]] = {
    # deploy-gate.yml does run `vercel deploy` once CI is green, but it calls itself a gate
    # and only workflow_run starts it; a gate is never taken for the deploy (name it in
    # [deploy] to guard it). post-deploy-smoke.yml checks Vercel's deployments.
    "Adeline117__ranking-arena": [],
    "Devegi-S__ci-doctor-demo-2": [],  # tests, and a CI-failure bot chained off them
    "EliosBase__EliosBase": [],  # a smoke test after Vercel deploys, a gate after it
    "HaxeFoundation__crypto": [],  # CI, and a job canceller chained off it
    "Igotsty1e__levelchannel": [],  # a scheduled prod smoke test, a branch push after it
    "LemonHound__ai-game-project": ["deploy.yml"],  # Cloud Run, chained after the tests
    "Loono-cz__loono-be": ["backend_deploy.yml"],  # "Deploy backend to ECS", tests follow it
    "MarketDataApp__documentation": ["deploy-docs.yml"],  # the docs site to R2
    "Roger-LegalEase__legalease-command-center": [],  # a verification after tests
    "TheRealKoller__travel-map": ["deploy-dev.yml", "deploy-prod.yml"],  # two targets
    "TurkishKEBAB__Site": ["deploy-production.yml"],  # not valid YAML: found by its name
    "Vero-Ventures__fuzzycat": [],
    "alvinwquach__opportuniq": [],  # Vercel deploys; a check waits after CI
    "ashaw315__hotdog-diaries": [],  # a deploy gate and a post-deploy check, both checks
    "astral-sh__ruff": [],
    "cipher982__longhouse": ["deploy-and-verify.yml"],  # not smoke-after-deploy.yml
    "coder__agentapi": [],  # preview builds of pull requests
    "dsp-dr__guile-changeflow": ["deploy-cloudflare.yml"],
    "fastapi__fastapi": ["deploy-docs.yml"],  # chained after "Build Docs", which only builds
    # deploy.yml (FastAPI Cloud, on push) and deploy-docker-compose.yml (by hand): two ways
    # to deploy; which one lanes dispatches is the operator's choice
    "fastapi__full-stack-fastapi-template": ["deploy-docker-compose.yml", "deploy.yml"],
    "huggingface__peft": [],  # documentation previews of pull requests
    "lee-to__aif-docs": ["deploy-after-ci.yml"],
    "max-sixty__worktrunk": ["publish-docs.yaml"],  # GitHub Pages: the only deploy here
    "microsoft__playwright": [],
    "mleihs__metaverse-center": [],
    # deploy.yml goes to staging; deploy-production.yml (not valid YAML) to production
    "pranromumu__flask-staging-demo": ["deploy-production.yml", "deploy.yml"],
    "psf__black": [],
    "pydantic__pydantic": [],
    "rhysd__actionlint": [],
    "tauri-apps__tauri": [],
    "vuejs__core": [],
}
# Folders a careful reader could not settle from their files alone.
UNDECIDED = {
    # promote-to-production.yml pushes main to a production branch the host deploys from;
    # allure-pages-publish.yml deploys test reports; post-deploy-verification.yml checks.
    "jsugg__alt-text-generator",
}


def _corpus_flows(folder: str) -> dict[str, str]:
    return {
        f"{wf.WORKFLOW_DIR}/{path.name}": path.read_text(encoding="utf-8")
        for path in sorted((CORPUS / folder).iterdir())
    }


def _surfaces(files: dict[str, str], settings: Settings | None = None) -> discover.Surfaces:
    """Discovery over `files` (path -> text), as a command runs it on main's tree."""

    def read(wanted: list[str]) -> dict[str, str | None]:
        return {p: files.get(p) for p in wanted}

    return discover.resolve_settings(settings or Settings(), sorted(files), read, "test")


def _settings(raw: dict[str, object]) -> Settings:
    return settings_from(raw, "lanes.toml")


def test_every_corpus_folder_has_a_decision() -> None:
    folders = {p.name for p in CORPUS.iterdir() if p.is_dir()}
    assert folders == set(EXPECTED_DEPLOY) | UNDECIDED
    assert len(EXPECTED_DEPLOY) >= 30


@pytest.mark.parametrize("folder", sorted(EXPECTED_DEPLOY))
def test_deploy_candidates_on_real_workflows(folder: str) -> None:
    files = _corpus_flows(folder)
    best, _, _ = discover.deploy_candidates(wf.parse_all(files))
    assert [p.rsplit("/", 1)[-1] for p in best] == EXPECTED_DEPLOY[folder]
    deploy = _surfaces(files).deploy
    expected = EXPECTED_DEPLOY[folder]
    status = "none" if not expected else "discovered" if len(expected) == 1 else "ambiguous"
    assert deploy.status == status
    if status == "ambiguous":
        assert len(deploy.candidates) == len(expected) and deploy.workflow == ""


def _flow(name: str, on: str, run: str = "echo hi") -> str:
    """A workflow named `name`, triggered by `on` (YAML under `on:`), with one step."""
    return (
        f"name: {name}\non:\n{textwrap.indent(on, '  ')}\n"
        f"jobs:\n  job:\n    runs-on: ubuntu-latest\n    steps:\n      - run: {run}\n"
    )


DEPLOY_STEP = "aws ecs update-service --cluster c --service s --force-new-deployment"
SMOKE = _flow(
    "smoke",
    'workflow_run:\n  workflows: ["Deploy backend to ECS"]\n  types: [completed]\n'
    "workflow_dispatch:",
    "curl -fsS https://example.com/health",
)
WF = wf.WORKFLOW_DIR


def test_a_deploy_named_in_its_name_and_by_a_chain_is_discovered() -> None:
    found = _surfaces(
        {
            f"{WF}/backend_deploy.yml": _flow("Deploy backend to ECS", "push:", DEPLOY_STEP),
            f"{WF}/smoke.yml": SMOKE,
            f"{WF}/ci.yml": _flow("CI", "push:", "make test"),
        }
    ).deploy
    assert (found.status, found.workflow) == ("discovered", f"{WF}/backend_deploy.yml")
    assert "workflow_run children" in found.origin and "'deploy' in its name" in found.origin


def test_a_chain_parent_that_deploys_is_found_without_the_word() -> None:
    files = {
        f"{WF}/ship.yml": _flow("Ship it", "push:", "kubectl apply -f k8s/"),
        f"{WF}/smoke.yml": _flow("smoke", "workflow_run:\n  workflows: [Ship it]"),
    }
    assert _surfaces(files).deploy.workflow == f"{WF}/ship.yml"


def test_dev_and_prod_are_ambiguous_and_both_guarded() -> None:
    files = {
        f"{WF}/deploy-dev.yml": _flow("Deploy to DEV", "workflow_dispatch:", "./deploy.sh dev"),
        f"{WF}/deploy-prod.yml": _flow("Deploy to PROD", "workflow_dispatch:", "./deploy.sh prod"),
    }
    found = _surfaces(files)
    assert found.deploy.status == "ambiguous" and not found.deploy.active
    assert found.deploy.candidates == (f"{WF}/deploy-dev.yml", f"{WF}/deploy-prod.yml")
    assert "deploy-dev.yml" in found.deploy.origin and "deploy-prod.yml" in found.deploy.origin
    assert set(found.deploy.candidates) <= set(found.contended())
    row = next(r for r in found.describe() if r["surface"] == "deploy")
    assert row["status"] == "ambiguous" and row["paths"] == list(found.deploy.candidates)


@pytest.mark.parametrize(
    ("file", "name"),
    [
        ("post-deploy-smoke.yml", "post-deploy-smoke"),
        ("deploy-gate.yml", "Deploy Gate"),
        ("checks.yml", "Post-Deployment Sanity Check"),
        ("smoke-after-deploy.yml", "Smoke Test After Deploy"),
        ("rollback.yml", "Rollback the deploy"),
        ("deploy-preview.yml", "Deploy preview"),
        ("pre-deploy.yml", "Pre-deploy migrations"),
        ("e2e.yml", "E2E after deploy"),
    ],
)
def test_a_workflow_watching_a_deploy_never_wins(file: str, name: str) -> None:
    # It has every other sign (a deploy step, a child of its own), more than the real one.
    watcher = _flow(name, "workflow_run:\n  workflows: [Deploy]", "kubectl rollout restart x")
    child = _flow("report", f"workflow_run:\n  workflows: [{name!r}]")
    files = {f"{WF}/{file}": watcher, f"{WF}/report.yml": child}
    assert _surfaces(files).deploy.status == "none"
    files[f"{WF}/deploy.yml"] = _flow("Deploy", "workflow_dispatch:", "echo ship")
    assert _surfaces(files).deploy.workflow == f"{WF}/deploy.yml"


def test_ci_with_a_chained_notifier_is_not_a_deploy() -> None:
    files = {
        f"{WF}/ci.yml": _flow("CI", "push:", "make test"),
        f"{WF}/notify.yml": _flow("CI failure alert", "workflow_run:\n  workflows: [CI]"),
    }
    found = _surfaces(files).deploy
    assert found.status == "none" and "no workflow looks like a deploy" in found.origin


def test_a_reusable_deploy_is_not_the_one_dispatched() -> None:
    files = {
        f"{WF}/_deploy.yml": _flow("deploy", "workflow_call:", "./deploy.sh"),
        f"{WF}/deploy-prod.yml": _flow("Deploy prod", "workflow_dispatch:", "echo via _deploy"),
    }
    assert _surfaces(files).deploy.workflow == f"{WF}/deploy-prod.yml"


@pytest.mark.parametrize("file", ["deploy-production.yml", "production.yml"])
def test_a_deploy_workflow_yaml_refuses_is_still_found_by_its_name(file: str) -> None:
    broken = "name: Deploy Production\non:\n  push:\njobs:\n  x:\n    steps:\n  - bad: [\n"
    files = {f"{WF}/{file}": broken, f"{WF}/ci.yml": _flow("CI", "push:")}
    assert next(f for f in wf.parse_all(files) if f.file_name == file).error  # the gate says so
    assert _surfaces(files).deploy.workflow == f"{WF}/{file}"


def test_a_written_or_switched_off_deploy_section_is_taken_as_written() -> None:
    files = {f"{WF}/deploy.yml": _flow("Deploy", "push:", "./deploy.sh")}
    written = _settings({"deploy": {"workflow": ".github/workflows/other.yml"}})
    assert _surfaces(files, written).deploy.workflow == ".github/workflows/other.yml"
    assert _surfaces(files, written).deploy.status == "configured"
    off = _surfaces(files, _settings({"deploy": {"enabled": False}})).deploy
    assert (off.status, off.workflow, off.active) == ("off", "", False)
    assert _surfaces({"README.md": ""}).deploy.status == "none"


# -- the manifest and its required list ------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "scripts/migrations/autonomath_boot_manifest.txt",
        "db/migration/manifest.txt",
        "migrations/apply_manifest.txt",
        "ops/boot_manifest.txt",
    ],
)
def test_a_manifest_is_discovered_in_a_migrations_folder_or_by_name(path: str) -> None:
    found = _surfaces({path: "001_a.sql\n", "README.md": ""}).manifest
    assert (found.status, found.path) == ("discovered", path)
    assert found.entries_dir == path.rsplit("/", 1)[0]


@pytest.mark.parametrize(
    "path", ["docs/manifest.txt", "migrations/notes.txt", "migrations/manifest.json"]
)
def test_look_alikes_are_not_a_manifest(path: str) -> None:
    assert _surfaces({path: "x\n"}).manifest.status == "none"


def test_several_manifests_are_ambiguous_and_all_guarded() -> None:
    files = {"a/migrations/manifest.txt": "", "b/boot_manifest.txt": ""}
    found = _surfaces(files)
    assert found.manifest.status == "ambiguous" and not found.manifest.active
    assert set(found.manifest.candidates) == set(files) <= set(found.contended())
    rows = {r["surface"]: r for r in found.describe()}
    assert rows["required"]["status"] == "none"  # no manifest chosen: no list is checked


GUARD = 'AM_REQUIRED_MIGRATIONS = [\n    "001_a.sql",\n    "002_b.sql",\n]\n'


def test_the_required_list_is_found_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    guard = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n" + GUARD
    files = {"scripts/migrations/manifest.txt": "", "scripts/schema_guard.py": guard}
    found = _surfaces(files).manifest
    assert found.required is not None and found.required_status == "discovered"
    assert (found.required.file, found.required.name) == (
        "scripts/schema_guard.py",
        "AM_REQUIRED_MIGRATIONS",
    )
    assert "AM_REQUIRED_MIGRATIONS" in found.required_origin
    assert not marker.exists()


def test_two_required_lists_are_ambiguous_never_settled_silently() -> None:
    """A lane adding a look-alike list could otherwise move which one the gate proves."""
    files = {
        "scripts/migrations/manifest.txt": "",
        "aaa/schema_guard.py": GUARD.replace("AM_", "OTHER_"),
        "scripts/ops/check_required.py": GUARD,
    }
    m = _surfaces(files).manifest
    assert m.required is None and m.required_status == "ambiguous"
    assert [c.file for c in m.required_candidates] == [
        "scripts/ops/check_required.py",  # nearest the manifest first
        "aaa/schema_guard.py",
    ]


def test_a_required_list_is_found_even_without_a_manifest() -> None:
    m = _surfaces({"scripts/schema_guard.py": GUARD}).manifest
    assert m.status == "none" and m.required_status == "discovered"
    assert m.required is not None and m.required.file == "scripts/schema_guard.py"


@pytest.mark.parametrize(
    "guard",
    [
        "def f():\n    REQUIRED_MIGRATIONS = ['a.sql']\n",  # not at module level
        "REQUIRED_MIGRATIONS = compute()\n",  # not a literal
        "MIGRATIONS = ['a.sql']\n",  # not named as a required list
    ],
)
def test_no_required_list_is_offered_when_none_reads(guard: str) -> None:
    files = {"scripts/migrations/manifest.txt": "", "scripts/schema_guard.py": guard}
    found = _surfaces(files).manifest
    assert (found.required, found.required_status) == (None, "none")


def test_a_written_required_is_kept_and_an_empty_one_means_none() -> None:
    files = {"scripts/migrations/manifest.txt": "", "scripts/schema_guard.py": GUARD}
    section = {"path": "scripts/migrations/manifest.txt"}
    empty = _surfaces(files, _settings({"manifest": {**section, "required": ""}})).manifest
    assert (empty.status, empty.required_status, empty.required) == ("configured", "none", None)
    named = _surfaces(files, _settings({"manifest": {**section, "required": "req.txt"}}))
    assert named.manifest.required_status == "configured"
    assert str(named.manifest.required) == "req.txt"
    absent = _surfaces(files, _settings({"manifest": section})).manifest
    assert absent.required_status == "discovered"  # a written section still finds the list
    off = _surfaces(files, _settings({"manifest": {"enabled": False}})).manifest
    assert (off.status, off.path) == ("off", "")


# -- version files ---------------------------------------------------------------------------

PYPROJECT = '[project]\nname = "x"\nversion = "1.2.3"\n'
SERVER = '{"name": "x", "version": "1.2.3"}\n'


def test_pyproject_and_server_json_are_found_in_a_stable_order() -> None:
    found = _surfaces({"server.json": SERVER, "pyproject.toml": PYPROJECT, "src/a.py": ""})
    assert found.version.status == "discovered"
    assert found.version.files == ("pyproject.toml", "server.json")
    assert found.version.unreadable == ()
    assert found.version_files == ["pyproject.toml", "server.json"]


def test_package_json_alone_is_found() -> None:
    found = _surfaces({"package.json": '{\n  "name": "web",\n  "version": "0.1.0"\n}\n'})
    assert found.version.files == ("package.json",)


def test_a_file_without_a_readable_version_is_reported_with_its_reason() -> None:
    files = {"package.json": '{"name": "web", "private": true}\n', "server.json": SERVER}
    found = _surfaces(files).version
    assert found.files == ("server.json",)
    assert [f for f, _ in found.unreadable] == ["package.json"]
    assert 'no top-level "version"' in found.unreadable[0][1]
    row = next(r for r in _surfaces(files).describe() if r["surface"] == "version")
    assert row["unreadable"] == [{"file": "package.json", "why": found.unreadable[0][1]}]


def test_no_readable_version_file_is_none_with_the_reasons() -> None:
    found = _surfaces({"package.json": '{"name": "web"}\n'}).version
    assert (found.status, found.files) == ("none", ())
    assert found.unreadable and found.origin == "no file holds a version lanes reads"
    assert _surfaces({"README.md": ""}).version.origin == "no version file was found"


def test_a_package_init_without_version_is_not_a_version_file() -> None:
    found = _surfaces({"pkg/__init__.py": '"""A package."""\n', "server.json": SERVER})
    assert found.version.files == ("server.json",) and found.version.unreadable == ()


# Versions real projects keep elsewhere: each must be found, each kind where it is written.
@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("Cargo.toml", '[package]\nname = "x"\nversion = "1.2.3"\nedition = "2021"\n'),
        ("setup.cfg", "[metadata]\nname = x\nversion = 1.2.3\n"),
        ("build.gradle", 'plugins {\n    id "java"\n}\n\nversion = "1.2.3"\n'),
        ("build.gradle.kts", 'plugins {\n    java\n}\n\nversion = "1.2.3"\n'),
        ("pkg/__init__.py", '"""x."""\n\n__version__ = "1.2.3"\n'),
        ("src/pkg/__init__.py", '__version__ = "1.2.3"\n'),
        ("pkg/_version.py", '__version__ = "1.2.3"\n'),
    ],
)
def test_other_version_files_are_found(path: str, text: str) -> None:
    found = _surfaces({path: text, "README.md": ""}).version
    assert (found.status, found.files, found.unreadable) == ("discovered", (path,), ())


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("pyproject.toml", '[project]\nname = "x"\ndynamic = ["version"]\n'),
        ("Cargo.toml", '[package]\nname = "x"\nversion.workspace = true\n'),
        ("setup.cfg", "[metadata]\nname = x\nversion = attr: pkg.__version__\n"),
        ("build.gradle", "version = computeVersion()\n"),
        ("pkg/__init__.py", "__version__ = get_version()\n"),
    ],
)
def test_a_version_not_written_as_a_string_is_unreadable(path: str, text: str) -> None:
    found = _surfaces({path: text, "server.json": SERVER}).version
    assert found.files == ("server.json",)
    assert [f for f, _ in found.unreadable] == [path]
    assert "cannot read the version" not in found.unreadable[0][1]  # the reason, not a repeat


def test_a_written_version_section_is_taken_as_written() -> None:
    files = {"pyproject.toml": PYPROJECT, "server.json": SERVER}
    only = _surfaces(files, _settings({"version": {"files": ["server.json"]}})).version
    assert (only.status, only.files) == ("configured", ("server.json",))
    off = _surfaces(files, _settings({"version": {"enabled": False}}))
    assert (off.version.status, off.version_files) == ("off", [])


def test_version_candidates_lists_top_files_then_packages() -> None:
    paths = ["z/__init__.py", "src/a/_version.py", "package.json", "pyproject.toml", "a/b/c.py"]
    assert discover.version_candidates(paths) == [
        "pyproject.toml",
        "package.json",
        "src/a/_version.py",
        "z/__init__.py",
    ]


# -- where discovery looks -------------------------------------------------------------------


@pytest.fixture
def discovered_repo(seed_repo: Path) -> Path:
    """The seed's repository with its sections removed, committed on main."""
    pyproject = seed_repo / "pyproject.toml"
    text = pyproject.read_text()
    commit_file(seed_repo, "pyproject.toml", text.split("[tool.lanes]")[0], "no sections")
    return seed_repo


def test_commands_discover_on_mains_tree_and_init_on_the_checkout(
    discovered_repo: Path,
) -> None:
    workflows = discovered_repo / ".github" / "workflows"
    (workflows / "deploy-prod.yml").write_text((workflows / "deploy.yml").read_text())  # on disk
    cfg = config.load(discovered_repo)
    on_main = cfg.surfaces
    head = git(discovered_repo, "rev-parse", "main")
    assert on_main.source == f"main {head[:12]}"
    assert (on_main.deploy.status, on_main.deploy.workflow) == (
        "discovered",
        ".github/workflows/deploy.yml",
    )
    assert on_main.manifest.path == "scripts/migrations/autonomath_boot_manifest.txt"
    assert str(on_main.manifest.required) == "scripts/schema_guard.py:AM_REQUIRED_MIGRATIONS"
    assert on_main.version.files == ("pyproject.toml", "server.json")
    on_disk = discover.resolve_on_disk(cfg)
    assert on_disk.source == "the main checkout" and on_disk.deploy.status == "ambiguous"


def test_a_main_without_commits_is_read_from_the_checkout(tmp_path: Path) -> None:
    repo = tmp_path / "fresh"
    repo.mkdir()
    git(repo, "init", "-q", "--initial-branch=main")
    (repo / "package.json").write_text('{"version": "1.0.0"}\n')
    found = config.load(repo).surfaces
    assert found.source.startswith("the main checkout") and found.version.files == ("package.json",)
