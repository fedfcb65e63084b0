"""``headwater events``, ``headwater schemas`` and ``headwater dlq`` commands."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from headwater.cli._output import json_default
from headwater.cli.app import ConfigOpt, app, console, err_console, handle_errors, open_platform
from headwater.errors import InvalidInput

__all__ = ["dlq_app", "events_app", "schemas_app"]

events_app = typer.Typer(help="The event bus: topics, publish, tail.", no_args_is_help=True)
schemas_app = typer.Typer(help="The schema registry: subjects, versions, compatibility.", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead letters: list, show, replay.", no_args_is_help=True)
app.add_typer(events_app, name="events")
app.add_typer(schemas_app, name="schemas")
app.add_typer(dlq_app, name="dlq")


def _actor() -> str:
    return os.environ.get("USER") or "local"


@events_app.command("topics")
@handle_errors
def events_topics(config: ConfigOpt = None) -> None:
    """List topics with their partitions."""
    with open_platform(config) as platform:
        t = Table(header_style="bold cyan")
        t.add_column("topic")
        t.add_column("partitions")
        for info in platform.bus.topics():
            t.add_row(escape(info.name), str(info.partitions))
        console.print(t)


@events_app.command("publish")
@handle_errors
def events_publish(
    topic: Annotated[str, typer.Argument(help="Topic to publish to.")],
    data: Annotated[str, typer.Option("--data", help="JSON payload.")],
    type_: Annotated[str, typer.Option("--type", help="CloudEvents type, e.g. order.created.")],
    config: ConfigOpt = None,
    key: Annotated[str | None, typer.Option("--key", help="Partition key.")] = None,
    subject: Annotated[str | None, typer.Option("--subject")] = None,
    source: Annotated[str, typer.Option("--source")] = "/headwater/cli",
) -> None:
    """Validate a payload against the topic's registered schema and publish it."""
    try:
        payload = json.loads(data)
    except ValueError as err:
        raise InvalidInput(f"--data is not JSON: {err.msg} at position {err.pos}") from None
    with open_platform(config) as platform:
        res = platform.producer(source=source).send(topic, payload, type=type_, subject=subject, key=key)
        console.print(f"published to {topic} (partition {getattr(res, 'partition', 0)}, "
                      f"offset {getattr(res, 'offset', '?')})")


@events_app.command("tail")
@handle_errors
def events_tail(
    topic: Annotated[str, typer.Argument()],
    config: ConfigOpt = None,
    group: Annotated[str, typer.Option("--group", help="Consumer group (offsets are committed).")] = "cli-tail",
    max_events: Annotated[int, typer.Option("--max", help="Stop after this many events.")] = 20,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for events.")] = 2.0,
) -> None:
    """Print events from a topic as JSON lines (acknowledging them for the group)."""
    with open_platform(config) as platform:
        consumer = platform.bus.subscribe(topic, group)
        seen = 0
        try:
            while seen < max_events:
                batch = consumer.fetch(min(100, max_events - seen), timeout=timeout)
                if not batch:
                    break
                for msg in batch:
                    try:
                        doc = msg.event().to_dict() if hasattr(msg.event(), "to_dict") else msg.event().__dict__
                    except Exception as err:  # noqa: BLE001 - show undecodable messages too
                        doc = {"undecodable": type(err).__name__}
                    sys.stdout.write(json.dumps(doc, default=json_default) + "\n")
                consumer.ack_many(batch)
                seen += len(batch)
        finally:
            consumer.close()


@schemas_app.command("ls")
@handle_errors
def schemas_ls(config: ConfigOpt = None) -> None:
    """Subjects and their versions."""
    with open_platform(config) as platform:
        reg = platform.schema_registry
        t = Table(header_style="bold cyan")
        for col in ("subject", "versions", "latest id", "type", "compatibility"):
            t.add_column(col)
        for subject in reg.subjects():
            latest = reg.get_version(subject, "latest")
            t.add_row(escape(subject), ", ".join(map(str, reg.versions(subject))), str(latest.id),
                      str(latest.schema_type.value if hasattr(latest.schema_type, "value") else latest.schema_type),
                      str(reg.get_config(subject)))
        console.print(t)


@schemas_app.command("show")
@handle_errors
def schemas_show(
    subject: Annotated[str, typer.Argument()],
    config: ConfigOpt = None,
    version: Annotated[str, typer.Option("--version", help="A version number or latest.")] = "latest",
) -> None:
    """Print one schema version."""
    with open_platform(config) as platform:
        v = platform.schema_registry.get_version(subject, int(version) if version.isdigit() else version)
        sys.stdout.write(json.dumps({"subject": v.subject, "version": v.version, "id": v.id,
                                     "schemaType": str(getattr(v.schema_type, "value", v.schema_type)),
                                     "schema": json.loads(v.schema)}, indent=2) + "\n")


