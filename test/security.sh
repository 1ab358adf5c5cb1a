#!/usr/bin/env bash
# Attacks on dbsync by non-superusers (DESIGN.md guarantee 11, issue 7).  Roles log
# in with passwords, as they would on a real warehouse:
#   sec_mallory  owns her own dbsync servers (USAGE on the wrapper, CREATE on the db)
#   sec_alice    owns a server she lets sec_eve use (GRANT USAGE ON FOREIGN SERVER)
#   sec_eve      has USAGE on alice's server and her own schemas
# Planted code (operators, functions, domains) records current_user into
# public.pwned and tries ALTER ROLE ... SUPERUSER.  Every case asserts that nothing
# ran elevated (no pwned row from another role, nobody became superuser) and, where
# it writes, that not one row landed where it must not.
#
#   1  a hostile search_path against every entry point (owner, and a USAGE holder)
#   2  the worker and launcher under ALTER ROLE / ALTER DATABASE ... SET search_path
#   3  a checkpointed load retargeted to a table the owner may not write
#   4  a target with row-level security enforced
#   5  a same-named "vector" domain / remote type name in another role's schema
#   6  the owner's own pre-existing table under the target name; dbsync_adopt_table
#   7  two servers pointed at one target schema
#   8  row contents kept out of dbsync.status and the server log
#   9  what the adversarial review found: a domain added to a role's own trusted
#      extension, the adopt race, hostile table patterns, the status view as a
#      leak, huge sync_interval, array_nulls, a trigger raising query_canceled,
#      SQL advisory locks, JSON error context, inheritance children, a re-created
#      server's name, dbsync called from a trigger
set -uo pipefail
source "$(dirname "$0")/lib/fault_common.sh"

REG_DB=$WH_DB            # the database the launcher serves (dbsync.database)
use_wh_db security
PW=sec_pw

# role_psql ROLE [ARGS]: psql to the current warehouse database as ROLE, with a password
role_psql() {
    local role=$1; shift
    PGPASSWORD=$PW "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$WH_PORT" \
        -U "$role" -d "$WH_DB" "$@"
}
# role_try ROLE SQL...: run SQL as ROLE; output (stdout+stderr) in $T_WORK/last.out
role_try() {   # ROLE SQL...: each SQL its own statement (and transaction)
    local role=$1 args=() q; shift
    for q in "$@"; do args+=(-c "$q"); done
    role_psql "$role" "${args[@]}" >"$T_WORK/last.out" 2>&1
}

# plant SCHEMA ROLE: operators, functions and domains that report whoever runs them
plant() {
    local s=$1 who=$2
    cat <<SQL
CREATE SCHEMA $s;
GRANT USAGE ON SCHEMA $s TO PUBLIC;
CREATE FUNCTION $s.note(via pg_catalog.text) RETURNS void LANGUAGE plpgsql AS \$f\$
BEGIN
  INSERT INTO public.pwned (who, via) VALUES (current_user, via);
  BEGIN EXECUTE 'ALTER ROLE $who SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;
END \$f\$;
GRANT EXECUTE ON FUNCTION $s.note(pg_catalog.text) TO PUBLIC;
DO \$d\$
DECLARE t text[]; o text;
BEGIN
  FOREACH t SLICE 1 IN ARRAY ARRAY[['text','text'],['oid','oid'],['name','name'],['name','text'],
      ['int4','int4'],['int8','int8'],['bool','bool'],['timestamptz','timestamptz'],
      ['timestamp','timestamp'],['numeric','numeric'],['xid','int4'],['int8','int4']] LOOP
    FOREACH o IN ARRAY ARRAY['=', '>=', '<=', '<>', '<', '>'] LOOP
      EXECUTE format('CREATE FUNCTION $s.%s(a pg_catalog.%s, b pg_catalog.%s) RETURNS boolean LANGUAGE plpgsql AS %L',
        'op_' || md5(o || t[1] || t[2]), t[1], t[2],
        format('BEGIN PERFORM $s.note(%L); RETURN a OPERATOR(pg_catalog.%s) b; END', o || ' ' || t[1], o));
      EXECUTE format('CREATE OPERATOR $s.%s (leftarg = pg_catalog.%s, rightarg = pg_catalog.%s, function = $s.%s)',
        o, t[1], t[2], 'op_' || md5(o || t[1] || t[2]));
    END LOOP;
  END LOOP;
  FOREACH o IN ARRAY ARRAY['text', 'jsonb', 'timestamptz', 'interval', 'bool', 'int8'] LOOP
    EXECUTE format('CREATE FUNCTION $s.chk_%s(v pg_catalog.%s) RETURNS boolean LANGUAGE plpgsql AS %L', o, o,
      format('BEGIN PERFORM $s.note(%L); RETURN true; END', 'domain ' || o));
    EXECUTE format('CREATE DOMAIN $s.%s AS pg_catalog.%s CHECK ($s.chk_%s(VALUE))', o, o, o);
  END LOOP;
END \$d\$;
CREATE FUNCTION $s.now() RETURNS timestamptz LANGUAGE plpgsql AS
  \$f\$ BEGIN PERFORM $s.note('now()'); RETURN pg_catalog.now(); END \$f\$;
CREATE FUNCTION $s.cardinality(anyarray) RETURNS integer LANGUAGE plpgsql AS
  \$f\$ BEGIN PERFORM $s.note('cardinality()'); RETURN pg_catalog.cardinality(\$1); END \$f\$;
SQL
}

