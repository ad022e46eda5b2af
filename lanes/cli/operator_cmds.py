"""The operator's commands: init, integrate, verify, demo. Each lives in its own module."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from lanes.cli import demo_cmd, init_cmd, integrate_cmd, verify_cmd

    init_cmd.register(app)
    integrate_cmd.register(app)
    verify_cmd.register(app)
    demo_cmd.register(app)
