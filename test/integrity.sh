#!/usr/bin/env bash
# Integrity at the edges (DESIGN.md guarantee 12, issue 8), on both drivers where it
# applies.  Every case ends with the warehouse compared row by row with the source.
#
#   1  primary key changed at the source: the table is re-read, never emptied
#   2  a cursor value in 2099: the stored cursor stays at the source's clock and
#      later changes still arrive
#   3  a table without key honours deletes 'ignore' and 'soft'
#   4  timestamp -> timestamptz at a New York source: values re-read, not cast
#   5  a transaction that commits after newer rows were synced (beyond lookback)
#   7  deletes hidden by equal counts (an insert older than lookback + a delete)
#   8  what the second review found: a key column's type change kept locally, a
#      MySQL user without PROCESS, a key change under deletes 'ignore', ENUM keys
#      that differ only in case, an infinity timestamp key deleted, text -> varchar(n)
#   6  resumable loads keyed by BINARY(16), (tinyint(1), int), (ENUM, int), (BIT(8), int)
#      and BIT(8) alone: checkpoints compare keys in the source's own terms
set -uo pipefail
source "$(dirname "$0")/lib/fault_common.sh"

use_wh_db integrity

# canonical text of a table's rows: one line per row, columns joined by |
pg_rows() {   # TABLE COLUMNS
    src_psql -At -c "SET timezone = 'UTC'; SELECT concat_ws('|', $2) FROM integ.$1 ORDER BY 1"
}
my_rows() {   # TABLE COLUMNS
    my_sql -N -e "SET time_zone = '+00:00'; SELECT concat_ws('|', $2) FROM integ_my.$1 ORDER BY 1"
}
wh_rows() {   # SCHEMA.TABLE COLUMNS [WHERE]
    wh_psql -At -c "SET timezone = 'UTC'; SELECT concat_ws('|', $2) FROM $1 ${3:-} ORDER BY 1"
}
# same NAME SRC_ROWS WH_ROWS
same() {
    if [[ -n "$2" && "$2" == "$3" ]]; then ok "$1 ($(wc -l <<<"$2") rows identical)"
    else
        not_ok "$1"
        diff <(echo "$2") <(echo "$3") | head -n 10 | sed 's/^/# /'
    fi
}
run() { wh_psql -At -c "SELECT status || coalesce(': ' || message, '') FROM dbsync_run('$1', '$2')"; }

src_psql -q <<'SQL' >/dev/null || { not_ok "PostgreSQL source setup"; exit 1; }
DROP SCHEMA IF EXISTS integ CASCADE;
CREATE SCHEMA integ;
CREATE TABLE integ.rekey (id int PRIMARY KEY, region text NOT NULL DEFAULT 'eu', v text,
    updated_at timestamptz NOT NULL);
INSERT INTO integ.rekey SELECT g, 'eu', 'v' || g, now() - interval '1 day' + g * interval '1 s'
  FROM generate_series(1, 2000) g;
CREATE TABLE integ.future (id int PRIMARY KEY, v text, updated_at timestamptz NOT NULL);
INSERT INTO integ.future SELECT g, 'v' || g, now() - interval '1 day' + g * interval '1 s'
  FROM generate_series(1, 100) g;
CREATE TABLE integ.nokey_ign (k int, v text);
CREATE TABLE integ.nokey_soft (k int, v text);
INSERT INTO integ.nokey_ign VALUES (1, 'a'), (2, 'b'), (2, 'b'), (3, 'c');
INSERT INTO integ.nokey_soft VALUES (1, 'a'), (2, 'b'), (2, 'b'), (3, 'c');
CREATE TABLE integ.retype (id int PRIMARY KEY, ts timestamp, updated_at timestamptz NOT NULL);
INSERT INTO integ.retype SELECT g, timestamp '2024-03-10 01:00' + g * interval '17 minutes',
    now() - interval '1 day' + g * interval '1 s' FROM generate_series(1, 11) g;
CREATE TABLE integ.late (id int PRIMARY KEY, v text, updated_at timestamptz NOT NULL DEFAULT now());
SQL
my_root_sql -e "DROP DATABASE IF EXISTS integ_my; CREATE DATABASE integ_my CHARACTER SET utf8mb4;
    GRANT ALL ON integ_my.* TO '$SRC_USER'@'127.0.0.1', '$SRC_USER'@'localhost';" >/dev/null &&
