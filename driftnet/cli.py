"""The ``driftnet`` command line: thin wrappers over ingest and analytics.

Every command has ``--help`` with an example. Errors print one line and exit non-zero;
``driftnet --debug ...`` shows the traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from schemas.errors import DriftnetError

F = TypeVar("F", bound=Callable[..., Any])


class _Group(click.Group):
    """Turns DriftnetError, and a file the command cannot read or write (OSError: a missing
    directory, a file where a directory must be, no permission), into a one-line message
    (traceback with --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (DriftnetError, OSError) as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"driftnet: error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Log lines as text, or as one JSON object per line "
              "(for log shippers).")
@click.version_option(package_name="driftnet")
@click.pass_context
def main(ctx: click.Context, debug: bool, log_format: str) -> None:
    """driftnet: collect shopper events, land them in a Parquet lake, query them with SQL.

    \b
    Quickstart:
      driftnet up --tenants examples/tenants.toml --lake ./lake --port 8080
      driftnet simulate --url http://localhost:8080 --tenants examples/tenants.toml
      driftnet sql --lake ./lake --tenant acme "select event_name, count(*) from events group by 1"
    """
    from driftnet.logs import configure_logging

    ctx.obj = {"debug": debug}
    configure_logging(logging.DEBUG if debug else logging.INFO, log_format == "json")
    logging.getLogger("kafka").setLevel(logging.WARNING if not debug else logging.INFO)


# -- shared options -----------------------------------------------------------------------

def _tenants_option(required: bool = True) -> Callable[[F], F]:
    return click.option(
        "--tenants", "tenants_path", type=click.Path(dir_okay=False, path_type=Path),
        required=required, help="Tenants TOML file (ids, write keys, allowed origins).",
    )


_LAKE_HELP = "Lake root: a directory, or an object-store URL (s3://bucket/prefix, gs://, az://)."
_lake_option = click.option("--lake", required=True, metavar="PATH|URL", help=_LAKE_HELP)


