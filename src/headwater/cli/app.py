"""``headwater`` commands. Errors print one line to stderr and exit non-zero, no traceback."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from headwater.errors import HeadwaterError, InvalidInput

__all__ = ["app", "main"]

app = typer.Typer(
    name="headwater",
    help="Headwater: one governed interface to every data store.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
catalog_app = typer.Typer(help="Browse and sync the catalog.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
lineage_app = typer.Typer(help="Lineage: upstream, downstream and impact, to the column.", no_args_is_help=True)
app.add_typer(lineage_app, name="lineage")
audit_app = typer.Typer(help="The tamper-evident audit log: list, export, verify.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
policy_app = typer.Typer(help="Policy as code: validate, apply, diff, show.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", envvar="HEADWATER_CONFIG", help="headwater.yaml to use (default: embedded ./.headwater)."),
]


def handle_errors(fn: F) -> F:
    """Turn Headwater errors into one stderr line and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HeadwaterError as err:
            err_console.print(f"[bold red]error[/bold red] ({type(err).__name__}): {escape(str(err))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def open_platform(config: Path | None) -> Any:
    """The platform named by --config / HEADWATER_CONFIG, or the embedded one."""
    from headwater.platform import Platform

    return Platform.open(str(config) if config else None)


@app.command()
@handle_errors
def init(
    directory: Annotated[Path, typer.Option("--dir", help="Where to create headwater.yaml.")] = Path("."),
) -> None:
    """Write a headwater.yaml for an embedded platform (edit it to use Postgres, Snowflake, S3)."""
    from headwater.config import Config

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "headwater.yaml"
    if path.exists():
        raise InvalidInput(f"{path} already exists; remove it or pick another --dir")
    cfg = Config.embedded(".headwater")
    path.write_text(cfg.to_yaml_with_secrets())
    console.print(f"wrote {path}; try: HEADWATER_CONFIG={path} headwater catalog ls")


@app.command()
@handle_errors
def demo(
    directory: Annotated[Path, typer.Option("--dir", help="Where to build the demo platform.")] = Path("headwater-demo"),
    customers: Annotated[int, typer.Option(help="How many customers to generate.")] = 20_000,
    orders: Annotated[int, typer.Option(help="How many orders to generate.")] = 200_000,
) -> None:
    """Build a demo platform with realistic data and show every feature working."""
    from headwater.demo import run_demo

    run_demo(directory, console=console, n_customers=customers, n_orders=orders)


@app.command("sql")
@handle_errors
def sql_cmd(
    query: Annotated[str, typer.Argument(help="One SELECT; datasets are named <store>.<table>.")],
    config: ConfigOpt = None,
    as_: Annotated[str | None, typer.Option("--as", help="Principal to run as (trusted local use).")] = None,
    token: Annotated[str | None, typer.Option("--token", envvar="HEADWATER_TOKEN", help="API key or JWT to authenticate with.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, json, csv or parquet.")] = "table",
    page_size: Annotated[int | None, typer.Option("--page-size", help="Rows per page (keyset paging).")] = None,
    cursor: Annotated[str | None, typer.Option("--cursor", help="next_cursor of the previous page.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="Positional parameter (JSON or text); repeat.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to a file instead of stdout.")] = None,
) -> None:
    """Run a query and print the result."""
    from headwater.cli._output import write_result

    if fmt not in {"table", "json", "csv", "parquet"}:
        raise InvalidInput(f"unknown format {fmt!r}; use table, json, csv or parquet")
    params = [_parse_param(p) for p in param or []]
    with open_platform(config) as platform:
        session = platform.session(token=token) if token else platform.session(as_)
        result = session.sql(query, params or None, page_size=page_size, cursor=cursor)
        write_result(result, fmt, console=console if fmt == "table" else err_console, output=output,
                     paged=page_size is not None or cursor is not None)


@app.command("explain")
@handle_errors
def explain_cmd(
    query: Annotated[str, typer.Argument(help="One SELECT; datasets are named <store>.<table>.")],
    config: ConfigOpt = None,
    as_: Annotated[str | None, typer.Option("--as", help="Principal to explain as (trusted local use).")] = None,
    token: Annotated[str | None, typer.Option("--token", envvar="HEADWATER_TOKEN", help="API key or JWT to authenticate with.")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="Positional parameter (JSON or text); repeat.")] = None,
) -> None:
    """Show where and how a query would run, governed and audited like the query itself."""
    params = [_parse_param(p) for p in param or []]
    with open_platform(config) as platform:
        session = platform.session(token=token) if token else platform.session(as_)
        sys.stdout.write(session.explain(query, params or None) + "\n")


def _parse_param(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


@catalog_app.command("ls")
@handle_errors
def catalog_ls(
    pattern: Annotated[str, typer.Argument(help="Glob over <store>.<table>.")] = "*",
    config: ConfigOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """List catalogued datasets."""
    with open_platform(config) as platform:
        datasets = platform.catalog.list(pattern)
        if fmt == "json":
            sys.stdout.write(json.dumps([
                {"name": d.name, "store": d.store, "kind": d.kind, "columns": len(d.columns),
                 "owner": d.owner, "location": d.location} for d in datasets]) + "\n")
            return
        t = Table(header_style="bold cyan")
        for col in ("dataset", "kind", "columns", "primary key", "owner", "tags"):
            t.add_column(col)
        for d in datasets:
            tags = sorted({tag for c in d.columns for tag in c.tags})
            t.add_row(d.name, d.kind, str(len(d.columns)), ", ".join(d.primary_key), d.owner or "", ", ".join(tags))
        console.print(t)
        if not datasets:
            console.print("[dim]no datasets; run `headwater catalog sync`[/dim]")


@catalog_app.command("show")
@handle_errors
def catalog_show(
    dataset: Annotated[str, typer.Argument(help="<store>.<table>")],
    config: ConfigOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """Show one dataset: location, columns, types, tags."""
    with open_platform(config) as platform:
        d = platform.catalog.get(dataset)
        if fmt == "json":
            sys.stdout.write(json.dumps({
                "name": d.name, "store": d.store, "table": d.table, "kind": d.kind, "location": d.location,
                "primary_key": list(d.primary_key), "owner": d.owner, "retention_days": d.retention_days,
                "tier": d.tier,
                "columns": [{"name": c.name, "type": c.type, "nullable": c.nullable, "tags": list(c.tags)} for c in d.columns],
            }) + "\n")
            return
        console.print(f"[bold]{escape(d.name)}[/bold]  ({d.kind})  {escape(d.location)}", soft_wrap=True)
        console.print(f"owner: {d.owner or '-'}   primary key: {', '.join(d.primary_key) or '-'}   "
                      f"retention: {d.retention_days or '-'} days   tier: {d.tier or '-'}")
        t = Table(header_style="bold cyan")
        for col in ("column", "type", "nullable", "tags"):
            t.add_column(col)
        for c in d.columns:
            t.add_row(escape(c.name), escape(c.type), "yes" if c.nullable else "no", escape(", ".join(c.tags)))
        console.print(t)


@catalog_app.command("sync")
@handle_errors
def catalog_sync(
    config: ConfigOpt = None,
    store: Annotated[list[str] | None, typer.Option("--store", help="Only these stores.")] = None,
) -> None:
    """Introspect the stores into the catalog."""
    with open_platform(config) as platform:
        with console.status("introspecting stores…"):
            report = platform.sync_catalog(store)
        console.print(f"added {len(report.added)}, updated {len(report.updated)}, "
                      f"removed {len(report.removed)}, unchanged {len(report.unchanged)}")
        for name in report.added:
            console.print(f"  + {name}")
        for name in report.removed:
            console.print(f"  - {name}")
        for store_name, msg in report.errors.items():
            err_console.print(f"[red]store {store_name} could not be read:[/red] {escape(msg)}", highlight=False, soft_wrap=True)
        if report.errors:
            raise typer.Exit(1)


def _duration(text: str) -> Any:
    import datetime as dt
    import re

    m = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text or "")
    if not m:
        raise InvalidInput(f"--expires takes a duration like 30m, 12h, 90d or 2w, not {text!r}")
    n, unit = int(m.group(1)), m.group(2)
    return dt.timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[unit]: n})


@keys_app.command("create")
@handle_errors
def keys_create(
    principal: Annotated[str, typer.Argument(help="Principal the key authenticates as.")],
    config: ConfigOpt = None,
    expires: Annotated[str | None, typer.Option("--expires", help="Lifetime: 30m, 12h, 90d, 2w.")] = None,
    description: Annotated[str | None, typer.Option("--description", help="What the key is for.")] = None,
) -> None:
    """Create an API key; its secret is printed once and cannot be shown again."""
    with open_platform(config) as platform:
        key = platform.create_api_key(principal, expires_in=_duration(expires) if expires else None,
                                      description=description, actor=os.environ.get("USER") or "local")
        sys.stdout.write(f"key id: {key.key_id}\nsecret: {key.secret}\ntoken:  {key.token}\n")
        err_console.print("Store the token now (key id + secret): it is shown only once; only a slow hash is kept.")


@keys_app.command("ls")
@handle_errors
def keys_ls(
    config: ConfigOpt = None,
    principal: Annotated[str | None, typer.Option("--principal", help="Only this principal's keys.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """List API keys (never their secrets)."""
    import datetime as dt

    with open_platform(config) as platform:
        keys = platform.api_keys.list(principal)
        now = dt.datetime.now(dt.UTC)
        if fmt == "json":
            sys.stdout.write(json.dumps([
                {"key_id": k.key_id, "principal": k.principal, "created_at": k.created_at.isoformat(),
                 "expires_at": k.expires_at.isoformat() if k.expires_at else None,
                 "revoked": k.revoked_at is not None, "active": k.is_active(now)} for k in keys]) + "\n")
            return
        t = Table(header_style="bold cyan")
        for col in ("key id", "principal", "created", "expires", "state"):
            t.add_column(col)
        for k in keys:
            state = "revoked" if k.revoked_at else ("active" if k.is_active(now) else "expired")
            t.add_row(k.key_id, escape(k.principal), k.created_at.isoformat(timespec="seconds"),
                      k.expires_at.isoformat(timespec="seconds") if k.expires_at else "-", state)
        console.print(t)


@keys_app.command("revoke")
@handle_errors
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key id (hwk_...).")], config: ConfigOpt = None) -> None:
    """Revoke an API key (other processes stop accepting it within the verification cache TTL)."""
    with open_platform(config) as platform:
        platform.revoke_api_key(key_id, actor=os.environ.get("USER") or "local")
        console.print(f"revoked {key_id}")


PolicyFile = Annotated[Path, typer.Argument(help="Policy YAML file.", exists=False)]


def _read_policy(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as err:
        raise InvalidInput(f"cannot read {path}: {err.strerror}") from None


@policy_app.command("validate")
@handle_errors
def policy_validate(path: PolicyFile) -> None:
    """Check a policy file; errors name the file and line."""
    from headwater.policy import load_policy

    policy = load_policy(_read_policy(path), source=str(path))
    console.print(f"{path}: valid ({len(policy.roles)} roles, {len(policy.principals)} principals, "
                  f"version {policy.version[:12]})")


@policy_app.command("apply")
@handle_errors
def policy_apply(
    path: PolicyFile,
    config: ConfigOpt = None,
    as_: Annotated[str | None, typer.Option("--as", help="Who applies it (recorded).")] = None,
) -> None:
    """Validate and apply a policy: it becomes the newest version, in force at once."""
    with open_platform(config) as platform:
        before = platform.policies.latest()
        version, policy = platform.apply_policy(
            _read_policy(path), source=str(path), applied_by=as_ or os.environ.get("USER") or "local")
        if before is not None and before.version == version.version:
            console.print(f"unchanged: version {version.version} is already in force")
        else:
            console.print(f"applied {path} as policy version {version.version} "
                          f"({len(policy.roles)} roles, {len(policy.principals)} principals)")


@policy_app.command("diff")
@handle_errors
def policy_diff(path: PolicyFile, config: ConfigOpt = None) -> None:
    """What applying a file would change against the policy in force."""
    from headwater.policy import load_policy

    new = load_policy(_read_policy(path), source=str(path))
    with open_platform(config) as platform:
        current = platform.policies.latest()
        if current is None:
            console.print("no policy in force: applying would turn on default-deny governance")
            return
        old = load_policy(current.document, source=f"version {current.version}")
        lines = old.diff(new)
        for line in lines:
            style = {"+": "green", "-": "red"}.get(line[:1], "yellow")
            console.print(f"[{style}]{escape(line)}[/{style}]", highlight=False)
        if not lines:
            console.print("no changes")


@policy_app.command("show")
@handle_errors
def policy_show(
    config: ConfigOpt = None,
    version: Annotated[int | None, typer.Option("--version", help="An older version.")] = None,
    history: Annotated[bool, typer.Option("--history", help="List every version.")] = False,
) -> None:
    """Print the policy in force (or a version, or the history)."""
    with open_platform(config) as platform:
        if history:
            t = Table(header_style="bold cyan")
            for col in ("version", "applied at", "by", "source", "hash"):
                t.add_column(col)
            for v in platform.policies.history():
                t.add_row(str(v.version), v.applied_at.isoformat(timespec="seconds"), v.applied_by,
                          escape(v.source or ""), v.content_hash[:12])
            console.print(t)
            return
        doc = platform.policies.get(version) if version is not None else platform.policies.latest()
        if doc is None:
            raise InvalidInput("no such policy version" if version is not None else
                               "no policy applied; the platform is open (apply one with `headwater policy apply`)")
        sys.stdout.write(doc.document if doc.document.endswith("\n") else doc.document + "\n")


LineageAsOpt = Annotated[str | None, typer.Option("--as", help="Principal to act as (trusted local use).")]
LineageTokenOpt = Annotated[str | None, typer.Option("--token", envvar="HEADWATER_TOKEN", help="API key or JWT to authenticate with.")]


@lineage_app.command("show")
@handle_errors
def lineage_show(
    node: Annotated[str, typer.Argument(help="<store>.<table> or <store>.<table>.<column>")],
    config: ConfigOpt = None,
    upstream: Annotated[bool, typer.Option("--upstream", help="Where it comes from (default).")] = False,
    downstream: Annotated[bool, typer.Option("--downstream", help="What depends on it.")] = False,
    depth: Annotated[int | None, typer.Option("--depth", help="Edges to follow (default: all).")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    as_: LineageAsOpt = None,
    token: LineageTokenOpt = None,
) -> None:
    """Show the lineage graph around a dataset or a column (only datasets you hold a grant on)."""
    if upstream and downstream:
        raise InvalidInput("pick one of --upstream and --downstream")
    if fmt not in {"table", "json"}:
        raise InvalidInput(f"unknown format {fmt!r}; use table or json")
    if depth is not None and depth < 0:
        raise InvalidInput("--depth must be >= 0")
    with open_platform(config) as platform:
        access = (platform.session(token=token) if token else platform.session(as_)).lineage
        graph = access.downstream(node, depth) if downstream else access.upstream(node, depth)
        doc = graph.to_dict()
        if fmt == "json":
            sys.stdout.write(json.dumps(doc) + "\n")
            return
        direction = "downstream of" if downstream else "upstream of"
        console.print(f"[bold]{escape(node)}[/bold] — {direction}: {len(doc['datasets'])} dataset(s), "
                      f"{len(doc['columns'])} column(s)")
        t = Table(header_style="bold cyan")
        for col in ("source", "target", "type", "subtype", "recorded by"):
            t.add_column(col)
        for e in doc["edges"]:
            t.add_row(escape(str(e["source"])), escape(str(e["target"])), str(e.get("type") or ""),
                      str(e.get("subtype") or ""),
                      "platform" if e["trusted"] else escape(f"{e['producer'] or '?'} (outside)"))
        console.print(t)
        if doc["hidden"]:
            console.print(f"[dim]{doc['hidden']} dataset{'s' if doc['hidden'] != 1 else ''} you cannot see "
                          "(shown as <hidden dataset N>)[/dim]")
        if not doc["edges"]:
            console.print("[dim]no lineage recorded for this node[/dim]")


@lineage_app.command("post")
@handle_errors
def lineage_post(
    path: Annotated[Path, typer.Argument(help="A JSON file holding one OpenLineage RunEvent ('-' for stdin).")],
    config: ConfigOpt = None,
    as_: LineageAsOpt = None,
    token: LineageTokenOpt = None,
) -> None:
    """Record an OpenLineage event as an outside producer (needs the lineage.write grant)."""
    text = sys.stdin.read() if str(path) == "-" else _read_lineage_file(path)
    try:
        event = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidInput(f"{path} does not hold valid JSON") from None
    if not isinstance(event, dict):
        raise InvalidInput("an OpenLineage event is a JSON object")
    with open_platform(config) as platform:
        access = (platform.session(token=token) if token else platform.session(as_)).lineage
        stored = access.post(event)
        job = stored["job"]
        console.print(f"recorded {escape(str(stored.get('eventType') or 'OTHER'))} of "
                      f"{escape(job['namespace'])}/{escape(job['name'])} (run {escape(str(stored['run']['runId']))})")


def _read_lineage_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidInput(f"cannot read {path}: {type(err).__name__}") from None


def _when(text: str | None) -> Any:
    import datetime as dt

    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return dt.datetime.now(dt.UTC) - _duration(text)  # "2h" = two hours ago
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


@audit_app.command("ls")
@handle_errors
def audit_ls(
    config: ConfigOpt = None,
    actor: Annotated[str | None, typer.Option("--actor")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset")] = None,
    action: Annotated[str | None, typer.Option("--action")] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO time or a duration ago (2h, 7d).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO time or a duration ago.")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 100,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json (JSON Lines).")] = "table",
) -> None:
    """List audit records, oldest first, with filters."""
    with open_platform(config) as platform:
        records = platform.audit.query(actor=actor, dataset=dataset, action=action, since=_when(since),
                                       until=_when(until), limit=limit)
        if fmt == "json":
            from headwater.cli._output import json_default

            for r in records:
                sys.stdout.write(json.dumps(r.to_dict() if hasattr(r, "to_dict") else r.__dict__,
                                            default=json_default) + "\n")
            return
        t = Table(header_style="bold cyan")
        for col in ("seq", "time", "actor", "action", "decision", "datasets", "rows", "statement / reason"):
            t.add_column(col, overflow="fold")
        for r in records:
            t.add_row(str(r.seq), r.ts.isoformat(timespec="seconds"), escape(r.actor), r.action, r.decision,
                      escape(", ".join(r.datasets)), "" if r.rows is None else str(r.rows),
                      escape((r.statement or r.reason or "")[:120]))
        console.print(t)


@audit_app.command("export")
@handle_errors
def audit_export(
    path: Annotated[Path, typer.Argument(help="Output file.")],
    config: ConfigOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="jsonl or parquet.")] = "jsonl",
    actor: Annotated[str | None, typer.Option("--actor")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset")] = None,
    action: Annotated[str | None, typer.Option("--action")] = None,
    since: Annotated[str | None, typer.Option("--since")] = None,
    until: Annotated[str | None, typer.Option("--until")] = None,
) -> None:
    """Export audit records as JSON Lines or Parquet."""
    with open_platform(config) as platform:
        n = platform.audit.export(path, format=fmt, actor=actor, dataset=dataset, action=action,
                                  since=_when(since), until=_when(until))
        console.print(f"exported {n if isinstance(n, int) else ''} record(s) to {path}")


@audit_app.command("verify")
@handle_errors
def audit_verify(config: ConfigOpt = None) -> None:
    """Check the hash chain, signed checkpoints and the head against its anchor outside the
    metadata database. Exit 2: the chain is broken; exit 3: records were cut off (the head
    was rolled back behind the anchor, or the anchor is missing or does not verify)."""
    with open_platform(config) as platform:
        with console.status("verifying the audit chain…"):
            report = platform.audit.verify()
        if report.ok:
            rate = report.records_checked / report.elapsed_s if report.elapsed_s else 0
            anchored = (f"; head anchored at seq {report.head_anchor_seq} ({escape(report.head_anchor)})"
                        if report.head_anchor and report.head_anchor_seq is not None else "")
            console.print(f"[green]audit chain intact[/green]: {report.records_checked:,} records "
                          f"(seq {report.first_seq}-{report.last_seq}), {report.checkpoints_checked} signed "
                          f"checkpoint(s), {rate:,.0f} records/s{anchored}", soft_wrap=True)
            return
        what = "audit log rolled back" if report.rolled_back else "audit chain broken"
        err_console.print(f"[bold red]{what}[/bold red] at record {report.first_bad_seq}: "
                          f"{escape(str(report.problem))}", soft_wrap=True)
        raise typer.Exit(3 if report.rolled_back else 2)


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    app()
