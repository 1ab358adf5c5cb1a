#!/usr/bin/env bash
# Install what dbsync's build, tests and demo need (Debian 12). Idempotent: when every
# package is already installed, apt is not touched at all.
set -euo pipefail

packages=(
    postgresql-15 postgresql-server-dev-15 postgresql-15-cron libpq-dev  # warehouse + build
    postgresql-15-postgis-3                                              # extension types in tests
    prometheus-postgres-exporter curl                                    # metrics test (contrib/)
    mariadb-server mariadb-client libmariadb-dev                         # TiDB stand-in + driver
    build-essential python3 git cppcheck
    procps util-linux coreutils gawk                                     # ps, runuser, timeout, awk
)

missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
((${#missing[@]} == 0)) && exit 0

[[ $(id -u) -eq 0 ]] || { echo "deps.sh: missing ${missing[*]}; run as root to install" >&2; exit 1; }
echo "deps.sh: installing ${missing[*]}" >&2

# Packages must not start system services (or create a 5432 cluster): the scripts run
# their own servers. policy-rc.d is removed again afterwards if we created it.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
fi
mkdir -p /etc/postgresql-common/createcluster.d
echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/dbsync-no-main.conf

export DEBIAN_FRONTEND=noninteractive UCF_FORCE_CONFFOLD=1
log=$(mktemp)
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Use-Pty=0 -o Dpkg::Options::=--force-confdef \
        -o Dpkg::Options::=--force-confold "${missing[@]}"; } >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "deps.sh: apt-get failed (full log: $log)" >&2
    exit 1
fi
rm -f "$log"
for p in "${missing[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || { echo "deps.sh: $p still missing after install" >&2; exit 1; }
done
echo "deps.sh: done" >&2