my_sql -e "CREATE TABLE integ_my.rekey (id int PRIMARY KEY, region varchar(8) NOT NULL DEFAULT 'eu', v text,
        updated_at timestamp(6) NOT NULL);
    INSERT INTO integ_my.rekey SELECT seq, 'eu', concat('v', seq), now() - interval 1 day + interval seq second FROM seq_1_to_2000;
    CREATE TABLE integ_my.future (id int PRIMARY KEY, v text, updated_at datetime(6) NOT NULL);
    INSERT INTO integ_my.future SELECT seq, concat('v', seq), now() - interval 1 day + interval seq second FROM seq_1_to_100;
    CREATE TABLE integ_my.nokey_ign (k int, v text);
    CREATE TABLE integ_my.nokey_soft (k int, v text);
    INSERT INTO integ_my.nokey_ign VALUES (1, 'a'), (2, 'b'), (2, 'b'), (3, 'c');
    INSERT INTO integ_my.nokey_soft VALUES (1, 'a'), (2, 'b'), (2, 'b'), (3, 'c');
    CREATE TABLE integ_my.late (id int PRIMARY KEY, v text, updated_at timestamp(6) NOT NULL DEFAULT current_timestamp(6));" \
    >/dev/null || { not_ok "MariaDB source setup"; exit 1; }

wh_psql -q <<SQL >/dev/null
CREATE SERVER ipg FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB', schema 'integ', lookback '1 second');
CREATE USER MAPPING FOR postgres SERVER ipg OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
CREATE SERVER imy FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'mysql', host '127.0.0.1',
    port '$SRC_MY_PORT', dbname 'integ_my', lookback '1 second');
CREATE USER MAPPING FOR postgres SERVER imy OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SQL
wh_psql -q -c "SELECT count(*) FROM dbsync_run('ipg')" -c "SELECT count(*) FROM dbsync_run('imy')" >/dev/null
wh_psql -q -c "ALTER SERVER ipg OPTIONS (ADD tables 'rekey,future,retype,late')" >/dev/null

# ---------------------------------------------------------------- 1: key changed
src_psql -q -c "ALTER TABLE integ.rekey DROP CONSTRAINT rekey_pkey, ADD PRIMARY KEY (id, region);
    INSERT INTO integ.rekey VALUES (1, 'us', 'us one', now() - interval '2 days')" >/dev/null
msg=$(run ipg rekey)
check "1 pg: key change reported ($msg)" grep -q "primary key changed" <<<"$msg"
same "1 pg: rows after the key change" "$(pg_rows rekey "id, region, v")" "$(wh_rows ipg.rekey "id, region, v")"
check "1 pg: local key is (id, region)" [ "$(wh_val "SELECT string_agg(a.attname, ',' ORDER BY array_position(i.indkey, a.attnum))
    FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
    WHERE i.indrelid = 'ipg.rekey'::regclass AND i.indisprimary")" = "id,region" ]
src_psql -q -c "UPDATE integ.rekey SET v = 'later', updated_at = now() WHERE id = 7" >/dev/null
run ipg rekey >/dev/null
same "1 pg: the next incremental run" "$(pg_rows rekey "id, region, v")" "$(wh_rows ipg.rekey "id, region, v")"

my_sql -e "ALTER TABLE integ_my.rekey DROP PRIMARY KEY, ADD PRIMARY KEY (id, region);
    INSERT INTO integ_my.rekey VALUES (1, 'us', 'us one', now() - interval 2 day)" >/dev/null
msg=$(run imy rekey)
check "1 mysql: key change reported ($msg)" grep -q "primary key changed" <<<"$msg"
same "1 mysql: rows after the key change" "$(my_rows rekey "id, region, v")" "$(wh_rows imy.rekey "id, region, v")"

