"""The HTTP service: every platform capability over a governed, documented API.

``create_app(platform)`` builds the FastAPI application; ``headwater serve`` runs it on uvicorn.
See ``docs/service.md``.
"""

from headwater.service.app import create_app
from headwater.service.config import ServiceConfig

__all__ = ["ServiceConfig", "create_app"]