# nothing ran elevated: no pwned row by anyone but ATTACKER (or at all, with "none"),
# and no role of the test became superuser
pwned_rows() { wh_val "SELECT count(*) FROM public.pwned WHERE ${1:-true}"; }
supers()     { wh_val "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'sec\\_%' AND rolsuper"; }
no_elevation() {   # NAME
    local n s
    n=$(pwned_rows) s=$(supers)
    if [[ $n == 0 && $s == 0 ]]; then ok "$1: no planted code ran, nobody became superuser"
    else
        not_ok "$1: planted code ran $n time(s), $s superuser(s)"
        wh_psql -c "SELECT who, via, count(*) FROM public.pwned GROUP BY 1, 2 ORDER BY 1, 2" >&2 || true
    fi
}

# ---------------------------------------------------------------- sources
src_psql -q <<'SQL' >/dev/null || { not_ok "PostgreSQL source setup"; exit 1; }
DROP SCHEMA IF EXISTS sec_src CASCADE;
CREATE SCHEMA sec_src;
CREATE TABLE sec_src.items (id int PRIMARY KEY, val text, updated_at timestamptz NOT NULL);
INSERT INTO sec_src.items SELECT g, 'v' || g, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 s'
  FROM generate_series(1, 50) g;
CREATE TABLE sec_src.big (id bigint PRIMARY KEY, val text, updated_at timestamptz NOT NULL);
INSERT INTO sec_src.big SELECT g, md5(g::text), timestamptz '2024-01-01 00:00:00+00' + g * interval '1 ms'
  FROM generate_series(1, 200000) g;
CREATE TABLE sec_src.leak (id int, k int, secret text, updated_at timestamptz);
INSERT INTO sec_src.leak VALUES (1, NULL, 'TOPSECRET-42', '2024-01-01'), (2, 2, 'plain', '2024-01-01');
CREATE DOMAIN sec_src.vector AS real[];
CREATE TABLE sec_src.vec (id int PRIMARY KEY, emb sec_src.vector);
INSERT INTO sec_src.vec VALUES (1, '{1,2,3}');
SQL
my_root_sql -e "DROP DATABASE IF EXISTS sec_my; CREATE DATABASE sec_my CHARACTER SET utf8mb4;
    GRANT ALL ON sec_my.* TO '$SRC_USER'@'127.0.0.1', '$SRC_USER'@'localhost';" >/dev/null &&
my_sql -e "CREATE TABLE sec_my.items (id int PRIMARY KEY, val varchar(20), updated_at timestamp(6) NOT NULL);
    INSERT INTO sec_my.items VALUES (101, 'my1', '2024-01-01'), (102, 'my2', '2024-01-01'), (103, 'my3', '2024-01-01');
    CREATE TABLE sec_my.vec_t (id int PRIMARY KEY, emb text);
    INSERT INTO sec_my.vec_t VALUES (1, '[1,2,3]');
    CREATE TABLE sec_my.leak2 (note varchar(40), emb text);
    INSERT INTO sec_my.leak2 VALUES ('TOPSECRET-43', '[1,x]'), ('plain', '[1,2]');" >/dev/null ||
    { not_ok "MariaDB source setup"; exit 1; }

