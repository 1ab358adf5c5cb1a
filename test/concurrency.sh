#!/usr/bin/env bash
# One run per table at a time (DESIGN.md "What a sync must guarantee" 10), for both
# drivers: a second run of a table that another run is syncing does not wait,
# reports status 'skipped' for that table, leaves its last_status alone, and the
# first run finishes with exactly the source's rows.
#
#   1  a SELECT dbsync_run() and a CALL dbsync_sync() while a CALL is in the middle
#      of an initial load (and repeated attempts for the rest of the load)
#   2  a second run while the first one's transaction is still open (incremental
#      run, lock held until commit): the second returns at once
#   3  a server-wide run while one table is held: only that table is skipped
set -uo pipefail
source "$(dirname "$0")/lib/fault_common.sh"

NOWAIT_LIMIT=1   # seconds a skipped run may take (it connects and discovers, never waits)

use_wh_db concurrency

# ---------------------------------------------------------------- sources
# PostgreSQL: schema conc_pg; MariaDB: database conc_my (granted to src_user)
src_psql -q <<SQL >/dev/null 2>&1 || { echo "not ok 1 - PostgreSQL source setup"; exit 1; }
DROP SCHEMA IF EXISTS conc_pg CASCADE;
CREATE SCHEMA conc_pg;
CREATE TABLE conc_pg.big (id bigint PRIMARY KEY, val text, updated_at timestamptz NOT NULL);
INSERT INTO conc_pg.big SELECT g, md5(g::text), timestamptz '2024-01-01 00:00:00+00' + g * interval '1 ms'
  FROM generate_series(1, $ROWS) g;
CREATE TABLE conc_pg.small_a (id bigint PRIMARY KEY, val text, updated_at timestamptz NOT NULL DEFAULT clock_timestamp());
INSERT INTO conc_pg.small_a SELECT g, 'a' || g, now() - interval '1 day' FROM generate_series(1, 1000) g;
CREATE TABLE conc_pg.small_b (LIKE conc_pg.small_a INCLUDING ALL);
INSERT INTO conc_pg.small_b SELECT * FROM conc_pg.small_a;
SQL
MY_OK=1
{
    my_root_sql -e "DROP DATABASE IF EXISTS conc_my; CREATE DATABASE conc_my CHARACTER SET utf8mb4;
        GRANT ALL ON conc_my.* TO '$SRC_USER'@'127.0.0.1', '$SRC_USER'@'localhost';" &&
    my_sql -e "CREATE TABLE conc_my.big (id bigint PRIMARY KEY, val varchar(40), updated_at timestamp(6) NOT NULL);
        INSERT INTO conc_my.big SELECT seq, md5(seq), timestamp'2024-01-01 00:00:00' + interval seq * 1000 microsecond FROM seq_1_to_$ROWS;
        CREATE TABLE conc_my.small_a (id bigint PRIMARY KEY, val varchar(40), updated_at timestamp(6) NOT NULL DEFAULT current_timestamp(6));
        INSERT INTO conc_my.small_a SELECT seq, concat('a', seq), now() - interval 1 day FROM seq_1_to_1000;
        CREATE TABLE conc_my.small_b LIKE conc_my.small_a;
        INSERT INTO conc_my.small_b SELECT * FROM conc_my.small_a;"
} >/dev/null 2>&1 || MY_OK=0

wh_psql -q <<SQL >/dev/null
CREATE SERVER cpg FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB', schema 'conc_pg', batch_size '$BATCH');
CREATE USER MAPPING FOR postgres SERVER cpg OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
CREATE SERVER cmy FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'mysql', host '127.0.0.1',
    port '$SRC_MY_PORT', dbname 'conc_my', batch_size '$BATCH');
CREATE USER MAPPING FOR postgres SERVER cmy OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SQL