def _tenant_id(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Reject a --tenant that is not a tenant id (it names directories of the lake)."""
    from schemas.tenants import is_tenant_id

    if value is not None and not is_tenant_id(value):
        raise click.BadParameter(f"{value!r} is not a tenant id ([a-z0-9][a-z0-9_-]{{0,62}})")
    return value
def _require_known_tenant(lake: str, tenant: str, tenants_path: Path | None) -> None:
    """An unknown tenant is a usage error that lists the known ones, never an empty result:
    known means it has data in the lake, or (with --tenants) it is in the tenants file."""
    from schemas.delta import lake_tenants
    from schemas.storage import LakeLocation
    from schemas.tenants import load_tenants

    location = LakeLocation.parse(lake)
    location.must_exist()  # a mistyped lake is that (exit 1), not an unknown tenant
    in_lake = lake_tenants(location)
    if tenant in in_lake:
        return
    configured = [t.id for t in load_tenants(tenants_path)] if tenants_path else []
    if tenant in configured:
        return  # a tenant of the tenants file without data yet: its views are empty
    raise click.UsageError(
        f"unknown tenant {tenant!r}: the lake has data of "
        f"{', '.join(in_lake) if in_lake else 'no tenant yet'}"
        + (f"; the tenants file lists {', '.join(sorted(configured))}" if configured else "")
        + ("" if tenants_path else " (give --tenants FILE to accept a tenant without data)"))


_config_option = click.option(
    "--config", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="TOML settings file ([collector], [loader], [embedded], [kafka]).",
)
_log_option = click.option(
    "--log", "log_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Embedded log file (default .driftnet/log.sqlite; ignored with Kafka).",
)


def _collector_options(f: F) -> F:
    f = click.option("--host", default=None, help="Interface to listen on [127.0.0.1].")(f)
    f = click.option("--port", type=int, default=None, help="TCP port [8080].")(f)
    return f


def _settings(config: Path | None, *, host: str | None = None, port: int | None = None,
              lake: str | None = None, log_path: Path | None = None,
              flush_interval: float | None = None) -> Any:
    from ingest.settings import load_settings

    collector = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    loader: dict[str, Any] = {}
    if lake is not None:
        loader["lake"] = lake
    if flush_interval is not None:
        loader["flush_interval_s"] = flush_interval
    embedded = {"path": log_path} if log_path is not None else {}
    return load_settings(config, collector=collector, loader=loader, embedded=embedded)


_flush_option = click.option(
    "--flush-interval", type=float, default=None,
    help="Seconds after which the loader flushes a batch [1.0].",
)


# -- ingest --------------------------------------------------------------------------------

@main.command()
@_tenants_option()
@_lake_option
@_collector_options
@_log_option
@_flush_option
@_config_option
def up(tenants_path: Path, lake: str, host: str | None, port: int | None,
       log_path: Path | None, flush_interval: float | None, config: Path | None) -> None:
    """Run collector and loader in one process (embedded log unless Kafka is configured).

    \b
    Example:
      driftnet up --tenants examples/tenants.toml --lake ./lake --port 8080
    """
    from driftnet.runner import run_up
    from schemas.tenants import load_tenants

    tenants = load_tenants(tenants_path)
    settings = _settings(config, host=host, port=port, lake=lake, log_path=log_path,
                         flush_interval=flush_interval)
    sys.exit(run_up(settings, tenants))


@main.command()
@_tenants_option()
@_collector_options
@_log_option
@_config_option
def collector(tenants_path: Path, host: str | None, port: int | None, log_path: Path | None,
              config: Path | None) -> None:
    """Run only the collector (HTTP endpoints -> transport).

    \b
    Example:
      DRIFTNET_KAFKA__BOOTSTRAP_SERVERS=kafka:9092 \\
        driftnet collector --tenants examples/tenants.toml --port 8080
    """
    from driftnet.runner import run_collector
    from schemas.tenants import load_tenants

    tenants = load_tenants(tenants_path)
    sys.exit(run_collector(_settings(config, host=host, port=port, log_path=log_path), tenants))


@main.command()
@_tenants_option()
@_lake_option
@_log_option
@_flush_option
@_config_option
def loader(tenants_path: Path, lake: str, log_path: Path | None,
           flush_interval: float | None, config: Path | None) -> None:
    """Run only the loader (transport -> lake).

    \b
    Example:
      DRIFTNET_KAFKA__BOOTSTRAP_SERVERS=kafka:9092 \\
        driftnet loader --tenants examples/tenants.toml --lake ./lake
    """
    from driftnet.runner import run_loader
    from schemas.tenants import load_tenants

    tenants = load_tenants(tenants_path)
    sys.exit(run_loader(_settings(config, lake=lake, log_path=log_path,
                                  flush_interval=flush_interval), tenants))


def _http_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """An absolute http(s) URL: the collector's base."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(f"{value!r} is not an http:// or https:// URL with a host")
    return value


@main.command()
@click.option("--url", required=True, callback=_http_url,
              help="Collector base URL, e.g. http://localhost:8080.")
@_tenants_option()
@click.option("--sessions", type=click.IntRange(min=1), default=200, show_default=True,
              help="Shopper sessions to simulate (spread over the tenants).")
@click.option("--tenant", "only_tenants", multiple=True,
              help="Simulate only these tenant ids (repeatable).")
@click.option("--seed", type=int, default=7, show_default=True, help="Random seed.")
@click.option("--concurrency", type=click.IntRange(min=1), default=32, show_default=True,
              help="Requests in flight.")
@click.option("--duplicate-rate", type=click.FloatRange(0, 1), default=0.03, show_default=True,
              help="Share of requests sent twice (tracker retries).")
@click.option("--malformed-rate", type=click.FloatRange(0, 1), default=0.05, show_default=True,
              help="Share of sessions that also send one malformed hit.")
@click.option("--days", type=click.IntRange(0, 28), default=0, show_default=True,
              help="Spread sessions over this many past days of event time (0: all end "
                   "now). Sent now, as from an offline queue, so time splits have past days; "
                   "at most 28, as the loader trusts client times up to 30 days back.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def simulate(url: str, tenants_path: Path, sessions: int, only_tenants: tuple[str, ...],
             seed: int, concurrency: int, duplicate_rate: float, malformed_rate: float,
             days: int, as_json: bool) -> None:
    """Send realistic shopper sessions to a collector over HTTP.

    Page views, product lists, searches, product views, add-to-cart, checkouts and
    purchases, with skewed product popularity, returning visitors, bots, tracker retries
    and a share of malformed hits.

    \b
    Example:
      driftnet simulate --url http://localhost:8080 --tenants examples/tenants.toml --sessions 2000
      driftnet simulate --url http://localhost:8080 --tenants examples/tenants.toml --days 14
    """
    import orjson

    from driftnet.simulate import SimulationConfig, run_simulation
    from schemas.tenants import load_tenants

    tenants = load_tenants(tenants_path)
    unknown = sorted(set(only_tenants) - set(tenants.ids))
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)} not in {tenants_path} (it lists "
                                 f"{', '.join(tenants.ids)})", param_hint="'--tenant'")
    report = run_simulation(SimulationConfig(
        url=url, tenants=tenants, sessions=sessions, only_tenants=only_tenants, seed=seed,
        concurrency=concurrency, duplicate_rate=duplicate_rate, malformed_rate=malformed_rate,
        days=days,
    ))
    if as_json:
        click.echo(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(report.summary())


@main.command()
@click.option("--sessions", type=int, default=2000, show_default=True,
              help="Shopper sessions to simulate.")
@click.option("--tenants", "tenants_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("examples/tenants.toml"), show_default=True,
              help="Tenants file (its first three tenants are used).")
@click.option("--keep", is_flag=True, help="Keep the temporary lake and print its path.")
@click.option("--shop", is_flag=True, help="Instead: serve a demo shop page that uses dn.js "
              "(docs/snippet.md) on localhost until Ctrl-C, then print its events.")
@click.option("--shop-port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port of the demo shop (with --shop).")
@click.option("--shop-seconds", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Stop the demo shop after this long (with --shop; 0: at Ctrl-C).")
def demo(sessions: int, tenants_path: Path, keep: bool, shop: bool, shop_port: int,
         shop_seconds: float) -> None:
    """Run the whole pipeline on a temporary lake and print real analyses.

    Starts `driftnet up` on a free port, simulates shoppers of three tenants, waits until
    every acknowledged hit is in the lake, prints queries, and shuts down. With --shop it
    serves a demo shop page using driftnet's own dn.js instead, for you to click through.

    \b
    Example:
      driftnet demo --sessions 2000
      driftnet demo --shop --shop-port 8000
    """
    if shop:
        from driftnet.demo_shop import announce, run_shop

        sys.exit(run_shop(shop_port, shop_seconds, announce))
    from driftnet.demo import run_demo

    sys.exit(run_demo(tenants_path, sessions, keep))


@main.command()
@click.option("--tenant", required=True, callback=_tenant_id,
              help="Tenant whose days are rebuilt.")
@click.option("--from", "start", type=click.DateTime(["%Y-%m-%d"]), required=True,
              help="First UTC day to rebuild (YYYY-MM-DD).")
@click.option("--to", "end", type=click.DateTime(["%Y-%m-%d"]), required=True,
              help="Last UTC day to rebuild, inclusive.")
@click.option("--lake", default=None, metavar="PATH|URL",
              help=_LAKE_HELP + " [the loader's lake setting, default ./lake]")
@_tenants_option()
@click.option("--force", is_flag=True,
              help="Also replay today's UTC date (only when no loader is running).")
@_config_option
def replay(tenant: str, start: Any, end: Any, lake: str | None, tenants_path: Path,
           force: bool, config: Path | None) -> None:
    """Rebuild events and quarantine days from the raw archive with the current code.

    Each day's files are replaced in one commit per table; rows carry the pipeline version
    that made them, so a fixed parser recovers hits that were quarantined. The tenants
    file gives the tenant's IP mode and enrichment settings, as the loader's did.

    \b
    Example:
      driftnet replay --lake ./lake --tenants examples/tenants.toml --tenant acme \\
        --from 2026-11-01 --to 2026-11-25
    """
    from ingest.loader.replay import replay as run_replay
    from schemas.tenants import load_tenants

    settings = _settings(config, lake=lake)
    tenants = load_tenants(tenants_path)
    if tenants.by_id(tenant) is None:  # its rows would be rebuilt as an unknown tenant's
        raise click.BadParameter(f"{tenant} is not in {tenants_path} (it lists "
                                 f"{', '.join(tenants.ids)})", param_hint="'--tenant'")
    report = run_replay(
        settings.loader.lake, tenant, start.date(), end.date(), settings.loader, tenants,
        force=force, enrich=settings.enrich,
        progress=lambda d: click.echo(
            f"{d.date}: {d.hits} hits -> {d.events_after} events (was {d.events_before}), "
            f"{d.quarantined_after} quarantined (was {d.quarantined_before})"),
    )
    click.echo(f"replayed {len(report.days)} days of {tenant}")


@main.command()
@_lake_option
@click.option("--tenant", default=None, callback=_tenant_id, help="Only this tenant [all].")
@click.option("--before", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Rewrite days before this UTC date [today: yesterday and older].")
@click.option("--force", is_flag=True, help="Allow --before after today (today's files are "
              "rewritten too; loaders may keep appending meanwhile).")
def compact(lake: str, tenant: str | None, before: Any, force: bool) -> None:
    """Rewrite days into a few large files sorted by visitor and time, now.

    The maintenance task (`driftnet maintain`, and inside `driftnet up`) does this to every
    day once it is closed, and keeps open days compacted; this command does it on demand.

    \b
    Example:
      driftnet compact --lake ./lake --before 2026-11-26
    """
    import datetime as dt

    from ingest.lake.maintain import sort_days
    from schemas.storage import LakeLocation

    today = dt.datetime.now(dt.UTC).date()
    day = before.date() if before else today
    if day > today and not force:
        raise click.UsageError("--before is after today; pass --force to rewrite today too")
    days = sort_days(LakeLocation.parse(lake), tenant=tenant, before=day,
                     progress=lambda d: click.echo(
                         f"{d.table} {d.tenant} {d.date}: {d.files_before} files -> "
                         f"{d.files_after} ({d.rows} rows)"))
    click.echo(f"compacted {len(days)} table-days")


@main.command()
@_lake_option
@_tenants_option(required=False)
@click.option("--once", is_flag=True, help="Run one pass (with vacuum) and exit.")
@_config_option
def maintain(lake: str, tenants_path: Path | None, once: bool, config: Path | None) -> None:
    """Keep the lake compact: merge small files, sort closed days, retention, vacuum.

    Run exactly one per lake next to Kafka loaders (`driftnet up` runs it itself). The
    tenants file gives each tenant's retention_days; without it nothing expires.

    \b
    Examples:
      driftnet maintain --lake s3://acme-lake/driftnet --tenants tenants.toml
      driftnet maintain --lake ./lake --once
    """
    from driftnet.runner import run_maintain
    from schemas.tenants import load_tenants

    settings = _settings(config, lake=lake)
    tenants = load_tenants(tenants_path) if tenants_path is not None else None
    sys.exit(run_maintain(settings, tenants, once=once))


def _duration_option(ctx: click.Context, param: click.Parameter,
                     value: str | None) -> float | None:
    from driftnet.status import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@main.command()
@_lake_option
@click.option("--tenant", default=None, callback=_tenant_id, help="Only this tenant [all].")
@_tenants_option(required=False)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Output format.")
@click.option("--stale-after", default=None, callback=_duration_option, metavar="DURATION",
              help="Exit 3 when a tenant's newest event is older than this (90s, 15m, 2h, "
                   "1d), or it has none; for cron and health checks.")
@click.option("--metrics-url", "metrics_urls", multiple=True, metavar="URL",
              help="A loader's (or `driftnet up`'s) /metrics URL: report its lag "
                   "(repeatable; an unreachable one is reported, not an error).")
def status(lake: str, tenant: str | None, tenants_path: Path | None, fmt: str,
           stale_after: float | None, metrics_urls: tuple[str, ...]) -> None:
    """Per tenant: freshness, events of the last hour and day, losses, files, retention.

    Newest event and its age; events received in the last hour and day, each one
    accounted for (received = written + duplicate + quarantined, by reason); files and
    bytes per table; the oldest day held and (with --tenants) the retention horizon.

    \b
    Examples:
      driftnet status --lake ./lake
      driftnet status --lake ./lake --tenant acme --format json
      driftnet status --lake s3://acme-lake/driftnet --tenants tenants.toml \\
        --stale-after 15m --metrics-url http://loader-1:9464/metrics
    """
    from driftnet.status import STALE_EXIT, as_json, as_table
    from ingest.lake.status import lake_status
    from ingest.metrics.scrape import loader_lag
    from schemas.storage import LakeLocation
    from schemas.tenants import load_tenants

    tenants = load_tenants(tenants_path) if tenants_path is not None else None
    if tenant is not None:
        _require_known_tenant(lake, tenant, tenants_path)
    report = lake_status(LakeLocation.parse(lake), tenant=tenant, tenants=tenants,
                         stale_after_s=stale_after)
    loaders = [loader_lag(url) for url in metrics_urls]
    click.echo(as_json(report, loaders) if fmt == "json" else as_table(report, loaders),
               nl=False)
    if report.stale:
        sys.exit(STALE_EXIT)


@main.command()
@_lake_option
@click.option("--tenant", required=True, callback=_tenant_id, help="Tenant of the person.")
@click.option("--anonymous-id", "anonymous_ids", multiple=True,
              help="A device/browser id of the person (repeatable).")
@click.option("--user-id", "user_ids", multiple=True,
              help="A user id of the person (repeatable).")
@click.option("--with-linked", is_flag=True, help="Also forget the anonymous ids seen "
              "together with the given user ids.")
@click.option("--json", "as_json", is_flag=True, help="Print the receipt as JSON.")
@_tenants_option(required=False)
def forget(lake: str, tenant: str, anonymous_ids: tuple[str, ...], user_ids: tuple[str, ...],
           with_linked: bool, as_json: bool, tenants_path: Path | None) -> None:
    """Delete one person's rows from raw, events and quarantine, and their session state.

    Files holding the person's rows are rewritten without them and the old files deleted
    at once; a receipt (the identifier only as a salted hash) is appended to the lake's
    audit log (_audit). A tenant the lake has no data of is refused (exit 2), unless
    --tenants lists it.

    \b
    Examples:
      driftnet forget --lake ./lake --tenant acme --anonymous-id 0f8a2c1e-...
      driftnet forget --lake ./lake --tenant acme --user-id u-4711 --with-linked
    """
    import orjson

    from ingest.lake.forget import Forgetter, Identifier
    from schemas.storage import LakeLocation

    ids = [Identifier("anonymous_id", a) for a in anonymous_ids]
    ids += [Identifier("user_id", u) for u in user_ids]
    if not ids:
        raise click.UsageError("give --anonymous-id or --user-id")
    # A mistyped tenant would get a receipt of nothing removed, which reads as done.
    _require_known_tenant(lake, tenant, tenants_path)
    forgetter = Forgetter(LakeLocation.parse(lake),
                          progress=lambda line: click.echo(line, err=True))
    try:
        receipt = forgetter.forget(tenant, ids, with_linked=with_linked)
    finally:
        forgetter.close()
    summary = {
        "receipt_id": receipt.receipt_id,
        "rows_removed": {t: r.rows for t, r in receipt.tables.items()},
        "files_rewritten": sum(r.files_rewritten for r in receipt.tables.values()),
        "files_deleted": sum(len(r.deleted) for r in receipt.tables.values()),
        "session_states_removed": receipt.session_states_removed,
        "stored_session_files_removed": receipt.stored_session_files_removed,
        "linked_anonymous_ids": len(receipt.linked),
    }
    if as_json:
        click.echo(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(", ".join(f"{k}={v}" for k, v in summary.items()))


# -- analytics -----------------------------------------------------------------------------

def _rates_options(f: F) -> F:
    f = click.option("--reporting-currency", default=None, metavar="CCY",
                     help="Convert revenue into this currency (needs --rates).")(f)
    f = click.option("--rates", "rates_path", type=click.Path(dir_okay=False, exists=True,
                                                              path_type=Path),
                     default=None, help="Daily exchange rates, CSV or Parquet with columns "
                     "date, currency, rate (1 unit of currency = rate units of the reporting "
                     "currency); adds revenue_converted to sessions, orders and users.")(f)
    return f


def _load_rates(rates_path: Path | None, reporting_currency: str | None) -> Any:
    """The FxRates of --rates/--reporting-currency, or None; both or neither."""
    if (rates_path is None) != (reporting_currency is None):
        raise click.UsageError("--rates and --reporting-currency go together")
    if rates_path is None or reporting_currency is None:
        return None
    from analytics.money import load_rates

    return load_rates(rates_path, reporting_currency)



@main.command()
@_lake_option
@click.option("--tenant", default=None, callback=_tenant_id,
              help="Tenant whose data the session may read.")
@click.option("--all-tenants", is_flag=True, help="Operators: read every tenant's data.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet"]),
              default="table", show_default=True, help="Output format.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the result to this file instead of standard output.")
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE",
              help="Named query parameter, used as $NAME in the query (repeatable).")
@click.option("--max-rows", type=click.IntRange(min=1), default=100, show_default=True,
              help="Rows shown by --format table.")
@_rates_options
@_tenants_option(required=False)
@click.argument("query", required=False)
def sql(lake: str, tenant: str | None, all_tenants: bool, fmt: str, output: Path | None,
        params: tuple[str, ...], max_rows: int, rates_path: Path | None,
        reporting_currency: str | None, tenants_path: Path | None,
        query: str | None) -> None:
    """Run SQL over one tenant's views (events, sessions, quarantine, raw...). No QUERY: a shell.

    \b
    Examples:
      driftnet sql --lake ./lake --tenant acme --format json \\
        "select event_name, count(*) from events group by 1"
      driftnet sql --lake ./lake --tenant acme -p name='Product Viewed' \\
        "select count(*) from events where event_name = $name"
      driftnet sql --lake ./lake --tenant acme --rates rates.csv \\
        --reporting-currency EUR "select sum(revenue_converted) from orders"
      driftnet sql --lake ./lake --tenant acme        # interactive
    """
    import duckdb

    from analytics import connect
    from analytics.errors import AnalyticsError
    from analytics.output import write_result
    from analytics.readonly import check_read_only
    from analytics.repl import run_repl

    if all_tenants == (tenant is not None):
        raise click.UsageError("give --tenant T, or --all-tenants (operators)")
    if tenant is not None:
        _require_known_tenant(lake, tenant, tenants_path)
    values: dict[str, str] = {}
    for item in params:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.UsageError(f"--param wants NAME=VALUE, got {item!r}")
        values[name] = value
    rates = _load_rates(rates_path, reporting_currency)

    def open_connection() -> duckdb.DuckDBPyConnection:
        return connect(lake, tenant, all_tenants=all_tenants, rates=rates)

    if query is None:
        if not sys.stdin.isatty():
            query = sys.stdin.read()
        else:
            scope = tenant or "all tenants"
            run_repl(open_connection, fmt if fmt != "parquet" else "table",  # type: ignore[arg-type]
                     f"driftnet sql: {scope} in {lake}. .help for commands, Ctrl-D to leave.")
            return
    con = open_connection()
    try:
        check_read_only(con, query)
        rel = con.sql(query, params=values or None)
        if rel is not None:
            write_result(rel, fmt, output=output, max_rows=max_rows)  # type: ignore[arg-type]
    except duckdb.Error as exc:
        raise AnalyticsError(f"query failed: {exc}") from exc
    finally:
        con.close()


_analytics_tenant_option = click.option(
    "--tenant", required=True, callback=_tenant_id,
    help="Tenant whose data is read (one tenant per run).")


def _write_text(text: str, output: Path | None) -> None:
    """Shared output of discover/export reports: a file with --output, else stdout."""
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)
        click.echo(f"wrote {output}", err=True)


