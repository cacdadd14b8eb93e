"""Analytics over the lake: tenant-scoped DuckDB connections, SQL output, REPL.

>>> con = analytics.connect("lake", "acme")
>>> con.sql("select event_name, count(*) from events group by 1").fetchall()
"""

from analytics.connect import connect

__all__ = ["connect"]