# Canonical rows on both sides: id|val|updated_at (UTC, microseconds)
pg_src_rows() {
    src_psql -At -c "SELECT concat_ws('|', id, coalesce(val, '\\N'), to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'))
                     FROM conc_pg.$1 ORDER BY id"
}
my_src_rows() {
    my_sql -N -e "SET time_zone = '+00:00'; SELECT concat_ws('|', id, coalesce(val, '\\\\N'), date_format(updated_at, '%Y-%m-%d %H:%i:%s.%f'))
                  FROM conc_my.$1 ORDER BY id"
}
wh_rows() {  # SCHEMA TABLE
    wh_psql -At -c "SELECT concat_ws('|', id, coalesce(val, '\\N'), to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'))
                    FROM $1.$2 ORDER BY id"
}

# last_state TABLE: the committed status fields a skipped run must leave alone
last_state() {
    wh_val "SELECT concat_ws(' ', 'last_status=' || last_status, 'last_error_at=' || coalesce(last_error_at::text, '-'),
                             'last_synced_at=' || coalesce(last_synced_at::text, '-'))
              FROM dbsync.status WHERE server = '$SRV' AND table_name = '$1'"
}

suite() {
    local kind=$1 srcrows=$2 tag t0 dt r before after n_skip n_other res line

    # ---------------------------------------------------------- 1: mid-load
    tag="$kind 1 mid-load"
    bg_start "load_$SRV" "CALL dbsync_sync('$SRV', 'big')"
    local load_pid=$BG_PID
    if ! wait_ckpt_fast "load_$SRV" big "$BATCH" 60; then
        not_ok "$tag: the load reaches its first checkpoint"
        diag "$(cat "$T_WORK/load_$SRV.err")"
        bg_wait "$load_pid" 60 || bg_kill "$load_pid" "load_$SRV"
        return
    fi
    before=$(poll_q "SELECT last_status FROM dbsync.status WHERE server = '$SRV' AND table_name = 'big'")
    t0=$(now)
    r=$(poll_q "SELECT concat_ws('|', coalesce(mode, '-'), status, rows_upserted, message) FROM dbsync_run('$SRV', 'big')")
    dt=$(elapsed "$t0" "$(now)")
    after=$(poll_q "SELECT last_status FROM dbsync.status WHERE server = '$SRV' AND table_name = 'big'")
    figure "$tag: second run (SELECT dbsync_run) returned after" "$dt s: $r"
    if [[ $r == "-|skipped|0|another run is syncing this table" ]]; then
        ok "$tag: a concurrent SELECT dbsync_run() reports 'skipped' for the table ($r)"
    else
        not_ok "$tag: a concurrent SELECT dbsync_run() reports 'skipped' for the table (got: $r)"
    fi
    if lt "$dt" "$NOWAIT_LIMIT"; then ok "$tag: the second run does not wait (${dt}s)"
    else not_ok "$tag: the second run does not wait (took ${dt}s)"; fi
    if [[ $before == running && $after == running ]]; then
        ok "$tag: last_status is left alone ('$before' before and after)"
    else
        not_ok "$tag: last_status is left alone (before '$before', after '$after')"
    fi
    # keep trying for the rest of the load: every attempt must be skipped
    n_skip=0 n_other=0
    local deadline=$((SECONDS + 60)) i=0
    while kill -0 "$load_pid" 2>/dev/null && ((SECONDS < deadline)); do
        i=$((i + 1))
        if ((i % 2)); then
            res=$(poll_q "SELECT status FROM dbsync_run('$SRV', 'big')")
        else
            res=$(PGAPPNAME=second wh_psql -c "CALL dbsync_sync('$SRV', 'big')" 2>&1 | grep -o "dbsync: $SRV\.big: [^,]*, [a-z]*" | sed 's/.*, //')
        fi
        # an attempt that started after the load ended may legitimately run
        if [[ $res == skipped ]]; then n_skip=$((n_skip + 1))
        elif kill -0 "$load_pid" 2>/dev/null; then n_other=$((n_other + 1)); diag "attempt $i during the load: '$res'"
        fi
    done
    poll_close
    if bg_wait "$load_pid" 60; then
        line=$(notice_of "load_$SRV" big)
        if [[ $line == "initial, ok, $ROWS upserted, 0 deleted" ]]; then
            ok "$tag: the first run completes the whole load ($line)"
        else
            not_ok "$tag: the first run completes the whole load (got: ${line:-$(head -c 300 "$T_WORK/load_$SRV.err")})"
        fi
    else
        not_ok "$tag: the first run completes"
        bg_kill "$load_pid" "load_$SRV"
    fi
    figure "$tag: repeated attempts during the load" "$n_skip skipped, $n_other not skipped"
    if ((n_other == 0 && n_skip > 0)); then
        ok "$tag: all $n_skip further attempts during the load were skipped"
    else
        not_ok "$tag: all further attempts during the load were skipped ($n_skip skipped, $n_other not)"
    fi
    [[ $(st last_status big) == ok && $(st initial_load_pending big) == f ]] &&
        ok "$tag: status after the load: ok, no load pending" ||
        not_ok "$tag: status after the load: ok, no load pending ($(st last_status big), pending $(st initial_load_pending big))"
    compare "$tag: warehouse equals source" "$srcrows big" "wh_rows $SRV big"

    # ---------------------------------------------------------- 2: open transaction
    tag="$kind 2 lock held by an open transaction"
    wh_val "SELECT count(*) FROM dbsync_run('$SRV')" >/dev/null   # small_a, small_b loaded
    local fifo=$T_WORK/hold.fifo hpid
    rm -f "$fifo"; mkfifo "$fifo"
    PGAPPNAME=holder wh_psql -At <"$fifo" >"$T_WORK/holder.out" 2>&1 &
    hpid=$!
    exec 9>"$fifo"
    echo "BEGIN; SELECT 'first:' || status FROM dbsync_run('$SRV', 'small_a');" >&9
    wait_until 20 grep -q '^first:' "$T_WORK/holder.out"
    diag "first run (transaction still open): $(grep '^first:' "$T_WORK/holder.out")"
    before=$(last_state small_a)
    t0=$(now)
    r=$(run_row small_a)
    dt=$(elapsed "$t0" "$(now)")
    after=$(last_state small_a)
    figure "$tag: second run returned after" "$dt s: $r"
    [[ $r == "-|skipped|0|0|another run is syncing this table" ]] &&
        ok "$tag: the second run reports 'skipped' ($r)" || not_ok "$tag: the second run reports 'skipped' (got: $r)"
    if lt "$dt" "$NOWAIT_LIMIT"; then ok "$tag: the second run does not wait for the first (${dt}s)"
    else not_ok "$tag: the second run does not wait for the first (took ${dt}s)"; fi
    [[ $before == "$after" && $before == last_status=ok* ]] && ok "$tag: the committed status is left alone ($after)" ||
        not_ok "$tag: the committed status is left alone (before '$before', after '$after')"

    # ---------------------------------------------------------- 3: server-wide run
    tag="$kind 3 server-wide run while one table is held"
    r=$(wh_val "SELECT string_agg(table_name || ':' || status, ',' ORDER BY table_name) FROM dbsync_run('$SRV')")
    [[ $r == "big:ok,small_a:skipped,small_b:ok" ]] && ok "$tag: only the held table is skipped ($r)" ||
        not_ok "$tag: only the held table is skipped (got: $r)"
    echo "COMMIT;" >&9
    exec 9>&-
    wait "$hpid" 2>/dev/null || true
    [[ $(st last_status small_a) == ok ]] && ok "$tag: the holder's run commits with status ok" ||
        not_ok "$tag: the holder's run commits with status ok ($(st last_status small_a))"
    compare "$tag: small_a equals source" "$srcrows small_a" "wh_rows $SRV small_a"
    compare "$tag: small_b equals source" "$srcrows small_b" "wh_rows $SRV small_b"
}

SRV=cpg
suite PostgreSQL pg_src_rows
SRV=cmy
if ((MY_OK)); then
    suite MariaDB my_src_rows
else
    not_ok "MariaDB: source setup (database conc_my) failed"
fi

print_figures
((T_FAILED == 0))
