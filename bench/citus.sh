#!/usr/bin/env bash
# bench/citus.sh: dbsync into a Citus warehouse, beside the same load into a
# plain table and beside psql's COPY through Citus, in one run.
#
#   bash bench/citus.sh               # as root on Debian 12; 1,000,000 rows
#   ROWS=200000 bash bench/citus.sh   # quick run
#
# Starts its own servers under $DBSYNC_TESTDIR (default /tmp/dbsync-bench-citus):
# the project's harness (scripts/testenv.sh) for the PostgreSQL source, and a
# Citus coordinator with two workers (test/lib/citus_cluster.sh), fsync on.
# Citus is built from ../shared/tools/build-citus.sh when missing.  Each
# measurement runs RUNS times (default 2), the best time is kept.  The rows and
# the table shape are bench/run.sh's.  Results: bench/results/citus-ROWS.txt.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
ROWS=${ROWS:-1000000}
RUNS=${RUNS:-2}
export DBSYNC_TESTDIR=${DBSYNC_TESTDIR:-/tmp/dbsync-bench-citus}
export DBSYNC_REPO=$ROOT
[[ $ROWS =~ ^[0-9]+$ && $ROWS -ge 1000 ]] || { echo "ROWS must be a number >= 1000" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "run bench/citus.sh as root" >&2; exit 1; }

if [[ -f $DBSYNC_TESTDIR/env.sh ]]; then bash "$ROOT/scripts/testenv.sh" stop || true; fi
[[ ${SKIP_BUILD:-} == 1 ]] || (cd "$ROOT" && make -s >/dev/null && make -s install >/dev/null)
WH_PORT=59532 SRC_PG_PORT=59533 SRC_MY_PORT=59406 bash "$ROOT/scripts/testenv.sh" start >/dev/null
# shellcheck source=../scripts/lib.sh
source "$ROOT/scripts/lib.sh"
# shellcheck source=../test/lib/citus_cluster.sh
source "$ROOT/test/lib/citus_cluster.sh"
citus_available || { echo "Citus is not installed and ../shared/tools/build-citus.sh is not at hand" >&2; exit 1; }
CITUS_FSYNC=on citus_cluster_start bench
cleanup() { citus_cluster_stop; bash "$ROOT/scripts/testenv.sh" stop >/dev/null 2>&1 || true; }
trap cleanup EXIT

ONE_PCT=$((ROWS / 100))
COLS='id, a, b, c, x, y, label, payload, created_at, updated_at'
DDL='id bigint PRIMARY KEY, a int, b int, c int, x double precision, y double precision,
     label text, payload text, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL'
src_psql -q <<SQL
DROP SCHEMA IF EXISTS bench CASCADE;
CREATE SCHEMA bench;
CREATE TABLE bench.t ($DDL);
INSERT INTO bench.t
SELECT g, g % 1000, (g * 7) % 100000, g % 17, g / 3.0, (g % 1000) * 0.25,
       'label-' || (g % 100), repeat(md5(g::text), 5),
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
FROM generate_series(1, $ROWS) g;
CREATE INDEX ON bench.t (updated_at);
VACUUM ANALYZE bench.t;
SQL
cit -q <<SQL
SET client_min_messages = warning;
CREATE EXTENSION dbsync;
CREATE SCHEMA peer;
CREATE TABLE peer.dist ($DDL);
SELECT create_distributed_table('peer.dist', 'id');
CREATE TABLE peer.plain ($DDL);
CREATE SERVER dist FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB', schema 'bench', target_schema 'dist', distributed_tables 't');
CREATE USER MAPPING FOR postgres SERVER dist OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
CREATE SERVER plain FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB', schema 'bench', target_schema 'plain');
CREATE USER MAPPING FOR postgres SERVER plain OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SQL

# seconds of the best of RUNS runs of: SETUP (untimed), then the timed command
declare -A BEST
best() { # KEY SETUP_FN TIMED_FN
    local key=$1 i t0 t
    for ((i = 0; i < RUNS; i++)); do
        "$2"
        cit -qc CHECKPOINT
        t0=$(date +%s.%N)
        "$3"
        t=$(echo "$(date +%s.%N) - $t0" | bc)
        if [[ -z ${BEST[$key]:-} ]] || (($(echo "$t < ${BEST[$key]}" | bc))); then BEST[$key]=$t; fi
    done
}
run_ok() { # SERVER: dbsync_run, every table ok
    local out
    out=$(cit -Atc "SELECT string_agg(status, ',') FROM dbsync_run('$1')")
    [[ $out == ok ]] || { echo "dbsync_run('$1'): $out" >&2; exit 1; }
}
count_is() { [[ $(cit -Atc "SELECT count(*) FROM $1") == "$2" ]] || { echo "$1: wrong row count" >&2; exit 1; }; }

