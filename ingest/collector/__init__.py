"""The collector: an ASGI app that authenticates hits, wraps them unparsed and acks once durable."""

from ingest.collector.app import CollectorApp

__all__ = ["CollectorApp"]
