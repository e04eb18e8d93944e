"""`python -m pooldaemon.sim`: run the simulated pools on loopback and print a matching config."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable
from typing import Protocol

from pooldaemon.sim.crateq import CrateQSim
from pooldaemon.sim.harvest import HarvestSim
from pooldaemon.sim.promoonly import PromoOnlySim


class _Running(Protocol):
    """What a started simulator offers this runner."""

    def config_toml(self, name: str) -> str: ...

    async def close(self) -> None: ...


async def _start_crateq(args: argparse.Namespace, port: int) -> _Running:
    sim = CrateQSim(records=args.records, seed=args.seed, port=port)
    await sim.start()
    # Something for auto-download to pick up, as if queued from the phone app.
    sim.add_to_queue(sim.catalog.ids()[-args.queue :] if args.queue else [])
    return sim


async def _start_harvest(args: argparse.Namespace, port: int) -> _Running:
    # Favourites are the default queue source, so auto-download has something to pick up.
    sim = HarvestSim(seed=args.seed, favourites=args.queue, port=port)
    await sim.start()
    return sim


async def _start_promoonly(args: argparse.Namespace, port: int) -> _Running:
    sim = PromoOnlySim(
        seed=args.seed,
        tracks=max(8, args.queue + 3),
        queue_list=not args.no_queue_list,
        port=port,
    )
    await sim.start()
    # Queued on the website, so the queue poll has something for auto-download.
    sim.add_to_queue(sim.track_ids[: args.queue])
    return sim


# The registry: pool type -> starter. Promo Only and Harvest simulators are added here.
SIMULATORS: dict[str, Callable[[argparse.Namespace, int], Awaitable[_Running]]] = {
    "crateq": _start_crateq,
    "harvest": _start_harvest,
    "promoonly": _start_promoonly,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pooldaemon.sim", description="Run simulated record pools on 127.0.0.1."
    )
    parser.add_argument("--records", type=int, default=1000, help="catalog size (default 1000)")
    parser.add_argument("--port", type=int, default=0, help="first port (default: any free one)")
    parser.add_argument("--seed", default="demo", help="seed for deterministic data")
    parser.add_argument("--queue", type=int, default=5, help="tracks pre-queued per pool")
    parser.add_argument(
        "--no-queue-list",
        action="store_true",
        help="Promo Only: answer 404 to the assumed queue list and remove endpoints",
    )
    parser.add_argument(
        "--pool",
        action="append",
        choices=sorted(SIMULATORS),
        help="simulate only these pools (repeatable; default: all)",
    )
    return parser


async def _run(args: argparse.Namespace) -> None:
    running: list[_Running] = []
    try:
        for offset, name in enumerate(args.pool or sorted(SIMULATORS)):
            port = args.port + offset if args.port else 0
            sim = await SIMULATORS[name](args, port)
            running.append(sim)
            print(sim.config_toml(name))
        print("# simulators running on 127.0.0.1; Ctrl-C to stop", flush=True)
        await asyncio.Event().wait()
    finally:
        for sim in running:
            await sim.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