# ---------------------------------------------------------------- 2: cursor in 2099
src_psql -q -c "UPDATE integ.future SET v = 'far', updated_at = '2099-01-01' WHERE id = 1" >/dev/null
msg=$(run ipg future)
check "2 pg: the run says the cursor is held ($msg)" grep -q "ahead of the source's clock" <<<"$msg"
check "2 pg: stored cursor is not in 2099" [ "$(wh_val "SELECT cursor_value::timestamptz < now() + interval '1 hour' FROM dbsync.status WHERE server = 'ipg' AND table_name = 'future'")" = t ]
src_psql -q -c "UPDATE integ.future SET v = 'after', updated_at = now() WHERE id = 2" >/dev/null
run ipg future >/dev/null
same "2 pg: a later change arrives" "$(pg_rows future "id, v")" "$(wh_rows ipg.future "id, v")"

my_sql -e "UPDATE integ_my.future SET v = 'far', updated_at = '2099-01-01' WHERE id = 1" >/dev/null
run imy future >/dev/null
check "2 mysql: stored cursor (datetime) is not in 2099" [ "$(wh_val "SELECT cursor_value::timestamp < now() AT TIME ZONE 'UTC' + interval '6 hours' FROM dbsync.status WHERE server = 'imy' AND table_name = 'future'")" = t ]
# DATETIME holds the wall clock of the writer's zone: here the server's default (+05:30)
my_sql -e "UPDATE integ_my.future SET v = 'after', updated_at = now(6) WHERE id = 2" >/dev/null
run imy future >/dev/null
same "2 mysql: a later change arrives" "$(my_rows future "id, v")" "$(wh_rows imy.future "id, v")"

# ---------------------------------------------------------------- 3: PK-less deletes
wh_psql -q -c "ALTER SERVER ipg OPTIONS (SET tables 'nokey_ign', ADD deletes 'ignore');
    ALTER SERVER imy OPTIONS (ADD deletes 'ignore')" >/dev/null
src_psql -q -c "DELETE FROM integ.nokey_ign WHERE k = 3; INSERT INTO integ.nokey_ign VALUES (4, 'd')" >/dev/null
my_sql -e "DELETE FROM integ_my.nokey_ign WHERE k = 3; INSERT INTO integ_my.nokey_ign VALUES (4, 'd')" >/dev/null
run ipg nokey_ign >/dev/null; run imy nokey_ign >/dev/null
want=$'1|a\n2|b\n2|b\n3|c\n4|d'
same "3 pg: deletes 'ignore' keeps the deleted row, adds the new one" "$want" "$(wh_rows ipg.nokey_ign "k, v")"
same "3 mysql: deletes 'ignore' keeps the deleted row, adds the new one" "$want" "$(wh_rows imy.nokey_ign "k, v")"
wh_psql -q -c "ALTER SERVER ipg OPTIONS (SET tables 'nokey_soft', SET deletes 'soft');
    ALTER SERVER imy OPTIONS (SET deletes 'soft')" >/dev/null
run ipg nokey_soft >/dev/null; run imy nokey_soft >/dev/null
src_psql -q -c "DELETE FROM integ.nokey_soft WHERE k = 2 AND ctid = (SELECT min(ctid) FROM integ.nokey_soft WHERE k = 2)" >/dev/null
my_sql -e "DELETE FROM integ_my.nokey_soft WHERE k = 2 LIMIT 1" >/dev/null
run ipg nokey_soft >/dev/null; run imy nokey_soft >/dev/null
want=$'1|a|f\n2|b|f\n2|b|t\n3|c|f'
same "3 pg: deletes 'soft' flags one of the two copies" "$want" "$(wh_rows ipg.nokey_soft "k, v, _dbsync_deleted")"
same "3 mysql: deletes 'soft' flags one of the two copies" "$want" "$(wh_rows imy.nokey_soft "k, v, _dbsync_deleted")"
wh_psql -q -c "ALTER SERVER ipg OPTIONS (SET tables 'rekey,future,retype,late', DROP deletes);
    ALTER SERVER imy OPTIONS (DROP deletes)" >/dev/null

# ---------------------------------------------------------------- 4: type change
# the source runs in America/New_York: its cast reads the wall clock there
src_psql -q -c "ALTER TABLE integ.retype ALTER COLUMN ts TYPE timestamptz" >/dev/null
msg=$(run ipg retype)
check "4 pg: the type change re-reads the table ($msg)" grep -q "read again in full" <<<"$msg"
same "4 pg: instants after timestamp -> timestamptz" "$(pg_rows retype "id, ts")" "$(wh_rows ipg.retype "id, ts")"

