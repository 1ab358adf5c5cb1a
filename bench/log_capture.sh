#!/usr/bin/env bash
# bench/log_capture.sh: dbsync's log capture (capture 'log') beside PostgreSQL's
# own logical replication (CREATE SUBSCRIPTION), on the same change stream.
#
#   bash bench/log_capture.sh                      # as root on Debian 12; 1,000,000 rows, about 2 minutes
#   ROWS=200000 TXNS=500 LAG_SECS=15 bash bench/log_capture.sh   # quick run
#
# Starts its own throwaway servers with the project's harness (scripts/testenv.sh)
# under $DBSYNC_TESTDIR (default /tmp/dbsync-bench-logcap) on ports 59832/59833/59706
# (the next free ones when taken); the harness runs the source with
# wal_level = logical.  The warehouse gets fsync = on (as in bench/run.sh).
# USE_RUNNING=1 uses an environment that already runs at $DBSYNC_TESTDIR instead
# (e.g. DBSYNC_TESTDIR=/tmp/dbsync-test: the test suite's; fsync left as it is)
# and neither starts nor stops servers.
#
# One table lcbench.t at the source (bench/run.sh's shape plus changed_at),
# consumed by two consumers in the one warehouse:
#   sub     CREATE SUBSCRIPTION lcbench_sub (publication lcbench_sub_pub) into the
#           second database $SUB_DB, table lcbench.t (same columns, same key)
#   dbsync  server lcbench with capture 'log' (slot dbsync_lcbench, publication
#           dbsync_lcbench made by dbsync) into $WH_DB, its own target table
# Measured:
#   0. initial copy: CREATE SUBSCRIPTION until the table is ready; the first dbsync_run
#   1. catch-up from a backlog, RUNS rounds, best time kept: both consumers stopped,
#      CALL lcbench.churn() commits TXNS transactions of TX_ROWS row changes each (60%
#      updates of scattered rows, 20% inserts, 20% deletes), then, one after the other
#      (dbsync first in odd rounds, the subscription first in even ones): one
#      CALL dbsync_sync('lcbench') (it streams to the source's WAL position at its start,
#      committing every group of source transactions and telling the source as it goes,
#      as the apply worker does; one dbsync_run would hold the whole catch-up in one
#      transaction, and the source could forget none of that WAL until the next run),
#      and ALTER SUBSCRIPTION .. ENABLE until the last transaction of the stream is
#      visible in its target (polled every 20 ms)
#   2. lag at a steady rate: a writer commits LAG_RATE single-row updates per second
#      (changed_at = clock_timestamp()) for LAG_SECS s while both stream (dbsync through
#      its background worker, sync_interval '1s'); every SAMPLE_MS ms, in each target:
#      lag = clock_timestamp() - max(changed_at) (one machine, one clock)
#   3. both targets equal the source (count and md5 of every row's md5)
# Results: $DBSYNC_TESTDIR/bench/results.txt, kept as bench/results/log-capture.txt
# when the dbsync half ran at the default scale (ROWS TXNS TX_ROWS LAG_* SAMPLE_MS).  A test suite (scripts/run-tests.sh) running meanwhile
# on the same cores is looked for at every step and flagged in the table.
#
# Environment:
#   ROWS=N          rows of the table (default 1000000)
#   TXNS=N          transactions of the backlog (default 2000)
#   TX_ROWS=N       row changes per backlog transaction (default 100: 60% updates, 20% inserts, 20% deletes)
#   LAG_SECS=N      seconds of lag sampling (default 30); LAG_RATE=N tx/s (default 200); SAMPLE_MS (default 100)
#   DBSYNC=auto|1|0 run the dbsync half: auto (default) when the installed extension accepts
#                   capture 'log' (else the table says why); 1 insists; 0 never
#   SKIP_BUILD=1    do not run `make && make install` in the repository first
#   KEEP=1          leave servers and objects as they are at the end
#   USE_RUNNING=1   use the servers that run at $DBSYNC_TESTDIR (see above)
#   RUNS=N          rounds of the backlog catch-up, best time kept (default 4: each consumer goes first twice; 1..9)
#   CATCHUP_TIMEOUT seconds a consumer may take to catch up before the run fails (default 600)
#   FINAL_WAIT=N    seconds the dbsync worker gets to apply the last change before the end's
#                   comparison; then it is stopped and one dbsync_run levels the target (default 60)
#   DBSYNC_TESTDIR, WH_PORT, SRC_PG_PORT, SRC_MY_PORT, WH_DB, SUB_DB: where things live
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")

# ---------------------------------------------------------------- scale
ROWS=${ROWS:-1000000}
TXNS=${TXNS:-2000}
TX_ROWS=${TX_ROWS:-100}
LAG_SECS=${LAG_SECS:-30}
LAG_RATE=${LAG_RATE:-200}
SAMPLE_MS=${SAMPLE_MS:-100}
CATCHUP_TIMEOUT=${CATCHUP_TIMEOUT:-600}
RUNS=${RUNS:-4}
DBSYNC_MODE=${DBSYNC:-auto}
USE_RUNNING=${USE_RUNNING:-0}

for v in ROWS TXNS TX_ROWS LAG_SECS LAG_RATE SAMPLE_MS CATCHUP_TIMEOUT RUNS; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -ge 1 ]] || { echo "$v must be a positive number" >&2; exit 1; }
done
[[ $DBSYNC_MODE =~ ^(auto|0|1)$ ]] || { echo "DBSYNC must be auto, 1 or 0" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "run bench/log_capture.sh as root (it starts servers as postgres and mysql)" >&2; exit 1; }
N_UPD=$((TX_ROWS * 6 / 10))
N_INS=$((TX_ROWS * 2 / 10))
N_DEL=$((TX_ROWS - N_UPD - N_INS))
HALF=$((ROWS / 2))
# deletes walk up from id 2, updates hit ids HALF..ROWS-1 (row 1 is the marker): keep them apart
((RUNS <= 9)) || { echo "RUNS must be 1..9" >&2; exit 1; }
((ROWS >= 10000 && RUNS * TXNS * N_DEL + 2 < HALF)) ||
    { echo "ROWS must be >= 10000 and more than twice RUNS x TXNS x $N_DEL deleted rows per transaction" >&2; exit 1; }

# ---------------------------------------------------------------- servers: own or running
if [[ $USE_RUNNING == 1 ]]; then
    export DBSYNC_TESTDIR=${DBSYNC_TESTDIR:-/tmp/dbsync-test}
else
    export DBSYNC_TESTDIR=${DBSYNC_TESTDIR:-/tmp/dbsync-bench-logcap}
