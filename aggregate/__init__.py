"""
The scoring engine: counted ballots → published results (rules A–E of domain.md).

reader.py reads the store (read-only, connectorx); scores.py, ci.py and rankings.py compute
with lazy polars expressions; result.compute() ties them together; publish.py, xlsx.py and
html.py render. Parameters come from the campaign's `[scoring]` table: see docs/scoring.md.
"""
