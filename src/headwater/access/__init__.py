"""Governed data access: sessions, planning, federation and keyset pagination."""

from headwater.access.session import Result, Session

__all__ = ["Result", "Session"]
