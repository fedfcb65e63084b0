"""``headwater pii scan|apply``: propose PII tags from sampled values and column names."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from headwater.cli.app import ConfigOpt, app, console, handle_errors, open_platform

__all__ = ["pii_app"]

pii_app = typer.Typer(help="PII classification: scan datasets, apply proposed tags.", no_args_is_help=True)
app.add_typer(pii_app, name="pii")

AsOpt = Annotated[str | None, typer.Option("--as", help="Principal that reads raw values (masks apply).")]


def _reports(platform: Any, dataset: str | None, sample: int, who: str | None) -> list[Any]:
    from headwater.pii import scan_dataset

    session = platform.session(who)
    names = [dataset] if dataset else [d.name for d in platform.catalog.list()]
    return [scan_dataset(session, name, sample=sample) for name in names]


@pii_app.command("scan")
@handle_errors
def pii_scan(
    dataset: Annotated[str | None, typer.Argument(help="<store>.<table> (default: every dataset).")] = None,
    config: ConfigOpt = None,
    sample: Annotated[int, typer.Option("--sample", help="Rows sampled per dataset.")] = 10_000,
    as_: AsOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """Propose tags with confidence and match counts (never example values)."""
    with open_platform(config) as platform:
        reports = _reports(platform, dataset, sample, as_)
        if fmt == "json":
            sys.stdout.write(json.dumps([r.to_dict() for r in reports], default=str) + "\n")
            return
        t = Table(header_style="bold cyan", title="PII proposals")
        for col in ("dataset", "column", "tag", "confidence", "matches", "sampled", "evidence"):
            t.add_column(col)
        for r in reports:
            for column, p in r.proposals:
                t.add_row(escape(r.dataset), escape(column), p.tag, f"{p.confidence:.2f}",
                          f"{'~' if p.estimated else ''}{p.matches:,}", f"{p.sampled:,}", p.evidence)
            for column in r.unreadable:
                t.add_row(escape(r.dataset), escape(column), "[red]unreadable[/red]", "", "", "", "")
        console.print(t)


@pii_app.command("topic")
@handle_errors
def pii_topic(
    topic: Annotated[str, typer.Argument(help="Topic whose event payloads to sample.")],
    config: ConfigOpt = None,
    sample: Annotated[int, typer.Option("--sample", help="Events read (a throw-away consumer group).")] = 500,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """Check event payloads for PII their schema does not classify (x-pii)."""
    from headwater.pii import scan_topic

    with open_platform(config) as platform:
        report = scan_topic(platform, topic, sample=sample)
        if fmt == "json":
            sys.stdout.write(json.dumps(report.to_dict(), default=str) + "\n")
            return
        t = Table(header_style="bold cyan", title=f"{topic}: {report.events_sampled} event(s) sampled")
        for col in ("field", "tag", "confidence", "matches", "schema x-pii"):
            t.add_column(col)
        for path, p in report.fields.proposals:
            declared = report.classified.get(path)
            t.add_row(escape(path), p.tag, f"{p.confidence:.2f}", f"{p.matches:,}",
                      escape(declared) if declared else "[red]unclassified[/red]")
        console.print(t)
        if report.unclassified:
            raise typer.Exit(1)


@pii_app.command("apply")
@handle_errors
def pii_apply(
    dataset: Annotated[str | None, typer.Argument(help="<store>.<table> (default: every dataset).")] = None,
    config: ConfigOpt = None,
    sample: Annotated[int, typer.Option("--sample")] = 10_000,
    min_confidence: Annotated[float, typer.Option("--min-confidence")] = 0.8,
    as_: AsOpt = None,
) -> None:
    """Scan, then add the confident proposals to the catalog, where masking policies use them."""
    from headwater.pii import apply_proposals

    with open_platform(config) as platform:
        for report in _reports(platform, dataset, sample, as_):
            applied = apply_proposals(platform.catalog, report, min_confidence=min_confidence)
            for column, tags in applied.items():
                console.print(f"{report.dataset}.{column}: {', '.join(tags)}")
