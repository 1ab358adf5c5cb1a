#!/usr/bin/env bash
# Throwaway database servers for dbsync's tests and demo, all on 127.0.0.1:
#
#   warehouse   PostgreSQL 15, port $WH_PORT (55432), database $WH_DB (dbsync_regress)
#   source PG   PostgreSQL 15, port $SRC_PG_PORT (55433): the YugabyteDB stand-in,
#               database srcdb owned by src_user/src_pw, timezone America/New_York
#   MariaDB     port $SRC_MY_PORT (55306): the TiDB stand-in, database srcdb,
#               user src_user/src_pw, time zone +05:30
#
# Usage: scripts/testenv.sh start|stop|status
#   start   always builds a FRESH environment: whatever runs under the same base dir
#           ($DBSYNC_TESTDIR, default /tmp/dbsync-test) is stopped and its data wiped
#           first, so running start twice is a clean restart.
#   stop    stops all three; never fails when nothing runs.
#   status  prints what runs; exit 0 only when all three run.
# After start, $DBSYNC_TESTDIR/env.sh exports ports and paths (see write_env).
#
# shared_preload_libraries of the warehouse, from DBSYNC_PRELOAD:
#   auto (default)  'dbsync,pg_cron' when dbsync.so is installed in pg_config --pkglibdir,
#                   else nothing (before the extension is built)
#   1               'dbsync,pg_cron' (the warehouse fails to start without dbsync.so)
#   0               nothing
# dbsync.database is always set to $WH_DB (a placeholder GUC when dbsync is not loaded).
set -euo pipefail

cmd=${1:-}
# start takes ports from the caller's environment, never from an old env.sh.
[[ $cmd == start ]] && export DBSYNC_NO_ENV_FILE=1
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BASE=$DBSYNC_TESTDIR
cd /   # initdb and pg_ctl run as postgres, who may not enter the caller's directory
[[ $BASE == /?* && $BASE != *..* ]] || die "DBSYNC_TESTDIR must be an absolute path, not '$BASE'"

# ---------------------------------------------------------------- PostgreSQL
# pg_init DATADIR: initdb as postgres with our pg_hba.conf.
pg_init() {
    local datadir=$1
    as_pg "$PG_BINDIR/initdb" -D "$datadir" -U postgres -E UTF8 --locale=C.UTF-8 \
        -A trust -N >"$datadir.initdb.log" 2>&1 || {
        log_tail "$datadir.initdb.log"
        die "initdb of $datadir failed"
    }
    # local: trust; TCP: postgres trusted, everyone else needs a password.
    as_pg tee "$datadir/pg_hba.conf" >/dev/null <<EOF
local all all                 trust
host  all postgres 127.0.0.1/32 trust
host  all all      127.0.0.1/32 scram-sha-256
EOF
}

# pg_conf DATADIR PORT TIMEZONE [EXTRA LINES]: append settings to postgresql.conf.
pg_conf() {
    local datadir=$1 port=$2 tz=$3 extra=${4:-}
    as_pg tee -a "$datadir/postgresql.conf" >/dev/null <<EOF

# ---- dbsync test environment (scripts/testenv.sh) ----
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$PG_SOCKDIR'
timezone = '$tz'
fsync = off
max_worker_processes = 16
log_line_prefix = '%m [%p] %q%u@%d '
$extra
EOF
}

# The warehouse's preload list (see DBSYNC_PRELOAD in the header).
wh_preload() {
    local pkglib have_so=0
    pkglib=$("$PG_CONFIG" --pkglibdir)
    [[ -f $pkglib/dbsync.so ]] && have_so=1
    case ${DBSYNC_PRELOAD:-auto} in
        1) echo 'dbsync,pg_cron' ;;
        0) echo '' ;;
        auto) ((have_so)) && echo 'dbsync,pg_cron' || echo '' ;;
        *) die "DBSYNC_PRELOAD must be auto, 1 or 0" ;;
    esac
}

start_warehouse() {
    local preload extra
    preload=$(wh_preload)
    extra="dbsync.database = '$WH_DB'"
    if [[ -n $preload ]]; then
        extra+=$'\n'"shared_preload_libraries = '$preload'"
        # pg_cron connects through the unix socket (local trust) to $WH_DB.
        extra+=$'\n'"cron.database_name = '$WH_DB'"$'\n'"cron.host = '$PG_SOCKDIR'"
    fi
    pg_init "$WH_DATADIR"
    pg_conf "$WH_DATADIR" "$WH_PORT" Europe/Berlin "$extra"
    pg_server_start "$WH_DATADIR" "$WH_LOG" || die "warehouse did not start (log: $WH_LOG)"
    # Created now so that pg_cron and dbsync's launcher find it; run-tests.sh drops it
    # (WITH FORCE) before pg_regress recreates it.
    "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$WH_PORT" -U postgres \
        -d postgres -c "CREATE DATABASE \"$WH_DB\"" || die "could not create database $WH_DB"
    log "warehouse   PostgreSQL  127.0.0.1:$WH_PORT  db $WH_DB  preload '${preload}'"
}

