"""The composition root: `build_components` constructs every component from the config.

Adding a component (sync coordinator, scheduler, download engine, drop-folder watcher): construct
it in `build_components()` and put it in the matching `Components` field. Anything with
`async start()` / `async stop()` there is started in `Components.lifecycle()` order after the
store and before the socket (daemon.py), and stopped in reverse.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp

from pooldaemon.alerts import Alerts, Timing
from pooldaemon.bridges import GovernedDownloads, Informing
from pooldaemon.config import Config
from pooldaemon.downloader.engine import Engine
from pooldaemon.drop import DropWatcher, SubmitOutcome
from pooldaemon.events import EventBus
from pooldaemon.exporter import Exporter
from pooldaemon.governor import Governor
from pooldaemon.hooks import HookRunner
from pooldaemon.informed import Informer
from pooldaemon.library.keeper import Library
from pooldaemon.localzone import local_zone, system_clock
from pooldaemon.models import Request
from pooldaemon.outbox import Outbox
from pooldaemon.pools import build_adapter
from pooldaemon.pools.base import Capability, PoolAdapter
from pooldaemon.pools.http import PoolHttp
from pooldaemon.ports import EnginePort, Lifecycle, SearchPort, SubmitFn, SyncPort
from pooldaemon.scheduler import PoolScheduler
from pooldaemon.search import search as catalog_search
from pooldaemon.store import Store
from pooldaemon.sync import SyncCoordinator

if TYPE_CHECKING:
    from pooldaemon.rules import Rules


@dataclass
class Components:
    """Everything `build_components` wired; a field left None is a part this daemon runs without."""

    adapters: dict[str, PoolAdapter] = field(default_factory=dict)
    informing: Lifecycle | None = None
    outbox: Lifecycle | None = None
    governed: GovernedDownloads | None = None
    engine: EnginePort | None = None
    sync: SyncPort | None = None
    scheduler: Lifecycle | None = None
    watcher: Lifecycle | None = None
    search: SearchPort | None = None
    exporter: Exporter | None = None
    #: docs/interface.md §8: adopt, audit, heal, and the library's background pass.
    library: Library | None = None
    rules: Rules | None = None

    def lifecycle(self) -> list[Lifecycle]:
        """Start order: hooks, notifications and the exporter listen before anything happens;
        the outbox is ready before a download can owe a call; the throttle in force is set before
        the engine starts a job; sync gives the adapters back their saved state (no network)
        before the engine resumes jobs that use them; the engine takes jobs before the rules or
        the scheduler's ticks hand it any; the library, after the engine, may ask it to heal; the
        rules know when they appeared before a catalog pass ends; the watcher submits last.
        Stopped in reverse."""
        order = (
            self.informing,
            self.exporter,
            self.outbox,
            self.governed,
            self.sync,
            self.engine,
            self.library,
            self.rules,
            self.scheduler,
            self.watcher,
        )
        return [c for c in order if c is not None]


@dataclass(frozen=True)
class Wiring:
    """What components are built from: all shared, all owned by the daemon."""

    config: Config
    store: Store
    session: aiohttp.ClientSession
    events: EventBus
    #: Request a download as the socket API does (dedup, origin recorded).
    submit: SubmitFn
    #: Request several at once under an idempotency key (the drop folder's crash-safe hand-off).
    submit_batch: Callable[[list[Request], str], Awaitable[list[SubmitOutcome]]]
    #: Enabled pools → the request kinds they download (what refs are parsed against).
    pool_kinds: Callable[[], dict[str, tuple[str, ...]]]
    #: Tell the daemon something worth a new STATUS= line happened.
    changed: Callable[[], None]
    #: The process environment: the local time zone, hooks' inherited variables, the desktop.
    env: Mapping[str, str] = field(default_factory=dict)
    #: Notification intervals (tests shorten them); None: docs/interface.md §10's.
    alert_timing: Timing | None = None


async def build_components(wiring: Wiring) -> Components:
    """Construct the components; nothing starts here (the daemon starts them in order).

    Data flows one way: adapters → sync (into the store) → submit → engine → files;
    the drop folder also only submits.
    """
    cfg = wiring.config
    components = Components()
    for name, pool in cfg.enabled_pools().items():
        http = PoolHttp(wiring.session, name, timeout_s=cfg.daemon.request_timeout_s)
        components.adapters[name] = build_adapter(name, pool, http)
    components.informing = Informing(
        Informer(
            wiring.events,
            hooks=HookRunner(cfg.hooks, base_env=wiring.env),
            alerts=Alerts(cfg.notify, env=wiring.env, timing=wiring.alert_timing),
        )
    )
    outbox = Outbox(wiring.store, components.adapters)
    components.outbox = outbox
    engine = Engine(
        wiring.store,
        wiring.session,
        components.adapters,
        cfg.daemon,
        wiring.events,
        on_owed=outbox.wake,
        library=cfg.library,
        folders={rule.origin: rule.folder for rule in cfg.rules if rule.folder},
    )
    components.engine = engine
    zone = local_zone(wiring.env)  # windows and rules' days read one zone
    governor = Governor(
        bandwidth_limit_bps=cfg.daemon.bandwidth_limit_bps,
        schedule=cfg.schedule,
        gig=cfg.gig,
        clock=system_clock(zone),
    )
    components.governed = GovernedDownloads(governor, engine, wiring.events)
    components.library = Library(wiring.store, cfg.library, wiring.events, wiring.submit)
    if cfg.rules:
        # Imported only when rules exist: their matching is a daemon's largest optional part.
        from pooldaemon.rules import Rules

        components.rules = Rules(
            cfg.rules,
            wiring.store,
            wiring.submit,
            wiring.events,
            pools=[
                name
                for name, adapter in components.adapters.items()
                if adapter.supports(Capability.CATALOG)
            ],
            prefer_pools=cfg.library.prefer_pools,
            zone=zone,
        )
    sync = SyncCoordinator(
        components.adapters,
        wiring.store,
        wiring.events,
        wiring.submit,
        catalog_watch=components.rules,
    )
    components.sync = sync
    components.search = functools.partial(catalog_search, wiring.store)
    scheduler = PoolScheduler()
    for name, pool_sync in sync.pools.items():
        pool = cfg.pools[name]
        scheduler.add_pool(
            pool_sync,
            catalog_interval_s=pool.catalog_interval_s,
            queue_interval_s=pool.queue_interval_s,
        )
    scheduler.add_library_audit(components.library.scheduled_audit, cfg.library.audit_interval_s)
    components.scheduler = scheduler
    components.exporter = Exporter(
        wiring.store, cfg.exports, cfg.daemon.download_dir, wiring.events
    )
    components.watcher = DropWatcher(
        cfg.daemon.drop_dir,
        wiring.store,
        wiring.submit_batch,
        wiring.pool_kinds,
        wiring.events,
        force_polling=cfg.daemon.force_polling,
        rescan_interval_s=cfg.daemon.drop_rescan_interval_s,
    )
    return components