fi
# One run per base dir at a time: a second one would stop and wipe the first's servers.
# (fd 9 is closed for the servers started below, so that they never hold the lock.)
exec 9>"$DBSYNC_TESTDIR.lock"
flock -n 9 || { echo "another bench/log_capture.sh runs with DBSYNC_TESTDIR=$DBSYNC_TESTDIR; wait for it or set another DBSYNC_TESTDIR" >&2; exit 1; }
if [[ $USE_RUNNING == 1 ]]; then
    [[ -f $DBSYNC_TESTDIR/env.sh ]] || { echo "USE_RUNNING=1: no $DBSYNC_TESTDIR/env.sh (start it: bash scripts/testenv.sh start)" >&2; exit 1; }
    # shellcheck source=../scripts/lib.sh
    source "$ROOT/scripts/lib.sh"
    if ! pg_server_running "$WH_DATADIR" || ! pg_server_running "$SRC_PG_DATADIR"; then
        die "USE_RUNNING=1: the PostgreSQL servers under $DBSYNC_TESTDIR do not run"
    fi
    if pgrep -f run-tests.sh >/dev/null; then
        die "USE_RUNNING=1: a test suite (run-tests.sh) is running; try again when it is done"
    fi
else
    export WH_DB=${WH_DB:-dbsync_bench}
    WANT_WH_PORT=${WH_PORT:-59832}
    WANT_SRC_PG_PORT=${SRC_PG_PORT:-59833}
    WANT_SRC_MY_PORT=${SRC_MY_PORT:-59706}
    unset WH_PORT SRC_PG_PORT SRC_MY_PORT
    # stop what an earlier (aborted or KEEP=1) run left under our base dir
    if [[ -f $DBSYNC_TESTDIR/env.sh ]]; then bash "$ROOT/scripts/testenv.sh" stop || true; fi
    export DBSYNC_NO_ENV_FILE=1
    # shellcheck source=../scripts/lib.sh
    source "$ROOT/scripts/lib.sh"
fi
SUB_DB=${SUB_DB:-dbsync_bench_sub}

BENCH_DIR=$DBSYNC_TESTDIR/bench
LOGDIR=$BENCH_DIR/logs
RESULTS=$BENCH_DIR/results.txt
BENCH_T0=$SECONDS
rm -rf "$BENCH_DIR"
mkdir -p "$LOGDIR"
chmod 755 "$DBSYNC_TESTDIR" "$BENCH_DIR" "$LOGDIR"
# a test suite on the same two cores skews every figure: looked for at every step, said in the report
COMPETING=""
competing() { pgrep -f run-tests.sh >/dev/null && COMPETING="a test suite (run-tests.sh) ran during this benchmark: figures skewed"; return 0; }
note() { competing; printf '[logcap %4ds] %s\n' $((SECONDS - BENCH_T0)) "$*" >&2; }

if [[ $USE_RUNNING != 1 ]]; then
    CHOSEN_PORTS=" "
    pick_port() {
        local p=$1 i
        for ((i = 0; i < 200; i++, p++)); do
            [[ $CHOSEN_PORTS == *" $p "* ]] && continue
            port_in_use "$p" && continue
            echo "$p"
            return 0
        done
        die "no free port near $1"
    }
    WH_PORT=$(pick_port "$WANT_WH_PORT"); CHOSEN_PORTS+="$WH_PORT "
    SRC_PG_PORT=$(pick_port "$WANT_SRC_PG_PORT"); CHOSEN_PORTS+="$SRC_PG_PORT "
    SRC_MY_PORT=$(pick_port "$WANT_SRC_MY_PORT")
    export WH_PORT SRC_PG_PORT SRC_MY_PORT
fi

# ---------------------------------------------------------------- build
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    (cd "$ROOT" && make && make install) >"$LOGDIR/build.log" 2>&1 ||
        { log_tail "$LOGDIR/build.log"; die "make && make install failed (SKIP_BUILD=1 uses the installed dbsync)"; }
    note "dbsync built and installed"
fi
[[ -f $("$PG_CONFIG" --pkglibdir)/dbsync.so ]] || die "dbsync.so is not installed; run make && make install"

# ---------------------------------------------------------------- names
SCHEMA=lcbench                    # at the source, in $SUB_DB; dbsync's target schema (the server's name)
SRV=lcbench                       # dbsync server
DBS_SLOT=dbsync_lcbench           # its slot (given), publication (dbsync's default name)
DBS_PUB=dbsync_lcbench
SUB=lcbench_sub                   # subscription = its slot at the source
SUB_PUB=lcbench_sub_pub
COLS='id, a, b, c, x, y, label, payload, created_at, updated_at, changed_at'
DDL='id bigint PRIMARY KEY, a int, b int, c int, x double precision, y double precision,
     label text, payload text, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
     changed_at timestamptz NOT NULL'

# ---------------------------------------------------------------- clients
# the subscription's database, and the warehouse's postgres database (lib.sh has the others)
sub_psql() {
    "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$WH_PORT" -U postgres -d "$SUB_DB" "$@"
}
whpg_psql() {
    "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$WH_PORT" -U postgres -d postgres "$@"
}

