#!/usr/bin/env bash
# Log capture (issue 13): a dbsync server with capture 'log' syncs a
# PostgreSQL source through a logical replication slot.  Every case ends with
# the warehouse compared with the source row by row (a digest of each row's
# text in key order, both sessions in UTC with full float precision).
#
#   1  setup: awkward names and values (text keys with tabs, quotes, backslashes
#      and UTF-8, a composite key, reserved words, NULLs, bytea with invalid
#      UTF-8, jsonb, numeric NaN/Infinity, float8 0.1 / 1e-300 / -0, infinite
#      timestamps, intervals, arrays, a TOASTed text stored out of line), a
#      keyless table
#   2  option checks: capture 'log' refused for mysql / tidb (CREATE and ALTER),
#      a bad capture value and a bad slot_name refused
#   3  a source role without REPLICATION: error status naming replication, no slot
#   4  first dbsync_run: slot (default name, sanitised) and publication made at the
#      source, initial load exact, keyless table an error and not published,
#      dbsync.status capture columns
#   5  gap-free handover: a writer commits during the first run; the local state
#      is a prefix of the writer's transactions, and exact after a final run
#   6  updates, key-changing updates (also of a row whose TOASTed value is sent
#      as unchanged), deletes, TRUNCATE, ADD COLUMN mid-stream, 200,000 rows in
#      one transaction then updated in one; CALL dbsync_sync and dbsync_run
#   8  with changes only in unpublished tables the slot's confirmed_flush_lsn
#      still moves on (after dbsync_run, and while the worker streams)
#   7  the background worker streams continuously; kill -9 of the worker, an
#      immediate-mode warehouse restart and a source restart, each under a
#      writer; no transaction applied twice (local audit trigger)
#   9  slot dropped behind dbsync's back: error with a hint naming dbsync_resync;
#      dbsync_resync re-creates the slot and reloads; capture 'cursor' drops the
#      slot and the publication dbsync made, and the sync goes on
#  10  a user-named publication lacking a table: that table's error says
#      ALTER PUBLICATION ... ADD TABLE; after it, the table syncs
#
# Needs the source's wal_level = logical (scripts/testenv.sh sets it) and, for
# 7, the warehouse preloaded with dbsync (the auto-sync).
set -uo pipefail
source "$DBSYNC_REPO/scripts/lib.sh"
source "$DBSYNC_REPO/test/lib/tap.sh"

skip_unless_logical_source

SRV=Lc-Cap                 # default slot and publication: dbsync_lc_cap
SLOT=dbsync_lc_cap
PUB=dbsync_lc_cap
WORK=$DBSYNC_TESTDIR/tests/work.log_capture
mkdir -p "$WORK"
: >"$WORK/runs.log"
T0=$SECONDS
GUCS_SET=()

# ---------------------------------------------------------------- helpers
sval() { src_admin_psql -At -c "$1" 2>/dev/null; }
# canonical text: UTC, full float precision, ISO dates, postgres intervals, hex bytea
SETS="SET TimeZone = 'UTC'; SET extra_float_digits = 3; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; SET bytea_output = 'hex'"

# the tables compared (same names at the source, schema lc, and locally)
declare -A REL COLS ORD
REL[oi]='"Order Items"'; COLS[oi]='k, qty, price, f, b, j, ts, iv, arr, tarr, big, note'; ORD[oi]='k COLLATE "C"'
REL[sel]='"select"';     COLS[sel]='a, b, "from", "Line No", v';  ORD[sel]='a, b COLLATE "C"'
REL[w]=w;                COLS[w]='id, v, hits';                   ORD[w]=id
REL[ledger]=ledger;      COLS[ledger]='seq, tag';                 ORD[ledger]=seq
REL[counter]=counter;    COLS[counter]='id, n';                   ORD[counter]=id
REL[bulk]=bulk;          COLS[bulk]='id, v';                      ORD[bulk]=id
ALL=(oi sel w ledger counter bulk)

# dg_sql NAME SCHEMA: "rows:md5 of every row's text in key order"
dg_sql() {
    echo "SELECT count(*) || ':' || coalesce(md5(string_agg(ROW(${COLS[$1]})::text, chr(10) ORDER BY ${ORD[$1]})), '-') FROM $2.${REL[$1]}"
}
src_dg() { src_psql -At -c "$SETS" -c "$(dg_sql "$1" lc)" 2>&1; }
wh_dg()  { wh_psql -At -c "$SETS" -c "$(dg_sql "$1" "${2:-lc}")" 2>/dev/null || echo "(no local table)"; }
# same NAME [LOCAL_SCHEMA]: the source's and the warehouse's digests are equal
same() {
    local s w
    s=$(src_dg "$1"); w=$(wh_dg "$1" "${2:-lc}")
    [[ -n $s && $s == "$w" ]] && return 0
    diag "${REL[$1]}: source $s, warehouse $w"
    return 1
}
all_same() { local t r=0; for t in "$@"; do same "$t" || r=1; done; return $r; }
all_same_in() { local sch=$1 t r=0; shift; for t in "$@"; do same "$t" "$sch" || r=1; done; return $r; }
# converge NAME SECONDS TABLES...: poll until the tables are equal
converge() {
    local name=$1 secs=$2; shift 2
    if wait_until "$secs" all_same "$@"; then ok "$name"; else all_same "$@"; not_ok "$name"; fi
}

