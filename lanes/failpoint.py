"""Testing aid, the one home of it: `LANES_FAILPOINT=<step>` makes the command SIGKILL
itself at that step, so the tests kill it at every line that writes, not only where a timer
lands; `LANES_FAILPOINT=<step>:wait:<file>` writes `<file>.reached` and waits (a minute at
most) until `<file>` exists, so a test can cut the network at exactly that step.
The steps are listed in docs/integrator.md ("Crash safety") and docs/remote.md."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

ENV = "LANES_FAILPOINT"


def failpoint(name: str) -> None:
    want = os.environ.get(ENV, "")
    if not want:
        return
    point, _, rest = want.partition(":")
    if point != name:
        return
    if not rest.startswith("wait:"):
        os.kill(os.getpid(), signal.SIGKILL)
    gate = Path(rest[len("wait:") :])
    gate.with_name(gate.name + ".reached").write_text(f"{os.getpid()}\n", encoding="utf-8")
    deadline = time.monotonic() + 60
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
