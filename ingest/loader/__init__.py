"""The loader: poll micro-batches, decode protocols, enrich, write the lake, then commit."""
