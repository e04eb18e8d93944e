"""pooldaemon: keeps DJ record-pool subscriptions mirrored and downloaded on disk."""

__version__ = "0.1.0"
