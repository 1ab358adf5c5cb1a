#!/usr/bin/env bash
# Cheap incremental and idle runs (issue 11): the source connection and
# discovery kept across the runs of a session and of a worker (and given up
# when the server or user mapping changes, or the source closes it),
# delete_check_interval, and the one-pass apply of small change sets.
set -euo pipefail
source "$DBSYNC_REPO/scripts/lib.sh"
source "$DBSYNC_REPO/test/lib/tap.sh"

TMP=$(mktemp -d)
chmod 755 "$TMP"
trap 'rm -rf "$TMP"' EXIT

# helpers a psql session runs with \! between its own statements
cat >"$TMP/src_pids" <<EOF
#!/bin/sh
# the source backends of dbsync connections opened since the test began
# (those of other tests' sessions and workers left out), one pid per line
PGPASSWORD='$SRC_PASSWORD' '$PG_BINDIR/psql' -X -Atq -h 127.0.0.1 -p '$SRC_PG_PORT' -U '$SRC_USER' -d '$SRC_DB' \
  -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'dbsync' ORDER BY pid" | grep -vxF -f '$TMP/base_pg' || true
EOF
cat >"$TMP/src_sql" <<EOF
#!/bin/sh
PGPASSWORD='$SRC_PASSWORD' '$PG_BINDIR/psql' -X -Atq -v ON_ERROR_STOP=1 -h 127.0.0.1 -p '$SRC_PG_PORT' -U '$SRC_USER' -d '$SRC_DB' -c "\$1"
EOF
cat >"$TMP/my_ids" <<EOF
#!/bin/sh
# the MariaDB sessions of the source user opened since the test began, but
# this client's own
MYSQL_PWD='$SRC_PASSWORD' mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P '$SRC_MY_PORT' -u '$SRC_USER' -N --batch \
  -e "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '$SRC_USER' AND ID <> CONNECTION_ID() ORDER BY ID" | grep -vxF -f '$TMP/base_my' || true
EOF
cat >"$TMP/src_kill" <<EOF
#!/bin/sh
# terminate the source backends listed in file \$1
for p in \$(cat "\$1"); do '$TMP/src_sql' "SELECT pg_terminate_backend(\$p)" >/dev/null; done
EOF
cat >"$TMP/my_kill" <<EOF
#!/bin/sh
for i in \$(cat "\$1"); do MYSQL_PWD='$SRC_PASSWORD' mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P '$SRC_MY_PORT' -u '$SRC_USER' -e "KILL \$i"; done
EOF
chmod 755 "$TMP"/src_pids "$TMP"/src_sql "$TMP"/my_ids "$TMP"/src_kill "$TMP"/my_kill
echo 0 >"$TMP/base_pg"; echo 0 >"$TMP/base_my"
"$TMP/src_pids" >"$TMP/base_pg.new"; echo 0 >>"$TMP/base_pg.new"; mv "$TMP/base_pg.new" "$TMP/base_pg"
"$TMP/my_ids" >"$TMP/base_my.new"; echo 0 >>"$TMP/base_my.new"; mv "$TMP/base_my.new" "$TMP/base_my"

src_psql <<'SQL'
DROP SCHEMA IF EXISTS inc CASCADE;
CREATE SCHEMA inc;
CREATE TABLE inc.big (id bigint PRIMARY KEY, v text, updated_at timestamptz NOT NULL);
INSERT INTO inc.big SELECT g, 'v' || g, '2024-01-01'::timestamptz + g * interval '1 second'
  FROM generate_series(1, 120000) g;
CREATE INDEX ON inc.big (updated_at);
CREATE TABLE inc.small (id int PRIMARY KEY, v text, n int DEFAULT 1, updated_at timestamptz NOT NULL DEFAULT now());
INSERT INTO inc.small SELECT g, 's' || g, g, now() - interval '1 day' FROM generate_series(1, 50) g;
SQL
my_sql <<'SQL'
DROP TABLE IF EXISTS inc_small;
CREATE TABLE inc_small (id int PRIMARY KEY, v text, updated_at datetime(6) NOT NULL);
INSERT INTO inc_small VALUES (1, 'a', '2024-01-01'), (2, 'b', '2024-01-02');
SQL