@main.command()
@_lake_option
@_analytics_tenant_option
@click.option("--event", default=None, help="Only events with this event_name.")
@click.option("--since", default=None,
              help="Only events that happened since (event time, derived_ts): 30d, 12h, 2w, "
                   "or an ISO date/time (UTC when naive).")
@click.option("--until", default=None,
              help="Only events that happened before (event time, derived_ts): same forms.")
@click.option("--target", default=None,
              help="Event name or product_action (e.g. purchase): rank session features "
                   "read before the target, with lift, support and 95% intervals per value.")
@click.option("--min-support", type=click.IntRange(min=1), default=30, show_default=True,
              help="With --target: groups of fewer sessions are marked small and never "
                   "decide a feature's rank.")
@click.option("--sample-events", type=click.IntRange(min=0), default=2_000_000,
              show_default=True,
              help="With --target, past this many events in scope (every event name, "
                   "also with --event): read the sessions of a "
                   "random share of visitors holding about this many events (whole "
                   "visitors, the same share on every run; the report says it). 0: all.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "html"]), default="table",
              show_default=True, help="Output format (html: self-contained report).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file instead of standard output.")
@click.option("--top", "top_k", type=click.IntRange(1, 100), default=5, show_default=True,
              help="Top values shown per field.")
@click.option("--memory-limit", default=None,
              help="DuckDB memory limit, e.g. 4GB (spills to disk beyond) [80% of RAM].")