# ---------------------------------------------------------------- roles, servers
# drop_owned: what an earlier run's roles own in the current database
drop_owned() {
    cat <<'SQL'
DO $$ DECLARE r text; BEGIN
  FOREACH r IN ARRAY ARRAY['sec_mallory', 'sec_alice', 'sec_eve', 'sec_nobody'] LOOP
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('DROP OWNED BY %I CASCADE', r);
    END IF;
  END LOOP;
END $$;
SQL
}
drop_owned | wh_psql -q >/dev/null
PGOPTIONS="-c search_path=pg_catalog,public" "$PG_BINDIR/psql" -X -q -h 127.0.0.1 -p "$WH_PORT" -U postgres -d "$REG_DB" >/dev/null 2>&1 <<SQL
ALTER DATABASE "$REG_DB" OWNER TO postgres;
ALTER DATABASE "$REG_DB" RESET search_path;
DROP SERVER IF EXISTS secw CASCADE;
DROP SCHEMA IF EXISTS secw CASCADE;
$(drop_owned)
SQL
wh_psql -q <<SQL >/dev/null || { not_ok "warehouse setup"; exit 1; }
DROP ROLE IF EXISTS sec_mallory; DROP ROLE IF EXISTS sec_alice; DROP ROLE IF EXISTS sec_eve;
DROP ROLE IF EXISTS sec_nobody;
CREATE ROLE sec_mallory LOGIN PASSWORD '$PW';
CREATE ROLE sec_alice LOGIN PASSWORD '$PW';
CREATE ROLE sec_eve LOGIN PASSWORD '$PW';
GRANT CREATE ON DATABASE "$WH_DB" TO sec_mallory, sec_alice, sec_eve;
GRANT USAGE ON FOREIGN DATA WRAPPER dbsync TO sec_mallory, sec_alice;
CREATE TABLE public.pwned (who text, via text, at timestamptz DEFAULT now());
GRANT SELECT, INSERT ON public.pwned TO PUBLIC;
SQL

# mk_server ROLE NAME TYPE OPTIONS...: a server of ROLE's with ROLE's mapping
mk_server() {
    local role=$1 name=$2 type=$3 opts=$4 port=$SRC_PG_PORT db=$SRC_DB
    [[ $type == mysql ]] && port=$SRC_MY_PORT db=sec_my
    role_psql "$role" -c "CREATE SERVER $name FOREIGN DATA WRAPPER dbsync OPTIONS (source_type '$type',
        host '127.0.0.1', port '$port', dbname '$db', $opts);
        CREATE USER MAPPING FOR $role SERVER $name OPTIONS (user '$SRC_USER', password '$SRC_PASSWORD');" >/dev/null
}
mk_server sec_mallory m1 postgresql "schema 'sec_src', tables 'items', target_schema 'm1'"
mk_server sec_alice a1 postgresql "schema 'sec_src', tables 'items,vec', target_schema 'a1'"
mk_server sec_alice a2 mysql "tables 'vec_t,leak2', vector_columns 'vec_t.emb,leak2.emb', on_row_error 'skip', target_schema 'a2'"
role_psql sec_alice -c "GRANT USAGE ON FOREIGN SERVER a1 TO sec_eve" >/dev/null
role_psql sec_mallory -q >/dev/null 2>"$T_WORK/plant.err" < <(plant evil sec_mallory) ||
    { not_ok "planting mallory's objects"; cat "$T_WORK/plant.err" >&2; exit 1; }
role_psql sec_eve -q >/dev/null 2>"$T_WORK/plant.err" < <(plant evil_eve sec_eve) ||
    { not_ok "planting eve's objects"; cat "$T_WORK/plant.err" >&2; exit 1; }
# a role's own "vector" type and a schema named like the source's, with spying checks
role_psql sec_eve -q >/dev/null <<'SQL'
CREATE SCHEMA sec_src;
GRANT USAGE ON SCHEMA sec_src TO PUBLIC;
CREATE FUNCTION sec_src.chk(v real[]) RETURNS boolean LANGUAGE plpgsql AS
  $f$ BEGIN INSERT INTO public.pwned (who, via) VALUES (current_user, 'vector domain'); RETURN true; END $f$;
CREATE DOMAIN sec_src.vector AS real[] CHECK (sec_src.chk(VALUE));
SQL
ok "setup: roles, planted objects, servers"

local_count() { wh_val "SELECT count(*) FROM $1"; }
coltype_of() { wh_val "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = '$1'::regclass AND attname = '$2'"; }
src_items=$(src_psql -Atc "SELECT count(*) FROM sec_src.items")

# ---------------------------------------------------------------- 1: entry points
EVIL="SET search_path = evil, pg_catalog, public;"
role_try sec_mallory "$EVIL" "SELECT status FROM dbsync_run('m1')" &&
role_try sec_mallory "$EVIL" "SELECT status FROM dbsync_run('m1')" &&
role_try sec_mallory "$EVIL" "SELECT status FROM dbsync_run()" &&
role_try sec_mallory "$EVIL" "CALL dbsync_sync('m1')" &&
role_try sec_mallory "$EVIL" "SELECT count(*) FROM dbsync_discover('m1')" &&
role_try sec_mallory "$EVIL" "SELECT dbsync_set_table('m1', 'items', enabled => true)" &&
role_try sec_mallory "$EVIL" "SELECT dbsync_resync('m1', 'items')" &&
role_try sec_mallory "$EVIL" "SELECT status FROM dbsync_run('m1', 'items')" &&
role_try sec_mallory "$EVIL" "SELECT count(*) FROM dbsync.status" ||
    { not_ok "1 owner's calls under a hostile search_path ran"; cat "$T_WORK/last.out" >&2; }
