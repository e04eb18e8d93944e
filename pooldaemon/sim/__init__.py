"""Simulated record pools on loopback, written from the pools' published documents alone.

Never imports the rest of pooldaemon: a misreading shared by client and simulator
must not hide itself.
"""

from pooldaemon.sim.catalog import Catalog
from pooldaemon.sim.crateq import CrateQSim
from pooldaemon.sim.download import DownloadServer
from pooldaemon.sim.faults import Faults
from pooldaemon.sim.media import MediaStore, mp3_bytes, mp4_bytes, wav_bytes, zip_bytes
from pooldaemon.sim.requestlog import RequestLog

__all__ = [
    "Catalog",
    "CrateQSim",
    "DownloadServer",
    "Faults",
    "MediaStore",
    "RequestLog",
    "mp3_bytes",
    "mp4_bytes",
    "wav_bytes",
    "zip_bytes",
]