# run_srv SERVER: dbsync_run, its rows in $RUN as table|mode|status|message
run_srv() {
    RUN=$(wh_psql -At -c "SELECT coalesce(table_name, '-') || '|' || coalesce(mode, '-') || '|' || status || '|'
        || coalesce(regexp_replace(message, '\s+', ' ', 'g'), '') FROM dbsync_run('$1')" 2>&1)
    RUN_RC=$?
    printf '== %s dbsync_run(%s) rc %s\n%s\n' "$(date +%T)" "$1" "$RUN_RC" "$RUN" >>"$WORK/runs.log"
}
# has_row TABLE MODE STATUS [REGEX]: the last run has such a row (* = any; MODE may
# be an alternation a|b; REGEX on the lower-cased row); no_row: it has none
has_row() {
    awk -F'|' -v t="$1" -v m="$2" -v s="$3" -v re="${4:-}" '
        (t == "*" || $1 == t) && (m == "*" || $2 ~ ("^(" m ")$")) && (s == "*" || $3 == s) && (re == "" || tolower($0) ~ re) { f = 1 }
        END { exit !f }' <<<"$RUN"
}
# run_clean: the last run returned rows, none an error (but the keyless table's)
run_clean() {
    [[ $RUN_RC == 0 && -n $RUN ]] && ! awk -F'|' '$3 != "ok" && $1 != "nokey" { f = 1 } END { exit !f }' <<<"$RUN"
}
# check_run NAME CMD...: check, with the run's rows on failure
check_run() {
    local name=$1; shift
    if "$@"; then ok "$name"; else not_ok "$name"; diag "$(head -n 12 <<<"$RUN")"; fi
}
no_row()     { ! has_row "$@"; }
no_initial() { no_row '*' 'initial|full' '*'; }
# streamed [TABLE]: a clean run that read nothing again (and streamed TABLE)
streamed()   { run_clean && no_initial && { [[ -z ${1:-} ]] || has_row "$1" incremental ok; }; }

slot_count()  { sval "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$1'"; }
slot_active() { [[ $(sval "SELECT active FROM pg_replication_slots WHERE slot_name = '$1'") == t ]]; }
pub_count()   { sval "SELECT count(*) FROM pg_publication WHERE pubname = '$1'"; }
confirmed()   { sval "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$SLOT'"; }
src_flush()   { sval "SELECT pg_current_wal_flush_lsn()"; }
lsn_ge()      { [[ $(sval "SELECT '${1:-0/0}'::pg_lsn >= '${2:-FFFFFFFF/FFFFFFFF}'::pg_lsn") == t ]]; }
st()          { q "SELECT $1 FROM dbsync.status WHERE server = '$SRV' AND table_name = '$2'"; }
local_rows()  { q "SELECT CASE WHEN to_regclass('$1') IS NULL THEN 0 ELSE (xpath('/row/c/text()',
                   query_to_xml('SELECT count(*) AS c FROM $1', false, true, '')))[1]::text::int END"; }