# ---------------------------------------------------------------- cleanup
BG_PIDS=()
MADE_EXTENSION=0
SERVERS_UP=0
HAD_REPLICATION=""
# quiet: psql with a statement timeout, errors ignored (cleanup must not hang or stop)
quiet() { PGOPTIONS='-c statement_timeout=30s -c client_min_messages=warning' "$@" >>"$LOGDIR/cleanup.log" 2>&1 || true; }
drop_objects() {
    local i left
    quiet wh_psql -c "DROP SERVER IF EXISTS $SRV CASCADE" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE"
    if [[ $(whpg_psql -Atc "SELECT count(*) FROM pg_database WHERE datname = '$SUB_DB'" 2>/dev/null) == 1 ]]; then
        # without the source (slot_name = NONE): the slot is dropped at the source below
        quiet sub_psql -c "ALTER SUBSCRIPTION $SUB DISABLE"
        quiet sub_psql -c "ALTER SUBSCRIPTION $SUB SET (slot_name = NONE)"
        quiet sub_psql -c "DROP SUBSCRIPTION IF EXISTS $SUB"
        quiet whpg_psql -c "DROP DATABASE IF EXISTS $SUB_DB WITH (FORCE)"
    fi
    # slots: ours, and the subscription's table-sync slots (pg_<suboid>_sync_...)
    local slots="slot_name IN ('$SUB', '$DBS_SLOT') OR slot_name LIKE 'pg\\_${SUB_OID:-0}\\_sync\\_%'"
    for ((i = 0; i < 25; i++)); do
        quiet src_admin_psql -c "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE ($slots) AND active_pid IS NOT NULL" \
            -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE ($slots) AND NOT active"
        left=$(src_admin_psql -Atc "SELECT count(*) FROM pg_replication_slots WHERE $slots" 2>/dev/null || echo 0)
        [[ $left == 0 ]] && break
        sleep 0.2
    done
    [[ ${left:-0} == 0 ]] || warn "replication slots left at the source: $(src_admin_psql -Atc "SELECT string_agg(slot_name, ', ') FROM pg_replication_slots WHERE $slots" 2>/dev/null)"
    quiet src_admin_psql -c "DROP PUBLICATION IF EXISTS $SUB_PUB, $DBS_PUB" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE"
    [[ $HAD_REPLICATION == f ]] && quiet src_admin_psql -c "ALTER ROLE $SRC_USER NOREPLICATION"
    ((MADE_EXTENSION)) && quiet wh_psql -c "DROP EXTENSION IF EXISTS dbsync CASCADE"
    return 0
}
cleanup() {
    local rc=$? p
    set +e
    for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    if [[ ${KEEP:-0} == 1 ]]; then
        log "KEEP=1: servers and objects left as they are"
        [[ $USE_RUNNING == 1 ]] || log "stop them with: DBSYNC_TESTDIR=$DBSYNC_TESTDIR bash scripts/testenv.sh stop"
    else
        ((SERVERS_UP)) && drop_objects
        [[ $USE_RUNNING == 1 ]] || bash "$ROOT/scripts/testenv.sh" stop >/dev/null 2>&1
    fi
    ((rc == 0)) || log "benchmark FAILED (rc $rc); logs in $LOGDIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- start
if [[ $USE_RUNNING != 1 ]]; then
    note "starting servers under $DBSYNC_TESTDIR (warehouse $WH_PORT, source PG $SRC_PG_PORT)"
    bash "$ROOT/scripts/testenv.sh" start >"$LOGDIR/testenv.log" 2>&1 9>&- ||
        { log_tail "$LOGDIR/testenv.log"; die "scripts/testenv.sh start failed"; }
    unset DBSYNC_NO_ENV_FILE
    # shellcheck source=/dev/null
    source "$DBSYNC_TESTDIR/env.sh"
fi
SERVERS_UP=1
[[ $(src_admin_psql -Atc "SHOW wal_level") == logical ]] ||
    die "the source PostgreSQL runs with wal_level = $(src_admin_psql -Atc "SHOW wal_level"), not logical (scripts/testenv.sh sets it; restart the environment)"
if [[ $USE_RUNNING != 1 ]]; then
    # fsync on in the warehouse (the harness turns it off; fsync is reloadable)
    wh_psql -Atc "ALTER SYSTEM SET fsync = on" -c "SELECT pg_reload_conf()" >/dev/null
    fsync_on() { [[ $(wh_psql -Atc "SHOW fsync") == on ]]; }
    wait_until 10 fsync_on || die "could not turn fsync on in the warehouse"
fi
WH_FSYNC=$(wh_psql -Atc "SHOW fsync")
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
drop_objects   # what an aborted USE_RUNNING run may have left

# ---------------------------------------------------------------- source
note "generating $ROWS rows at the source"
HAD_REPLICATION=$(src_admin_psql -Atc "SELECT rolreplication FROM pg_roles WHERE rolname = '$SRC_USER'")
src_admin_psql -qc "ALTER ROLE $SRC_USER REPLICATION"
src_psql >"$LOGDIR/src_setup.log" 2>&1 <<SQL
SET client_min_messages = warning;
CREATE SCHEMA $SCHEMA;
CREATE TABLE $SCHEMA.t ($DDL);
INSERT INTO $SCHEMA.t
SELECT g, g % 1000, (g * 7) % 100000, g % 17, g / 3.0, (g % 1000) * 0.25,
       'label-' || (g % 100), repeat(md5(g::text), 5),
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second'
FROM generate_series(1, $ROWS) g;
VACUUM ANALYZE $SCHEMA.t;
CREATE PUBLICATION $SUB_PUB FOR TABLE $SCHEMA.t;

-- The backlog: txns transactions, each updating n_upd scattered rows of the upper
-- half, inserting n_ins new rows and deleting n_del rows from id 2 upwards, then one
-- transaction that bumps the marker row (id 1, column c).  Returns the row changes.
CREATE PROCEDURE $SCHEMA.churn(txns int, n_upd int, n_ins int, n_del int, INOUT changes bigint DEFAULT 0)
LANGUAGE plpgsql AS \$\$
DECLARE
    half bigint := $HALF;
    next_id bigint := (SELECT max(id) + 1 FROM $SCHEMA.t);
    del_id bigint := (SELECT min(id) FROM $SCHEMA.t WHERE id > 1);
    n bigint;
BEGIN
    FOR i IN 1..txns LOOP
        UPDATE $SCHEMA.t SET a = a + 1, x = x + 0.5,
               payload = md5(id::text || ' tx ' || i) || substr(payload, 33),
               updated_at = clock_timestamp(), changed_at = clock_timestamp()
         WHERE id IN (SELECT half + ((i::bigint * n_upd + g) * 7919) % half FROM generate_series(0, n_upd - 1) g);
        GET DIAGNOSTICS n = ROW_COUNT;
        changes := changes + n;
        INSERT INTO $SCHEMA.t
        SELECT g, g % 1000, (g * 7) % 100000, g % 17, g / 3.0, (g % 1000) * 0.25,
               'label-' || (g % 100), repeat(md5(g::text), 5), clock_timestamp(), clock_timestamp(), clock_timestamp()
          FROM generate_series(next_id, next_id + n_ins - 1) g;
        GET DIAGNOSTICS n = ROW_COUNT;
        changes := changes + n;
        next_id := next_id + n_ins;
        DELETE FROM $SCHEMA.t WHERE id >= del_id AND id < del_id + n_del;
        GET DIAGNOSTICS n = ROW_COUNT;
        changes := changes + n;
        del_id := del_id + n_del;
        COMMIT;
    END LOOP;
    UPDATE $SCHEMA.t SET c = c + 1, changed_at = clock_timestamp() WHERE id = 1;
    changes := changes + 1;
    COMMIT;
END \$\$;

-- The steady writer: rate single-row updates per second for secs seconds
-- (ids lo .. lo + span - 1), paced against its start; returns the transactions.
CREATE PROCEDURE $SCHEMA.writer(secs float8, rate int, lo bigint, span bigint, INOUT n bigint DEFAULT 0)
LANGUAGE plpgsql AS \$\$
DECLARE
    t0 timestamptz := clock_timestamp();
    d float8;
BEGIN
    WHILE n::float8 / rate < secs LOOP
        n := n + 1;
        UPDATE $SCHEMA.t SET a = a + 1, changed_at = clock_timestamp() WHERE id = lo + (n * 7919) % span;
        COMMIT;
        d := n::float8 / rate - extract(epoch FROM clock_timestamp() - t0);
        IF d > 0 THEN PERFORM pg_sleep(d); END IF;
    END LOOP;
END \$\$;
SQL
SRC_SIZE=$(src_psql -Atc "SELECT pg_size_pretty(pg_total_relation_size('$SCHEMA.t'))")

# bump_marker: a transaction on row 1 at the source; prints the new marker value
bump_marker() { src_psql -Atc "UPDATE $SCHEMA.t SET c = c + 1, changed_at = clock_timestamp() WHERE id = 1 RETURNING c"; }
src_marker() { src_psql -Atc "SELECT c FROM $SCHEMA.t WHERE id = 1"; }
# wait_marker_sql TABLE VALUE: a DO block that returns once row 1 of TABLE has c = VALUE
# (polled every 20 ms, each poll a new snapshot); fails after CATCHUP_TIMEOUT seconds
wait_marker_sql() {
    cat <<SQL
DO \$\$ DECLARE t0 timestamptz := clock_timestamp(); BEGIN
    WHILE coalesce((SELECT c FROM $1 WHERE id = 1), -1) <> $2 LOOP
        IF clock_timestamp() - t0 > interval '$CATCHUP_TIMEOUT s' THEN
            RAISE EXCEPTION 'row 1 of $1 did not reach c = $2 within $CATCHUP_TIMEOUT s';
        END IF;
        PERFORM pg_sleep(0.02);
    END LOOP;
END \$\$;
SQL
}

# shellcheck disable=SC2028  # the echoed backslashes are psql meta-commands, meant literally
# timed KEY PSQLFN BODY: one session of PSQLFN (wh_psql / sub_psql); BODY timed with
# clock_timestamp() around it; sets T_SECS, and T_OUT (the session's output file)
timed() {
    local key=$1 fn=$2 body=$3 f=$LOGDIR/$1
    {
        echo "SELECT clock_timestamp() AS lc_t0 \\gset"
        printf '%s\n' "$body"
        echo "SELECT round(extract(epoch FROM clock_timestamp() - :'lc_t0'::timestamptz)::numeric, 3) AS lc_secs \\gset"
        echo "\\echo SECS :lc_secs"
    } >"$f.sql"
    "$fn" -f "$f.sql" >"$f.out" 2>&1 || { log_tail "$f.out"; die "$key failed (see $f.out)"; }
    T_OUT=$f.out
    T_SECS=$(awk '/^SECS / {print $2}' "$f.out" | tail -n 1)
    [[ -n $T_SECS ]] || die "$key: no timing in $f.out"
}
slot_active() { [[ $(src_admin_psql -Atc "SELECT coalesce(bool_or(active), false) FROM pg_replication_slots WHERE slot_name = '$1'") == "$2" ]]; }
slot_exists() { [[ $(src_admin_psql -Atc "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$1'") == 1 ]]; }
settle_all() {
    wh_psql -c "VACUUM (ANALYZE) $DBS_TARGET" -c CHECKPOINT 2>/dev/null || wh_psql -c CHECKPOINT
    sub_psql -c "VACUUM (ANALYZE) $SCHEMA.t"
    src_admin_psql -c "VACUUM (ANALYZE) $SCHEMA.t" -c CHECKPOINT
}
f3() { printf '%.3f' "$1"; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2f", a / b }'; }

# ---------------------------------------------------------------- warehouse
note "setting up the warehouse"
if [[ $(wh_psql -Atc "SELECT count(*) FROM pg_extension WHERE extname = 'dbsync'") == 0 ]]; then
    wh_psql -q -c "SET client_min_messages = warning" -c "CREATE EXTENSION dbsync"
    MADE_EXTENSION=1
fi
whpg_psql -qc "CREATE DATABASE $SUB_DB"
sub_psql -q -c "CREATE SCHEMA $SCHEMA" -c "CREATE TABLE $SCHEMA.t ($DDL)"

# Is log capture in the installed extension?  (the option check: ALTER SERVER .. ADD capture 'log')
DBSYNC_ON=0
DBSYNC_WHY=""
HAVE_STATUS_COLS=0
if [[ $DBSYNC_MODE == 0 ]]; then
    DBSYNC_WHY="not run: DBSYNC=0"
elif probe=$(wh_psql -c "BEGIN" \
    -c "CREATE SERVER ${SRV}_probe FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1', port '$SRC_PG_PORT', dbname '$SRC_DB', schema '$SCHEMA')" \
    -c "ALTER SERVER ${SRV}_probe OPTIONS (ADD capture 'log')" -c "ROLLBACK" 2>&1); then
    DBSYNC_ON=1
    wh_psql -Atc "SELECT capture, slot_name, capture_position, capture_lag_bytes, capture_lag, slot_state FROM dbsync.status LIMIT 0" \
        >/dev/null 2>&1 && HAVE_STATUS_COLS=1
else
    DBSYNC_WHY="not run: the installed dbsync does not accept capture 'log' ($(grep -m1 ERROR <<<"$probe" | sed 's/^.*ERROR: *//'))"
    [[ $DBSYNC_MODE == 1 ]] && die "DBSYNC=1, but $DBSYNC_WHY"
    warn "dbsync half $DBSYNC_WHY; measuring the subscription alone (results not kept in bench/results/)"
fi
DBS_TARGET=$SRV.t

# ---------------------------------------------------------------- 0. initial copy
note "0. initial copy: CREATE SUBSCRIPTION"
wh_psql -qc CHECKPOINT
timed sub_init sub_psql "CREATE SUBSCRIPTION $SUB CONNECTION 'host=127.0.0.1 port=$SRC_PG_PORT dbname=$SRC_DB user=$SRC_USER password=$SRC_PASSWORD' PUBLICATION $SUB_PUB;
DO \$\$ DECLARE t0 timestamptz := clock_timestamp(); BEGIN
    WHILE NOT coalesce((SELECT bool_and(srsubstate = 'r') FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid WHERE s.subname = '$SUB'), false) LOOP
        IF clock_timestamp() - t0 > interval '$CATCHUP_TIMEOUT s' THEN RAISE EXCEPTION 'table sync not ready after $CATCHUP_TIMEOUT s'; END IF;
        PERFORM pg_sleep(0.02);
    END LOOP;
END \$\$;"
S_SUB_INIT=$T_SECS
SUB_OID=$(sub_psql -Atc "SELECT oid FROM pg_subscription WHERE subname = '$SUB'")
[[ $(sub_psql -Atc "SELECT count(*) FROM $SCHEMA.t") == "$ROWS" ]] || die "the subscription's initial copy holds the wrong row count"
note "   $S_SUB_INIT s"

# dbsync_run_sql: one dbsync_run of the server; the "RUN ..." line sums its result rows
# (DBSYNC_CALL_SQL: one CALL dbsync_sync, its rows read back from dbsync.runs)
# run_cols DURATION: the RUN line's columns over result rows whose duration is DURATION
run_cols() {
    echo "SELECT string_agg(DISTINCT status, ',') AS r_status, string_agg(DISTINCT mode, ',') AS r_mode,
       sum(rows_upserted) AS r_up, sum(rows_deleted) AS r_del,
       round(extract(epoch FROM max($1))::numeric, 3) AS r_dur, coalesce(string_agg(message, '; '), '') AS r_msg"
}
DBSYNC_RUN_SQL="$(run_cols duration)
  FROM dbsync_run('$SRV') \\gset"
DBSYNC_CALL_SQL="CALL dbsync_sync('$SRV');
$(run_cols 'finished_at - started_at')
  FROM dbsync.runs WHERE table_name IS NOT NULL AND run_id = (SELECT max(run_id) FROM dbsync.runs
       WHERE server = '$SRV' AND trigger = 'call') \\gset"
DBSYNC_RUN_POST="\\echo RUN status=:r_status mode=:r_mode upserted=:r_up deleted=:r_del duration=:r_dur message=:r_msg"
dbsync_run_ok() { # KEY: check the RUN line of T_OUT; sets R_NOTE
    local line
    line=$(grep '^RUN ' "$T_OUT" | tail -n 1)
    [[ $line == *"status=ok "* ]] || die "$1: dbsync_run('$SRV') did not succeed: $line"
    R_NOTE=$(sed -E 's/^RUN status=[^ ]* mode=([^ ]*) upserted=([0-9]*) deleted=([0-9]*) duration=([0-9.]*).*/mode \1, \2 upserted, \3 deleted, its own duration \4 s/' <<<"$line")
}
S_DBS_INIT="" DBS_INIT_NOTE=""
if ((DBSYNC_ON)); then
    note "0. initial copy: first dbsync_run('$SRV') with capture 'log'"
    wh_psql -q <<SQL
SET client_min_messages = warning;
CREATE SERVER $SRV FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB', schema '$SCHEMA', tables 't',
    capture 'log', slot_name '$DBS_SLOT');
CREATE USER MAPPING FOR CURRENT_USER SERVER $SRV OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
CHECKPOINT;
SQL
    timed dbs_init wh_psql "$DBSYNC_RUN_SQL
$DBSYNC_RUN_POST"
    dbsync_run_ok dbs_init
    S_DBS_INIT=$T_SECS DBS_INIT_NOTE=$R_NOTE
    DBS_TARGET=$(wh_psql -Atc "SELECT target::text FROM dbsync.status WHERE server = '$SRV' AND table_name IS NOT NULL LIMIT 1")
    [[ -n $DBS_TARGET ]] || die "dbsync.status names no target for server $SRV"
    [[ $(wh_psql -Atc "SELECT count(*) FROM $DBS_TARGET") == "$ROWS" ]] || die "dbsync's initial load into $DBS_TARGET holds the wrong row count"
    # really log capture: the slot at the source, and (when the columns exist) the status
    slot_exists "$DBS_SLOT" || die "after dbsync_run('$SRV') with capture 'log' there is no slot $DBS_SLOT at the source"
    if ((HAVE_STATUS_COLS)); then
        [[ $(wh_psql -Atc "SELECT capture FROM dbsync.status WHERE server = '$SRV' AND table_name IS NOT NULL LIMIT 1") == log ]] ||
            die "dbsync.status does not say capture = log for server $SRV"
    fi
    note "   $S_DBS_INIT s ($DBS_INIT_NOTE), target $DBS_TARGET"
fi

# ---------------------------------------------------------------- 1. catch-up from a backlog
# RUNS rounds, each: both consumers level, then stopped (the subscription disabled,
# its walsender gone; dbsync idle), a backlog generated, then each consumer catches
# up while the other stays idle (odd rounds dbsync first, even rounds the
# subscription first); the best time of each is kept.
RETRY_S=$(wh_psql -Atc "SELECT ceil(setting::numeric / 1000) + 1 FROM pg_settings WHERE name = 'wal_retrieve_retry_interval'")
dbs_catchup() { # ROUND: CALL dbsync_sync until row 1 holds MARK; sets S_DBS, DBS_CALLS, DBS_NOTE
    local r=$1
    note "1.$r CALL dbsync_sync('$SRV') catches up"
    wh_psql -qc CHECKPOINT
    # one call must do (it catches up to the WAL position at its start); if row 1 is
    # not there yet, call again and count the calls into the time
    S_DBS=0 DBS_CALLS=0 DBS_NOTE=""
    while :; do
        DBS_CALLS=$((DBS_CALLS + 1))
        timed "dbs_catch.$r.$DBS_CALLS" wh_psql "$DBSYNC_CALL_SQL
$DBSYNC_RUN_POST"
        dbsync_run_ok dbs_catch
        S_DBS=$(awk -v a="$S_DBS" -v b="$T_SECS" 'BEGIN { printf "%.3f", a + b }')
        DBS_NOTE="${DBS_NOTE:+$DBS_NOTE; }$R_NOTE"
        [[ $(wh_psql -Atc "SELECT c FROM $DBS_TARGET WHERE id = 1") == "$MARK" ]] && break
        ((DBS_CALLS < 20)) || die "20 calls of dbsync_sync did not bring the backlog's last transaction"
    done
    ((DBS_CALLS == 1)) || warn "CALL dbsync_sync needed $DBS_CALLS calls to apply the backlog"
    note "   $S_DBS s ($DBS_CALLS call(s): $DBS_NOTE)"
    # untimed: the next consumer's catch-up meets no autovacuum of this one's target
    wh_psql -qc "VACUUM (ANALYZE) $DBS_TARGET"
}
sub_catchup() { # ROUND: ENABLE until row 1 holds MARK; sets S_SUB, SUB_START
    local r=$1
    note "1.$r ALTER SUBSCRIPTION $SUB ENABLE catches up"
    wh_psql -qc CHECKPOINT
    # The launcher starts apply workers at most once per wal_retrieve_retry_interval
    # (5 s): ENABLE sooner than that after the launcher's last start (it went through
    # its list at DISABLE) would wait out the rest of it.  Not the apply's cost: wait first.
    while ((SECONDS - DISABLED_AT < RETRY_S)); do sleep 0.5; done
    timed "sub_catch.$r" sub_psql "ALTER SUBSCRIPTION $SUB ENABLE;
DO \$\$ DECLARE t0 timestamptz := clock_timestamp(); BEGIN
    WHILE NOT EXISTS (SELECT FROM pg_stat_subscription WHERE subname = '$SUB' AND pid IS NOT NULL) LOOP
        IF clock_timestamp() - t0 > interval '$CATCHUP_TIMEOUT s' THEN RAISE EXCEPTION 'no apply worker after $CATCHUP_TIMEOUT s'; END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END \$\$;
SELECT round(extract(epoch FROM clock_timestamp() - :'lc_t0'::timestamptz)::numeric, 3) AS lc_start \gset
\\echo START :lc_start
$(wait_marker_sql "$SCHEMA.t" "$MARK")"
    S_SUB=$T_SECS
    SUB_START=$(awk '/^START / {print $2}' "$T_OUT" | tail -n 1)
    note "   $S_SUB s (the apply worker ran after $SUB_START s)"
    if awk -v s="$SUB_START" 'BEGIN { exit !(s > 1) }'; then warn "the subscription's apply worker took $SUB_START s to start"; fi
    sub_psql -qc "VACUUM (ANALYZE) $SCHEMA.t"
}
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(b == "" || a < b) }'; }
S_SUB_CATCH="" S_DBS_CATCH="" ALL_SUB="" ALL_DBS="" SUB_STARTS="" DBS_CATCH_NOTE="" DBS_CALLS_BEST=0 GEN_ALL=""
for ((round = 1; round <= RUNS; round++)); do
    m=$(bump_marker)
    timed "sub_level.$round" sub_psql "$(wait_marker_sql "$SCHEMA.t" "$m")"
    if ((DBSYNC_ON)); then
        timed "dbs_level.$round" wh_psql "$DBSYNC_CALL_SQL