pipe_reset_dist() { cit -qc "TRUNCATE peer.dist"; }
pipe_reset_plain() { cit -qc "TRUNCATE peer.plain"; }
pipe_into() {
    src_psql -c "COPY (SELECT $COLS FROM bench.t) TO STDOUT" | cit -c "COPY $1 ($COLS) FROM STDIN"
    count_is "$1" "$ROWS"
}
pipe_dist() { pipe_into peer.dist; }
pipe_plain() { pipe_into peer.plain; }
dbs_reset() { # SERVER: an empty target of the same layout, state forgotten
    cit -qc "TRUNCATE $1.t" -c "SELECT dbsync_resync('$1', 't')" >/dev/null 2>&1 ||
        cit -qc "SELECT dbsync_resync('$1', 't')"
}
dbs_reset_dist() { dbs_reset dist; }
dbs_reset_plain() { dbs_reset plain; }
dbs_load_dist() { run_ok dist; count_is dist.t "$ROWS"; }
dbs_load_plain() { run_ok plain; count_is plain.t "$ROWS"; }
touch_one_pct() {
    src_psql -qc "UPDATE bench.t SET a = a + 1, updated_at = now() WHERE id % 100 = 7"
}
dbs_incr_dist() { run_ok dist; }
dbs_incr_plain() { run_ok plain; }
noop() { :; }

# the targets exist (the first run creates and distributes dist.t)
run_ok dist; run_ok plain
best pipe_dist pipe_reset_dist pipe_dist
best pipe_plain pipe_reset_plain pipe_plain
best dbs_dist dbs_reset_dist dbs_load_dist
best dbs_plain dbs_reset_plain dbs_load_plain
best incr_dist touch_one_pct dbs_incr_dist
# the plain target has not seen the last updates yet: one run brings it level first
run_ok plain
best incr_plain touch_one_pct dbs_incr_plain
run_ok dist
same() { echo "SET TimeZone = 'UTC'; SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM (SELECT $COLS FROM $1 OFFSET 0) t"; }
src_sum=$(src_psql -At -c "$(same bench.t)" | tail -1)
[[ $(cit -At -c "$(same dist.t)" | tail -1) == "$src_sum" && $(cit -At -c "$(same plain.t)" | tail -1) == "$src_sum" ]] ||
    { echo "a target differs from the source" >&2; exit 1; }

mkdir -p "$HERE/results"
OUT=$HERE/results/citus-$ROWS.txt
{
    echo "dbsync on Citus 13.2.2 (coordinator + 2 workers, one machine, $(nproc) cores, fsync on), $ROWS rows, best of $RUNS, $(date -u +%F)"
    printf '%-62s %9s %10s %9s\n' "method" "time s" "rows/s" "x pipe"
    line() { printf '%-62s %9.3f %10.0f %9s\n' "$1" "$2" "$(echo "$3 / $2" | bc -l)" "$4"; }
    ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }
    echo "-- full load of $ROWS rows into an empty table"
    line "psql COPY TO STDOUT | psql COPY FROM STDIN, distributed" "${BEST[pipe_dist]}" "$ROWS" "(ref)"
    line "dbsync_run, distributed target (distributed_tables)" "${BEST[dbs_dist]}" "$ROWS" "$(ratio "${BEST[dbs_dist]}" "${BEST[pipe_dist]}")"
    line "psql COPY TO STDOUT | psql COPY FROM STDIN, plain table" "${BEST[pipe_plain]}" "$ROWS" "(ref)"
    line "dbsync_run, plain target on the coordinator" "${BEST[dbs_plain]}" "$ROWS" "$(ratio "${BEST[dbs_plain]}" "${BEST[pipe_plain]}")"
    echo "-- 1% incremental ($ONE_PCT rows updated at the source)"
    line "dbsync_run, distributed target" "${BEST[incr_dist]}" "$ONE_PCT" "-"
    line "dbsync_run, plain target" "${BEST[incr_plain]}" "$ONE_PCT" "-"
    echo "both targets equal the source at the end (md5 of every row)"
} | tee "$OUT"