position_reached() { lsn_ge "$(st capture_position w)" "$1"; }
slot_reached()     { lsn_ge "$(confirmed)" "$1"; }
worker_running()   { [[ -n $(worker_pids) ]]; }
stream_released()  { ! slot_active "$SLOT" && ! worker_running; }
worker_pids() { q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'dbsync worker' ORDER BY backend_start"; }

# the source writer: one source transaction per loop (ledger row seq, counter n
# = seq, and an insert, update, delete and key change of lc.w), for SECS seconds
writer_start() { src_psql -q -c "CALL lc_other.writer($1, '$2')" >/dev/null 2>&1 & WRITER=$!; }
writer_wait()  { [[ -n ${WRITER:-} ]] && wait "$WRITER"; WRITER=; return 0; }

test_slots_idle() {
    [[ $(sval "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'dbsync\_lc%' AND active") == 0 ]]
}
wh_up() { wait_until 60 wh_psql -Atc "SELECT 1"; }
set_guc() {   # NAME VALUE: ALTER SYSTEM (reset by cleanup)
    wh_psql -c "ALTER SYSTEM SET $1 = '$2'" >/dev/null && GUCS_SET+=("$1")
}

cleanup() {
    local g
    [[ -n ${WRITER:-} ]] && kill "$WRITER" 2>/dev/null
    pg_server_running "$WH_DATADIR" || pg_server_start "$WH_DATADIR" "$WH_LOG" || true
    pg_server_running "$SRC_PG_DATADIR" || pg_server_start "$SRC_PG_DATADIR" "$SRC_PG_LOG" || true
    # the servers first, so that their workers stop streaming before the slots go
    for g in "\"$SRV\"" lc_pub lc_my lc_ti lc_bad lc_bad2; do
        wh_psql -q -c "DROP SERVER IF EXISTS $g CASCADE" >/dev/null 2>&1
    done
    for g in lc lc_pub lc_audit; do wh_psql -q -c "DROP SCHEMA IF EXISTS $g CASCADE" >/dev/null 2>&1; done
    for g in "${GUCS_SET[@]}"; do wh_psql -q -c "ALTER SYSTEM RESET $g" >/dev/null 2>&1; done
    wh_psql -q -c "SELECT pg_reload_conf()" >/dev/null 2>&1
    sleep 1
    if ! wait_until 10 test_slots_idle; then
        diag "cleanup: a test slot is still in use; ending its walsender"
        sval "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name LIKE 'dbsync\_lc%' AND active" >/dev/null
        sleep 1
    fi
    src_admin_psql -q -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'dbsync\_lc%' AND NOT active" \
        >/dev/null 2>&1
    for g in "$PUB" lc_userpub; do src_admin_psql -q -c "DROP PUBLICATION IF EXISTS $g" >/dev/null 2>&1; done
    for g in lc lc_other; do src_admin_psql -q -c "DROP SCHEMA IF EXISTS $g CASCADE" >/dev/null 2>&1; done
    src_admin_psql -q -c "ALTER ROLE $SRC_USER NOREPLICATION" >/dev/null 2>&1
    return 0
}
on_exit() { cleanup; diag "log_capture took $((SECONDS - T0)) s"; }
trap on_exit EXIT
cleanup
GUCS_SET=()

# ---------------------------------------------------------------- 1. setup
# the tables belong to the mapping's role (src_user, owner of the database), so
# that dbsync may create its publication for them
if ! src_psql -q <<'SQL' >"$WORK/setup.out" 2>&1; then
SET client_min_messages = warning;
CREATE SCHEMA lc;
CREATE SCHEMA lc_other;
CREATE TABLE lc."Order Items" (k text PRIMARY KEY, qty int, price numeric, f float8, b bytea,
    j jsonb, ts timestamptz, iv interval, arr int[], tarr text[], big text, note text);
ALTER TABLE lc."Order Items" ALTER COLUMN big SET STORAGE EXTERNAL;
INSERT INTO lc."Order Items" (k, qty, price, f, b, j, ts, iv, arr, tarr, note)
SELECT 'k' || lpad(g::text, 5, '0') || (ARRAY[E'\t', '"', E'\\', 'é€', '''', E'\n', ''])[g % 7 + 1],
       g, g * 1.000001, g / 7.0::float8, decode(md5(g::text), 'hex') || '\x00ff'::bytea,
       jsonb_build_object('g', g, 's', 'ü"\' || g, 'a', jsonb_build_array(g, NULL, true, 2.50)),
       timestamptz '2024-03-10 01:59:59.999999+00' + g * interval '37 min 0.000001 s',
       make_interval(days => g, secs => g * 0.001), ARRAY[g, NULL, -g], ARRAY['a,b', 'c"d', NULL, E'e\\f{}'],
       CASE WHEN g % 5 = 0 THEN NULL ELSE 'n' || g END
  FROM generate_series(1, 2000) g;
INSERT INTO lc."Order Items" (k, qty, price, f, b, j, ts, iv, arr, tarr, note) VALUES
  (E'tab\there\nnewline \\ back "dq" ''sq''', 1, 'NaN', 0.1, '\x00ff5c0a0d09c328'::bytea,
   '{"é": "x\"y\\z", "n": null, "deep": {"a": [1, 2.50, 1e-5]}}', 'infinity', '1 year 2 mons 3 days 04:05:06.789',
   '{}', '{}', E'\\N'),
  ('ünï©ødé 🚀 ✓', 2, 'Infinity', 1e-300, '\x'::bytea, '[]', '-infinity', '-1 year -2 mons +3 days -04:05:06.789',
   '{{1,2},{3,4}}', ARRAY[E'\\N', 'NULL', ''], ''),
  (E'\\N', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  ('', 3, '-Infinity', '-0', '\x5c4e'::bytea, '"just a string"', '2000-02-29 23:59:59.999999+00', '0',
   '{2147483647,-2147483648}', ARRAY[' lead', 'trail '], ' both '),
  (' lead and trail ', 4, 123456789012345678.123456, 1.7976931348623157e308, NULL, 'null', NULL, NULL, NULL, NULL, NULL);
-- two rows with a big value stored out of line, uncompressed (md5 text does not compress)
INSERT INTO lc."Order Items" (k, qty, big, note)
SELECT 'big' || i, i, (SELECT string_agg(md5(i || ':' || g), '') FROM generate_series(1, 400) g), 'big row'
  FROM generate_series(1, 2) i;
CREATE TABLE lc."select" (a int, b text, "from" text, "Line No" numeric(12,4), v jsonb, PRIMARY KEY (a, b));
INSERT INTO lc."select"
SELECT g % 50, 'b' || (g / 50) || CASE WHEN g % 3 = 0 THEN E' \t"q"\\' ELSE '' END,
       CASE WHEN g % 4 = 0 THEN NULL ELSE 'from ' || g END, g / 3.0, jsonb_build_object('g', g)
  FROM generate_series(1, 1000) g;
CREATE TABLE lc.nokey (x int, v text);
INSERT INTO lc.nokey VALUES (1, 'a'), (1, 'a'), (2, NULL);
CREATE TABLE lc.w (id int PRIMARY KEY, v text, hits int NOT NULL DEFAULT 0);
INSERT INTO lc.w (id, v) SELECT g, md5(g::text) FROM generate_series(1, 500) g;
CREATE TABLE lc.ledger (seq bigint PRIMARY KEY, tag text NOT NULL);
CREATE TABLE lc.counter (id int PRIMARY KEY, n bigint NOT NULL);
INSERT INTO lc.counter VALUES (1, 0);
CREATE TABLE lc.bulk (id int PRIMARY KEY, v text);
INSERT INTO lc.bulk SELECT g, 'b' || g FROM generate_series(1, 10) g;
-- not selected (another schema), so never published
CREATE TABLE lc_other.noise (id bigserial PRIMARY KEY, v text);
CREATE PROCEDURE lc_other.writer(secs float8, tag text) LANGUAGE plpgsql AS $$
DECLARE
  s bigint;
  stop timestamptz := clock_timestamp() + secs * interval '1 second';
BEGIN
  WHILE clock_timestamp() < stop LOOP
    SELECT coalesce(max(seq), 0) + 1 INTO s FROM lc.ledger;
    INSERT INTO lc.ledger VALUES (s, tag);
    UPDATE lc.counter SET n = n + 1 WHERE id = 1;
    INSERT INTO lc.w (id, v) VALUES (1000 + s, md5(s::text));
    UPDATE lc.w SET v = v || '+', hits = hits + 1 WHERE id = 1000 + s - 3;
    IF s % 3 = 0 THEN DELETE FROM lc.w WHERE id = 1000 + s - 7; END IF;
    IF s % 5 = 0 THEN UPDATE lc.w SET id = id + 1000000 WHERE id = 1000 + s - 11; END IF;
    COMMIT;
    PERFORM pg_sleep(0.002);
  END LOOP;
END $$;
SQL
    not_ok "1 setup: source schema lc"; diag "$(cat "$WORK/setup.out")"; exit 1
fi
src_admin_psql -q -c "ALTER ROLE $SRC_USER NOREPLICATION" >/dev/null
ok "1 setup: source tables with awkward names and values ($(sval "SELECT count(*) FROM lc.\"Order Items\"") + $(sval "SELECT count(*) FROM lc.\"select\"") rows)"
toast=$(sval "SELECT reltoastrelid::regclass FROM pg_class WHERE oid = 'lc.\"Order Items\"'::regclass")
check "1 setup: the big values are stored out of line at the source (updates leaving them alone send them as unchanged)" \
    test "$(sval "SELECT count(DISTINCT chunk_id) FROM $toast")" -ge 2

if ! wh_psql -q <<SQL >"$WORK/wh_setup.out" 2>&1; then
CREATE EXTENSION IF NOT EXISTS dbsync;
CREATE SERVER "$SRV" FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB', schema 'lc', target_schema 'lc', capture 'log');
CREATE USER MAPPING FOR postgres SERVER "$SRV" OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SQL
    not_ok "1 setup: a postgresql server with capture 'log' is accepted"; diag "$(cat "$WORK/wh_setup.out")"
    echo "1..$n"; exit 1
fi
ok "1 setup: a postgresql server with capture 'log' is accepted"

# ---------------------------------------------------------------- 2. options
# refused ERR_FILE SQL: the statement fails with an FDW SQLSTATE (HV...) and a hint
refused() {
    if wh_psql -v VERBOSITY=verbose -c "$2" >"$WORK/$1" 2>&1; then
        diag "accepted: $2"; return 1
    fi
    grep -q '^ERROR:  HV' "$WORK/$1" && grep -q '^HINT:' "$WORK/$1" && return 0
    diag "$(cat "$WORK/$1")"
    return 1
}
check "2 options: CREATE SERVER of a mysql source with capture 'log' is refused (HV..., with a hint)" \
    refused my.err "CREATE SERVER lc_my FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'mysql', host '127.0.0.1',
        port '$SRC_MY_PORT', dbname '$SRC_DB', capture 'log')"
