"""Ingest: collector -> transport -> loader (protocols -> enrich -> lake writer)."""
