#!/usr/bin/env bash
# Log capture (issue 13), the cases its adversarial review found:
#   a partitioned source table (published through its root), a TOASTed text
#   key an update leaves alone, a replica identity without the key (that table
#   fails alone, with a hint), ADD COLUMN .. DEFAULT mid-stream (old rows get
#   the default: the table is loaded again), dbsync_run twice in one
#   transaction that rolls back (nothing acknowledged that was not committed),
#   a second run while the first one's transaction is open, a slot of the same
#   name dbsync did not make, a publication that leaves updates out, a
#   publication lacking every selected table, deletes 'ignore'; the upsert's
#   MERGE beside a trigger's own MERGE, and a target with a rule (no MERGE);
#   commits made with synchronous_commit off right before a call; rows_total
#   with deletes 'soft' and with a BEFORE trigger that skips rows; an idle
#   call after a WAL segment switch.
set -uo pipefail
source "$DBSYNC_REPO/scripts/lib.sh"
source "$DBSYNC_REPO/test/lib/tap.sh"

skip_unless_logical_source

sval() { src_admin_psql -At -c "$1" 2>/dev/null; }
SETS="SET TimeZone = 'UTC'; SET extra_float_digits = 3"
# digest TABLE COLUMNS ORDER [LOCAL_SCHEMA]: source and warehouse rows equal
same() {
    local sql="SELECT count(*) || ':' || coalesce(md5(string_agg(ROW($2)::text, chr(10) ORDER BY $3)), '-') FROM"
    local s w
    s=$(src_admin_psql -At -c "$SETS" -c "$sql lce.$1" 2>&1)
    w=$(wh_psql -At -c "$SETS" -c "$sql ${4:-lce}.$1" 2>&1)
    [[ $s == "$w" ]] && return 0
    diag "$1: source $s, warehouse $w"
    return 1
}
run() { RUN=$(wh_psql -At -c "SELECT coalesce(table_name, '-') || '|' || coalesce(mode, '-') || '|' || status || '|' || coalesce(message, '') FROM dbsync_run('$1')" 2>&1); }
row_is() { awk -F'|' -v t="$1" -v s="$2" '$1 == t && $3 == s { f = 1 } END { exit !f }' <<<"$RUN"; }
show_run() { diag "$(head -n 8 <<<"$RUN")"; }

cleanup() {
    wh_psql -q -c "SET client_min_messages = error" -c "DROP SERVER IF EXISTS lce, lce_ign, lce_theirs, lce_insonly, lce_nopub, lce_notrunc, lce_part, lce_trg CASCADE" \
        -c "DROP SCHEMA IF EXISTS lce, lce_ign, lce_theirs, lce_insonly, lce_nopub, lce_notrunc, lce_part, lce_trg CASCADE" >/dev/null 2>&1
    sleep 1
    src_admin_psql -q -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'dbsync\_lce%' AND NOT active" \
        -c "DO \$\$DECLARE p text; BEGIN FOR p IN SELECT pubname FROM pg_publication WHERE pubname LIKE 'dbsync\_lce%' OR pubname LIKE 'lce\_%' LOOP EXECUTE format('DROP PUBLICATION %I', p); END LOOP; END\$\$" \
        -c "DROP SCHEMA IF EXISTS lce CASCADE" -c "ALTER ROLE $SRC_USER NOREPLICATION" >/dev/null 2>&1 || true
}
TMPDIR_EDGES=$(mktemp -d)
trap 'cleanup; rm -rf "$TMPDIR_EDGES"' EXIT
[[ -n ${KEEP_EDGES:-} ]] && trap - EXIT   # (debugging: keep what the test made)
cleanup