$DBSYNC_RUN_POST"
        dbsync_run_ok dbs_level
        wait_until 30 slot_active "$DBS_SLOT" f || die "the dbsync slot $DBS_SLOT stays active after dbsync_sync returned"
    fi
    sub_psql -qc "ALTER SUBSCRIPTION $SUB DISABLE"
    DISABLED_AT=$SECONDS
    wait_until 30 slot_active "$SUB" f || die "the subscription's slot stays active after DISABLE"
    settle_all

    note "1.$round backlog: $TXNS transactions x $TX_ROWS row changes ($N_UPD updates, $N_INS inserts, $N_DEL deletes)"
    LSN0=$(src_admin_psql -Atc "SELECT pg_current_wal_lsn()")
    g0=$(date +%s.%N)
    CHANGES=$(src_psql -Atc "CALL $SCHEMA.churn($TXNS, $N_UPD, $N_INS, $N_DEL)")
    g1=$(date +%s.%N)
    LSN1=$(src_admin_psql -Atc "SELECT pg_current_wal_lsn()")
    GEN_SECS=$(awk -v a="$g1" -v b="$g0" 'BEGIN { printf "%.1f", a - b }')
    GEN_ALL+="${GEN_ALL:+, }$GEN_SECS"
    WAL_MB=$(src_admin_psql -Atc "SELECT round(pg_wal_lsn_diff('$LSN1', '$LSN0') / 1048576.0, 1)")
    MARK=$(src_marker)
    [[ $CHANGES =~ ^[0-9]+$ ]] || die "churn returned '$CHANGES'"
    note "   $CHANGES row changes in $GEN_SECS s, $WAL_MB MB of WAL ($LSN0 .. $LSN1)"
    src_admin_psql -qc CHECKPOINT

    if ((round % 2 == 1)); then
        if ((DBSYNC_ON)); then dbs_catchup "$round"; fi
        sub_catchup "$round"
    else
        sub_catchup "$round"
        if ((DBSYNC_ON)); then dbs_catchup "$round"; fi
    fi
    ALL_SUB+="${ALL_SUB:+ }$S_SUB" SUB_STARTS+="${SUB_STARTS:+ }$SUB_START"
    if lt "$S_SUB" "$S_SUB_CATCH"; then S_SUB_CATCH=$S_SUB SUB_START_BEST=$SUB_START; fi
    if ((DBSYNC_ON)); then
        ALL_DBS+="${ALL_DBS:+ }$S_DBS"
        if lt "$S_DBS" "$S_DBS_CATCH"; then S_DBS_CATCH=$S_DBS DBS_CATCH_NOTE=$DBS_NOTE DBS_CALLS_BEST=$DBS_CALLS; fi
    fi