check "1 the owner's runs still synced (m1.items = source)" [ "$(local_count m1.items)" = "$src_items" ]
no_elevation "1 owner with search_path = evil"

EVIL="SET search_path = evil_eve, pg_catalog, public;"
role_try sec_eve "$EVIL" "SELECT status FROM dbsync_run('a1', 'items')" &&
role_try sec_eve "$EVIL" "SELECT status FROM dbsync_run('a1', 'items')" &&
role_try sec_eve "$EVIL" "CALL dbsync_sync('a1', 'items')" &&
role_try sec_eve "$EVIL" "SELECT count(*) FROM dbsync_discover('a1')" &&
role_try sec_eve "$EVIL" "SELECT count(*) FROM dbsync.status" ||
    { not_ok "1 USAGE holder's calls under a hostile search_path ran"; cat "$T_WORK/last.out" >&2; }
check "1 the USAGE holder's runs synced (a1.items = source)" [ "$(local_count a1.items)" = "$src_items" ]
check "1 a1.items is owned by the server owner" \
    [ "$(wh_val "SELECT tableowner FROM pg_tables WHERE schemaname = 'a1' AND tablename = 'items'")" = sec_alice ]
role_try sec_eve "SELECT dbsync_resync('a1')"
check "1 a USAGE holder may not change the server's state" grep -q "must be owner of server" "$T_WORK/last.out"
no_elevation "1 USAGE holder with search_path = evil_eve"

# mallory's other servers exist only from here on (case 1 ran dbsync_run() for all)
mk_server sec_mallory m2 postgresql "schema 'sec_src', tables 'big', batch_size '1000', target_schema 'm2'"
mk_server sec_mallory m3 postgresql "schema 'sec_src', tables 'items', target_schema 'm3'"
mk_server sec_mallory m4 postgresql "schema 'sec_src', tables 'items', target_schema 'm4'"
mk_server sec_mallory m5 postgresql "schema 'sec_src', tables 'leak', target_schema 'm5'"
mk_server sec_mallory p_sh postgresql "schema 'sec_src', tables 'items', target_schema 'shared'"
mk_server sec_mallory my_sh mysql "tables 'items', target_schema 'shared'"

# ---------------------------------------------------------------- 5: types
role_try sec_alice "SELECT status FROM dbsync_run('a1', 'vec')"
check "5 PG-family remote type sec_src.vector becomes text, not the role's domain" \
    [ "$(wh_val "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'a1.vec'::regclass AND attname = 'emb'")" = text ]
role_try sec_alice "SELECT status FROM dbsync_run('a2')"
check "5 vector column becomes real[], not the role's \"vector\" domain" \
    [ "$(wh_val "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'a2.vec_t'::regclass AND attname = 'emb'")" = "real[]" ]
check "5 the vector rows arrived" [ "$(wh_val "SELECT emb::text FROM a2.vec_t")" = "{1,2,3}" ]
no_elevation "5 same-named vector types"

# ---------------------------------------------------------------- 8: row contents
role_try sec_alice "SELECT status FROM dbsync_run('a2', 'leak2')"
check "8 PK-less row sample holds no row values" \
    [ "$(wh_val "SELECT (last_row_error_sample IS NOT NULL)::text || (last_row_error_sample::text LIKE '%TOPSECRET%')::text FROM dbsync.status WHERE server = 'a2' AND table_name = 'leak2'")" = truefalse ]
role_try sec_mallory "SELECT dbsync_set_table('m5', 'leak', primary_key => '{k}')"
role_try sec_mallory "SELECT status, message FROM dbsync_run('m5')"
check "8 the run with a NULL key failed" grep -q "error" "$T_WORK/last.out"
check "8 the run's own message does not quote the failing row" bash -c "! grep -q TOPSECRET '$T_WORK/last.out'"
check "8 dbsync.status holds no value of the failing row" \
    [ "$(wh_val "SELECT count(*) FROM dbsync.status WHERE coalesce(last_error, '') || coalesce(last_row_error_sample::text, '') LIKE '%TOPSECRET%'")" = 0 ]
check "8 the server log holds no value of the failing row" bash -c "! grep -q TOPSECRET '$WH_LOG'"

# ---------------------------------------------------------------- 3: retarget a checkpointed load
wh_psql -q -c "CREATE TABLE public.big (id bigint PRIMARY KEY, val text, updated_at timestamptz,
                 _dbsync_synced_at timestamptz NOT NULL DEFAULT now())" >/dev/null
