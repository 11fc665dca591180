"""Helpers every operator tool shares: finding PostgreSQL's programs, statistics, a gateway subprocess,
a migrated and loaded database. Each exists once here so that the stack, drills, benchmarks and maintenance
commands cannot drift apart."""