@_tenants_option(required=False)
def discover(lake: str, tenant: str, event: str | None, since: str | None, until: str | None,
             target: str | None, min_support: int, sample_events: int, fmt: str,
             output: Path | None, top_k: int, memory_limit: str | None,
             tenants_path: Path | None) -> None:
    """Catalog every field ever logged (columns and JSON paths), and what predicts a target.

    For each column and each path inside items, properties, traits, context and extra:
    types seen, fill rate, distinct count, top values, first and last seen, overall and
    by event name; a JSON path that copies a column is shown once, as its alias.

    With --target, each session is read up to its first target event only (what was
    observable before it): logged fields by their first value, and session numbers
    (events, pages, product views, adds, searches, duration, time to first add, prices
    viewed, recency) by quantile bucket. Every value shows its support and the target
    rate's Wilson 95% interval; features rank by the lower bound of lift, and those that
    look like consequences of the target are marked suspect and ranked last.

    \b
    Examples:
      driftnet discover --lake ./lake --tenant acme --since 30d
      driftnet discover --lake ./lake --tenant acme --target purchase \\
        --since 2026-03-01 --until 2026-04-01 --format html --output report.html
    """
    import duckdb

    from analytics import connect
    from analytics.discover import DiscoverOptions, parse_since
    from analytics.discover import discover as run_discover
    from analytics.discover.report_html import render_html
    from analytics.discover.report_table import render_text
    from analytics.errors import AnalyticsError

    _require_known_tenant(lake, tenant, tenants_path)
    opts = DiscoverOptions(event=event, since=parse_since(since) if since else None,
                           until=parse_since(until) if until else None,
                           target=target, top_k=top_k, min_support=min_support,
                           target_sample_events=sample_events)
    con = connect(lake, tenant, memory_limit=memory_limit)
    try:
        report = run_discover(con, opts, tenant=tenant)
    except duckdb.Error as exc:  # e.g. out of memory under --memory-limit
        raise AnalyticsError(f"discover failed: {exc}") from exc
    finally:
        con.close()
    if fmt == "json":
        _write_text(report.model_dump_json(indent=2) + "\n", output)
    elif fmt == "html":
        _write_text(render_html(report), output)
    else:
        _write_text(render_text(report), output)