check "2 options: CREATE SERVER of a tidb source with capture 'log' is refused (HV..., with a hint)" \
    refused ti.err "CREATE SERVER lc_ti FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'tidb', host '127.0.0.1',
        port '$SRC_MY_PORT', dbname '$SRC_DB', capture 'log')"
wh_psql -q -c "CREATE SERVER lc_my FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'mysql', host '127.0.0.1',
    port '$SRC_MY_PORT', dbname '$SRC_DB')" >/dev/null
check "2 options: ALTER SERVER of a mysql source ADD capture 'log' is refused" \
    refused my_alter.err "ALTER SERVER lc_my OPTIONS (ADD capture 'log')"
check "2 options: ... and the mysql server keeps no capture option" \
    is "SELECT count(*) FROM pg_foreign_server, unnest(srvoptions) o WHERE srvname = 'lc_my' AND o LIKE 'capture=%'" 0
check "2 options: ALTER SERVER of a mysql source ADD capture 'cursor' is accepted" \
    wh_psql -q -c "ALTER SERVER lc_my OPTIONS (ADD capture 'cursor')"
check "2 options: a capture value other than cursor / log is refused" \
    refused bad_capture.err "CREATE SERVER lc_bad FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', capture 'binlog')"
check "2 options: a slot_name the replication protocol cannot take is refused" \
    refused bad_slot.err "CREATE SERVER lc_bad2 FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', capture 'log', slot_name 'Bad-Name')"
wh_psql -q -c "DROP SERVER lc_my" >/dev/null

# ---------------------------------------------------------------- 3. no REPLICATION
run_srv "$SRV"
check_run "3 no REPLICATION: the run reports an error that names replication" has_row '*' '*' error replication
check_run "3 no REPLICATION: no table reports ok" no_row '*' '*' ok
check "3 no REPLICATION: dbsync.status shows the error for the server" \
    is "SELECT count(*) > 0 FROM dbsync.status WHERE server = '$SRV' AND last_status = 'error' AND last_error ILIKE '%replication%'" t
check "3 no REPLICATION: no slot is left at the source" test "$(slot_count "$SLOT")" = 0

# ---------------------------------------------------------------- 4 + 5. first run, with a writer
src_admin_psql -q -c "ALTER ROLE $SRC_USER REPLICATION" >/dev/null
writer_start 6 first
sleep 1
k_before=$(sval "SELECT max(seq) FROM lc.ledger")
run_srv "$SRV"
k_local=$(q "SELECT coalesce(max(seq), 0) || ':' || count(*) || ':' || coalesce(min(seq), 0) FROM lc.ledger")
n_local=$(q "SELECT n FROM lc.counter")
diag "first run: the writer was at transaction ${k_before:-?} at the call; locally after it: ledger max:count:min $k_local, counter $n_local"
for t in 'Order Items' select w ledger counter bulk; do
    check_run "4 first run: '$t' loaded (mode initial, ok)" has_row "$t" initial ok
done
check_run "4 first run: the keyless table is an error naming the missing primary key" has_row nokey '*' error 'primary key'
check "4 first run: ... and is not loaded" test "$(local_rows lc.nokey)" = 0
check "4 first run: ... and its status says so" \
    is "SELECT last_status || ':' || (last_error ILIKE '%primary key%') FROM dbsync.status WHERE server = '$SRV' AND table_name = 'nokey'" error:true
check "4 first run: slot $SLOT (name from the server's, sanitised) made at the source: logical, pgoutput, persistent, in $SRC_DB" \
    test "$(sval "SELECT slot_type || ':' || plugin || ':' || (NOT temporary) || ':' || database FROM pg_replication_slots WHERE slot_name = '$SLOT'")" = "logical:pgoutput:true:$SRC_DB"
check "4 first run: publication $PUB made at the source holds the six tables with a key" \
    test "$(sval "SELECT count(*) FROM pg_publication_tables WHERE pubname = '$PUB' AND schemaname = 'lc'
                  AND tablename IN ('Order Items', 'select', 'w', 'ledger', 'counter', 'bulk')")" = 6
check "4 first run: the keyless table is not published (its UPDATEs and DELETEs at the source still work)" \
    src_psql -q -c "UPDATE lc.nokey SET v = v WHERE x = 1; DELETE FROM lc.nokey WHERE x = 3"