PGPASSWORD=$PW PGAPPNAME=sec_load "$PG_BINDIR/psql" -X -q -h 127.0.0.1 -p "$WH_PORT" -U sec_mallory \
    -d "$WH_DB" -c "CALL dbsync_sync('m2', 'big')" >/dev/null 2>&1 &
load_pid=$!
pending() { [ "$(st initial_load_pending big m2)" = t ] && [ "$(st rows_total big m2)" -ge 3000 ]; }
if wait_until 60 pending; then
    wh_val "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'sec_load'" >/dev/null
    wait "$load_pid"
    ok "3 the load was interrupted after checkpoints ($(st rows_total big m2) rows)"
else
    wait "$load_pid"; not_ok "3 the load was interrupted after checkpoints"
fi
role_try sec_mallory "ALTER SERVER m2 OPTIONS (SET target_schema 'public')"
role_try sec_mallory "CALL dbsync_sync('m2', 'big')"
role_try sec_mallory "SELECT status FROM dbsync_run('m2', 'big')"
check "3 not one row reached the victim's table" [ "$(local_count public.big)" = 0 ]
says_not_created() { st last_error big m2 | grep -q 'was not created by dbsync'; }
check "3 the table's status says why" says_not_created
role_try sec_mallory "SELECT dbsync_adopt_table('m2', 'big')"
check "3 the owner may not adopt a table she does not own" grep -q "not owned by the server's owner" "$T_WORK/last.out"
role_try sec_mallory "ALTER SERVER m2 OPTIONS (SET target_schema 'm2')"
role_try sec_mallory "CALL dbsync_sync('m2', 'big')"
check "3 back in her own schema the load completes exactly" \
    [ "$(local_count m2.big)/$(local_count public.big)" = 200000/0 ]

# ---------------------------------------------------------------- 4: row-level security
role_try sec_mallory "SELECT status FROM dbsync_run('m3')"
role_psql sec_mallory -q -c "TRUNCATE m3.items; ALTER TABLE m3.items ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
    CREATE POLICY nothing ON m3.items USING (false) WITH CHECK (false); SELECT dbsync_resync('m3')" >/dev/null
role_try sec_mallory "SELECT status, message FROM dbsync_run('m3')"
check "4 an RLS-enforced target is refused with a clear error" grep -q "row-level security" "$T_WORK/last.out"
check "4 not one row was written past the policy" [ "$(local_count m3.items)" = 0 ]

# ---------------------------------------------------------------- 6: the owner's own table
role_psql sec_mallory -q -c "CREATE SCHEMA m4; CREATE TABLE m4.items (id int PRIMARY KEY, val text, updated_at timestamptz);
    INSERT INTO m4.items VALUES (1, 'mine', now()), (999, 'mine too', now())" >/dev/null
role_try sec_mallory "SELECT status, message FROM dbsync_run('m4')"
check "6 a table dbsync did not create is refused" grep -q "was not created by dbsync" "$T_WORK/last.out"
check "6 and left as it was" [ "$(wh_val "SELECT string_agg(id || val, ',' ORDER BY id) FROM m4.items")" = "1mine,999mine too" ]
role_try sec_mallory "SELECT count(*) FROM dbsync_discover('m4') WHERE mode = 'blocked'"
check "6 dbsync_discover shows it as blocked" grep -qx " *1" "$T_WORK/last.out"
role_try sec_mallory "SELECT dbsync_adopt_table('m4', 'items')" && role_try sec_mallory "SELECT status FROM dbsync_run('m4')"
check "6 once adopted it mirrors the source exactly" \
    [ "$(wh_val "SELECT count(*) || '/' || count(*) FILTER (WHERE val LIKE 'mine%') FROM m4.items")" = "$src_items/0" ]

# ---------------------------------------------------------------- 7: two servers, one schema
pg_rows() { wh_val "SELECT string_agg(id::text, ',' ORDER BY id) FROM shared.items"; }
want=$(src_psql -Atc "SELECT string_agg(id::text, ',' ORDER BY id) FROM sec_src.items")
for i in 1 2; do
    role_try sec_mallory "SELECT status FROM dbsync_run('p_sh')"
    role_try sec_mallory "SELECT status, message FROM dbsync_run('my_sh')"
done
check "7 the second server is refused: the table is the first one's" grep -q 'target of table p_sh.items' "$T_WORK/last.out"
check "7 the first server's rows are all there, none of the second's" [ "$(pg_rows)" = "$want" ]
check "7 status tells which server failed" [ "$(st last_status items my_sh)/$(st last_status items p_sh)" = error/ok ]
no_elevation "3-8 writes"