wh_psql -q <<SQL
CREATE EXTENSION IF NOT EXISTS dbsync;
DROP SCHEMA IF EXISTS inc CASCADE;
DROP SCHEMA IF EXISTS incs CASCADE;
DROP SCHEMA IF EXISTS incw CASCADE;
DROP SERVER IF EXISTS inc CASCADE;
DROP SERVER IF EXISTS incs CASCADE;
DROP SERVER IF EXISTS incm CASCADE;
DROP SERVER IF EXISTS incw CASCADE;
DROP SERVER IF EXISTS incw2 CASCADE;
CREATE SERVER inc FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB', schema 'inc', target_schema 'inc');
CREATE USER MAPPING FOR postgres SERVER inc OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
CREATE SERVER incs FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB', schema 'inc', target_schema 'incs', tables 'big',
    deletes 'soft', delete_check_interval '0');
CREATE USER MAPPING FOR postgres SERVER incs OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
CREATE SERVER incm FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'mysql', host '127.0.0.1',
    port '$SRC_MY_PORT', dbname '$SRC_DB', tables 'inc_small', target_schema 'inc');
CREATE USER MAPPING FOR postgres SERVER incm OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SQL

run_status() { q "SELECT string_agg(table_name || ':' || status, ',' ORDER BY table_name) FROM dbsync_run('$1')"; }
is_ok() { [ "$(run_status "$1")" = "$2" ]; }

check "initial loads" is_ok inc "big:ok,small:ok"
check "MariaDB initial load" is_ok incm "inc_small:ok"

# ---- 1. one connection per session, kept between runs -----------------------
# (no dbsync connection is left at the source once a session ends)
no_conn_left() { [ -z "$("$TMP/src_pids")" ] && [ -z "$("$TMP/my_ids")" ]; }
check "no source connection outlives its session" wait_until 5 no_conn_left

wh_psql -Atq >"$TMP/s1.out" <<SQL
SELECT 'run1', status FROM dbsync_run('inc', 'small');
\! $TMP/src_pids > $TMP/p1
SELECT 'run2', status FROM dbsync_run('inc', 'small');
\! $TMP/src_pids > $TMP/p2
ALTER SERVER inc OPTIONS (ADD lookback '2 minutes');
SELECT 'run3', status FROM dbsync_run('inc', 'small');
\! $TMP/src_pids > $TMP/p3
ALTER USER MAPPING FOR postgres SERVER inc OPTIONS (SET password '$SRC_PASSWORD');
SELECT 'run4', status FROM dbsync_run('inc', 'small');
\! $TMP/src_pids > $TMP/p4
\! $TMP/src_kill $TMP/p4
\! sleep 0.3
SELECT 'run5', status FROM dbsync_run('inc', 'small');
\! $TMP/src_pids > $TMP/p5
SQL
diag "$(cat "$TMP/s1.out")"
p1=$(cat "$TMP/p1"); p2=$(cat "$TMP/p2"); p3=$(cat "$TMP/p3"); p4=$(cat "$TMP/p4"); p5=$(cat "$TMP/p5")
diag "source pids: run1 $p1, run2 $p2, run3 $p3, run4 $p4, run5 $p5"
check "one idle connection kept after a run" test "$(wc -w <<<"$p1")" = 1
check "the second run of the session uses the same connection" test "$p1" = "$p2"
check "ALTER SERVER: a new connection, the old one closed" \
    eval '[ "$(wc -w <<<"$p3")" = 1 ] && [ "$p3" != "$p2" ]'
check "ALTER USER MAPPING: a new connection, the old one closed" \
    eval '[ "$(wc -w <<<"$p4")" = 1 ] && [ "$p4" != "$p3" ]'
check "a connection the source closed is replaced, the run is ok" \
    eval '[ "$(wc -w <<<"$p5")" = 1 ] && [ "$p5" != "$p4" ] && grep -q "^run5|ok$" "$TMP/s1.out"'
check "every run of the session ok" test "$(grep -c '|ok$' "$TMP/s1.out")" = 5

