"""The ``driftnet`` command: a thin dispatcher over ingest and analytics."""
