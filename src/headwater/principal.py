"""Who is asking: a user or service with roles and attributes.

Until the governance layer lands a principal is mostly its name; ``roles`` and ``attributes``
(team, region, countries, tenant, ...) are what row filters and grants will key on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Principal"]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    name: str
    roles: tuple[str, ...] = ()
    attributes: Mapping[str, Any] = field(default_factory=dict)
    kind: str = "user"
    """``user`` or ``service``."""

    @classmethod
    def of(cls, who: Principal | str) -> Principal:
        """Accept a principal or a bare name."""
        return who if isinstance(who, Principal) else cls(name=str(who))

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            from headwater.errors import InvalidInput

            raise InvalidInput("a principal needs a non-empty name")
