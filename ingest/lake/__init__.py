"""Writing and maintaining the lake's Delta tables.

``tables.py`` opens (and creates) the tables and commits file actions; ``files.py`` writes
data files with their statistics; ``writer.py`` is the loader's exactly-once append;
``compact.py``, ``retention.py`` and ``housekeeping.py`` are what ``maintain.py`` runs
continuously; ``forget.py`` deletes one person's rows, with a receipt in ``audit.py``.
The layout itself is the contract in schemas/lake.py; reading is schemas/delta.py.
"""