# ---------------------------------------------------------------- 5: late commit
# lookback is 1 second; the slow transaction stamps its row, newer rows commit
# and are synced, then it commits 6 seconds later
late_case() {   # KIND
    local kind=$1 srv slow quick srcrows
    if [[ $kind == pg ]]; then
        srv=ipg
        (src_psql -q -c "BEGIN" -c "INSERT INTO integ.late VALUES (1, 'slow', now())" -c "SELECT pg_sleep(6)" -c "COMMIT" >/dev/null &)
        sleep 2
        src_psql -q -c "INSERT INTO integ.late VALUES (2, 'quick', now())" >/dev/null
    else
        srv=imy
        (my_sql -e "START TRANSACTION; INSERT INTO integ_my.late VALUES (1, 'slow', current_timestamp(6)); SELECT SLEEP(6); COMMIT;" >/dev/null &)
        sleep 2
        my_sql -e "INSERT INTO integ_my.late VALUES (2, 'quick', current_timestamp(6))" >/dev/null
    fi
    sleep 1.5
    run $srv late >/dev/null
    check "5 $kind: the quick row arrived first" [ "$(wh_val "SELECT string_agg(v, ',' ORDER BY id) FROM $srv.late")" = quick ]
    sleep 5
    run $srv late >/dev/null
    if [[ $kind == pg ]]; then srcrows=$(pg_rows late "id, v"); else srcrows=$(my_rows late "id, v"); fi
    same "5 $kind: the late transaction's row arrived too" "$srcrows" "$(wh_rows $srv.late "id, v")"
}
late_case pg
late_case mysql

# ---------------------------------------------------------------- 7: equal counts
src_psql -q -c "DELETE FROM integ.future WHERE id = 50; INSERT INTO integ.future VALUES (500, 'backdated', '2020-01-01')" >/dev/null
my_sql -e "DELETE FROM integ_my.future WHERE id = 50; INSERT INTO integ_my.future VALUES (500, 'backdated', '2020-01-01')" >/dev/null
msg=$(run ipg future)
check "7 pg: the delete is found though counts match" [ "$(wh_val "SELECT count(*) FROM ipg.future WHERE id = 50")" = 0 ]
check "7 pg: the missing backdated row is reported ($msg)" grep -q "1 source row(s) are not in the local table" <<<"$msg"
msg=$(run imy future)
check "7 mysql: the delete is found though counts match" [ "$(wh_val "SELECT count(*) FROM imy.future WHERE id = 50")" = 0 ]
check "7 mysql: the missing backdated row is reported ($msg)" grep -q "1 source row(s) are not in the local table" <<<"$msg"

# ---------------------------------------------------------------- 6: resume keys
my_sql -e "CREATE TABLE integ_my.bin_key (k binary(16) PRIMARY KEY, v int, updated_at timestamp(6) NOT NULL);
    INSERT INTO integ_my.bin_key SELECT unhex(md5(seq)), seq, '2024-01-01' FROM seq_1_to_3000;
    CREATE TABLE integ_my.bool_key (flag tinyint(1), id int, updated_at timestamp(6) NOT NULL, PRIMARY KEY (flag, id));
    INSERT INTO integ_my.bool_key SELECT seq % 2, seq, '2024-01-01' FROM seq_1_to_3000;
    CREATE TABLE integ_my.enum_key (e enum('b','a'), id int, updated_at timestamp(6) NOT NULL, PRIMARY KEY (e, id));
    INSERT INTO integ_my.enum_key SELECT IF(seq % 2, 'a', 'b'), seq, '2024-01-01' FROM seq_1_to_3000;
    CREATE TABLE integ_my.bit_key (b bit(8), id int, updated_at timestamp(6) NOT NULL, PRIMARY KEY (b, id));
    INSERT INTO integ_my.bit_key SELECT seq % 256, seq, '2024-01-01' FROM seq_1_to_2560;
    CREATE TABLE integ_my.bit_only (b bit(8) PRIMARY KEY, updated_at timestamp(6) NOT NULL);
    INSERT INTO integ_my.bit_only SELECT seq, '2024-01-01' FROM seq_0_to_255;" >/dev/null ||
    not_ok "6 MariaDB key tables"
