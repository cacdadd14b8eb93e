"""The pipeline version stamped on every row the loader writes.

Bump it whenever a change alters what the loader produces from the same raw envelope, so
that a `driftnet replay` can tell old rows from rebuilt ones.
"""

PIPELINE_VERSION = "0.1.0"