# ---- 2. the discovery kept with it follows the source's catalog -------------
wh_psql -Atq >"$TMP/s2.out" <<SQL
SELECT 'a', table_name, status FROM dbsync_run('inc');
\! $TMP/src_sql "ALTER TABLE inc.small ADD COLUMN extra text DEFAULT 'x'"
SELECT 'b', table_name, status, message FROM dbsync_run('inc', 'small');
\! $TMP/src_sql "CREATE TABLE inc.newt (id int PRIMARY KEY, w text); INSERT INTO inc.newt VALUES (1, 'n')"
SELECT 'c', table_name, status FROM dbsync_run('inc') ORDER BY 2;
\! $TMP/src_sql "ALTER TABLE inc.newt DROP CONSTRAINT newt_pkey, ADD PRIMARY KEY (w)"
SELECT 'd', table_name, status, message FROM dbsync_run('inc', 'newt');
\! $TMP/src_sql "ALTER TABLE inc.small ALTER COLUMN n TYPE bigint"
SELECT 'e', table_name, status FROM dbsync_run('inc', 'small');
SQL
diag "$(cat "$TMP/s2.out")"
check "a column added at the source is seen by the next run of the session" \
    is "SELECT count(*) FROM inc.small WHERE extra = 'x'" 50
check "a table created at the source is seen by the next run of the session" \
    grep -q "^c|newt|ok$" "$TMP/s2.out"
check "a primary key changed at the source is seen by the next run of the session" \
    is "SELECT primary_key::text FROM dbsync.status WHERE server = 'inc' AND table_name = 'newt'" "{w}"
check "a column type changed at the source is seen by the next run of the session" \
    is "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'inc.small'::regclass AND attname = 'n'" "bigint"

# ---- 3. MariaDB: the same connection for the runs of a session --------------
wh_psql -Atq >"$TMP/s3.out" <<SQL
SELECT 'm1', status FROM dbsync_run('incm');
\! $TMP/my_ids > $TMP/m1
SELECT 'm2', status FROM dbsync_run('incm');
\! $TMP/my_ids > $TMP/m2
\! $TMP/my_kill $TMP/m2
\! sleep 0.3
SELECT 'm3', status FROM dbsync_run('incm');
\! $TMP/my_ids > $TMP/m3
SQL
diag "$(cat "$TMP/s3.out") / ids: $(cat "$TMP/m1") $(cat "$TMP/m2") $(cat "$TMP/m3")"
check "MariaDB: the second run of the session uses the same connection" \
    eval '[ "$(wc -w <"$TMP/m1")" = 1 ] && [ "$(cat "$TMP/m1")" = "$(cat "$TMP/m2")" ]'
check "MariaDB: a killed connection is replaced, the run is ok" \
    eval 'grep -q "^m3|ok$" "$TMP/s3.out" && [ "$(cat "$TMP/m3")" != "$(cat "$TMP/m2")" ]'

# ---- 4. delete_check_interval ------------------------------------------------
# a table of 100,000 rows or more: deletes checked at most every 10 minutes
src_psql -qc "DELETE FROM inc.big WHERE id IN (7, 70, 700)"
checked=$(q "SELECT deletes_checked_at FROM dbsync.status WHERE server = 'inc' AND table_name = 'big'")
check "large table: a check was recorded by the initial load" test -n "$checked"
is_big() { is "SELECT rows_deleted FROM dbsync_run('inc', 'big')" "$1"; }
check "large table, default interval: no delete check in the next run" is_big 0
check "  ... its rows stay until the next check" is "SELECT count(*) FROM inc.big" 120000
check "  ... deletes_checked_at not moved" \
    is "SELECT deletes_checked_at = '$checked' FROM dbsync.status WHERE server = 'inc' AND table_name = 'big'" t
q "UPDATE dbsync.tables SET deletes_checked_at = deletes_checked_at - interval '11 minutes' WHERE server = 'inc' AND table_name = 'big'" >/dev/null
check "large table: the check runs once 10 minutes have passed, deletes found" is_big 3
check "  ... local rows = source rows" is "SELECT count(*) FROM inc.big" 119997
check "  ... deletes_checked_at moved" \
    is "SELECT deletes_checked_at > '$checked' FROM dbsync.status WHERE server = 'inc' AND table_name = 'big'" t
# a small table: every run, unless delete_check_interval says otherwise
src_psql -qc "DELETE FROM inc.small WHERE id = 1"
check "small table, default: deletes found by the next run" is "SELECT rows_deleted FROM dbsync_run('inc', 'small')" 1
q "ALTER SERVER inc OPTIONS (ADD delete_check_interval '1 hour')" >/dev/null
src_psql -qc "DELETE FROM inc.small WHERE id = 2"
check "delete_check_interval '1 hour': not checked in the next run" \
    is "SELECT rows_deleted FROM dbsync_run('inc', 'small')" 0
