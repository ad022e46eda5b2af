"""The operator's side: the serial integration pass and the pre-deploy gate."""

from __future__ import annotations

import os
import signal


def failpoint(name: str) -> None:
    """Testing aid: LANES_FAILPOINT=<name> makes the pass SIGKILL itself right here, so
    the tests can kill it at each step that writes, not only where a timer lands."""
    if os.environ.get("LANES_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