done
DBS_CALLS=$DBS_CALLS_BEST
SUB_START=$SUB_START_BEST
# the slots' confirmed positions at the source pass the end of the backlog (the
# acknowledgements may come a little after the data): noted, not required
confirmed() { src_admin_psql -Atc "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$1'"; }
passed() { [[ $(src_admin_psql -Atc "SELECT confirmed_flush_lsn >= '$LSN1' FROM pg_replication_slots WHERE slot_name = '$1'") == t ]]; }
wait_until 15 passed "$SUB" || warn "the subscription's slot has not confirmed $LSN1 15 s after catching up"
SUB_CONFIRMED=$(confirmed "$SUB")
DBS_CONFIRMED=""
if ((DBSYNC_ON)); then
    # (CALL dbsync_sync tells the source what its last group committed at the start
    # of the next pass, capture_stream.c: its slot's confirmed position trails until then)
    DBS_CONFIRMED=$(confirmed "$DBS_SLOT")
fi

# ---------------------------------------------------------------- 2. lag at a steady rate
note "2. lag: $LAG_RATE tx/s for $LAG_SECS s, sampled every $SAMPLE_MS ms"
# max(changed_at) from an index in all three (made now: the backlog ran with the key alone)
src_psql -qc "CREATE INDEX ON $SCHEMA.t (changed_at)" -c "ANALYZE $SCHEMA.t"
sub_psql -qc "CREATE INDEX ON $SCHEMA.t (changed_at)" -c "ANALYZE $SCHEMA.t"
if ((DBSYNC_ON)); then
    wh_psql -qc "CREATE INDEX ON $DBS_TARGET (changed_at)" -c "ANALYZE $DBS_TARGET"
    WH_LOG_FROM=$(stat -c %s "$WH_LOG" 2>/dev/null || echo 0)
    wh_psql -qc "ALTER SERVER $SRV OPTIONS (ADD sync_interval '1s')"
    if ! wait_until 20 slot_active "$DBS_SLOT" t; then
        warn "dbsync's background worker holds no stream on $DBS_SLOT 20 s after sync_interval was set"
        DBS_WORKER_NOTE="the worker held no open stream on the slot 20 s after sync_interval was set"
    fi