check "4 first run: '\"Order Items\"' exact (awkward keys, NULLs, bytea, jsonb, numeric, floats, timestamps, intervals, arrays, TOAST)" same oi
check "4 first run: '\"select\"' (composite key, reserved words) exact" same sel
check "4 first run: rows_total of '\"Order Items\"' is the source's count" \
    is "SELECT rows_total FROM dbsync.status WHERE server = '$SRV' AND table_name = 'Order Items'" "$(sval 'SELECT count(*) FROM lc."Order Items"')"
check "4 status: capture, capture_position, capture_lag_bytes, capture_lag, slot_state have their types" \
    is "SELECT string_agg(column_name || ' ' || data_type, ', ' ORDER BY column_name) FROM information_schema.columns
        WHERE table_schema = 'dbsync' AND table_name = 'status'
          AND column_name IN ('capture', 'capture_position', 'capture_lag_bytes', 'capture_lag', 'slot_state')" \
    "capture text, capture_lag interval, capture_lag_bytes bigint, capture_position pg_lsn, slot_state text"
check "4 status: every keyed table: capture log, slot_name $SLOT, capture_position set, last_status ok" \
    is "SELECT count(*) FROM dbsync.status WHERE server = '$SRV' AND table_name <> 'nokey' AND capture = 'log'
        AND slot_name = '$SLOT' AND capture_position IS NOT NULL AND last_status = 'ok'" 6
IFS=: read -r kmax kcount kmin <<<"$k_local"
covers() { [[ -n $k_before && $k_before -gt 0 && ${kmax:-0} -ge $k_before ]]; }
prefix() { [[ $kmin == 1 && $kcount == "$kmax" ]]; }
check "5 handover: the first run applied the writer's transactions up to its start at least ($kmax >= ${k_before:-?})" covers
check "5 handover: ... as a gap-free prefix: ledger rows 1..$kmax, none missing, none twice" prefix
check "5 handover: ... and the counter at the same source transaction (n = $n_local)" test "$n_local" = "$kmax"
writer_wait
run_srv "$SRV"
check_run "5 handover: the next run streams (no error, nothing loaded again)" streamed
check "5 handover: w, ledger and counter exact once the writer stopped" all_same w ledger counter
diag "writer 'first': $(sval "SELECT count(*) FROM lc.ledger") transactions"

# the keyless table leaves the selection (it would fail every later run)
wh_psql -q -c "ALTER SERVER \"$SRV\" OPTIONS (ADD exclude_tables 'nokey')"

# ---------------------------------------------------------------- 6. changes
src_psql -q <<'SQL' >/dev/null
UPDATE lc."Order Items" SET qty = qty + 1, price = price * 2, j = j || '{"u": 1}', note = E'upd \\N \t"' WHERE qty % 10 = 1;
UPDATE lc."Order Items" SET f = NULL, b = '\x00'::bytea, ts = now(), iv = '-1 day' WHERE qty % 10 = 2;
-- leaves big alone: the stream sends it as unchanged TOAST
UPDATE lc."Order Items" SET qty = qty + 100, note = 'big, note changed' WHERE k = 'big1';
DELETE FROM lc."Order Items" WHERE qty % 10 = 3;
INSERT INTO lc."Order Items" (k, qty, f, note) VALUES (E'new\tone', 9001, 0.1, 'new'), ('new "two"', 9002, 1e-300, NULL);
UPDATE lc."select" SET "from" = 'upd', v = NULL WHERE a = 7;
DELETE FROM lc."select" WHERE a = 8;
SQL
run_srv "$SRV"
check_run "6 updates, inserts, deletes: the run streams them (incremental, no error)" streamed "Order Items"
check "6 updates, inserts, deletes: '\"Order Items\"' and '\"select\"' exact" all_same oi sel
check "6 TOAST: the big value of a row updated without touching it survives locally" \
    is "SELECT md5(big) || ':' || qty FROM lc.\"Order Items\" WHERE k = 'big1'" "$(sval "SELECT md5(big) || ':' || qty FROM lc.\"Order Items\" WHERE k = 'big1'")"

src_psql -q <<'SQL' >/dev/null
UPDATE lc."select" SET a = a + 1000;
UPDATE lc."select" SET b = b || ' moved' WHERE a = 1001;
UPDATE lc."Order Items" SET k = k || ' → moved' WHERE qty % 10 = 4;
UPDATE lc."Order Items" SET k = 'big2 → moved' WHERE k = 'big2';
SQL
run_srv "$SRV"
check_run "6 key changes: the run streams them (no error)" run_clean
check "6 key changes: every row of '\"select\"' moved to its new composite key, none left behind" same sel
check "6 key changes: '\"Order Items\"' exact, including a row whose TOASTed value came as unchanged with its new key" same oi
check "6 key changes: ... that row has its big value locally" \
    is "SELECT md5(big) FROM lc.\"Order Items\" WHERE k = 'big2 → moved'" "$(sval "SELECT md5(big) FROM lc.\"Order Items\" WHERE k = 'big2 → moved'")"

src_psql -q -c 'TRUNCATE lc."select"' >/dev/null
run_srv "$SRV"
check_run "6 TRUNCATE: the run streams it (no error)" run_clean
check "6 TRUNCATE: the local table is empty" is 'SELECT count(*) FROM lc."select"' 0
src_psql -q -c "INSERT INTO lc.\"select\" SELECT g, 'after truncate ' || g, NULL, g, NULL FROM generate_series(1, 100) g" >/dev/null
check "6 CALL dbsync_sync after the TRUNCATE succeeds" wh_psql -q -c "CALL dbsync_sync('$SRV')"
check "6 CALL dbsync_sync: rows inserted after the TRUNCATE arrive, exact" same sel