def _schema_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as err:
        raise InvalidInput(f"cannot read {path}: {err.strerror}") from None


@schemas_app.command("register")
@handle_errors
def schemas_register(
    subject: Annotated[str, typer.Argument()],
    path: Annotated[Path, typer.Argument(help="Schema file (JSON Schema or Avro).")],
    config: ConfigOpt = None,
    schema_type: Annotated[str, typer.Option("--type", help="JSON or AVRO.")] = "JSON",
) -> None:
    """Register a new version (rejected when incompatible under the subject's rule)."""
    with open_platform(config) as platform:
        schema_id = platform.register_schema(subject, _schema_text(path), schema_type.upper(), actor=_actor())
        console.print(f"{subject}: schema id {schema_id}")


@schemas_app.command("check")
@handle_errors
def schemas_check(
    subject: Annotated[str, typer.Argument()],
    path: Annotated[Path, typer.Argument()],
    config: ConfigOpt = None,
    schema_type: Annotated[str, typer.Option("--type", help="JSON or AVRO.")] = "JSON",
) -> None:
    """Would this schema be accepted? Lists every incompatibility."""
    with open_platform(config) as platform:
        res = platform.schema_registry.check(subject, _schema_text(path), schema_type.upper())
        if res.compatible:
            console.print(f"[green]compatible[/green] with {subject}")
            return
        for msg in res.messages:
            err_console.print(f"- {escape(msg)}", highlight=False)
        raise typer.Exit(1)


@dlq_app.command("ls")
@handle_errors
def dlq_ls(
    config: ConfigOpt = None,
    topic: Annotated[str | None, typer.Option("--topic")] = None,
    group: Annotated[str | None, typer.Option("--group")] = None,
    stage: Annotated[str | None, typer.Option("--stage", help="deserialise, validate, route, handle, sink.")] = None,
    status: Annotated[str, typer.Option("--status", help="dead, replayed, discarded or all.")] = "dead",
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    limit: Annotated[int, typer.Option("--limit")] = 100,
) -> None:
    """List dead letters with their reasons."""
    with open_platform(config) as platform:
        letters = platform.dead_letters.list(status=None if status == "all" else status, topic=topic,
                                             consumer_group=group, stage=stage, limit=limit)
        if fmt == "json":
            for d in letters:
                sys.stdout.write(json.dumps(d.to_dict(), default=json_default) + "\n")
            return
        t = Table(header_style="bold cyan")
        for col in ("id", "topic", "group", "stage", "error", "attempts", "replays", "status"):
            t.add_column(col, overflow="fold")
        for d in letters:
            r = d.reason
            t.add_row(str(d.id), escape(r.topic), escape(r.consumer_group), r.stage.value,
                      escape(f"{r.error_class}: {r.error_message}"[:100]), str(r.attempts), str(d.replay_count),
                      d.status)
        console.print(t)


@dlq_app.command("show")
@handle_errors
def dlq_show(dead_letter_id: Annotated[int, typer.Argument()], config: ConfigOpt = None) -> None:
    """One dead letter: reason and the original event."""
    with open_platform(config) as platform:
        sys.stdout.write(json.dumps(platform.dead_letters.get(dead_letter_id).to_dict(), default=json_default,
                                    indent=2) + "\n")


@dlq_app.command("replay")
@handle_errors
def dlq_replay(
    config: ConfigOpt = None,
    ids: Annotated[list[int] | None, typer.Option("--id", help="Only these dead letters.")] = None,
    topic: Annotated[str | None, typer.Option("--topic")] = None,
    group: Annotated[str | None, typer.Option("--group")] = None,
    to_topic: Annotated[str | None, typer.Option("--to-topic", help="Publish somewhere else instead.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
    rate: Annotated[float | None, typer.Option("--rate", help="At most this many per second.")] = None,
    max_replays: Annotated[int, typer.Option("--max-replays", help="Loop guard.")] = 3,
    force: Annotated[bool, typer.Option("--force", help="Ignore the loop guard.")] = False,
) -> None:
    """Re-publish dead letters to their topic (audited)."""
    with open_platform(config) as platform:
        report = platform.replay_dead_letters(
            actor=_actor(), to_topic=to_topic, dry_run=dry_run, rate=rate, max_replays=max_replays, force=force,
            ids=ids or None, topic=topic, consumer_group=group)
        verb = "would replay" if dry_run else "replayed"
        console.print(f"{verb} {report.replayed}, refused by the loop guard {report.refused}")