fi
wait_until 30 slot_active "$SUB" t || die "the subscription is not streaming"
# sampler NAME PSQLFN TABLE: LAG_SECS s of "LAG <seconds>" notices, one per SAMPLE_MS
sampler() {
    local name=$1 fn=$2 tbl=$3
    "$fn" -c "SET client_min_messages = notice" -c "DO \$\$ DECLARE
        t_end timestamptz := clock_timestamp() + interval '$LAG_SECS s'; s timestamptz; m timestamptz;
    BEGIN
        WHILE clock_timestamp() < t_end LOOP
            s := clock_timestamp();
            SELECT max(changed_at) INTO m FROM $tbl;
            RAISE NOTICE 'LAG %', extract(epoch FROM s - m);
            PERFORM pg_sleep(greatest(0, $SAMPLE_MS / 1000.0 - extract(epoch FROM clock_timestamp() - s)));
        END LOOP;
    END \$\$" >"$LOGDIR/lag.$name.out" 2>&1
}
src_psql -Atc "CALL $SCHEMA.writer($((LAG_SECS + 3)), $LAG_RATE, $HALF, $((ROWS - HALF)))" >"$LOGDIR/writer.out" 2>&1 &
WRITER=$!
BG_PIDS+=("$WRITER")
sleep 1.5   # the writer and both consumers settle into the rate
sampler src src_admin_psql "$SCHEMA.t" & BG_PIDS+=($!)
sampler sub sub_psql "$SCHEMA.t" & BG_PIDS+=($!)
if ((DBSYNC_ON)); then sampler dbs wh_psql "$DBS_TARGET" & BG_PIDS+=($!); fi
for p in "${BG_PIDS[@]}"; do
    [[ $p == "$WRITER" ]] && continue
    wait "$p" || die "a lag sampler failed (see $LOGDIR/lag.*.out)"
done
DBS_STATUS_END=""
if ((DBSYNC_ON && HAVE_STATUS_COLS)); then
    DBS_STATUS_END=$(wh_psql -Atc "SELECT 'capture_position ' || coalesce(capture_position::text, '-') || ', capture_lag_bytes ' || coalesce(capture_lag_bytes::text, '-') || ', capture_lag ' || coalesce(capture_lag::text, '-') || ', slot_state ' || coalesce(slot_state::text, '-') FROM dbsync.status WHERE server = '$SRV' AND table_name IS NOT NULL LIMIT 1" 2>&1 || true)
