"""Keeping the database in shape while it serves: partitions ahead of time, archiving old ones, statistics.

Each command runs against the primary, found among ``GATEWAY_ADMIN_NODES`` (session-mode DSNs): partition DDL
and the archive's advisory lock need a session of their own, which transaction pooling would not give them.
"""