start_source_pg() {
    pg_init "$SRC_PG_DATADIR"
    pg_conf "$SRC_PG_DATADIR" "$SRC_PG_PORT" America/New_York "wal_level = logical   # log capture (test/pgoutput.sh)"
    pg_server_start "$SRC_PG_DATADIR" "$SRC_PG_LOG" || die "source PG did not start (log: $SRC_PG_LOG)"
    "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$SRC_PG_PORT" -U postgres \
        -d postgres >/dev/null <<EOF || die "could not set up the source PG"
CREATE ROLE $SRC_USER LOGIN PASSWORD '$SRC_PASSWORD';
CREATE DATABASE $SRC_DB OWNER $SRC_USER;
EOF
    src_psql -c 'SELECT 1' >/dev/null || die "src_user cannot log in to the source PG"
    log "source PG   PostgreSQL  127.0.0.1:$SRC_PG_PORT  db $SRC_DB  user $SRC_USER"
}

# ---------------------------------------------------------------- MariaDB
start_source_my() {
    mkdir -p "$SRC_MY_DIR/tmp"
    chown -R mysql:mysql "$SRC_MY_DIR"
    # --auth-root-authentication-method=normal: root@localhost with an empty password,
    # so the scripts need not run as OS root to administer it (unix_socket is the default).
    mariadb-install-db --no-defaults --user=mysql --basedir=/usr --datadir="$SRC_MY_DATADIR" \
        --auth-root-authentication-method=normal --skip-test-db \
        >"$SRC_MY_DIR/install.log" 2>&1 || {
        log_tail "$SRC_MY_DIR/install.log"
        die "mariadb-install-db failed"
    }
    my_server_start || die "MariaDB did not start (log: $SRC_MY_LOG)"
    my_root_sql <<EOF || die "could not set up MariaDB"
CREATE DATABASE $SRC_DB CHARACTER SET utf8mb4;
CREATE USER '$SRC_USER'@'127.0.0.1' IDENTIFIED BY '$SRC_PASSWORD';
CREATE USER '$SRC_USER'@'localhost' IDENTIFIED BY '$SRC_PASSWORD';
GRANT ALL ON $SRC_DB.* TO '$SRC_USER'@'127.0.0.1', '$SRC_USER'@'localhost';
GRANT PROCESS ON *.* TO '$SRC_USER'@'127.0.0.1', '$SRC_USER'@'localhost';
EOF
    my_sql -e 'SELECT 1' >/dev/null || die "src_user cannot log in to MariaDB"
    log "MariaDB     $(mariadbd --version | awk '{print $3}')  127.0.0.1:$SRC_MY_PORT  db $SRC_DB  user $SRC_USER"
}

# ---------------------------------------------------------------- env.sh
write_env() {
    local v
    {
        echo "# dbsync test environment, written by scripts/testenv.sh start. Source it."
        for v in DBSYNC_TESTDIR PG_BINDIR PG_CONFIG WH_PORT SRC_PG_PORT SRC_MY_PORT \
                 WH_DB SRC_DB SRC_USER SRC_PASSWORD PG_SOCKDIR \
                 WH_DATADIR WH_LOG SRC_PG_DATADIR SRC_PG_LOG \
                 SRC_MY_DIR SRC_MY_DATADIR SRC_MY_SOCKET SRC_MY_PIDFILE SRC_MY_LOG; do
            printf 'export %s=%q\n' "$v" "${!v}"
        done
        # Plain psql reaches the warehouse's dbsync database as postgres.
        printf 'export PGHOST=127.0.0.1 PGPORT=%q PGUSER=postgres PGDATABASE=%q\n' "$WH_PORT" "$WH_DB"
    } >"$BASE/env.sh"
}

# ---------------------------------------------------------------- commands
do_stop() {
    pg_server_stop "$WH_DATADIR"
    pg_server_stop "$SRC_PG_DATADIR"
    my_server_stop
    rm -f "$SRC_MY_SOCKET"
}

do_start() {
    do_stop
    local p
    for p in "$WH_PORT" "$SRC_PG_PORT" "$SRC_MY_PORT"; do
        port_in_use "$p" && die "port $p on 127.0.0.1 is taken by another server; choose other WH_PORT/SRC_PG_PORT/SRC_MY_PORT"
    done
    rm -rf "$BASE/pg" "$BASE/mysql" "$BASE/regress" "$BASE/tests" "$BASE/env.sh"
    mkdir -p "$BASE" "$PG_SOCKDIR"
    chmod 755 "$BASE"
    chown -R postgres:postgres "$BASE/pg"
    # On failure, leave nothing running behind.
    trap 'rc=$?; if ((rc)); then log "start failed; stopping what was started"; do_stop; fi' EXIT
    start_warehouse
    start_source_pg
    start_source_my
    write_env
    trap - EXIT
    log "environment ready: source $BASE/env.sh"
}

do_status() {
    local all=0 pid
    if pg_server_running "$WH_DATADIR"; then
        echo "warehouse  running  127.0.0.1:$WH_PORT  data $WH_DATADIR"
    else
        echo "warehouse  stopped"; all=1
    fi
    if pg_server_running "$SRC_PG_DATADIR"; then
        echo "source PG  running  127.0.0.1:$SRC_PG_PORT  data $SRC_PG_DATADIR"
    else
        echo "source PG  stopped"; all=1
    fi
    if pid=$(my_server_pid); then
        echo "MariaDB    running  127.0.0.1:$SRC_MY_PORT  pid $pid  data $SRC_MY_DATADIR"
    else
        echo "MariaDB    stopped"; all=1
    fi
    return "$all"
}

case $cmd in
    start)  do_start ;;
    stop)   do_stop ;;
    status) do_status ;;
    *)      die "usage: $0 start|stop|status" ;;
esac
