"""What every surface's fragment model shares: data only, validated, immutable."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError


class FragmentModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def first_error(exc: ValidationError) -> str:
    """The first problem pydantic found, with where it is (`entries.0: ...`)."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])
