"""``headwater events``, ``headwater schemas`` and ``headwater dlq`` commands."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from headwater.cli._output import json_default
from headwater.cli.app import ConfigOpt, app, console, err_console, handle_errors, open_platform
from headwater.errors import InvalidInput
from headwater.principal import Principal

__all__ = ["dlq_app", "events_app", "schemas_app"]

events_app = typer.Typer(help="The event bus: topics, publish, tail.", no_args_is_help=True)
schemas_app = typer.Typer(help="The schema registry: subjects, versions, compatibility.", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead letters: list, show, replay.", no_args_is_help=True)
app.add_typer(events_app, name="events")
app.add_typer(schemas_app, name="schemas")
app.add_typer(dlq_app, name="dlq")


AsOpt = Annotated[str | None, typer.Option("--as", help="Principal to act as (trusted local use; default: the OS user).")]
TokenOpt = Annotated[str | None, typer.Option("--token", envvar="HEADWATER_TOKEN",
                                              help="API key or JWT to authenticate with.")]


def _who(platform: Any, as_: str | None, token: str | None) -> Principal:
    """The principal the command runs as: ``--token`` authenticated, else ``--as``, else the OS
    user (as ``headwater sql`` and ``platform.session()``)."""
    if token:
        if as_:
            raise InvalidInput("pass either --as or --token, not both")
        return platform.authenticate(token)  # type: ignore[no-any-return]
    return Principal.of(as_ or os.environ.get("USER") or "local")


@events_app.command("topics")
@handle_errors
def events_topics(config: ConfigOpt = None, as_: AsOpt = None, token: TokenOpt = None) -> None:
    """List the topics you have a grant on, with their partitions."""
    with open_platform(config) as platform:
        who = _who(platform, as_, token)
        t = Table(header_style="bold cyan")
        t.add_column("topic")
        t.add_column("partitions")
        for info in platform.event_governance.topics(who):
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
    as_: AsOpt = None,
    token: TokenOpt = None,
) -> None:
    """Validate a payload against the topic's registered schema and publish it (needs ``publish``
    on the topic; CDC topics are the connectors' only; PII fields are sealed)."""
    try:
        payload = json.loads(data)
    except ValueError as err:
        raise InvalidInput(f"--data is not JSON: {err.msg} at position {err.pos}") from None
    with open_platform(config) as platform:
        who = _who(platform, as_, token)
        res = platform.producer(source=source, principal=who).send(topic, payload, type=type_, subject=subject,
                                                                   key=key)
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
    as_: AsOpt = None,
    token: TokenOpt = None,
) -> None:
    """Print events from a topic as JSON lines (acknowledging them for the group), as you may see
    them: needs ``consume`` on the topic; sealed PII opened, and for a topic derived from a
    dataset (CDC) that dataset's column rules and row filters applied."""
    from headwater.events.bus.errors import InvalidEvent

    with open_platform(config) as platform:
        consumer = platform.consumer(topic, group, principal=_who(platform, as_, token))
        seen = 0
        idle = 0
        try:
            while seen < max_events and idle < 2:
                batch = consumer.fetch(min(100, max_events - seen), timeout=timeout)
                if not batch:
                    idle += 1  # a fetch may return nothing when every event was hidden
                    continue
                idle = 0
                for msg in batch:
                    try:
                        doc = msg.event().to_dict()
                    except InvalidEvent as err:  # show undecodable messages too (never their bytes)
                        doc = {"undecodable": type(err).__name__, "offset": msg.offset}
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
    as_: AsOpt = None,
    token: TokenOpt = None,
) -> None:
    """Register a new version (rejected when incompatible under the subject's rule; needs
    ``register`` on the subject's topic, and ``declassify`` to weaken an x-pii classification)."""
    with open_platform(config) as platform:
        who = _who(platform, as_, token)
        schema_id = platform.register_schema(subject, _schema_text(path), schema_type.upper(), principal=who)
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
    as_: AsOpt = None,
    token: TokenOpt = None,
) -> None:
    """List dead letters with their reasons (of the topics you administer)."""
    with open_platform(config) as platform:
        store = platform.event_governance.dead_letters(_who(platform, as_, token))
        letters = store.list(status=None if status == "all" else status, topic=topic,
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
def dlq_show(dead_letter_id: Annotated[int, typer.Argument()], config: ConfigOpt = None, as_: AsOpt = None,
             token: TokenOpt = None) -> None:
    """One dead letter: reason and the original event as stored (needs ``admin`` on its topic;
    sealed PII stays sealed)."""
    with open_platform(config) as platform:
        store = platform.event_governance.dead_letters(_who(platform, as_, token))
        sys.stdout.write(json.dumps(store.get(dead_letter_id).to_dict(), default=json_default, indent=2) + "\n")


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
    as_: AsOpt = None,
    token: TokenOpt = None,
) -> None:
    """Re-publish dead letters to their topic (those of topics you administer; audited)."""
    with open_platform(config) as platform:
        who = _who(platform, as_, token)
        report = platform.replay_dead_letters(
            actor=who.name, principal=who, to_topic=to_topic, dry_run=dry_run, rate=rate, max_replays=max_replays, force=force,
            ids=ids or None, topic=topic, consumer_group=group)
        verb = "would replay" if dry_run else "replayed"
        console.print(f"{verb} {report.replayed}, refused by the loop guard {report.refused}")