wh_psql -q -c "CREATE SERVER imyk FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'mysql', host '127.0.0.1',
    port '$SRC_MY_PORT', dbname 'integ_my', tables 'bin_key,bool_key,enum_key,bit_key,bit_only', batch_size '100');
    CREATE USER MAPPING FOR postgres SERVER imyk OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');" >/dev/null
wh_psql -q -c "CALL dbsync_sync('imyk')" >"$T_WORK/resume.out" 2>&1
resume_case() {   # TABLE MYSQL_COLUMNS PG_COLUMNS
    same "6 mysql: checkpointed load keyed by $1" "$(my_rows "$1" "$2")" "$(wh_rows "imyk.$1" "$3")"
    check "6 mysql: $1 status ok" [ "$(st last_status "$1" imyk)" = ok ]
}
resume_case bin_key "lower(hex(k)), v" "encode(k, 'hex'), v"
resume_case bool_key "if(flag, 't', 'f'), id" "flag, id"
resume_case enum_key "e, id" "e, id"
resume_case bit_key "lpad(bin(b), 8, '0'), id" "b, id"
resume_case bit_only "lpad(bin(b), 8, '0')" "b"

# ---------------------------------------------------------------- 8: review findings
src_psql -q >/dev/null <<'SQL'
CREATE TABLE integ.tskey (dev int, ts timestamptz, v int, updated_at timestamptz NOT NULL, PRIMARY KEY (dev, ts));
INSERT INTO integ.tskey SELECT 1, timestamptz '2024-05-01' + g * interval '1 hour', g, now() - interval '2 days' + g * interval '1 s'
  FROM generate_series(1, 50) g;
CREATE TABLE integ.tinf (k timestamp PRIMARY KEY, v text, updated_at timestamptz NOT NULL DEFAULT now() - interval '1 hour');
INSERT INTO integ.tinf VALUES ('infinity', 'a'), ('-infinity', 'b'), ('2024-01-01', 'c');
CREATE TABLE integ.nar (id int PRIMARY KEY, code text);
INSERT INTO integ.nar VALUES (1, 'short'), (2, 'a-very-long-code');
CREATE TABLE integ.arch (id int PRIMARY KEY, v text, updated_at timestamptz NOT NULL DEFAULT now() - interval '1 hour');
INSERT INTO integ.arch SELECT g, 'v' || g FROM generate_series(1, 5) g;
SQL
wh_psql -q >/dev/null <<SQL
CREATE SERVER ipg8 FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB', schema 'integ', tables 'tskey,tinf,nar', lookback '1 second');
CREATE USER MAPPING FOR postgres SERVER ipg8 OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
CREATE SERVER ipgi FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'postgresql', host '127.0.0.1',
    port '$SRC_PG_PORT', dbname '$SRC_DB', schema 'integ', tables 'arch', deletes 'ignore');
CREATE USER MAPPING FOR postgres SERVER ipgi OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');
SQL
wh_psql -q -c "SELECT count(*) FROM dbsync_run('ipg8')" -c "SELECT count(*) FROM dbsync_run('ipgi')" >/dev/null
src_psql -q -c "ALTER TABLE integ.tskey ALTER ts TYPE timestamp" >/dev/null
msg=$(run ipg8 tskey)
check "8 pg: a key column timestamptz -> timestamp stops the table ($(head -c 90 <<<"$msg"))" grep -q "^error: column \"ts\"" <<<"$msg"
check "8 pg: and deletes no row" [ "$(wh_val "SELECT count(*) FROM ipg8.tskey")" = 50 ]
src_psql -q -c "DELETE FROM integ.tinf WHERE k = 'infinity'" >/dev/null
run ipg8 tinf >/dev/null
same "8 pg: a deleted infinity key is found" "$(pg_rows tinf "k, v")" "$(wh_rows ipg8.tinf "k, v")"
src_psql -q -c "DELETE FROM integ.nar WHERE id = 2; ALTER TABLE integ.nar ALTER code TYPE varchar(5)" >/dev/null
msg=$(run ipg8 nar)
check "8 pg: text -> varchar(5) at the source does not fail the table ($(head -c 90 <<<"$msg"))" grep -q "^ok" <<<"$msg"
same "8 pg: and the table follows the source" "$(pg_rows nar "id, code")" "$(wh_rows ipg8.nar "id, code")"
src_psql -q -c "DELETE FROM integ.arch WHERE id = 1" >/dev/null
run ipgi arch >/dev/null
src_psql -q -c "ALTER TABLE integ.arch ADD COLUMN tenant int NOT NULL DEFAULT 1, DROP CONSTRAINT arch_pkey, ADD PRIMARY KEY (id, tenant)" >/dev/null
msg=$(run ipgi arch)
check "8 pg: a key change under deletes 'ignore' stops with a clear error ($(head -c 80 <<<"$msg"))" grep -q "primary key of table .* changed at the source" <<<"$msg"
check "8 pg: and keeps the row the source no longer has" [ "$(wh_val "SELECT count(*) FROM ipgi.arch WHERE id = 1")" = 1 ]