q "ALTER SERVER inc OPTIONS (SET delete_check_interval '0')" >/dev/null
check "delete_check_interval '0': checked on every run" \
    is "SELECT rows_deleted FROM dbsync_run('inc', 'small')" 1
check "an invalid delete_check_interval is refused with a hint" \
    eval '! wh_psql -c "ALTER SERVER inc OPTIONS (SET delete_check_interval '"'"'often'"'"')" 2>"$TMP/err" && grep -q HINT "$TMP/err"'

# ---- 5. small change sets: one pass, unchanged rows untouched ----------------
src_psql -qc "UPDATE inc.big SET v = v || '!', updated_at = now() WHERE id <= 5;
              INSERT INTO inc.big VALUES (200001, 'new1', now()), (200002, 'new2', now())"
check "5 changed + 2 new rows: 7 written" is "SELECT rows_upserted FROM dbsync_run('inc', 'big')" 7
xmins=$(q "SELECT string_agg(xmin::text, ',' ORDER BY id) FROM inc.big WHERE id <= 5 OR id > 200000")
check "a run with nothing new re-reads the lookback rows and writes none" \
    is "SELECT rows_upserted FROM dbsync_run('inc', 'big')" 0
check "  ... the re-read rows are not rewritten (same xmin)" \
    is "SELECT string_agg(xmin::text, ',' ORDER BY id) FROM inc.big WHERE id <= 5 OR id > 200000" "$xmins"
digest() { echo "SELECT md5(string_agg(id || ':' || v || ':' || extract(epoch FROM updated_at), ',' ORDER BY id)) FROM inc.big"; }
check "local rows equal the source's" is "$(digest)" "$(src_psql -Atc "$(digest)")"
check "rows_total follows inserts without a count" \
    is "SELECT rows_total FROM dbsync.status WHERE server = 'inc' AND table_name = 'big'" 119999
# soft deletes: a flagged row that comes back is unflagged by the small path
check "soft server: initial load" is "SELECT status FROM dbsync_run('incs')" ok
src_psql -qc "DELETE FROM inc.big WHERE id = 9"
check "soft: the deleted row is flagged" is "SELECT rows_deleted FROM dbsync_run('incs')" 1
src_psql -qc "INSERT INTO inc.big VALUES (9, 'back', now())"
check "soft: the row that comes back is written once" is "SELECT rows_upserted FROM dbsync_run('incs')" 1
check "  ... and no longer flagged" is "SELECT v || ':' || _dbsync_deleted FROM incs.big WHERE id = 9" "back:false"
check "  ... rows_total counts it again" \
    is "SELECT rows_total FROM dbsync.status WHERE server = 'incs' AND table_name = 'big'" "$(src_psql -Atc "SELECT count(*) FROM inc.big")"

# ---- 5b. change sets applied a chunk (256 kB) at a time ----------------------
# run NAME: dbsync_run(NAME) with DEBUG1 on: "upserted chunks" (chunks = the
# number of chunks applied while the stream went on)
run_chunks() {
    wh_psql -At -c "SET client_min_messages = debug1" \
        -c "SELECT 'RESULT', rows_upserted, rows_deleted FROM dbsync_run('$1', 'big')" >"$TMP/run.out" 2>&1
    echo "$(grep '^RESULT' "$TMP/run.out" | cut -d'|' -f2) $(grep -c 'applied a chunk of' "$TMP/run.out")"
}
chunks_at_least() { [ "$(cut -d' ' -f2 <<<"$2")" -ge "$1" ]; }
q "SELECT count(*) FROM dbsync_run('inc', 'big')" >/dev/null   # the row 9 that came back
# soft deletes: 2000 flagged rows come back, across several chunks
src_psql -qc "DELETE FROM inc.big WHERE id BETWEEN 20000 AND 21999"
check "soft: 2000 rows flagged" is "SELECT rows_deleted FROM dbsync_run('incs')" 2000
src_psql -qc "INSERT INTO inc.big SELECT g, repeat('e', 300) || g, now() FROM generate_series(20000, 21999) g"
r=$(run_chunks incs); diag "soft come-back run: upserted, chunks = $r"
check "soft: the 2000 rows that come back are written once" test "${r%% *}" = 2000
check "  ... in several chunks while the stream went on" chunks_at_least 2 "$r"
check "  ... none flagged any more" is "SELECT count(*) FROM incs.big WHERE _dbsync_deleted" 0
check "  ... rows_total = the source's rows" \
    is "SELECT rows_total FROM dbsync.status WHERE server = 'incs' AND table_name = 'big'" "$(src_psql -Atc "SELECT count(*) FROM inc.big")"