# schema drift: inserts before and after ADD COLUMN, each in its own transaction
src_psql -q -c "INSERT INTO lc.\"Order Items\" (k, qty, note) VALUES ('drift before', 1, 'before')" \
    -c "ALTER TABLE lc.\"Order Items\" ADD COLUMN extra text, ADD COLUMN \"Extra Col\" int" \
    -c "INSERT INTO lc.\"Order Items\" (k, qty, note, extra, \"Extra Col\") VALUES ('drift after', 2, 'after', E'ex\ttra', 42)" \
    -c "UPDATE lc.\"Order Items\" SET extra = 'old row, new column' WHERE k = 'k00020'" \
    -c "INSERT INTO lc.\"Order Items\" (k, qty, extra) VALUES ('drift later', 3, 'later')" >/dev/null
run_srv "$SRV"
COLS[oi]="${COLS[oi]}, extra, \"Extra Col\""
check_run "6 ADD COLUMN mid-stream: the run goes on (no error)" run_clean
check "6 ADD COLUMN mid-stream: both new columns exist locally" \
    is "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'lc' AND table_name = 'Order Items' AND column_name IN ('extra', 'Extra Col')" 2
check "6 ADD COLUMN mid-stream: '\"Order Items\"' exact with the new columns' values" same oi
src_psql -q -c "UPDATE lc.\"Order Items\" SET \"Extra Col\" = 7 WHERE k = 'drift before'" >/dev/null

# 200,000 rows in one source transaction, then all of them updated in one
src_psql -q -c "INSERT INTO lc.bulk SELECT g, md5(g::text) FROM generate_series(11, 200010) g" >/dev/null
t1=$SECONDS
check "6 200,000 rows in one source transaction: CALL dbsync_sync succeeds" wh_psql -q -c "CALL dbsync_sync('$SRV')"
check "6 200,000 rows in one source transaction: exact ($((SECONDS - t1)) s)" all_same bulk oi
src_psql -q -c "UPDATE lc.bulk SET v = v || '+' || id" >/dev/null
t1=$SECONDS
run_srv "$SRV"
check_run "6 UPDATE of 200,010 rows in one source transaction: the run streams it (no error)" run_clean
check "6 UPDATE of 200,010 rows in one source transaction: exact ($((SECONDS - t1)) s)" same bulk

# ---------------------------------------------------------------- 8. slot moves with unpublished changes only
c0=$(confirmed)
src_psql -q -c "INSERT INTO lc_other.noise (v) SELECT 'noise ' || g FROM generate_series(1, 1000) g" >/dev/null
l1=$(src_flush)
run_srv "$SRV"
check_run "8 unpublished changes only: the run succeeds" run_clean
c1=$(confirmed)
# dbsync_run commits with the caller, after its stream is closed: the slot may
# learn the position a run reached only from the next one
lsn_ge "$c1" "$l1" || run_srv "$SRV"
c2=$(confirmed)
diag "slot confirmed_flush_lsn $c0 before; source WAL flushed to $l1 after the unpublished writes; slot at $c1 after dbsync_run, $c2 after another"
check "8 unpublished changes only: after dbsync_run (at most two) the slot's confirmed_flush_lsn reaches the source's WAL position ($c2 >= $l1)" \
    lsn_ge "$c2" "$l1"