# ---------------------------------------------------------------- 9: review findings
src_psql -q >/dev/null <<'SQL'
CREATE TYPE sec_src.mood AS ENUM ('ok', 'sad');
CREATE TABLE sec_src.feel (id int PRIMARY KEY, m sec_src.mood, tags text[], updated_at timestamptz NOT NULL DEFAULT now());
INSERT INTO sec_src.feel VALUES (1, 'ok', '{a,NULL,c}'), (2, 'sad', '{NULL}');
SQL
# a role's own domain, added to a trusted extension it installed itself
role_psql sec_eve -q >/dev/null 2>&1 <<'SQL'
CREATE SCHEMA eve_ext; GRANT USAGE ON SCHEMA eve_ext TO PUBLIC;
CREATE EXTENSION lo SCHEMA eve_ext;
CREATE FUNCTION eve_ext.spy(v text) RETURNS boolean LANGUAGE plpgsql AS
  $f$ BEGIN INSERT INTO public.pwned (who, via) VALUES (current_user, 'extension domain');
      BEGIN EXECUTE 'ALTER ROLE sec_eve SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END; RETURN true; END $f$;
GRANT EXECUTE ON FUNCTION eve_ext.spy(text) TO PUBLIC;
CREATE DOMAIN eve_ext.mood AS text CHECK (eve_ext.spy(VALUE));
ALTER EXTENSION lo ADD DOMAIN eve_ext.mood;
SQL
check "9 setup: the role's domain is a member of its extension" \
    [ "$(wh_val "SELECT count(*) FROM pg_depend d JOIN pg_type t ON t.oid = d.objid WHERE t.typname = 'mood' AND d.deptype = 'e'")" = 1 ]
role_psql sec_alice -q -c "ALTER SERVER a1 OPTIONS (SET tables 'items,vec,feel')" >/dev/null
wh_psql -q -c "SELECT count(*) FROM dbsync_run('a1', 'feel')" >/dev/null
check "9 remote enum mood becomes text, not the extension member domain" [ "$(coltype_of a1.feel m)" = text ]
role_try sec_eve "SET array_nulls = off" "SELECT status FROM dbsync_run('a1', 'feel')"
role_psql sec_alice -q -c "SELECT dbsync_resync('a1', 'feel')" >/dev/null
role_try sec_eve "SET array_nulls = off" "SELECT status FROM dbsync_run('a1', 'feel')"
check "9 the caller's array_nulls = off does not turn NULL elements into strings" \
    [ "$(wh_val "SELECT string_agg(array_position(tags, NULL)::text, ',' ORDER BY id) FROM a1.feel")" = "2,1" ]
no_elevation "9 extension member domain"

# the adopt race: a table dropped and re-created while an owner adopts it
role_psql sec_mallory -q -c "CREATE SCHEMA race" >/dev/null
mk_server sec_mallory mrace postgresql "schema 'sec_src', tables 'items', target_schema 'race'"
start_time=$(wh_val "SELECT pg_postmaster_start_time()")
(PGPASSWORD=$PW timeout 4 "$PG_BINDIR/psql" -X -q -h 127.0.0.1 -p "$WH_PORT" -U sec_mallory -d "$WH_DB" -c \
  "DO \$\$ BEGIN LOOP CREATE TABLE race.items (id int); COMMIT; DROP TABLE race.items; COMMIT; END LOOP; END \$\$" >/dev/null 2>&1 &)
PGPASSWORD=$PW timeout 4 "$PG_BINDIR/psql" -X -q -h 127.0.0.1 -p "$WH_PORT" -U sec_mallory -d "$WH_DB" -c \
  "DO \$\$ BEGIN LOOP BEGIN PERFORM dbsync_adopt_table('mrace', 'items'); EXCEPTION WHEN OTHERS THEN NULL; END; COMMIT; END LOOP; END \$\$" >/dev/null 2>&1
sleep 1
check "9 adopt raced with DROP TABLE: the server did not crash" [ "$(wh_val "SELECT pg_postmaster_start_time()")" = "$start_time" ]
# (timeout ends psql, not the loops it started: they would spin to the end of the suite)
wh_val "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'sec_mallory' AND query LIKE 'DO %LOOP%'" >/dev/null