q "SELECT count(*) FROM dbsync_run('inc', 'big')" >/dev/null   # the 2000 for inc too
src_psql -qc "UPDATE inc.big SET v = repeat('c', 300) || id, updated_at = now() WHERE id BETWEEN 1000 AND 3999"
r=$(run_chunks inc); diag "3000 changed rows: upserted, chunks = $r"
check "a change set of several chunks (3000 rows, ~1 MB): every row written once" test "${r%% *}" = 3000
check "  ... in several chunks" chunks_at_least 3 "$r"
check "  ... local rows equal the source's" is "$(digest)" "$(src_psql -Atc "$(digest)")"
# 7000 more: with the 5000 re-read within lookback, 20 x 12000 > 121,999 rows:
# the first chunks are applied as they come, the rest in one join
src_psql -qc "UPDATE inc.big SET v = repeat('d', 300) || id, updated_at = now() WHERE id BETWEEN 10000 AND 16999"
r=$(run_chunks inc); diag "7000 changed rows: upserted, chunks = $r"
check "a change set that outgrows the chunked path mid-stream: every row written once" test "${r%% *}" = 7000
check "  ... local rows equal the source's" is "$(digest)" "$(src_psql -Atc "$(digest)")"
check "  ... rows_total still exact" \
    is "SELECT rows_total FROM dbsync.status WHERE server = 'inc' AND table_name = 'big'" "$(src_psql -Atc "SELECT count(*) FROM inc.big")"

# row-level security on a target: never a silent skip of a row a policy
# hides from the one-pass UPDATE: a target with policies in force for the
# owner is refused with a hint, and synced once they no longer apply to it
src_psql -q <<'SQL'
CREATE TABLE inc.rlst (id int PRIMARY KEY, v text, updated_at timestamptz NOT NULL);
INSERT INTO inc.rlst SELECT g, 'r' || g, now() - interval '1 hour' FROM generate_series(1, 2000) g;
SQL
wh_psql -q <<SQL
DROP SCHEMA IF EXISTS incr CASCADE;
DROP SERVER IF EXISTS incr CASCADE;
DROP ROLE IF EXISTS inc_rls;
CREATE ROLE inc_rls LOGIN;
GRANT CREATE ON DATABASE "$WH_DB" TO inc_rls;
GRANT USAGE ON FOREIGN DATA WRAPPER dbsync TO inc_rls;
SET ROLE inc_rls;
CREATE SERVER incr FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB', schema 'inc', target_schema 'incr', tables 'rlst',
    lookback '0 seconds');
CREATE USER MAPPING FOR inc_rls SERVER incr OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
RESET ROLE;
SQL
check "row-level security: initial load as a non-superuser owner" is "SELECT status FROM dbsync_run('incr')" ok
wh_psql -q <<'SQL'
SET ROLE inc_rls;
ALTER TABLE incr.rlst ENABLE ROW LEVEL SECURITY;
ALTER TABLE incr.rlst FORCE ROW LEVEL SECURITY;
CREATE POLICY see ON incr.rlst FOR SELECT USING (true);
CREATE POLICY add ON incr.rlst FOR INSERT WITH CHECK (true);
RESET ROLE;
SQL
src_psql -qc "UPDATE inc.rlst SET v = 'changed', updated_at = now() WHERE id = 7"
check "row-level security in force for the owner: the table fails, with the reason" \
    is "SELECT status || ':' || (message LIKE '%row-level security%') FROM dbsync_run('incr')" "error:true"
check "  ... the local row is unchanged" is "SELECT v FROM incr.rlst WHERE id = 7" r7
wh_psql -qc "SET ROLE inc_rls" -c "ALTER TABLE incr.rlst NO FORCE ROW LEVEL SECURITY"
check "  ... once the policies no longer apply to the owner, the run is ok" is "SELECT status FROM dbsync_run('incr')" ok
check "  ... and the row arrives" is "SELECT v FROM incr.rlst WHERE id = 7" changed

