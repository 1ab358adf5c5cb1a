#!/usr/bin/env bash
# The pgoutput decoder (first part of log capture, issue 13): the messages a
# real PostgreSQL source sends for inserts, updates (a TOASTed column left
# unchanged, a changed key, REPLICA IDENTITY FULL), deletes and TRUNCATE are
# read from a logical slot at the source (pg_logical_slot_peek_binary_changes,
# proto_version 1, the bytes START_REPLICATION streams) and decoded in the
# warehouse by dbsync.pgoutput_decode(); malformed messages are errors, never
# reads past the buffer.  Needs the source's wal_level = logical
# (scripts/testenv.sh sets it).
set -euo pipefail
source "$DBSYNC_REPO/scripts/lib.sh"
source "$DBSYNC_REPO/test/lib/tap.sh"

skip_unless_logical_source
cleanup() {
    src_admin_psql -q -c "SELECT pg_drop_replication_slot('dbsync_test_pgo') FROM pg_replication_slots WHERE slot_name = 'dbsync_test_pgo'" \
        -c "DROP PUBLICATION IF EXISTS dbsync_test_pgo" -c "DROP SCHEMA IF EXISTS pgo CASCADE" >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup
src_admin_psql -q <<'SQL' >/dev/null
CREATE SCHEMA pgo;
CREATE TABLE pgo.t (id int PRIMARY KEY, v text, big text, n numeric, ts timestamptz);
ALTER TABLE pgo.t ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE TABLE pgo."odd Name" (a int, "b c" text, PRIMARY KEY (a, "b c"));
CREATE TABLE pgo.nokey (x int, y text);
ALTER TABLE pgo.nokey REPLICA IDENTITY FULL;
CREATE PUBLICATION dbsync_test_pgo FOR TABLE pgo.t, pgo."odd Name", pgo.nokey;
SELECT pg_create_logical_replication_slot('dbsync_test_pgo', 'pgoutput');
SET TimeZone = 'UTC';
INSERT INTO pgo.t VALUES (1, E'tab\there\nline \\ back', repeat('x', 10000), 1.50, '2024-01-02 03:04:05+00'),
                         (2, NULL, NULL, NULL, NULL);
UPDATE pgo.t SET v = 'changed' WHERE id = 1;
UPDATE pgo.t SET id = 100 WHERE id = 2;
DELETE FROM pgo.t WHERE id = 100;
INSERT INTO pgo."odd Name" VALUES (7, 'é "q"');
INSERT INTO pgo.nokey VALUES (1, 'a'), (1, 'a');
UPDATE pgo.nokey SET y = 'b' WHERE ctid = (SELECT min(ctid) FROM pgo.nokey);
TRUNCATE pgo.t, pgo.nokey;
SQL

# (values come as the source session's text: this one's TimeZone is UTC)
msgs=$(src_admin_psql -At -c "SET TimeZone = 'UTC'" -c "SELECT array_agg(data ORDER BY n) FROM pg_logical_slot_peek_binary_changes('dbsync_test_pgo', NULL, NULL,
    'proto_version', '1', 'publication_names', 'dbsync_test_pgo') WITH ORDINALITY AS c(lsn, xid, data, n)")
echo "$msgs" >"$DBSYNC_TESTDIR/pgoutput.msgs"
dec() { q "SELECT $1 FROM dbsync.pgoutput_decode('$msgs'::bytea[]) $2"; }
q "CREATE EXTENSION IF NOT EXISTS dbsync" >/dev/null

check "the changes, in order: inserts, updates, a delete, a truncate" \
    test "$(dec "string_agg(kind, ',')" "WHERE kind NOT IN ('begin', 'commit', 'relation')")" = \
         "insert,insert,update,update,delete,insert,insert,insert,update,truncate"
check "one begin and one commit for each of the 8 source transactions" \
    test "$(dec "count(*) FILTER (WHERE kind = 'begin') || ':' || count(*) FILTER (WHERE kind = 'commit')" "")" = "8:8"
first_insert=$(dec "new_row" "WHERE kind = 'insert' AND relation = 'pgo.t' LIMIT 1")
check "an insert as a COPY text line: tab, newline and backslash escaped, values as the source's text" \
    test "$first_insert" = "$(printf '1\ttab\\there\\nline \\\\ back\t%s\t1.50\t2024-01-02 03:04:05+00' "$(printf 'x%.0s' $(seq 10000))")"
[[ $first_insert == 1* ]] || diag "got: ${first_insert:0:120}"
check "NULLs as \\N" test "$(dec "new_row" "WHERE kind = 'insert' AND relation = 'pgo.t' OFFSET 1 LIMIT 1")" = "$(printf '2\t\\N\t\\N\t\\N\t\\N')"
check "an update leaving a TOASTed column alone: that column named as unchanged, the rest sent" \
    test "$(dec "unchanged || '|' || split_part(new_row, E'\t', 2)" "WHERE kind = 'update' AND relation = 'pgo.t' LIMIT 1")" = "big|changed"
check "an update of the key: the old key (K) and the new row" \
    test "$(dec "old_kind || '|' || old_row || '|' || split_part(new_row, E'\t', 1)" "WHERE kind = 'update' AND relation = 'pgo.t' OFFSET 1")" = "K|2|100"
check "a delete: the key only" test "$(dec "old_kind || '|' || old_row" "WHERE kind = 'delete'")" = "K|100"
check "odd names and UTF-8: relation quoted, key of two columns" \
    test "$(dec "relation || '|' || new_row" "WHERE kind = 'insert' AND relation LIKE '%odd%'")" = "$(printf 'pgo."odd Name"|7\té "q"')"
check "REPLICA IDENTITY FULL: the whole old row (O)" \
    test "$(dec "old_kind || '|' || old_row || '|' || new_row" "WHERE kind = 'update' AND relation = 'pgo.nokey'")" = "$(printf 'O|1\ta|1\tb')"
check "a TRUNCATE of two tables in one message" \
    test "$(dec "relation" "WHERE kind = 'truncate'")" = "pgo.t,pgo.nokey"

# malformed input: an error that says what, never a read past the end
bad() { wh_psql -Atc "SELECT count(*) FROM dbsync.pgoutput_decode($1)" 2>&1 || true; }
out=$(bad "ARRAY[(SELECT m FROM unnest('$msgs'::bytea[]) WITH ORDINALITY u(m, i) WHERE get_byte(m, 0) = ascii('R') LIMIT 1),
               substring((SELECT m FROM unnest('$msgs'::bytea[]) u(m) WHERE get_byte(m, 0) = ascii('I') LIMIT 1) FROM 1 FOR 12)]")
check "a message cut short: an error naming where" eval '[[ "$out" == *"is cut short at"* ]]'
out=$(bad "ARRAY[(SELECT m FROM unnest('$msgs'::bytea[]) u(m) WHERE get_byte(m, 0) = ascii('I') LIMIT 1)]")
check "a change before its Relation message: an error" eval '[[ "$out" == *"before its Relation message"* ]]'
out=$(bad "ARRAY['\\x5a00'::bytea]")
check "an unknown message type: an error" eval '[[ "$out" == *"unknown logical replication message type"* ]]'
out=$(bad "ARRAY['\\x52000000'::bytea]")
check "a Relation message of 4 bytes: an error" eval '[[ "$out" == *"cut short"* ]]'
# hostile lengths and counts after a real Relation message of pgo.t (5 columns)
rel="(SELECT m FROM unnest('$msgs'::bytea[]) u(m) WHERE get_byte(m, 0) = ascii('R') LIMIT 1)"
relid="substring($rel FROM 2 FOR 4)"
out=$(bad "ARRAY[$rel, '\\x49'::bytea || $relid || '\\x4e00016e'::bytea]")
check "a tuple with fewer columns than its relation: an error" eval '[[ "$out" == *"has 1 columns, its Relation message 5"* ]]'
out=$(bad "ARRAY[$rel, '\\x49'::bytea || $relid || '\\x4e000574ffffffff41'::bytea]")
check "a column length of 2^32-1: an error, no read" eval '[[ "$out" == *"cut short at column value"* ]]'
out=$(bad "ARRAY[$rel, '\\x547fffffff00'::bytea || $relid]")
check "a TRUNCATE naming 2^31-1 relations: an error, no allocation" eval '[[ "$out" == *"cut short at truncated relations"* ]]'
out=$(bad "ARRAY['\\x5200000001007300740064ffff'::bytea]")
check "a Relation message claiming 65535 columns in 13 bytes: an error" eval '[[ "$out" == *"cut short at columns"* ]]'
check "a role that is not a superuser cannot call the decoder" \
    eval '[[ "$(q "SELECT has_function_privilege('"'"'public'"'"', '"'"'dbsync.pgoutput_decode(bytea[])'"'"', '"'"'EXECUTE'"'"')")" == f ]]'

echo "1..$n"
[ "$failed" -eq 0 ]