# ---------------------------------------------------------------- 7. the background worker
# a local audit trigger notes every row dbsync writes into counter (its n) and
# ledger (its seq): a source transaction applied twice writes a value twice
wh_psql -q <<'SQL' >/dev/null
CREATE SCHEMA lc_audit;
CREATE TABLE lc_audit.applied (tbl text, k bigint, op text, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION lc_audit.note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO lc_audit.applied (tbl, k, op) VALUES (TG_TABLE_NAME, (pg_catalog.to_jsonb(NEW) ->> TG_ARGV[0])::bigint, TG_OP);
  RETURN NULL;
END $$;
CREATE TRIGGER audit AFTER INSERT OR UPDATE ON lc.counter FOR EACH ROW EXECUTE FUNCTION lc_audit.note('n');
CREATE TRIGGER audit AFTER INSERT OR UPDATE ON lc.ledger FOR EACH ROW EXECUTE FUNCTION lc_audit.note('seq');
SQL
if [[ $(q "SHOW shared_preload_libraries") != *dbsync* ]]; then
    echo "ok $((n += 1)) - # SKIP 7 worker: the warehouse does not preload dbsync"
else
    [[ $(q "SHOW dbsync.database") == "$WH_DB" ]] || set_guc dbsync.database "$WH_DB"
    set_guc dbsync.retry_min 1s
    set_guc dbsync.retry_max 2s
    q "SELECT pg_reload_conf()" >/dev/null
    sleep 0.5
    wh_psql -q -c "ALTER SERVER \"$SRV\" OPTIONS (ADD sync_interval '1 second')"
    src_psql -q -c "UPDATE lc.\"Order Items\" SET note = 'worker', qty = qty + 1 WHERE k IN ('big1', 'k00027')" \
        -c "DELETE FROM lc.w WHERE id BETWEEN 10 AND 19" -c "UPDATE lc.w SET id = id + 2000000 WHERE id BETWEEN 20 AND 29" >/dev/null
    l_before=$(src_flush)
    src_psql -q -c "INSERT INTO lc.w VALUES (777777, 'last before the worker check', 0)" >/dev/null
    converge "7 worker: it applies source changes without a call (inserts, updates, deletes, key changes, TOAST)" 30 "${ALL[@]}"
    check "7 worker: a dbsync worker runs" test -n "$(worker_pids)"
    check "7 worker: capture_position reaches the last source transaction" \
        wait_until 10 position_reached "$l_before"
    check "7 worker: capture_lag_bytes, capture_lag and slot_state are filled in" \
        is "SELECT count(*) FROM dbsync.status WHERE server = '$SRV' AND table_name <> 'nokey' AND capture_lag_bytes >= 0
            AND capture_lag IS NOT NULL AND slot_state IS NOT NULL" 6
    diag "status: $(q "SELECT slot_state || ', lag ' || capture_lag || ', ' || capture_lag_bytes || ' bytes' FROM dbsync.status WHERE server = '$SRV' AND table_name = 'w'")"
    held=0
    for _ in 1 2 3 4 5 6; do slot_active "$SLOT" && held=$((held + 1)); sleep 0.5; done
    check "7 worker: it holds the stream (slot active in $held of 6 samples over 3 s)" test "$held" = 6
    t1=$EPOCHREALTIME
    src_psql -q -c "INSERT INTO lc.w VALUES (888888, 'latency probe', 0)" >/dev/null
    wait_until 10 is "SELECT count(*) FROM lc.w WHERE id = 888888" 1
    ms=$(awk -v a="$t1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", (b - a) * 1000 }')
    check "7 worker: a committed source row is applied within 3 s ($ms ms)" test "$ms" -lt 3000

    # 8, while the worker streams
    src_psql -q -c "INSERT INTO lc_other.noise (v) SELECT 'noise ' || g FROM generate_series(1, 1000) g" >/dev/null
    l2=$(src_flush)
    check "8 unpublished changes only: while the worker streams, the slot's confirmed_flush_lsn reaches $l2" \
        wait_until 20 slot_reached "$l2"

    # kill -9 of the worker mid-stream
    writer_start 5 kill9
    sleep 1.5
    wpid=$(worker_pids | head -n 1)
    if [[ -n $wpid ]]; then
        kill -9 "$wpid"
        diag "killed dbsync worker $wpid with SIGKILL"
        sleep 1
        wh_up
        writer_wait
        converge "7 kill -9 of the worker mid-stream: it restarts from the stored position, w, ledger and counter exact" 40 w ledger counter
        check "7 kill -9: a new worker streams" wait_until 10 worker_running
    else
        writer_wait
        not_ok "7 kill -9 of the worker mid-stream: no dbsync worker found in pg_stat_activity"
    fi

    # immediate-mode stop of the warehouse mid-stream
    writer_start 5 immediate
    sleep 1.5
    pg_server_stop "$WH_DATADIR" immediate
    sleep 0.5
    pg_server_start "$WH_DATADIR" "$WH_LOG" || { not_ok "7 the warehouse restarts"; exit 1; }
    wh_up
    writer_wait
    converge "7 immediate-mode warehouse restart mid-stream: w, ledger and counter exact" 40 w ledger counter

    # restart of the source while the worker streams (the writer dies with it), then more writes
    writer_start 3 source
    sleep 1
    pg_server_stop "$SRC_PG_DATADIR" fast
    writer_wait
    pg_server_start "$SRC_PG_DATADIR" "$SRC_PG_LOG" || { not_ok "7 the source restarts"; exit 1; }
    check "7 source restart: the slot survives it" test "$(slot_count "$SLOT")" = 1
    writer_start 2 after_source
    writer_wait
    converge "7 source restart: the worker reconnects and resumes, all tables exact" 40 "${ALL[@]}"

    check "7 exactly once: counter n at the source equals its transactions (sanity of the writer)" \
        test "$(sval "SELECT n FROM lc.counter")" = "$(sval "SELECT count(*) FROM lc.ledger")"
    check "7 exactly once: no counter value and no ledger row was written twice locally (audit trigger)" \
        is "SELECT count(*) FROM (SELECT tbl, k FROM lc_audit.applied GROUP BY tbl, k HAVING count(*) > 1) d" 0
    check "7 exactly once: ... and the audit saw the writes (every ledger row since the trigger, once)" \
        is "SELECT count(*) FILTER (WHERE tbl = 'ledger') = (SELECT count(*) FROM lc.ledger WHERE tag IN ('kill9', 'immediate', 'source', 'after_source'))
            FROM lc_audit.applied" t
    diag "audit: $(q "SELECT string_agg(tbl || ' ' || op || ' ' || c, ', ') FROM (SELECT tbl, op, count(*) c FROM lc_audit.applied GROUP BY 1, 2) s")"
    if wait_until 20 is "SELECT count(*) FROM dbsync.status WHERE server = '$SRV' AND coalesce(table_name, '') <> 'nokey' AND last_status = 'error'" 0; then
        ok "7 dbsync.status: no table in error after the faults"
    else
        not_ok "7 dbsync.status: no table in error after the faults"
        diag "$(q "SELECT coalesce(table_name, '-') || ': ' || last_error FROM dbsync.status WHERE server = '$SRV' AND coalesce(table_name, '') <> 'nokey' AND last_status = 'error'")"
    fi

    # the worker stops once sync_interval is dropped
    wh_psql -q -c "ALTER SERVER \"$SRV\" OPTIONS (DROP sync_interval)"
    t1=$SECONDS
    if wait_until 20 stream_released; then
        ok "7 worker: dropping sync_interval ends the stream (the slot is released, $((SECONDS - t1)) s)"
    else
        not_ok "7 worker: dropping sync_interval ends the stream (the slot is released)"
        diag "workers: $(q "SELECT string_agg(pid || ' ' || coalesce(state, '') || ' since ' || backend_start || ': ' || left(query, 60), '; ') FROM pg_stat_activity WHERE backend_type = 'dbsync worker'")"
        diag "slot: $(sval "SELECT active || ' pid ' || coalesce(active_pid::text, '-') FROM pg_replication_slots WHERE slot_name = '$SLOT'")"
        if wait_until 30 stream_released; then diag "released $((SECONDS - t1)) s after the option was dropped"; else
            # so that 9 tests what it means to: end this test's workers (by pid)
            for p in $(worker_pids); do q "SELECT pg_terminate_backend($p)" >/dev/null; done
            wait_until 20 stream_released || diag "the stream is still held"
        fi
    fi
fi

# ---------------------------------------------------------------- 9. slot lost, resync, back to cursor
before=$(q 'SELECT count(*) FROM lc."Order Items"')
sval "SELECT pg_drop_replication_slot('$SLOT')" >/dev/null
src_psql -q -c "INSERT INTO lc.w VALUES (999001, 'while the slot was gone', 0)" >/dev/null
run_srv "$SRV"
check_run "9 slot dropped behind dbsync's back: the run is an error whose hint names dbsync_resync" \
    has_row '*' '*' error dbsync_resync
check "9 slot dropped: dbsync.status shows it, with the hint" \
    is "SELECT count(*) > 0 FROM dbsync.status WHERE server = '$SRV' AND last_status = 'error' AND last_error LIKE '%dbsync_resync%'" t
check "9 slot dropped: the local rows are kept" is 'SELECT count(*) FROM lc."Order Items"' "$before"
check "9 slot dropped: no new slot was made behind the user's back" test "$(slot_count "$SLOT")" = 0
q "SELECT dbsync_resync('$SRV')" >/dev/null
run_srv "$SRV"
for t in 'Order Items' select w ledger counter bulk; do
    check_run "9 after dbsync_resync: '$t' is read again in full (mode initial or full, ok)" has_row "$t" 'initial|full' ok
done
check "9 after dbsync_resync: a new slot exists" test "$(slot_count "$SLOT")" = 1
check "9 after dbsync_resync: every table exact" all_same "${ALL[@]}"
src_psql -q -c "UPDATE lc.w SET v = 'after resync' WHERE id = 999001" -c "DELETE FROM lc.bulk WHERE id % 1000 = 0" >/dev/null
run_srv "$SRV"
check_run "9 after dbsync_resync: the next run streams from the new slot (incremental)" streamed w
check "9 after dbsync_resync: exact" all_same w bulk

wh_psql -q -c "ALTER SERVER \"$SRV\" OPTIONS (SET capture 'cursor')"
run_srv "$SRV"
check_run "9 back to capture 'cursor': the run succeeds" run_clean
check "9 back to capture 'cursor': dbsync dropped its slot at the source" test "$(slot_count "$SLOT")" = 0
check "9 back to capture 'cursor': ... and the publication it made" test "$(pub_count "$PUB")" = 0
check "9 back to capture 'cursor': dbsync.status says cursor" \
    is "SELECT string_agg(DISTINCT capture, ',') FROM dbsync.status WHERE server = '$SRV' AND table_name <> 'nokey'" cursor
src_psql -q -c "INSERT INTO lc.w VALUES (999002, 'cursor again', 0)" -c "DELETE FROM lc.w WHERE id = 999001" \
    -c "UPDATE lc.\"Order Items\" SET note = 'cursor' WHERE k = 'big1'" >/dev/null
run_srv "$SRV"
check_run "9 back to capture 'cursor': the next run succeeds" run_clean
check "9 back to capture 'cursor': every table exact" all_same "${ALL[@]}"

# ---------------------------------------------------------------- 10. a publication of the user's
src_psql -q -c "CREATE PUBLICATION lc_userpub FOR TABLE lc.w" >/dev/null
wh_psql -q <<SQL
CREATE SERVER lc_pub FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB', schema 'lc', tables 'w,counter', target_schema 'lc_pub',
    capture 'log', publication 'lc_userpub', slot_name 'dbsync_lc_userpub');