@main.command()
@click.option("--lake", default=None, metavar="PATH|URL",
              help=_LAKE_HELP + " (with --from-manifest: default the manifest's)")
@click.option("--tenant", default=None, callback=_tenant_id,
              help="Tenant whose data is exported.")
@click.option("--recipe", type=click.Choice(["sessions", "intent", "sql"]), default=None,
              help="sessions: item sequences per session; intent: session prefixes labelled "
                   "by a later purchase; sql: any query over the views (--query).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              required=True, help="Output directory (one file per split + manifest.json).")
@click.option("--train-end", default=None,
              help="Sessions starting before go to train (ISO date/time, UTC).")
@click.option("--valid-end", default=None,
              help="Sessions starting in [train-end, valid-end) go to valid; later ones to test.")
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv", "jsonl"]),
              default="parquet", show_default=True, help="Output file format.")
@click.option("--query", default=None, help="SQL over the views (recipe sql).")
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE",
              help="Named query parameter for --query, used as $NAME (repeatable).")
@click.option("--max-prefix", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="Longest session prefix (recipe intent).")
@click.option("--from-manifest", "manifest", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Reproduce an earlier export byte for byte from its manifest "
                                 "(which gives every parameter: only --out, --lake, "
                                 "--overwrite, --memory-limit and --progress go with it).")
