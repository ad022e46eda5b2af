"""A scratch repository shaped like the seed's (the post-mortem's jpcite-api).

Used by `lanes demo` and by the tests: migrations with a boot manifest and a schema
guard's required list, pyproject.toml and server.json at one version, and a commented
deploy workflow with a verify workflow chained off it.
"""

from __future__ import annotations

import json
from pathlib import Path

from lanes import git

REQUIRED = [
    "049_provenance_strengthen.sql",
    "075_am_amendment_diff.sql",
    "090_law_article_body_en.sql",
    "115_source_manifest_view.sql",
    "121_jpi_programs_subsidy_rate_text_column.sql",
]
MANIFEST = "scripts/migrations/autonomath_boot_manifest.txt"
VERSION = "0.3.5"

MANIFEST_TEXT = """\
# autonomath boot manifest: migrations entrypoint.sh may apply at boot.
# Wave 40 (PR #75): authorize the five migrations schema_guard requires on a fresh volume.
# Keep one file name per line, in migration order.
{entries}
"""

SCHEMA_GUARD = '''\
"""Refuses to boot when a required migration is missing from schema_migrations."""

AM_REQUIRED_MIGRATIONS = [
{items}
]


def check(applied):
    missing = sorted(set(AM_REQUIRED_MIGRATIONS) - set(applied))
    if missing:
        raise SystemExit(f"required migrations missing from schema_migrations: {{missing}}")
'''

PYPROJECT = """\
[project]
name = "jpcite-api"
version = "{version}"  # keep in step with server.json
description = "jpcite API (version {version} of the seed)"

[tool.lanes]
project = "jpcite"
worktree_root = "{worktree_root}"
stale_after = "30m"
test_command = "{test_command}"

[tool.lanes.manifest]
path = "{manifest}"
entries_dir = "scripts/migrations"
required = "scripts/schema_guard.py:AM_REQUIRED_MIGRATIONS"

[tool.lanes.version]
files = ["pyproject.toml", "server.json"]

[tool.lanes.deploy]
workflow = ".github/workflows/deploy.yml"
"""

DEPLOY = """\
# Deploy the API to Fly. Strategy F: dispatch this by hand when the remote builder stalls.
name: deploy

on:
  push:
    branches: [main]
  workflow_dispatch: {}

concurrency:
  group: deploy   # never two deploys at once
  cancel-in-progress: false

jobs:
  deploy:
    runs-on: ubuntu-latest
    env:
      FLY_APP: autonomath-api   # the production app
    steps:
      - uses: actions/checkout@v4
      - name: Verify boot manifest
        run: python scripts/ops/pre_deploy_manifest_verify.py
      - name: Deploy
        run: flyctl deploy --remote-only
"""

VERIFY = """\
# Post-deploy verification, chained off the deploy workflow.
name: verify

on:
  workflow_run:
    workflows: [deploy]
    types: [completed]
  workflow_dispatch: {}

jobs:
  smoke:
    runs-on: ubuntu-latest
    steps:
      - name: healthz
        run: curl -fsS https://api.jpcite.com/v1/healthz
"""


def write_seed_files(root: Path, worktree_root: Path, test_command: str = "") -> None:
    """Write the seed's files (no git) under `root`."""
    migrations = root / "scripts" / "migrations"
    migrations.mkdir(parents=True, exist_ok=True)
    for name in [*REQUIRED, "130_programs_index.sql"]:
        (migrations / name).write_text(f"-- {name}\nSELECT 1;\n", encoding="utf-8")
    (root / MANIFEST).write_text(
        MANIFEST_TEXT.format(entries="\n".join(REQUIRED)), encoding="utf-8"
    )
    (root / "scripts" / "schema_guard.py").write_text(
        SCHEMA_GUARD.format(items="\n".join(f'    "{n}",' for n in REQUIRED)), encoding="utf-8"
    )
    (root / "pyproject.toml").write_text(
        PYPROJECT.format(
            version=VERSION,
            worktree_root=worktree_root.as_posix(),
            test_command=test_command,
            manifest=MANIFEST,
        ),
        encoding="utf-8",
    )
    server = {"name": "jpcite", "version": VERSION, "description": "MCP server manifest"}
    (root / "server.json").write_text(json.dumps(server, indent=2) + "\n", encoding="utf-8")
    workflows = root / ".github" / "workflows"
    workflows.mkdir(parents=True, exist_ok=True)
    (workflows / "deploy.yml").write_text(DEPLOY, encoding="utf-8")
    (workflows / "verify.yml").write_text(VERIFY, encoding="utf-8")
    (root / "src").mkdir(exist_ok=True)
    (root / "src" / "app.py").write_text('"""The API."""\n', encoding="utf-8")
    (root / ".gitignore").write_text("/tools/offline/_inbox/\n", encoding="utf-8")


def make_seed_repo(root: Path, worktree_root: Path, test_command: str = "") -> Path:
    """A real git repository on branch main with the seed's files in one commit."""
    root.mkdir(parents=True, exist_ok=True)
    worktree_root.mkdir(parents=True, exist_ok=True)
    git.run(["init", "--quiet", "--initial-branch=main"], root)
    git.run(["config", "user.name", "lanes demo"], root)
    git.run(["config", "user.email", "demo@lanes.invalid"], root)
    git.run(["config", "commit.gpgsign", "false"], root)
    write_seed_files(root, worktree_root, test_command)
    git.run(["add", "--all"], root)
    git.run(["commit", "--quiet", "-m", "seed: jpcite-api at 0.3.5"], root)
    return root