src_admin_psql -q <<SQL >/dev/null
CREATE SCHEMA lce AUTHORIZATION $SRC_USER;
SET ROLE $SRC_USER;
CREATE TABLE lce.part (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE lce.part_a PARTITION OF lce.part FOR VALUES FROM (0) TO (1000);
CREATE TABLE lce.part_b PARTITION OF lce.part FOR VALUES FROM (1000) TO (2000);
INSERT INTO lce.part SELECT g, 'p' || g FROM generate_series(1, 1500, 7) g;
-- a text key stored out of line (md5s do not compress)
CREATE TABLE lce.tk (k text PRIMARY KEY, v int);
ALTER TABLE lce.tk ALTER COLUMN k SET STORAGE EXTERNAL;
INSERT INTO lce.tk SELECT string_agg(md5(g::text || i::text), '') , i
  FROM generate_series(1, 3) i, generate_series(1, 81) g GROUP BY i;
CREATE TABLE lce.ri (id int PRIMARY KEY, u int NOT NULL UNIQUE, v text);
ALTER TABLE lce.ri REPLICA IDENTITY USING INDEX ri_u_key;
INSERT INTO lce.ri SELECT g, g + 100, 'r' FROM generate_series(1, 10) g;
CREATE TABLE lce.dflt (id int PRIMARY KEY, v text);
INSERT INTO lce.dflt SELECT g, 'd' FROM generate_series(1, 50) g;
CREATE TABLE lce.keep (id int PRIMARY KEY, v text);
INSERT INTO lce.keep SELECT g, 'k' FROM generate_series(1, 20) g;
RESET ROLE;
GRANT CREATE ON DATABASE $SRC_DB TO $SRC_USER;
ALTER ROLE $SRC_USER REPLICATION;
SQL
mkserver() {   # NAME OPTIONS...
    wh_psql -q -c "CREATE SERVER $1 FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1', port '$SRC_PG_PORT', dbname '$SRC_DB', schema 'lce', target_schema '$1', capture 'log', $2)" \
        -c "CREATE USER MAPPING FOR postgres SERVER $1 OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD')" >/dev/null
}
wh_psql -q -c "CREATE EXTENSION IF NOT EXISTS dbsync" >/dev/null 2>&1
mkserver lce "tables 'part,tk,ri,dflt'"

run lce
check "first run: the partitioned table loads" row_is part ok || show_run
check "first run: the publication publishes partitions through their root" \
    test "$(sval "SELECT pubviaroot FROM pg_publication WHERE pubname = 'dbsync_lce'")" = t
src_admin_psql -q <<SQL >/dev/null
INSERT INTO lce.part VALUES (3, 'new a'), (1003, 'new b');
UPDATE lce.part SET v = 'moved' , id = id + 1000 WHERE id = 8;
DELETE FROM lce.part WHERE id = 15;
UPDATE lce.tk SET v = v + 10;
UPDATE lce.ri SET v = 'changed' WHERE id = 1;
DELETE FROM lce.ri WHERE id = 2;
INSERT INTO lce.dflt VALUES (1000, 'before');
ALTER TABLE lce.dflt ADD COLUMN c int DEFAULT 42;
INSERT INTO lce.dflt VALUES (1001, 'after', 7);
SQL
run lce
check "partitioned table: inserts, updates across partitions and deletes arrive" same part 'id, v' id
check "TOASTed text key left alone by an update: applied, not a stall" same tk 'k, v' 'k COLLATE "C"'
check "replica identity without the key: that table is an error" row_is ri error || show_run
check "... whose hint says REPLICA IDENTITY" \
    test "$(q "SELECT last_error LIKE '%REPLICA IDENTITY DEFAULT%' FROM dbsync.status WHERE server = 'lce' AND table_name = 'ri'")" = t
check "... while the other tables go on" bash -c '! grep -q "^part|.*|error|\|^tk|.*|error|" <<<"$1"' _ "$RUN"
check "ADD COLUMN .. DEFAULT mid-stream: old rows get the default (the table is loaded again)" same dflt 'id, v, c' id

# dbsync_run twice in one transaction, rolled back: nothing acknowledged that was not committed
src_admin_psql -q -c "INSERT INTO lce.part VALUES (500, 'rolled back once')" >/dev/null
wh_psql -q -c "BEGIN" -c "SELECT count(*) FROM dbsync_run('lce')" -c "SELECT count(*) FROM dbsync_run('lce')" -c "ROLLBACK" >/dev/null 2>&1
committed=$(q "SELECT applied_lsn FROM dbsync.captures WHERE server = 'lce'")
check "two runs in a rolled-back transaction: the slot is not past the committed position" \
    test "$(sval "SELECT confirmed_flush_lsn <= '$committed'::pg_lsn FROM pg_replication_slots WHERE slot_name = 'dbsync_lce'")" = t
run lce
check "... and the next run brings the row" same part 'id, v' id

# a second run while the first one's transaction is open waits its turn (skipped)
( echo "BEGIN; SELECT count(*) FROM dbsync_run('lce');"; sleep 4; echo "COMMIT;" ) | wh_psql -q >/dev/null 2>&1 &
HOLDER=$!
sleep 2
run lce
check "a run while another run's transaction holds the server: skipped" \
    bash -c 'grep -q "skipped|another run is capturing" <<<"$1"' _ "$RUN"
wait "$HOLDER"

# a slot of the same name that dbsync did not make is not dropped
sval "SELECT pg_create_logical_replication_slot('dbsync_lce_theirs', 'pgoutput')" >/dev/null
mkserver lce_theirs "tables 'dflt'"
run lce_theirs
check "someone else's slot of the default name: an error" bash -c 'grep -q "exists at the source.*dbsync did not make it" <<<"$1"' _ "$RUN"
check "... and the slot is still there" test "$(sval "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'dbsync_lce_theirs'")" = 1
sval "SELECT pg_drop_replication_slot('dbsync_lce_theirs')" >/dev/null

# a publication that leaves updates and deletes out is refused
src_admin_psql -q -c "CREATE PUBLICATION lce_insonly FOR TABLE lce.keep WITH (publish = 'insert')" >/dev/null
mkserver lce_insonly "tables 'keep', publication 'lce_insonly', slot_name 'dbsync_lce_insonly'"
run lce_insonly
check "a publication that leaves updates out: an error" bash -c 'grep -q "does not publish every change" <<<"$1"' _ "$RUN"
check "... and no slot was made" test "$(sval "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'dbsync_lce_insonly'")" = 0

# a user publication lacking every selected table: errors, no crash
src_admin_psql -q -c "CREATE PUBLICATION lce_other FOR TABLE lce.dflt" >/dev/null
mkserver lce_nopub "tables 'keep', publication 'lce_other', slot_name 'dbsync_lce_nopub'"
run lce_nopub
check "a publication without any selected table: that table is an error" row_is keep error || show_run
check "... and the warehouse is up" test "$(q "SELECT 1")" = 1

# deletes 'ignore': source deletes and truncates keep the local rows
mkserver lce_ign "tables 'keep', deletes 'ignore'"
run lce_ign
src_admin_psql -q -c "DELETE FROM lce.keep WHERE id <= 5" -c "UPDATE lce.keep SET v = 'u' WHERE id = 6" >/dev/null
run lce_ign
check "deletes 'ignore': deleted source rows stay" test "$(q "SELECT count(*) FROM lce_ign.keep")" = 20
check "... updates arrive" test "$(q "SELECT v FROM lce_ign.keep WHERE id = 6")" = u
src_admin_psql -q -c "TRUNCATE lce.keep" >/dev/null
run lce_ign
check "deletes 'ignore': a TRUNCATE keeps the rows" test "$(q "SELECT count(*) FROM lce_ign.keep")" = 20

# a change the target refuses fails that table alone, and its status stays an error
wh_psql -q -c "ALTER TABLE lce.dflt ADD CONSTRAINT dflt_small CHECK (id < 5000)" >/dev/null
src_admin_psql -q -c "INSERT INTO lce.dflt VALUES (6000, 'refused', 1)" -c "INSERT INTO lce.part VALUES (7, 'with it')" >/dev/null
run lce
check "a value the target refuses: that table is an error" row_is dflt error || show_run
check "... its status says so after the run (not ok)" \
    test "$(q "SELECT last_status FROM dbsync.status WHERE server = 'lce' AND table_name = 'dflt'")" = error
check "... and the other tables applied" same part 'id, v' id
wh_psql -q -c "ALTER TABLE lce.dflt DROP CONSTRAINT dflt_small" >/dev/null
run lce
check "once the target takes it: the table is loaded again, exact" same dflt 'id, v, c' id

# a dbsync_resync + run rolled back: the slot was replaced at the source, the position not
wh_psql -q -c "BEGIN" -c "SELECT dbsync_resync('lce')" -c "SELECT count(*) FROM dbsync_run('lce')" -c "ROLLBACK" >/dev/null 2>&1
src_admin_psql -q -c "INSERT INTO lce.part VALUES (9, 'after the rollback')" >/dev/null
run lce
check "slot replaced by a rolled-back run: an error, not a silent gap" \
    bash -c 'grep -q "past the position applied" <<<"$1" && grep -q dbsync_resync <<<"$1"' _ "$RUN"
q "SELECT dbsync_resync('lce')" >/dev/null
run lce
check "... dbsync_resync, then exact" same part 'id, v' id

# the upsert is one MERGE: the rows it inserted are its own count, not that of
# a MERGE a trigger on the target runs inside it (rows_total stays exact)
wh_psql -q <<'SQL' >/dev/null
CREATE TABLE lce.merge_log (n int PRIMARY KEY, hits int);
CREATE FUNCTION lce.merge_more() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  MERGE INTO lce.merge_log m USING (SELECT g FROM generate_series(1, 7) g) s ON m.n = s.g
  WHEN MATCHED THEN UPDATE SET hits = m.hits + 1 WHEN NOT MATCHED THEN INSERT VALUES (s.g, 1);
  RETURN NULL;
END $$;
CREATE TRIGGER merge_more AFTER INSERT OR UPDATE ON lce.part FOR EACH ROW EXECUTE FUNCTION lce.merge_more();
SQL
src_admin_psql -q -c "INSERT INTO lce.part SELECT g, 'merged' FROM generate_series(1501, 1505) g" \
    -c "UPDATE lce.part SET v = v || ' again' WHERE id IN (SELECT id FROM lce.part WHERE id < 1000 ORDER BY id LIMIT 3)" >/dev/null
run lce
check "a trigger's own MERGE on the target: the rows arrive" same part 'id, v' id
check "... rows upserted: the 5 inserts and 3 updates, not the trigger's" \
    test "$(q "SELECT last_rows_upserted FROM dbsync.status WHERE server = 'lce' AND table_name = 'part'")" = 8
check "... rows_total is the target's count" \
    test "$(q "SELECT rows_total FROM dbsync.status WHERE server = 'lce' AND table_name = 'part'")" = "$(q "SELECT count(*) FROM lce.part")"
check "... the trigger ran its MERGE for each row written" \
    test "$(q "SELECT sum(hits) FROM lce.merge_log")" = 56
wh_psql -q -c "DROP TRIGGER merge_more ON lce.part" >/dev/null
# a target with a rewrite rule (MERGE refuses those): an UPDATE, then an INSERT
wh_psql -q -c "CREATE RULE say_so AS ON UPDATE TO lce.part DO ALSO NOTIFY lce_part" >/dev/null
src_admin_psql -q -c "INSERT INTO lce.part VALUES (1506, 'under a rule')" \
    -c "UPDATE lce.part SET v = 'ruled' WHERE id IN (22, 1501)" -c "DELETE FROM lce.part WHERE id = 29" >/dev/null
run lce
check "a target with a rule: inserts, updates and deletes arrive" same part 'id, v' id
check "... rows_total is the target's count" \
    test "$(q "SELECT rows_total FROM dbsync.status WHERE server = 'lce' AND table_name = 'part'")" = "$(q "SELECT count(*) FROM lce.part")"
wh_psql -q -c "DROP RULE say_so ON lce.part" >/dev/null
# a run of updates only still refreshes the table's status
before=$(q "SELECT last_synced_at FROM dbsync.status WHERE server = 'lce' AND table_name = 'part'")
src_admin_psql -q -c "UPDATE lce.part SET v = 'updates only' WHERE id IN (SELECT id FROM lce.part ORDER BY id LIMIT 2)" >/dev/null
run lce
got=$(q "SELECT last_rows_upserted || ':' || (last_synced_at > '$before') FROM dbsync.status WHERE server = 'lce' AND table_name = 'part'")
check "updates only: the status counts them and its sync time moves" test "$got" = 2:true
[[ $got == 2:true ]] || diag "got $got (before: $before); the run: $RUN"

# commits the source acknowledged with synchronous_commit off, right before a
# call (one session: dblink's insert, then the run): flushed there a little
# later, they are still the call's
{
    echo "CREATE EXTENSION IF NOT EXISTS dblink;"
    echo "SELECT dblink_connect('lce_async', 'host=127.0.0.1 port=$SRC_PG_PORT dbname=$SRC_DB user=postgres') \\g /dev/null"
    echo "SELECT dblink_exec('lce_async', 'SET synchronous_commit = off') \\g /dev/null"
    for i in $(seq 1601 1630); do
        echo "SELECT dblink_exec('lce_async', 'INSERT INTO lce.part VALUES ($i, ''async'')') \\g /dev/null"
        echo "SELECT count(*) FROM dbsync_run('lce') \\g /dev/null"
        echo "SELECT 'missed $i' WHERE NOT EXISTS (SELECT FROM lce.part WHERE id = $i);"
    done
    echo "SELECT dblink_disconnect('lce_async') \\g /dev/null"
} >"$TMPDIR_EDGES/async.sql"
misses=$(wh_psql -Atq -f "$TMPDIR_EDGES/async.sql" 2>&1 | grep -c missed)
check "asynchronous commits right before each of 30 calls: each call applies its row" test "$misses" = 0
[[ $misses == 0 ]] || diag "$misses of 30 rows came only with a later call"
check "... and all 30 are there" test "$(q "SELECT count(*) FROM lce.part WHERE id BETWEEN 1601 AND 1630")" = 30
wh_psql -q -c "DROP EXTENSION dblink" >/dev/null

# deletes 'soft': rows that come back count again; a BEFORE trigger on the
# target that skips rows: they are not counted (rows_total = the live rows)
src_admin_psql -q -c "CREATE TABLE lce.trg (id int PRIMARY KEY, v text)" -c "ALTER TABLE lce.trg OWNER TO $SRC_USER" \
    -c "INSERT INTO lce.trg SELECT g, 't' FROM generate_series(1, 10) g" >/dev/null
mkserver lce_trg "tables 'trg', deletes 'soft'"
run lce_trg
live() { q "SELECT rows_total || ':' || (SELECT count(*) FROM lce_trg.trg WHERE NOT _dbsync_deleted) FROM dbsync.status WHERE server = 'lce_trg' AND table_name = 'trg'"; }
# trg_step SQL NAME EXPECTED: SQL at the source, a run, then rows_total:live rows
trg_step() { src_admin_psql -q -c "$1" >/dev/null; run lce_trg; check "$2" test "$(live)" = "$3"; }
trg_step "DELETE FROM lce.trg WHERE id <= 3" "deletes 'soft': three rows flagged, rows_total counts the others" 7:7
trg_step "INSERT INTO lce.trg SELECT g, 'back' FROM generate_series(1, 3) g" "... the three come back: counted again" 10:10
wh_psql -q <<'SQL' >/dev/null
CREATE FUNCTION lce_trg.skip_odd() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF NEW.id % 2 = 1 THEN RETURN NULL; END IF; RETURN NEW; END $$;
CREATE TRIGGER skip_odd BEFORE INSERT OR UPDATE ON lce_trg.trg FOR EACH ROW EXECUTE FUNCTION lce_trg.skip_odd();
SQL
trg_step "INSERT INTO lce.trg SELECT g, 'odd or even' FROM generate_series(11, 14) g" \
    "a BEFORE trigger on the target skips two of four new rows: rows_total counts the two written" 12:12
trg_step "UPDATE lce.trg SET v = 'skipped or not' WHERE id IN (4, 5, 6, 7)" \
    "... and skips two of four updates: rows_total unchanged" 12:12
check "... the two even ones updated" \
    test "$(q "SELECT string_agg(id::text, ',' ORDER BY id) FROM lce_trg.trg WHERE v = 'skipped or not'")" = 4,6

# a WAL segment switch at an idle source: the source's insert position is
# just past the new segment's header, its decoding ends at the segment's
# start; a call ends there, not after the 5 s without progress
src_admin_psql -q -c "SELECT pg_switch_wal()" >/dev/null
t0=$(date +%s%N)
run lce
ms=$((($(date +%s%N) - t0) / 1000000))
check "after a WAL segment switch, an idle call ends at its target ($ms ms, the quiet stop is 5 s)" test "$ms" -lt 4000

# a user publication that leaves truncates out is refused too
src_admin_psql -q -c "CREATE PUBLICATION lce_notrunc FOR TABLE lce.keep WITH (publish = 'insert, update, delete')" >/dev/null
mkserver lce_notrunc "tables 'keep', publication 'lce_notrunc', slot_name 'dbsync_lce_notrunc'"
run lce_notrunc
check "a publication without truncates: an error" bash -c 'grep -q "does not publish every change" <<<"$1"' _ "$RUN"

# a table whose first load fails does not hold the others back
wh_psql -q -c "CREATE SCHEMA lce_part" -c "CREATE TABLE lce_part.tk (k text PRIMARY KEY, v int)" >/dev/null
mkserver lce_part "tables 'part,tk'"
run lce_part
check "first run, one table blocked (a table dbsync did not make holds its name): the other loads" row_is part ok || show_run
check "... the blocked one is an error" row_is tk error
check "... and the stream state is kept (slot made once)" \
    test "$(q "SELECT count(*) FROM dbsync.captures WHERE server = 'lce_part'")" = 1
wh_psql -q -c "DROP TABLE lce_part.tk" >/dev/null
src_admin_psql -q -c "UPDATE lce.tk SET v = v + 1" -c "INSERT INTO lce.part VALUES (11, 'later')" >/dev/null
run lce_part
check "... once freed, the next run loads it and both are exact" \
    bash -c 'row_is() { awk -F"|" -v t="$1" -v s="$2" "\$1 == t && \$3 == s { f = 1 } END { exit !f }" <<<"$3"; }; row_is tk ok "$1" && row_is part ok "$1"' _ "$RUN"
check "... tk exact" same tk 'k, v' 'k COLLATE "C"' lce_part
check "... part exact" same part 'id, v' id lce_part

echo "1..$n"
[ "$failed" -eq 0 ]