CREATE USER MAPPING FOR postgres SERVER lc_pub OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SQL
run_srv lc_pub
check_run "10 user-named publication: a table in it loads" has_row w initial ok
check_run "10 user-named publication: a table not in it is an error" has_row counter '*' error
check "10 user-named publication: ... whose hint (dbsync.status.last_error) says ALTER PUBLICATION ... ADD TABLE" \
    is "SELECT last_error LIKE '%ALTER PUBLICATION%ADD TABLE%' FROM dbsync.status WHERE server = 'lc_pub' AND table_name = 'counter'" t
check "10 user-named publication: dbsync does not change it" \
    test "$(sval "SELECT string_agg(tablename, ',') FROM pg_publication_tables WHERE pubname = 'lc_userpub'")" = w
check "10 user-named publication: the slot has the slot_name given" test "$(slot_count dbsync_lc_userpub)" = 1
check "10 user-named publication: w exact" same w lc_pub
src_psql -q -c "ALTER PUBLICATION lc_userpub ADD TABLE lc.counter" -c "UPDATE lc.counter SET n = n + 1" \
    -c "INSERT INTO lc.w VALUES (999003, 'user publication', 0)" >/dev/null
run_srv lc_pub
check_run "10 user-named publication: once the table is added, the run succeeds" run_clean
check "10 user-named publication: counter and w exact" all_same_in lc_pub counter w

# ---------------------------------------------------------------- 11. DROP SERVER
# the mapping that could reach the source goes with the server: the slot stays
# there, and DROP SERVER says what to drop (a server that never made one: nothing)
drop_out=$(wh_psql -q -c "DROP SERVER lc_pub CASCADE" 2>&1)
check "11 DROP SERVER of a log server that made a slot: a warning names the slot" \
    grep -q 'WARNING:  replication slot "dbsync_lc_userpub" of server "lc_pub" is not dropped' <<<"$drop_out"
check "11 ... with the command to drop it (dbsync did not make the publication: not named)" \
    bash -c '[[ $1 == *"pg_drop_replication_slot('"'"'dbsync_lc_userpub'"'"')"* && $1 != *"DROP PUBLICATION"* ]]' _ "$drop_out"
for _ in $(seq 50); do
    [[ $(sval "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'dbsync_lc_userpub' AND active") == 0 ]] && break
    sleep 0.2
done
sval "SELECT pg_drop_replication_slot('dbsync_lc_userpub')" >/dev/null
wh_psql -q -c "CREATE SERVER lc_never FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', capture 'log')" >/dev/null
drop_out=$(wh_psql -q -c "DROP SERVER lc_never" 2>&1)
check "11 DROP SERVER of a log server that never ran: no warning" test -z "$drop_out"

echo "1..$n"
[ "$failed" -eq 0 ]