# a load committed in batches is not a delete check (rows deleted meanwhile)
wh_psql -q <<SQL
DROP SCHEMA IF EXISTS incb CASCADE;
DROP SERVER IF EXISTS incb CASCADE;
CREATE SERVER incb FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB', schema 'inc', target_schema 'incb', tables 'small', batch_size '10');
CREATE USER MAPPING FOR postgres SERVER incb OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
CALL dbsync_sync('incb');
SQL
check "a load committed in batches (CALL) records no delete check" \
    is "SELECT rows_total || ':' || (deletes_checked_at IS NULL) FROM dbsync.status WHERE server = 'incb'" "48:true"
check "  ... the next run is incremental" is "SELECT mode FROM dbsync_run('incb')" incremental
check "  ... and checks deletes" \
    is "SELECT deletes_checked_at IS NOT NULL FROM dbsync.status WHERE server = 'incb'" t

# ---- 6. a worker keeps its connection between rounds ------------------------
src_psql -q <<'SQL'
CREATE TABLE inc.w1 (id int PRIMARY KEY, v text, updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE inc.w2 (id int PRIMARY KEY, v text, updated_at timestamptz NOT NULL DEFAULT now());
INSERT INTO inc.w1 VALUES (1, 'a');
INSERT INTO inc.w2 VALUES (1, 'a');
SQL
auto_server() { # NAME TABLE: a server that syncs TABLE every second
    wh_psql -q <<SQL
CREATE SERVER $1 FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB', schema 'inc', target_schema 'incw', tables '$2',
    sync_interval '1 second');
CREATE USER MAPPING FOR postgres SERVER $1 OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SQL
}
auto_server incw w1
runs_of() { q "SELECT runs_total FROM dbsync.tables WHERE server = '$1' AND table_name = '$2'"; }
ran_at_least() { local r; r=$(runs_of "$1" "$2"); [ -n "$r" ] && [ "$r" -ge "$3" ]; }
if wait_until 30 ran_at_least incw w1 2; then
    pa=$("$TMP/src_pids"); wa=$(q "SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE backend_type = 'dbsync worker'")
    r0=$(runs_of incw w1)
    wait_until 20 ran_at_least incw w1 $((r0 + 3)) || true
    pb=$("$TMP/src_pids"); wb=$(q "SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE backend_type = 'dbsync worker'")
    diag "worker rounds $r0 -> $(runs_of incw w1); worker pids $wa -> $wb; source pids $pa -> $pb"
    check "the worker ran further rounds" ran_at_least incw w1 $((r0 + 3))
    check "  ... in the same worker process" test "$wa" = "$wb"
    check "  ... over the same source connection" eval '[ -n "$pa" ] && [ "$pa" = "$pb" ]'
else
    not_ok "the worker synced the server every second"; log_tail "$WH_LOG" 30
fi

# a waiting worker gives up its slot: with one slot, two servers both sync
q "ALTER SYSTEM SET dbsync.max_workers = 1" >/dev/null; q "SELECT pg_reload_conf()" >/dev/null
auto_server incw2 w2
r1=$(runs_of incw w1)
if wait_until 40 ran_at_least incw2 w2 3; then ok "with one worker slot, a second server gets synced too"; else
    not_ok "with one worker slot, a second server gets synced too (runs: $(runs_of incw2 w2))"; fi
check "  ... and the first one goes on" wait_until 30 ran_at_least incw w1 $((r1 + 2))

# leave nothing behind for the next suites (they look tables up by name)
wh_psql -q <<SQL >/dev/null 2>&1
ALTER SYSTEM RESET dbsync.max_workers;
SELECT pg_reload_conf();
DROP SERVER incw CASCADE;
DROP SERVER incw2 CASCADE;
DROP SERVER inc CASCADE;
DROP SERVER incs CASCADE;
DROP SERVER incm CASCADE;
DROP SERVER incb CASCADE;
DROP SERVER incr CASCADE;
DROP SCHEMA incr CASCADE;
REVOKE ALL ON DATABASE "$WH_DB" FROM inc_rls;
REVOKE USAGE ON FOREIGN DATA WRAPPER dbsync FROM inc_rls;
DROP ROLE inc_rls;
DROP SCHEMA inc CASCADE;
DROP SCHEMA incs CASCADE;
DROP SCHEMA incw CASCADE;
DROP SCHEMA incb CASCADE;
SQL

echo "1..$n"
[ "$failed" -eq 0 ]
