#!/usr/bin/env bash
# dbsync on a Citus coordinator, first step (issue 12): a target table that
# Citus manages (distributed, reference) is refused with a clear error, never
# written through the coordinator's own table, where Citus would not see the
# rows (the run used to report ok while the rows stayed invisible).
# Needs Citus: built by ../shared/tools/build-citus.sh when that is at hand
# (CI), else the test says it skips.
set -euo pipefail
source "$DBSYNC_REPO/scripts/lib.sh"
source "$DBSYNC_REPO/test/lib/tap.sh"

pkglib=$("$PG_CONFIG" --pkglibdir)
build=${DBSYNC_SHARED:-$DBSYNC_REPO/../shared}/tools/build-citus.sh
if [[ ! -f $pkglib/citus.so && -f $build && $(id -u) == 0 ]]; then
    bash "$build" >&2 || true
fi
if [[ ! -f $pkglib/citus.so ]]; then
    echo "ok 1 - # SKIP Citus is not installed ($build builds it)"
    exit 0
fi

# a Citus coordinator of its own, with shards on itself (shouldhaveshards)
DIR=$DBSYNC_TESTDIR/pg/citus
LOGF=$DBSYNC_TESTDIR/pg/citus.log
PORT=$((WH_PORT + 17))
while port_in_use "$PORT"; do PORT=$((PORT + 1)); done
pg_server_stop "$DIR" immediate
rm -rf "$DIR"
as_pg "$PG_BINDIR/initdb" -D "$DIR" -U postgres -E UTF8 --locale=C.UTF-8 -A trust -N >"$DIR.initdb.log" 2>&1
as_pg tee -a "$DIR/postgresql.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$PG_SOCKDIR'
fsync = off
shared_preload_libraries = 'citus,dbsync'
dbsync.database = 'citusdb'
max_worker_processes = 16
EOF
trap 'pg_server_stop "$DIR" immediate; rm -rf "$DIR"' EXIT
pg_server_start "$DIR" "$LOGF" || { not_ok "Citus coordinator starts"; exit 1; }
cit() { "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d citusdb "$@"; }
"$PG_BINDIR/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -c "CREATE DATABASE citusdb"

src_psql -q <<'SQL'
DROP SCHEMA IF EXISTS cit CASCADE;
CREATE SCHEMA cit;
CREATE TABLE cit.t (id int PRIMARY KEY, v text, updated_at timestamptz NOT NULL DEFAULT now());
INSERT INTO cit.t SELECT g, 'v' || g, now() - interval '1 hour' FROM generate_series(1, 10090) g;
CREATE TABLE cit.dim (id int PRIMARY KEY, name text);
INSERT INTO cit.dim SELECT g, 'd' || g FROM generate_series(1, 50) g;
SQL
cit <<SQL >/dev/null
SET client_min_messages = warning;
CREATE EXTENSION citus;
SELECT citus_set_coordinator_host('127.0.0.1', $PORT);
SELECT master_set_node_property('127.0.0.1', $PORT, 'shouldhaveshards', true);
CREATE EXTENSION dbsync;
CREATE SERVER cit FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB', schema 'cit', target_schema 'tgt');
CREATE USER MAPPING FOR postgres SERVER cit OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SQL
cq() { cit -Atc "$1"; }
run() { cq "SELECT string_agg(table_name || ':' || status, ',' ORDER BY table_name) FROM dbsync_run('cit')"; }

check "first load into plain tables on the coordinator" test "$(run)" = "dim:ok,t:ok"
cit -q <<'SQL' >/dev/null
SET client_min_messages = warning;
SELECT create_distributed_table('tgt.t', 'id');
SELECT create_reference_table('tgt.dim');
SQL
src_psql -qc "UPDATE cit.t SET v = 'changed', updated_at = now() WHERE id <= 10; DELETE FROM cit.dim WHERE id = 1"
check "a distributed and a reference target: both refused, never ok" test "$(run)" = "dim:error,t:error"
check "  ... with the reason and the way out" \
    eval '[ "$(cq "SELECT count(*) FROM dbsync.status WHERE server = '"'"'cit'"'"' AND last_error LIKE '"'"'%is a Citus%table%undistribute_table(%'"'"'")" = 2 ]'
check "  ... the distributed table keeps its rows, seen through Citus" \
    test "$(cq "SELECT count(*) FROM tgt.t")" = 10090
# emptied and re-synced: the case that used to report "ok, 10090 upserted" with no row visible
cq "TRUNCATE tgt.t" >/dev/null
cq "SELECT dbsync_resync('cit', 't')" >/dev/null
check "an emptied distributed target and a resync: an error, not a silent ok" \
    test "$(cq "SELECT status FROM dbsync_run('cit', 't')")" = error
check "  ... nothing written where Citus would not read it" \
    test "$(cq "SELECT count(*) FROM ONLY tgt.t")" = 0
# back to plain tables (undistribute_table makes new ones: adopted), synced again, exactly
cit -q <<'SQL' >/dev/null 2>&1
SELECT undistribute_table('tgt.t');
SELECT undistribute_table('tgt.dim');
SELECT dbsync_adopt_table('cit', 't');
SELECT dbsync_adopt_table('cit', 'dim');
SQL
check "after undistribute_table and dbsync_adopt_table the tables sync again" test "$(run)" = "dim:ok,t:ok"
digest() { echo "SELECT md5(string_agg(id || ':' || v, ',' ORDER BY id)) FROM $1"; }
check "  ... and equal the source" test "$(cq "$(digest tgt.t)")" = "$(src_psql -Atc "$(digest cit.t)")"
src_psql -qc "DROP SCHEMA cit CASCADE"

echo "1..$n"
[ "$failed" -eq 0 ]