fi
wait "$WRITER" || die "the writer failed (see $LOGDIR/writer.out)"
BG_PIDS=()
WRITER_TX=$(grep -Eo '^[0-9]+$' "$LOGDIR/writer.out" | tail -n 1)
WRITER_RATE=$(awk -v n="$WRITER_TX" -v s=$((LAG_SECS + 3)) 'BEGIN { printf "%.0f", n / s }')
# lagstats NAME: "p50 p95 max samples" in ms
lagstats() {
    awk '/NOTICE: +LAG / { print $NF }' "$LOGDIR/lag.$1.out" | sort -g |
        awk '{ v[NR] = $1 } END {
            if (NR == 0) { print "- - - 0"; exit }
            i50 = int(0.50 * NR + 0.999999); i95 = int(0.95 * NR + 0.999999)
            printf "%.0f %.0f %.0f %d\n", v[i50] * 1000, v[i95] * 1000, v[NR] * 1000, NR }'
}
read -r SRC_P50 SRC_P95 SRC_MAX SRC_N < <(lagstats src)
read -r SUB_P50 SUB_P95 SUB_MAX SUB_N < <(lagstats sub)
DBS_P50=- DBS_P95=- DBS_MAX=- DBS_N=0
((DBSYNC_ON)) && read -r DBS_P50 DBS_P95 DBS_MAX DBS_N < <(lagstats dbs)
note "   p50/p95 ms: source $SRC_P50/$SRC_P95, subscription $SUB_P50/$SUB_P95, dbsync $DBS_P50/$DBS_P95 ($WRITER_TX tx written)"

# the worker's errors meanwhile (warehouse log)
DBS_WORKER_ERRORS=0 DBS_WORKER_ERROR=""
if ((DBSYNC_ON)); then
    tail -c "+$((WH_LOG_FROM + 1))" "$WH_LOG" >"$LOGDIR/wh_log.lag" 2>/dev/null || true
    DBS_WORKER_ERRORS=$(grep -c 'background worker "dbsync worker" (PID [0-9]*) exited with exit code 1' "$LOGDIR/wh_log.lag" || true)
    DBS_WORKER_ERROR=$(grep -m1 -A1 ' ERROR: ' "$LOGDIR/wh_log.lag" | sed -E 's/^.*(ERROR|DETAIL): +//' | paste -sd' ' || true)
    ((DBS_WORKER_ERRORS == 0)) || warn "dbsync's worker failed $DBS_WORKER_ERRORS times during the lag run: $DBS_WORKER_ERROR"
fi

# ---------------------------------------------------------------- 3. equal at the end
note "3. both targets level with the source"
MARK=$(bump_marker)
timed sub_final sub_psql "$(wait_marker_sql "$SCHEMA.t" "$MARK")"
DBS_FINAL_NOTE=""
if ((DBSYNC_ON)); then
    # the worker should bring it; if it does not within FINAL_WAIT s, the worker is
    # stopped and one dbsync_run levels the target (and the report says so)
    FINAL_WAIT=${FINAL_WAIT:-60}
    if ! (CATCHUP_TIMEOUT=$FINAL_WAIT; timed dbs_final wh_psql "$(wait_marker_sql "$DBS_TARGET" "$MARK")") 2>/dev/null; then
        warn "dbsync's worker did not apply the last change within $FINAL_WAIT s; stopping it and levelling with dbsync_run"
        DBS_FINAL_NOTE="the worker did not apply the last change within $FINAL_WAIT s: levelled by a dbsync_run after dropping sync_interval"
        wh_psql -qc "ALTER SERVER $SRV OPTIONS (DROP sync_interval)"
        wait_until 30 slot_active "$DBS_SLOT" f || warn "dbsync's slot stays active after sync_interval was dropped"
        sleep 2
        timed dbs_final_run wh_psql "$DBSYNC_RUN_SQL
$DBSYNC_RUN_POST"
        dbsync_run_ok dbs_final_run
        [[ $(wh_psql -Atc "SELECT c FROM $DBS_TARGET WHERE id = 1") == "$MARK" ]] ||
            DBS_FINAL_NOTE+="; and that dbsync_run did not bring it either"
    fi
fi
same() { echo "SET TimeZone = 'UTC'; SELECT count(*) || ' ' || md5(string_agg(md5(t::text), '' ORDER BY id)) FROM (SELECT $COLS FROM $1 OFFSET 0) t"; }
SUM_SRC=$(src_psql -At -c "$(same "$SCHEMA.t")" | tail -n 1)
SUM_SUB=$(sub_psql -At -c "$(same "$SCHEMA.t")" | tail -n 1)
SUM_DBS=-
((DBSYNC_ON)) && SUM_DBS=$(wh_psql -At -c "$(same "$DBS_TARGET")" | tail -n 1)
EQ_SUB=no EQ_DBS=no
[[ $SUM_SUB == "$SUM_SRC" ]] && EQ_SUB=yes
[[ $SUM_DBS == "$SUM_SRC" ]] && EQ_DBS=yes
note "   source $SUM_SRC; subscription $SUM_SUB ($EQ_SUB); dbsync $SUM_DBS ($EQ_DBS)"
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
competing
[[ -z $COMPETING ]] || warn "$COMPETING"

