"""``headwater serve``: the HTTP service (FastAPI on uvicorn)."""

from __future__ import annotations

from typing import Annotated

import typer

from headwater.cli.app import ConfigOpt, app, console, handle_errors, open_platform

__all__ = ["serve"]


@app.command()
@handle_errors
def serve(
    config: ConfigOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    rate: Annotated[float, typer.Option("--rate", help="Requests/s each principal may sustain.")] = 50.0,
    burst: Annotated[int, typer.Option("--burst", help="Requests a principal may send at once.")] = 100,
    max_concurrent: Annotated[int, typer.Option("--max-concurrent", help="Requests in flight per principal.")] = 16,
    max_body_mb: Annotated[float, typer.Option("--max-body-mb", help="Largest request body, in MiB.")] = 16.0,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
) -> None:
    """Serve the platform over HTTP: governed queries, datasets, catalog, policies, events, audit,
    lineage, SLOs and the Confluent-compatible schema registry."""
    import uvicorn
    from pydantic import ValidationError

    from headwater.errors import InvalidInput
    from headwater.service import ServiceConfig, create_app

    try:
        cfg = ServiceConfig(rate_per_s=rate, rate_burst=burst, max_concurrent=max_concurrent,
                            max_body_bytes=int(max_body_mb * 1024 * 1024))
    except ValidationError as err:
        first = err.errors()[0]
        raise InvalidInput(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    with open_platform(config) as platform:
        console.print(f"headwater serving {platform.dir} on http://{host}:{port} "
                      f"(OpenAPI at /docs; Ctrl-C to stop)")
        uvicorn.run(create_app(platform, config=cfg), host=host, port=port, log_level=log_level,
                    proxy_headers=True, server_header=False)