# hostile table patterns: a million %, and one that backtracks
role_try sec_mallory "DO \$\$ BEGIN EXECUTE format('ALTER SERVER mrace OPTIONS (SET tables %L)', repeat('%', 1000000)); END \$\$"
t0=$(now)
role_try sec_mallory "SET statement_timeout = '20s'" "SELECT count(*) FROM dbsync_discover('mrace')"
check "9 tables = a million % is matched at once ($(elapsed "$t0" "$(now)") s)" grep -qx " *[0-9]*" "$T_WORK/last.out"
src_psql -q -c "CREATE TABLE sec_src.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa (id int PRIMARY KEY)" >/dev/null
role_try sec_mallory "ALTER SERVER mrace OPTIONS (SET tables '%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%ab')"
t0=$(now)
role_try sec_mallory "SET statement_timeout = '20s'" "SELECT count(*) FROM dbsync_discover('mrace')"
fast() { lt "$(elapsed "$t0" "$(now)")" 5; }
check "9 a backtracking pattern is matched at once ($(elapsed "$t0" "$(now)") s)" fast
check "9 the server is still up" [ "$(wh_val "SELECT pg_postmaster_start_time()")" = "$start_time" ]

# a sync_interval the launcher could not read
role_try sec_mallory "ALTER SERVER mrace OPTIONS (ADD sync_interval '200000000 years')"
check "9 sync_interval beyond 100 years is refused" grep -q "invalid" "$T_WORK/last.out"

# the status view leaks nothing to a role without USAGE, whatever it filters by
wh_psql -q -c "CREATE ROLE sec_nobody LOGIN PASSWORD '$PW'" >/dev/null 2>&1
role_try sec_nobody "SET enable_hashjoin = off" "SET enable_mergejoin = off" \
    "SELECT 1 FROM dbsync.status WHERE (table_name || ' | ' || coalesce(last_error, ''))::int = 0"
check "9 dbsync.status evaluates no caller condition on rows it hides" bash -c "! grep -q 'invalid input syntax' '$T_WORK/last.out'"

# a trigger of one owner raising query_canceled does not abort a superuser's run
role_psql sec_mallory -q >/dev/null <<'SQL'
CREATE FUNCTION m1.boom() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN RAISE EXCEPTION 'nope' USING ERRCODE = 'query_canceled'; END$$;
CREATE TRIGGER boom BEFORE INSERT OR UPDATE OR DELETE ON m1.items FOR EACH ROW EXECUTE FUNCTION m1.boom();
SQL
src_psql -q -c "UPDATE sec_src.items SET val = 'boom', updated_at = now() WHERE id = 3" >/dev/null
wh_psql -At -c "SELECT server || '.' || table_name || '=' || status FROM dbsync_run() WHERE server IN ('m1', 'a1') ORDER BY 1" \
    >"$T_WORK/boom.out" 2>&1
check "9 a trigger's query_canceled fails its table only" grep -qx "m1.items=error" "$T_WORK/boom.out"
check "9 and the other servers' tables of the run commit" grep -qx "a1.items=ok" "$T_WORK/boom.out"
wh_psql -q -c "DROP TRIGGER boom ON m1.items" >/dev/null

# dbsync called from a trigger during a sync
role_psql sec_mallory -q >/dev/null <<'SQL'
CREATE FUNCTION m1.nest() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN PERFORM count(*) FROM public.dbsync_run('m1'); RETURN NEW; END$$;
CREATE TRIGGER nest BEFORE INSERT OR UPDATE ON m1.items FOR EACH ROW EXECUTE FUNCTION m1.nest();
SQL
src_psql -q -c "UPDATE sec_src.items SET val = 'nest', updated_at = now() WHERE id = 4" >/dev/null
role_try sec_mallory "SELECT status, message FROM dbsync_run('m1')"
check "9 a sync started from a trigger during a sync is refused" grep -q "cannot be called while a dbsync function runs" "$T_WORK/last.out"
wh_psql -q -c "DROP TRIGGER nest ON m1.items" >/dev/null

# SQL advisory locks cannot block a table's sync
PGPASSWORD=$PW "$PG_BINDIR/psql" -X -q -h 127.0.0.1 -p "$WH_PORT" -U sec_nobody -d "$WH_DB" -c \
  "SELECT pg_advisory_lock(hashtext('a1'), hashtext('items') # x'6462'::int), pg_advisory_lock(hashtext('a1'), hashtext('items')), pg_sleep(5)" >/dev/null 2>&1 &
sleep 1
role_try sec_alice "SELECT status FROM dbsync_run('a1', 'items')"
check "9 a role's advisory locks do not make a sync skip" grep -qx " *ok" "$T_WORK/last.out"

# inheritance children are not written
role_psql sec_alice -q -c "CREATE TABLE a1.items_child () INHERITS (a1.items)" >/dev/null
role_try sec_alice "SELECT status, message FROM dbsync_run('a1', 'items')"
check "9 a target with inheritance children is refused" grep -q "has inheritance children" "$T_WORK/last.out"
role_psql sec_alice -q -c "DROP TABLE a1.items_child" >/dev/null

# JSON error context (with the row's text) stays out of status and log
my_sql -e "CREATE TABLE sec_my.js (id int PRIMARY KEY, j json);
    INSERT INTO sec_my.js VALUES (1, '{\"a\": \"\\\\u0000 TOPSECRET-44\"}')" >/dev/null