my_sql -e "CREATE TABLE integ_my.en (e enum('a','A','b','B','e','é') CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PRIMARY KEY,
        v int, updated_at datetime(6) NOT NULL);
    INSERT INTO integ_my.en VALUES ('a',1,'2024-01-01'),('A',2,'2024-01-02'),('b',3,'2024-01-03'),('B',4,'2024-01-04'),('e',5,'2024-01-05'),('é',6,'2024-01-06');" >/dev/null
wh_psql -q -c "CREATE SERVER imy8 FOREIGN DATA WRAPPER dbsync OPTIONS (source_type 'mysql', host '127.0.0.1',
    port '$SRC_MY_PORT', dbname 'integ_my', tables 'en', batch_size '1');
    CREATE USER MAPPING FOR postgres SERVER imy8 OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');" >/dev/null
wh_psql -q -c "SET client_min_messages = warning" -c "CALL dbsync_sync('imy8')" >/dev/null 2>&1
check "8 mysql: ENUM keys differing in case or accent all arrive in a checkpointed load" \
    [ "$(wh_val "SELECT string_agg(e, ',' ORDER BY v) FROM imy8.en")" = "a,A,b,B,e,é" ]
# widenings keep working, narrowings at the source keep the wider local key
my_sql -e "CREATE TABLE integ_my.wid (id int unsigned PRIMARY KEY, amt int, code varchar(20), updated_at timestamp(6) NOT NULL);
    INSERT INTO integ_my.wid VALUES (1, 10, 'abc', '2024-01-01'), (4294967295, 20, 'xyz', '2024-01-02');
    CREATE TABLE integ_my.nkey (k varchar(20) PRIMARY KEY, updated_at timestamp(6) NOT NULL);
    INSERT INTO integ_my.nkey VALUES ('short', '2024-01-01');" >/dev/null
wh_psql -q -c "ALTER SERVER imy8 OPTIONS (SET tables 'en,wid,nkey')" -c "SELECT count(*) FROM dbsync_run('imy8')" >/dev/null
my_sql -e "ALTER TABLE integ_my.wid MODIFY id bigint unsigned NOT NULL, MODIFY amt decimal(15,2);
    INSERT INTO integ_my.wid VALUES (18446744073709551615, 1.25, 'big', '2024-01-03');
    ALTER TABLE integ_my.nkey MODIFY k varchar(10) NOT NULL" >/dev/null
msg=$(run imy8 wid)
check "8 mysql: int unsigned -> bigint unsigned key and int -> decimal(15,2) are widened ($(head -c 80 <<<"$msg"))" grep -q "^ok" <<<"$msg"
same "8 mysql: widened table follows the source" "$(my_rows wid "id, amt, code")" "$(wh_rows imy8.wid "id, amt, code")"
msg=$(run imy8 nkey)
check "8 mysql: a key narrowed at the source keeps the wider local key ($(head -c 80 <<<"$msg"))" grep -q "^ok" <<<"$msg"
my_root_sql -e "REVOKE PROCESS ON *.* FROM '$SRC_USER'@'127.0.0.1'" >/dev/null
my_sql -e "UPDATE integ_my.en SET v = 7, updated_at = '2024-02-01' WHERE e = 'b'" >/dev/null
msg=$(run imy8 en)
my_root_sql -e "GRANT PROCESS ON *.* TO '$SRC_USER'@'127.0.0.1'" >/dev/null
check "8 mysql: a user without PROCESS still syncs ($(head -c 80 <<<"$msg"))" grep -q "^ok" <<<"$msg"

echo "1..$T_N"
exit $((T_FAILED > 0))
