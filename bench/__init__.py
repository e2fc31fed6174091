"""Benchmarks for callcenter: `make bench` (or `python -m bench --quick`).

Every measurement runs in one process run on one PostgreSQL server, so that
machine noise affects ours and the baselines alike. See bench/README.md.
"""
