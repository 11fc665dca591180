#!/usr/bin/env bash
# Installs the system packages the project needs, when they are missing. Idempotent and quick when all is there.
# Runs as root (developers and CI are root here); as another user it only reports what is missing.
set -euo pipefail

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# chromium + chromium-driver: the browser tests drive Debian's headless Chromium (and refresh the screenshots).
# postgresql-15-repack: pg_repack for online bloat repair (python -m ops repack), its extension on every node.
# postgresql-15-rum: the RUM index that ranks RELEVANCE searches inside the index (docs/search.md).
for pkg in postgresql postgresql-contrib postgresql-15-repack postgresql-15-rum pgbouncer redis-server patroni etcd-server etcd-client docker-compose prometheus \
    chromium chromium-driver \
    ${EXTRA_APT_PACKAGES:-}; do
  have_pkg "$pkg" || need+=("$pkg")
done
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${need[*]} (run as root: apt-get install ${need[*]})" >&2
  exit 1
fi
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d keeps Debian's post-install scripts from starting system-wide services on the standard ports:
# the project runs its own servers on its own ports.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