role_psql sec_alice -q -c "ALTER SERVER a2 OPTIONS (SET tables 'vec_t,leak2,js', SET on_row_error 'fail')" >/dev/null
role_try sec_alice "SELECT status FROM dbsync_run('a2', 'js')"
check "9 the JSON row failed" grep -qx " *error" "$T_WORK/last.out"
check "9 its text is in neither dbsync.status nor the log" \
    [ "$(wh_val "SELECT count(*) FROM dbsync.status WHERE coalesce(last_error, '') || coalesce(last_row_error_sample::text, '') LIKE '%TOPSECRET-44%'")/$(grep -c TOPSECRET-44 "$WH_LOG")" = 0/0 ]

# a dropped server's state is not shown under a new server of the same name
role_psql sec_alice -q -c "SELECT count(*) FROM dbsync_run('a2', 'js')" -c "DROP SERVER a2 CASCADE" >/dev/null
mk_server sec_mallory a2 mysql "tables 'vec_t'"
check "9 a re-created server name shows none of the old server's state" \
    [ "$(role_psql sec_mallory -At -c "SELECT count(*) FROM dbsync.status WHERE server = 'a2'")" = 0 ]
no_elevation "9 review findings"

# ---------------------------------------------------------------- 2: worker and launcher
# the test's own superuser sessions must not fall for the database setting below
reg_psql() { PGOPTIONS="-c search_path=pg_catalog,public" "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$WH_PORT" -U postgres -d "$REG_DB" "$@"; }
reg_val()  { reg_psql -At -c "$1" 2>/dev/null || true; }
reg_psql -q >/dev/null <<SQL
CREATE EXTENSION IF NOT EXISTS dbsync;
GRANT CREATE ON DATABASE "$REG_DB" TO sec_mallory;
GRANT USAGE ON FOREIGN DATA WRAPPER dbsync TO sec_mallory;
CREATE TABLE IF NOT EXISTS public.pwned (who text, via text, at timestamptz DEFAULT now());
GRANT SELECT, INSERT ON public.pwned TO PUBLIC;
TRUNCATE public.pwned;
ALTER DATABASE "$REG_DB" OWNER TO sec_mallory;
SQL
WH_DB=$REG_DB
role_psql sec_mallory -q >/dev/null 2>"$T_WORK/plant.err" < <(plant evil sec_mallory)
mk_server sec_mallory secw postgresql "schema 'sec_src', tables 'items', target_schema 'secw', sync_interval '1 second'"
role_psql sec_mallory -q -c "ALTER ROLE sec_mallory SET search_path = evil, pg_catalog;
    ALTER DATABASE \"$REG_DB\" SET search_path = evil, pg_catalog" >/dev/null
# a new launcher reads the database's settings at its start
reg_val "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'dbsync launcher'" >/dev/null
synced() { [ "$(reg_val "SELECT count(*) FROM secw.items")" = "$src_items" ]; }
if wait_until 60 synced; then ok "2 the worker synced under the hostile settings"; else not_ok "2 the worker synced under the hostile settings"; fi
src_psql -q -c "UPDATE sec_src.items SET val = 'w', updated_at = now() WHERE id = 1" >/dev/null
changed() { [ "$(reg_val "SELECT val FROM secw.items WHERE id = 1")" = w ]; }
if wait_until 30 changed; then ok "2 and applied a later change"; else not_ok "2 and applied a later change"; fi
launcher_up() { [ "$(reg_val "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'dbsync launcher' AND backend_start > now() - interval '5 min'")" -ge 1 ]; }
check "2 a new launcher ran under the database's search_path" wait_until 30 launcher_up
n=$(reg_val "SELECT count(*) FROM public.pwned") s=$(supers)
reg_psql -c "SELECT who, via, count(*) FROM public.pwned GROUP BY 1, 2" >&2
check "2 nothing ran in the worker or launcher (pwned: $n, superusers: $s)" [ "$n/$s" = 0/0 ]
reg_psql -q >/dev/null 2>&1 <<SQL
ALTER DATABASE "$REG_DB" RESET search_path;
ALTER DATABASE "$REG_DB" OWNER TO postgres;
ALTER ROLE sec_mallory RESET search_path;
DROP SERVER secw CASCADE; DROP SCHEMA secw CASCADE; DROP SCHEMA evil CASCADE; DROP TABLE public.pwned;
REVOKE CREATE ON DATABASE "$REG_DB" FROM sec_mallory;
REVOKE USAGE ON FOREIGN DATA WRAPPER dbsync FROM sec_mallory;
SQL

echo "1..$T_N"
exit $((T_FAILED > 0))
