# syntax=docker/dockerfile:1
# A PostgreSQL 15 node under Patroni, for docker-compose.yml: the official postgres:15.20 image (Debian bookworm)
# plus Debian's patroni (3.0.2, the release the local stack runs, ops/stack/patroni.py) with its etcd3 client, and
# pg_repack's extension for online bloat repair (python -m ops repack), and RUM, the index that ranks RELEVANCE
# searches (the migrations create it; docs/search.md).
FROM postgres:15.20-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends patroni python3-etcd postgresql-15-repack postgresql-15-rum \
 && rm -rf /var/lib/apt/lists/*

COPY ops/docker/patroni.yml /etc/patroni/patroni.yml
COPY ops/docker/patroni-post-init.sh /etc/patroni/post-init.sh
COPY ops/postgresql.conf /etc/postgresql/base.conf

# Patroni runs initdb (or pg_basebackup) into the volume itself; the official entrypoint is not used.
USER postgres
EXPOSE 5432 8008
HEALTHCHECK --interval=5s --timeout=3s --start-period=120s --retries=12 \
    CMD ["python3", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8008/health', timeout=2).status == 200 else 1)"]
CMD ["patroni", "/etc/patroni/patroni.yml"]