@click.option("--overwrite", is_flag=True,
              help="Allow a non-empty --out directory: its earlier export's files are "
                   "replaced (only once the new export is complete; a reproduction only "
                   "if identical), other files are kept.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bars on standard error [on when it is a terminal].")
@click.option("--memory-limit", default=None,
              help="DuckDB memory limit, e.g. 4GB (spills to disk beyond) [80% of RAM].")
@_rates_options
@_tenants_option(required=False)
def export(lake: str | None, tenant: str | None, recipe: str | None, out_dir: Path,
           train_end: str | None, valid_end: str | None, fmt: str, query: str | None,
           params: tuple[str, ...], max_prefix: int, manifest: Path | None, overwrite: bool,
           progress: bool | None, memory_limit: str | None, rates_path: Path | None,
           reporting_currency: str | None, tenants_path: Path | None) -> None:
    """Export a training set of one tenant, split by time without leakage, with a manifest.

    A session belongs to the split its first event falls in, and no event at or after a
    split's end is read for it. manifest.json lists the lake files read (with SHA-256),
    parameters, row counts and code versions; --from-manifest re-reads exactly those files
    and fails if one changed or an output byte differs.

    \b
    Examples:
      driftnet export --lake ./lake --tenant acme --recipe sessions --out ./ds \\
        --train-end 2026-03-01 --valid-end 2026-03-15
      driftnet export --lake ./lake --tenant acme --recipe sql --out ./ds --format csv \\
        --query "select * from sessions where device = \\$d" -p d=mobile
      driftnet export --from-manifest ./ds/manifest.json --out ./ds-again
    """
    from analytics.export import ExportSpec
    from analytics.export.progress import Progress
    from analytics.export.run import reproduce, run_export

    bars = Progress(progress)
    if manifest is not None:
        # --format and --max-prefix have defaults: what was typed is told by its source.
        ctx = click.get_current_context()
        spec_options = {"tenant": "--tenant", "recipe": "--recipe", "train_end": "--train-end",
                        "valid_end": "--valid-end", "fmt": "--format", "query": "--query",
                        "params": "--param", "max_prefix": "--max-prefix",
                        "rates_path": "--rates", "reporting_currency": "--reporting-currency"}
        given = [flag for name, flag in spec_options.items()
                 if ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)]
        if given:
            raise click.UsageError(f"--from-manifest takes its parameters from the manifest; "
                                   f"drop {', '.join(given)}")
        result = reproduce(manifest, out_dir, lake=lake, overwrite=overwrite, progress=bars,
                           memory_limit=memory_limit)
        click.echo(f"reproduced {len(result.outputs)} file(s) identical to {manifest}", err=True)
        return
    if lake is None or tenant is None or recipe is None:
        raise click.UsageError("give --lake, --tenant and --recipe (or --from-manifest)")
    _require_known_tenant(lake, tenant, tenants_path)
    values: dict[str, str] = {}
    for item in params:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.UsageError(f"--param wants NAME=VALUE, got {item!r}")
        values[name] = value
    spec = ExportSpec(tenant=tenant, recipe=recipe, format=fmt, train_end=train_end,
                      valid_end=valid_end, query=query, params=values, max_prefix=max_prefix,
                      rates=_load_rates(rates_path, reporting_currency))
    result = run_export(lake, spec, out_dir, overwrite=overwrite, progress=bars,
                        memory_limit=memory_limit)
    for out in result.outputs:
        click.echo(f"{out.split}: {out.rows} rows -> {out_dir / out.file}", err=True)
    click.echo(f"manifest: {out_dir / 'manifest.json'}", err=True)
