#!/usr/bin/env bash
# The logical replication client (second part of log capture, issue 13):
# over a replication=database connection made with the server's user
# mapping, a slot is created with an exported snapshot; another connection
# reads the table in that snapshot while a writer commits one row per
# transaction; the stream from the slot's consistent point then holds exactly
# the rows the snapshot lacks (none missed, none twice); the acknowledgement
# moves the slot's confirmed position; a cancel stops a stream at once.
set -euo pipefail
source "$DBSYNC_REPO/scripts/lib.sh"
source "$DBSYNC_REPO/test/lib/tap.sh"

skip_unless_logical_source
cleanup() {
    [[ -n ${WRITER:-} ]] && kill "$WRITER" 2>/dev/null || true
    src_admin_psql -q -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'dbsync_test_lcp%' AND NOT active" \
        -c "DROP PUBLICATION IF EXISTS dbsync_lcp" -c "DROP SCHEMA IF EXISTS lcp CASCADE" -c "ALTER ROLE $SRC_USER NOREPLICATION" >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup
src_admin_psql -q <<SQL >/dev/null
CREATE SCHEMA lcp;
CREATE TABLE lcp.t (id int PRIMARY KEY, v text);
INSERT INTO lcp.t SELECT g, 'v' || g FROM generate_series(1, 1000) g;
GRANT USAGE ON SCHEMA lcp TO $SRC_USER;
GRANT SELECT ON lcp.t TO $SRC_USER;
CREATE PUBLICATION dbsync_lcp FOR TABLE lcp.t;
ALTER ROLE $SRC_USER REPLICATION;
CREATE PROCEDURE lcp.writer(n int) LANGUAGE plpgsql AS \$\$
DECLARE i int;
BEGIN
  FOR i IN 1..n LOOP
    INSERT INTO lcp.t SELECT max(id) + 1, 'w' FROM lcp.t;
    COMMIT;
    PERFORM pg_sleep(0.002);
  END LOOP;
END \$\$;
SQL
wh_psql -q <<SQL
CREATE EXTENSION IF NOT EXISTS dbsync;
DROP SERVER IF EXISTS lcp CASCADE;
CREATE SERVER lcp FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB', schema 'lcp');
CREATE USER MAPPING FOR postgres SERVER lcp OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SQL

# a writer commits one row per transaction while the slot is made and read
src_admin_psql -qc "CALL lcp.writer(1500)" >/dev/null 2>&1 &
WRITER=$!
sleep 0.5
q "SELECT kind, coalesce(relation, ''), row_text FROM dbsync.log_capture_probe('lcp', 'dbsync_test_lcp', 'dbsync_lcp', 'lcp', 't', 2500)" \
    >"$DBSYNC_TESTDIR/log_stream.out"
wait "$WRITER" || true
WRITER=
out=$DBSYNC_TESTDIR/log_stream.out
snap=$(awk -F'|' '$1 == "snapshot" {print $3}' "$out")
streamed=$(awk -F'|' '$1 == "insert" {split($3, f, "\t"); print f[1]}' "$out")
n_streamed=$(wc -w <<<"$streamed")
diag "snapshot: $snap rows; streamed inserts: $n_streamed"
check "the slot's exported snapshot, read over another connection, holds the rows committed before it (the writer had begun)" \
    eval '[ "$snap" -gt 1000 ] && [ "$snap" -lt 2500 ]'
check "rows committed after it arrive in the stream" test "$n_streamed" -gt 0
check "  ... exactly those the snapshot lacks: ids snapshot+1 .. snapshot+n, none twice, none missing" \
    test "$(sort -n <<<"$streamed" | tr '\n' ' ')" = "$(seq $((snap + 1)) $((snap + n_streamed)) | tr '\n' ' ')"
check "  ... as the source's rows" test "$(awk -F'|' '$1 == "insert"' "$out" | head -1 | cut -d'|' -f2-)" = "$(printf 'lcp.t|%s\tw' $((snap + 1)))"
acked=$(awk -F'|' '$1 == "acked" {print $3}' "$out")
check "the acknowledged position becomes the slot's confirmed_flush_lsn at the source" \
    test "$(src_admin_psql -Atc "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'dbsync_test_lcp'")" = "$acked"
check "  ... beyond its consistent point" \
    test "$(src_admin_psql -Atc "SELECT '$acked'::pg_lsn > '$(awk -F'|' '$1 == "consistent" {print $3}' "$out")'::pg_lsn")" = t

# a cancel stops a stream that has nothing to say
t0=$(date +%s%N)
err=$(wh_psql -c "SET statement_timeout = '700ms'" -c "SELECT count(*) FROM dbsync.log_capture_probe('lcp', 'dbsync_test_lcp2', 'dbsync_lcp', 'lcp', 't', 60000)" 2>&1 || true)
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check "a cancel (statement_timeout) stops the stream within a second (${ms} ms)" eval '[[ "$err" == *"statement timeout"* ]] && [ "$ms" -lt 2500 ]'
check "  ... and the replication connection is closed at the source" \
    wait_until 5 test "$(src_admin_psql -Atc "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'dbsync_test_lcp2' AND active")" = 0
err=$(wh_psql -Atc "SELECT count(*) FROM dbsync.log_capture_probe('lcp', 'Bad-Name', 'dbsync_lcp', 'lcp', 't', 10)" 2>&1 || true)
check "an invalid slot name: an error with a hint, nothing sent" eval '[[ "$err" == *"invalid replication slot name"* ]]'
check "a role that is not a superuser cannot call the probe" \
    test "$(q "SELECT has_function_privilege('public', 'dbsync.log_capture_probe(name, text, text, text, text, integer)', 'EXECUTE')")" = f
src_admin_psql -qc "ALTER ROLE $SRC_USER NOREPLICATION" >/dev/null
wh_psql -qc "DROP SERVER lcp CASCADE"
echo "1..$n"
[ "$failed" -eq 0 ]