# ---------------------------------------------------------------- report
report() {
    echo "dbsync log capture beside PostgreSQL logical replication (CREATE SUBSCRIPTION), one machine, $(nproc) cores,"
    echo "warehouse fsync $WH_FSYNC, $ROWS rows ($SRC_SIZE at the source), $(date -u +%F); load average $LOAD_START at the start, $LOAD_END at the end"
    [[ -z $COMPETING ]] || echo "WARNING: $COMPETING"
    printf '%-66s %9s %10s %8s\n' "method" "time s" "rows/s" "x sub"
    line() { # LABEL SECS ROWS RATIO
        printf '%-66s %9.3f %10.0f %8s\n' "$1" "$2" "$(awk -v r="$3" -v s="$2" 'BEGIN { print (s > 0 ? r / s : 0) }')" "$4"
    }
    notrun() { printf '%-66s %s\n' "$1" "$DBSYNC_WHY"; }
    echo "-- initial copy of $ROWS rows (slot, snapshot, load)"
    line "CREATE SUBSCRIPTION (copy_data) until the table is ready" "$S_SUB_INIT" "$ROWS" "(ref)"
    if ((DBSYNC_ON)); then
        line "dbsync_run, first call: slot, publication, load, catch-up" "$S_DBS_INIT" "$ROWS" "$(div "$S_SUB_INIT" "$S_DBS_INIT")"
    else notrun "dbsync_run, first call"; fi
    echo "-- catch-up from a backlog of $TXNS transactions: $CHANGES row changes ($((TXNS * N_UPD)) updates, $((TXNS * N_INS)) inserts,"
    echo "   $((TXNS * N_DEL)) deletes, + 1 marker), $WAL_MB MB of WAL, generated in $GEN_ALL s; best of $RUNS"
    line "ALTER SUBSCRIPTION .. ENABLE until the last transaction is visible" "$S_SUB_CATCH" "$CHANGES" "(ref)"
    if ((DBSYNC_ON)); then
        line "CALL dbsync_sync (streams to the WAL position at its start)$( ((DBS_CALLS > 1)) && echo ", $DBS_CALLS calls")" \
            "$S_DBS_CATCH" "$CHANGES" "$(div "$S_SUB_CATCH" "$S_DBS_CATCH")"
    else notrun "CALL dbsync_sync"; fi
    echo "-- lag at a steady $LAG_RATE tx/s (single-row updates; $WRITER_TX written, $WRITER_RATE/s) for $LAG_SECS s, sampled every $SAMPLE_MS ms:"
    echo "   clock_timestamp() - max(changed_at) in the target"
    printf '%-66s %9s %10s %8s %8s\n' "consumer" "p50 ms" "p95 ms" "max ms" "samples"
    printf '%-66s %9s %10s %8s %8s\n' "the source itself (the sampling floor)" "$SRC_P50" "$SRC_P95" "$SRC_MAX" "$SRC_N"
    printf '%-66s %9s %10s %8s %8s\n' "CREATE SUBSCRIPTION, apply worker" "$SUB_P50" "$SUB_P95" "$SUB_MAX" "$SUB_N"
    if ((DBSYNC_ON)); then
        printf '%-66s %9s %10s %8s %8s\n' "dbsync background worker (sync_interval '1s')" "$DBS_P50" "$DBS_P95" "$DBS_MAX" "$DBS_N"
    else notrun "dbsync background worker"; fi
    if ((DBSYNC_ON)); then
        echo "both targets equal the source at the end (md5 of every row): subscription $EQ_SUB, dbsync $EQ_DBS"
    else
        echo "the subscription's target equals the source at the end (md5 of every row): $EQ_SUB"
    fi
    echo
    echo "Targets:"
    verdict() { printf '  %-4s %-62s %s\n' "$1" "$2" "$3"; }
    if ((DBSYNC_ON)); then
        local r
        r=$(div "$S_SUB_CATCH" "$S_DBS_CATCH")
        verdict "$(awk -v r="$r" 'BEGIN { print (r >= 1 ? "PASS" : "MISS") }')" "catch-up at or above the subscription's rows/s" "${r}x"
        verdict "$(awk -v p="$DBS_P95" 'BEGIN { print (p != "-" && p < 1000 ? "PASS" : "MISS") }')" "lag under a second at $LAG_RATE tx/s (p95)" "p95 $DBS_P95 ms (subscription $SUB_P95 ms)"
        verdict "$([[ $EQ_DBS == yes && $EQ_SUB == yes ]] && echo PASS || echo MISS)" "both targets equal the source" "$SUM_SRC"
    else
        verdict "-" "dbsync targets" "$DBSYNC_WHY"
    fi
    echo
    echo "x sub = the subscription's time / dbsync's time = dbsync's rows/s / the subscription's (>1: dbsync faster)."
    echo "Times: clock_timestamp() around the statements in a warehouse session (that session's own connection not"
    echo "counted; dbsync's connections to the source and the subscription's apply worker start are)."
    echo "The subscription: its own publication $SUB_PUB, target database $SUB_DB, defaults (synchronous_commit off"
    echo "in the apply worker, streaming off); its catch-up starts at ENABLE (the apply worker's start counted) and"
    echo "ends when the backlog's last transaction (row 1) is visible in its target, polled every 20 ms (the apply"
    echo "worker ran $SUB_STARTS s after ENABLE; ENABLE came > wal_retrieve_retry_interval after DISABLE, so no launcher wait)."
    echo "dbsync: server $SRV, capture 'log', slot $DBS_SLOT, publication $DBS_PUB (its default), other options default;"
    echo "its own duration = the largest duration dbsync_run reported for its rows (CALL dbsync_sync: its row in dbsync.runs)."
    echo "The catch-up and the levelling between rounds use CALL dbsync_sync: it commits each group of source transactions"
    echo "(up to 20000 row changes or 0.5 s) and tells the source, as the subscription's apply worker does.  One dbsync_run"
    echo "applies in its caller's one transaction and tells the source at its next run, so that run's walsender decodes"
    echo "the WAL of the run before once more (restart_lsn cannot pass what is committed)."
    if ((DBSYNC_ON)); then
        echo "  first call: $DBS_INIT_NOTE; catch-up: $DBS_CATCH_NOTE"
        [[ -n $DBS_STATUS_END ]] && echo "  dbsync.status after the lag run: $DBS_STATUS_END"
        [[ -n ${DBS_WORKER_NOTE:-} ]] && echo "  note: $DBS_WORKER_NOTE"
        ((DBS_WORKER_ERRORS == 0)) || echo "  note: the dbsync worker exited with an error $DBS_WORKER_ERRORS times during the lag run: $DBS_WORKER_ERROR"
        [[ -n $DBS_FINAL_NOTE ]] && echo "  note: $DBS_FINAL_NOTE"
    fi
    echo "The backlog ended at $LSN1; after catching up the slots confirmed: subscription $SUB_CONFIRMED${DBS_CONFIRMED:+, dbsync $DBS_CONFIRMED}"
    ((DBSYNC_ON)) && echo "(dbsync tells the source what its last group committed at the start of its next pass, so its slot trails until then)."
    echo "Both consumers read the same backlog one after the other (the other idle; dbsync first in odd rounds, the"
    echo "subscription first in even ones), each slot decoding it at the source; before each: CHECKPOINT, the targets"
    echo "VACUUMed (untimed). Round 1 runs on the targets as loaded, later rounds on warm caches. Catch-up times per round (s):"
    echo "  subscription $ALL_SUB${ALL_DBS:+; dbsync $ALL_DBS}"
    if [[ -n ${ALL_DBS:-} ]]; then
        echo "  x sub per round: $(awk -v s="$ALL_SUB" -v d="$ALL_DBS" 'BEGIN { n = split(s, a, " "); split(d, b, " ");
            for (i = 1; i <= n; i++) printf "%s%.2f", (i > 1 ? " " : ""), a[i] / b[i] }')"
    fi
    echo "Lag samples: one session per database, each sample a new snapshot; the source's own samples show the"
    echo "floor (a row's changed_at is taken before its commit; up to 1/$LAG_RATE s between commits)."
    echo "Logs: $LOGDIR   total benchmark time: $((SECONDS - BENCH_T0)) s"
}
report | tee "$RESULTS"
if ((!DBSYNC_ON)); then
    note "dbsync half not run: results only in $RESULTS"
elif [[ "$ROWS $TXNS $TX_ROWS $LAG_SECS $LAG_RATE $SAMPLE_MS" != "1000000 2000 100 30 200 100" ]]; then
    note "not the default scale: results only in $RESULTS (bench/results/log-capture.txt is for the defaults)"
else
    mkdir -p "$HERE/results"
    cp "$RESULTS" "$HERE/results/log-capture.txt"
    note "results kept in $HERE/results/log-capture.txt"
fi
[[ $EQ_SUB == yes && ($DBSYNC_ON == 0 || $EQ_DBS == yes) ]] || die "a target differs from the source"
