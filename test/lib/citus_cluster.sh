# shellcheck shell=bash
# shellcheck disable=SC2034  # CITUS_* are read by the sourcing scripts
# A throwaway Citus cluster on loopback: a coordinator and two workers, each a
# PostgreSQL 15 instance of its own under $DBSYNC_TESTDIR/pg/citus-*, run by the
# postgres OS user, trust authentication on 127.0.0.1 only.  Used by
# test/citus.sh and bench/run.sh (CITUS=1).  Sourced after scripts/lib.sh.
#
#   citus_available            Citus is installed (or was just built from ../shared)
#   citus_cluster_start DB     start the three nodes, CREATE DATABASE DB with citus
#                              on each, register the workers; sets CITUS_PORT
#                              (coordinator) and CITUS_WORKER_PORTS
#   citus_cluster_stop         stop them and remove their data directories
#   cit [psql args]            psql to DB on the coordinator as postgres

citus_available() {
    local pkglib build
    pkglib=$("$PG_CONFIG" --pkglibdir)
    build=${DBSYNC_SHARED:-$DBSYNC_REPO/../shared}/tools/build-citus.sh
    if [[ ! -f $pkglib/citus.so && -f $build && $(id -u) == 0 ]]; then
        bash "$build" >&2 || true
    fi
    [[ -f $pkglib/citus.so ]]
}

# citus_node_start NAME PORT: init and start one node (citus and dbsync preloaded).
citus_node_start() {
    local name=$1 port=$2 dir=$DBSYNC_TESTDIR/pg/citus-$1
    pg_server_stop "$dir" immediate
    rm -rf "$dir"
    as_pg "$PG_BINDIR/initdb" -D "$dir" -U postgres -E UTF8 --locale=C.UTF-8 -A trust -N \
        >"$dir.initdb.log" 2>&1 || return 1
    as_pg tee -a "$dir/postgresql.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$PG_SOCKDIR'
fsync = ${CITUS_FSYNC:-off}
shared_preload_libraries = 'citus,dbsync'
dbsync.database = '$CITUS_DB'
max_worker_processes = 16
max_connections = 100
$([[ $name == coord ]] || echo "timezone = 'America/New_York'   # workers in a zone of their own")
EOF
    pg_server_start "$dir" "$DBSYNC_TESTDIR/pg/citus-$name.log"
}

citus_free_port() {
    local p=$1
    while port_in_use "$p"; do p=$((p + 1)); done
    echo "$p"
}

cit() {
    "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$CITUS_PORT" \
        -U postgres -d "$CITUS_DB" "$@"
}

citus_cluster_start() {
    CITUS_DB=$1
    local p n port
    CITUS_PORT=$(citus_free_port $((WH_PORT + 17)))
    citus_node_start coord "$CITUS_PORT" || return 1
    CITUS_WORKER_PORTS=()
    p=$((CITUS_PORT + 1))
    for n in 1 2; do
        port=$(citus_free_port "$p")
        citus_node_start "w$n" "$port" || return 1
        CITUS_WORKER_PORTS+=("$port")
        p=$((port + 1))
    done
    for port in "$CITUS_PORT" "${CITUS_WORKER_PORTS[@]}"; do
        "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres \
            -d postgres -c "CREATE DATABASE $CITUS_DB" || return 1
        "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres \
            -d "$CITUS_DB" -c "SET client_min_messages = warning" -c "CREATE EXTENSION citus" || return 1
    done
    cit -c "SET client_min_messages = warning" \
        -c "SELECT citus_set_coordinator_host('127.0.0.1', $CITUS_PORT)" >/dev/null || return 1
    for port in "${CITUS_WORKER_PORTS[@]}"; do
        cit -c "SELECT citus_add_node('127.0.0.1', $port)" >/dev/null || return 1
    done
}

citus_cluster_stop() {
    local n
    for n in coord w1 w2; do
        pg_server_stop "$DBSYNC_TESTDIR/pg/citus-$n" immediate
        rm -rf "$DBSYNC_TESTDIR/pg/citus-$n"
    done
}
