"""The operator's side: the serial integration pass and the pre-deploy gate."""

from __future__ import annotations

from lanes.failpoint import failpoint

__all__ = ["failpoint"]
