/*-------------------------------------------------------------------------
 * catalog.c
 *	  Per-table configuration and state in dbsync.tables, through SPI.
 *
 * The caller has SPI connected.  dbsync.tables is not writable by ordinary
 * roles, so these functions run their own fixed statements as the table's
 * owner (see catalog_exec); no user text is ever spliced into them (every
 * value is a parameter, every operator qualified).  State written here
 * commits or rolls back with the data of the same table.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "dbsync.h"

/* A nullable text parameter of catalog_exec(): its datum, and *null set. */
Datum
text_param(const char *s, char *null)
{
	*null = s ? ' ' : 'n';
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/* A nullable text[] parameter (NIL: NULL): its datum, and *null set. */
Datum
text_array_param(List *list, char *null)
{
	*null = list != NIL ? ' ' : 'n';
	return list != NIL ? list_to_text_array(list) : (Datum) 0;
}

/* List of char * -> text[] datum */
Datum
list_to_text_array(List *list)
{
	Datum	   *elems = palloc(sizeof(Datum) * (list_length(list) + 1));
	ListCell   *lc;
	int			n = 0;

	foreach(lc, list)
		elems[n++] = CStringGetTextDatum((char *) lfirst(lc));
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/* text[] datum -> List of char * */
static List *
text_array_to_list(Datum d)
{
	ArrayType  *arr = DatumGetArrayTypeP(d);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;
	List	   *result = NIL;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (i = 0; i < n; i++)
		if (!nulls[i])
			result = lappend(result, TextDatumGetCString(elems[i]));
	return result;
}

/* The owner of dbsync.tables: the role that created the extension. */
static Oid
catalog_owner(void)
{
	Oid			nsp = get_namespace_oid("dbsync", false);
	Oid			relid = get_relname_relid("tables", nsp);
	HeapTuple	tup;
	Oid			owner;

	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("dbsync catalog table dbsync.tables is missing"),
				 errhint("Re-create the extension: DROP EXTENSION dbsync; CREATE EXTENSION dbsync;")));
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * Run one fixed catalog statement as the catalog's owner.  Ordinary roles
 * may not write dbsync.tables; this is the one place that does.  The
 * statement runs restricted, under a search_path pinned for just this
 * statement, with every value a parameter: nothing a user set or created
 * (search_path, operators, functions, casts) takes part in it.
 */
void
catalog_exec(const char *sql, int nargs, Oid *types, Datum *values,
			 const char *nulls, int expect)
{
	GuardUser	saved;
	int			nest;
	int			rc;

	nest = guard_begin();
	guard_enter_owner(catalog_owner(), &saved);
	rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);
	guard_leave(&saved);
	guard_end(nest);
	if (rc != expect)
		elog(ERROR, "dbsync catalog statement failed: %s", SPI_result_code_string(rc));
}

TableState *
catalog_load(const char *server, const char *table)
{
	TableState *st = palloc0(sizeof(TableState));
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;
	Datum		d;

	values[0] = CStringGetTextDatum(server);
	values[1] = CStringGetTextDatum(table);
	st->enabled = true;
	catalog_exec("SELECT primary_key_override, cursor_override, enabled, "
				 "cursor_value, resume_key, rows_total, load_direct, target_relid, "
				 "primary_key, cursor_column, cursor_lost, deletes_checked_at "
				 "FROM dbsync.tables WHERE server OPERATOR(pg_catalog.=) $1 AND table_name OPERATOR(pg_catalog.=) $2",
				 2, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return st;
	st->exists = true;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	d = SPI_getbinval(tup, desc, 1, &isnull);
	if (!isnull)
		st->pk_override = text_array_to_list(d);
	d = SPI_getbinval(tup, desc, 2, &isnull);
	if (!isnull)
		st->cursor_override = TextDatumGetCString(d);
	d = SPI_getbinval(tup, desc, 3, &isnull);
	st->enabled = isnull ? true : DatumGetBool(d);
	d = SPI_getbinval(tup, desc, 4, &isnull);
	if (!isnull)
		st->cursor_value = TextDatumGetCString(d);
	d = SPI_getbinval(tup, desc, 5, &isnull);
	if (!isnull)
		st->resume_key = text_array_to_list(d);
	d = SPI_getbinval(tup, desc, 6, &isnull);
	st->rows_total = isnull ? 0 : DatumGetInt64(d);
	d = SPI_getbinval(tup, desc, 7, &isnull);
	st->load_direct = isnull ? false : DatumGetBool(d);
	d = SPI_getbinval(tup, desc, 8, &isnull);
	st->target_relid = isnull ? InvalidOid : DatumGetObjectId(d);
	d = SPI_getbinval(tup, desc, 9, &isnull);
	if (!isnull)
		st->last_pk = text_array_to_list(d);
	d = SPI_getbinval(tup, desc, 10, &isnull);
	if (!isnull)
		st->last_cursor = TextDatumGetCString(d);
	d = SPI_getbinval(tup, desc, 11, &isnull);
	if (!isnull)
		st->cursor_lost = TextDatumGetCString(d);
	d = SPI_getbinval(tup, desc, 12, &isnull);
	st->deletes_checked_at = isnull ? 0 : DatumGetTimestampTz(d);
	return st;
}

/* Make sure a row exists for this table (target names filled in). */
void
catalog_ensure(const char *server, Oid serverid, const char *table,
			   const char *target_schema)
{
	Oid			types[4] = {TEXTOID, TEXTOID, TEXTOID, OIDOID};
	Datum		values[4];

	values[0] = CStringGetTextDatum(server);
	values[1] = CStringGetTextDatum(table);
	values[2] = CStringGetTextDatum(target_schema);
	values[3] = ObjectIdGetDatum(serverid);
	catalog_exec("INSERT INTO dbsync.tables (server, table_name, target_schema, target_table, server_oid) "
				 "VALUES ($1, $2, $3, $2, $4) ON CONFLICT (server, table_name) "
				 "DO UPDATE SET target_schema = EXCLUDED.target_schema, "
				 "server_oid = EXCLUDED.server_oid",
				 4, types, values, NULL, SPI_OK_INSERT);
}

/*
 * Record the local table dbsync created (or the owner adopted) for this
 * server and table: the only relation it will ever write for them.
 */
void
catalog_save_target(const char *server, const char *table, Oid relid)
{
	Oid			types[3] = {TEXTOID, TEXTOID, OIDOID};
	Datum		values[3];

	values[0] = CStringGetTextDatum(server);
	values[1] = CStringGetTextDatum(table);
	values[2] = ObjectIdGetDatum(relid);
	catalog_exec("UPDATE dbsync.tables SET target_relid = $3 "
				 "WHERE server OPERATOR(pg_catalog.=) $1 AND table_name OPERATOR(pg_catalog.=) $2",
				 3, types, values, NULL, SPI_OK_UPDATE);
}

/*
 * The server and table that a local relation is recorded for (NULL when
 * none): a relation belongs to at most one of them.
 */
char *
catalog_target_user(Oid relid)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1];

	values[0] = ObjectIdGetDatum(relid);
	catalog_exec("SELECT pg_catalog.format('%I.%I', server, table_name) FROM dbsync.tables "
				 "WHERE target_relid OPERATOR(pg_catalog.=) $1 LIMIT 1",
				 1, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return NULL;
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/*
 * Drop the state left by an earlier server of the same name (dropped and
 * created again): it describes another source.
 */
void
catalog_forget_stale(const char *server, Oid serverid)
{
	Oid			types[2] = {TEXTOID, OIDOID};
	Datum		values[2];

	values[0] = CStringGetTextDatum(server);
	values[1] = ObjectIdGetDatum(serverid);
	catalog_exec("DELETE FROM dbsync.tables WHERE server OPERATOR(pg_catalog.=) $1 "
				 "AND server_oid IS DISTINCT FROM $2",
				 2, types, values, NULL, SPI_OK_DELETE);
}

static List *
column_names(RemoteTable *rt)
{
	List	   *names = NIL;
	ListCell   *lc;

	foreach(lc, rt->columns)
		names = lappend(names, ((RemoteColumn *) lfirst(lc))->name);
	return names;
}

void
catalog_save_success(const char *server, const char *table, RemoteTable *rt,
					 const char *cursor_column, const char *cursor_value,
					 List *resume_key, int64 rows_total, const char *mode,
					 int64 upserted, int64 deleted, const char *row_sample,
					 const char *message, const char *cursor_lost,
					 bool deletes_checked)
{
	Oid			types[15] = {TEXTOID, TEXTOID, TEXTARRAYOID, TEXTOID, TEXTOID,
		TEXTARRAYOID, TEXTARRAYOID, INT8OID, TEXTOID, INT8OID, INT8OID, TEXTOID,
	TEXTOID, TEXTOID, BOOLOID};
	Datum		values[15];
	char		nulls[15];

	memset(nulls, ' ', sizeof(nulls));
	values[0] = CStringGetTextDatum(server);
	values[1] = CStringGetTextDatum(table);
	values[2] = text_array_param(rt->primary_key, &nulls[2]);
	values[3] = text_param(cursor_column, &nulls[3]);
	values[4] = text_param(cursor_value, &nulls[4]);
	values[5] = text_array_param(resume_key, &nulls[5]);
	values[6] = list_to_text_array(column_names(rt));
	values[7] = Int64GetDatum(rows_total);
	values[8] = CStringGetTextDatum(mode);
	values[9] = Int64GetDatum(upserted);
	values[10] = Int64GetDatum(deleted);
	values[11] = text_param(row_sample, &nulls[11]);
	values[12] = text_param(message, &nulls[12]);
	values[13] = text_param(cursor_lost, &nulls[13]);
	values[14] = BoolGetDatum(deletes_checked);
	catalog_exec("UPDATE dbsync.tables SET primary_key = $3, cursor_column = $4, "
				 "cursor_value = $5, resume_key = $6, known_columns = $7, "
				 "rows_total = $8, last_mode = $9, last_rows_upserted = $10, "
				 "last_rows_deleted = $11, "
				 "last_status = 'ok', last_synced_at = pg_catalog.now(), "
				 "last_error = NULL, last_error_at = NULL, "
				 "last_row_error_sample = $12::pg_catalog.jsonb, remote_missing_since = NULL, "
				 "load_direct = NULL, last_message = $13, cursor_lost = $14, "
				 "deletes_checked_at = CASE WHEN $15 THEN pg_catalog.now() ELSE deletes_checked_at END "
				 "WHERE server OPERATOR(pg_catalog.=) $1 AND table_name OPERATOR(pg_catalog.=) $2",
				 15, types, values, nulls, SPI_OK_UPDATE);
}

void
catalog_save_checkpoint(const char *server, const char *table,
						List *resume_key, const char *high_water,
						bool load_direct, int64 rows_total, List *pk,
						const char *cursor, int64 batch_upserted)
{
	Oid			types[11] = {TEXTOID, TEXTOID, TEXTARRAYOID, TEXTOID, BOOLOID, INT8OID,
	TEXTARRAYOID, TEXTOID, INT8OID, INT8OID, INT8OID};
	Datum		values[11];
	char		nulls[11] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	int64		read;
	int64		bytes;

	values[0] = CStringGetTextDatum(server);
	values[1] = CStringGetTextDatum(table);
	values[2] = list_to_text_array(resume_key);
	values[3] = text_param(high_water, &nulls[3]);
	values[4] = BoolGetDatum(load_direct);
	values[5] = Int64GetDatum(rows_total);
	values[6] = list_to_text_array(pk);
	values[7] = CStringGetTextDatum(cursor);
	/* the totals grow with what this checkpoint commits */
	progress_take_uncredited(&read, &bytes);
	values[8] = Int64GetDatum(batch_upserted);
	values[9] = Int64GetDatum(read);
	values[10] = Int64GetDatum(bytes);
	catalog_exec("UPDATE dbsync.tables SET resume_key = $3, cursor_value = $4, "
				 "load_direct = $5, rows_total = $6, primary_key = $7, cursor_column = $8, "
				 "last_status = 'running', last_mode = 'initial', "
				 "deletes_checked_at = NULL, "	/* a load in progress checks nothing */
				 "rows_upserted_total = rows_upserted_total OPERATOR(pg_catalog.+) $9, "
				 "rows_read_total = rows_read_total OPERATOR(pg_catalog.+) $10, "
				 "bytes_read_total = bytes_read_total OPERATOR(pg_catalog.+) $11 "
				 "WHERE server OPERATOR(pg_catalog.=) $1 AND table_name OPERATOR(pg_catalog.=) $2",
				 11, types, values, nulls, SPI_OK_UPDATE);
}

void
catalog_save_error(const char *server, Oid serverid, const char *table,
				   const char *target_schema, const char *message,
				   const char *row_sample)
{
	Oid			types[6] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, OIDOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};

	values[0] = CStringGetTextDatum(server);
	values[1] = CStringGetTextDatum(table);
	values[2] = CStringGetTextDatum(target_schema);
	values[3] = CStringGetTextDatum(message);
	values[4] = text_param(row_sample, &nulls[4]);
	values[5] = ObjectIdGetDatum(serverid);
	catalog_exec("INSERT INTO dbsync.tables AS t (server, table_name, target_schema, "
				 "target_table, last_status, last_error, last_error_at, "
				 "last_row_error_sample, server_oid) "
				 "VALUES ($1, $2, $3, $2, 'error', $4, pg_catalog.now(), $5::pg_catalog.jsonb, $6) "
				 "ON CONFLICT (server, table_name) DO UPDATE SET "
				 "last_status = 'error', last_error = $4, "
				 "last_error_at = pg_catalog.now(), last_row_error_sample = $5::pg_catalog.jsonb",
				 6, types, values, nulls, SPI_OK_INSERT);
}

/*
 * dbsync_set_table(): pk (text[] datum) / cursor NULL keep a setting, an
 * empty one resets it; enabled < 0 keeps it.  A changed key or cursor
 * forgets the incremental state, so the next run re-reads the table.
 */
void
catalog_set_table(const char *server, const char *table, Datum pk,
				  bool pk_null, const char *cursor, int enabled)
{
	Oid			types[5] = {TEXTOID, TEXTOID, TEXTARRAYOID, TEXTOID, BOOLOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	values[0] = CStringGetTextDatum(server);
	values[1] = CStringGetTextDatum(table);
	values[2] = pk;
	if (pk_null)
		nulls[2] = 'n';
	values[3] = text_param(cursor, &nulls[3]);
	values[4] = BoolGetDatum(enabled > 0);
	if (enabled < 0)
		nulls[4] = 'n';
	catalog_exec("UPDATE dbsync.tables SET "
				 "primary_key_override = CASE WHEN $3 IS NULL THEN primary_key_override "
				 "  WHEN pg_catalog.cardinality($3) OPERATOR(pg_catalog.=) 0 THEN NULL ELSE $3 END, "
				 "cursor_override = CASE WHEN $4 IS NULL THEN cursor_override "
				 "  WHEN $4 OPERATOR(pg_catalog.=) '' THEN NULL ELSE $4 END, "
				 "enabled = COALESCE($5, enabled), "
				 "cursor_lost = CASE WHEN $4 IS NULL THEN cursor_lost END, "
				 "cursor_value = CASE WHEN $3 IS NULL AND $4 IS NULL THEN cursor_value END, "
				 "resume_key = CASE WHEN $3 IS NULL AND $4 IS NULL THEN resume_key END "
				 "WHERE server OPERATOR(pg_catalog.=) $1 AND table_name OPERATOR(pg_catalog.=) $2",
				 5, types, values, nulls, SPI_OK_UPDATE);
}

/* dbsync_resync(): forget the state of one table (or all, table NULL). */
int64
catalog_forget_state(const char *server, const char *table)
{
	int64		n;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	char		nulls[2] = {' ', ' '};

	values[0] = CStringGetTextDatum(server);
	if (table)
		values[1] = CStringGetTextDatum(table);
	else
		nulls[1] = 'n';
	catalog_exec("UPDATE dbsync.tables SET cursor_value = NULL, resume_key = NULL, cursor_lost = NULL, deletes_checked_at = NULL, "
				 "captured_since = NULL "
				 "WHERE server OPERATOR(pg_catalog.=) $1 AND ($2::pg_catalog.text IS NULL OR table_name OPERATOR(pg_catalog.=) $2)",
				 2, types, values, nulls, SPI_OK_UPDATE);
	n = (int64) SPI_processed;
	/* log capture: the whole server is snapshotted again, with a new slot */
	if (table == NULL)
		catalog_exec("UPDATE dbsync.captures SET slot_state = 'resync', updated_at = pg_catalog.now() "
					 "WHERE server OPERATOR(pg_catalog.=) $1",
					 1, types, values, nulls, SPI_OK_UPDATE);
	return n;
}

/* Record which product and version the source is. */
void
catalog_save_flavor(const char *server, const char *table, const char *flavor)
{
	Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];

	if (flavor == NULL)
		return;
	values[0] = CStringGetTextDatum(server);
	values[1] = CStringGetTextDatum(table);
	values[2] = CStringGetTextDatum(flavor);
	catalog_exec("UPDATE dbsync.tables SET source_flavor = $3 "
				 "WHERE server OPERATOR(pg_catalog.=) $1 AND table_name OPERATOR(pg_catalog.=) $2 "
				 "AND source_flavor IS DISTINCT FROM $3",
				 3, types, values, NULL, SPI_OK_UPDATE);
}

/*
 * A known table is gone at the source: keep its data.  Returns whether it
 * was ever synced (a table only registered has no data to keep).
 */
bool
catalog_note_missing(const char *server, const char *table)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	values[0] = CStringGetTextDatum(server);
	values[1] = CStringGetTextDatum(table);
	catalog_exec("UPDATE dbsync.tables SET remote_missing_since = "
				 "COALESCE(remote_missing_since, pg_catalog.now()) "
				 "WHERE server OPERATOR(pg_catalog.=) $1 AND table_name OPERATOR(pg_catalog.=) $2 "
				 "AND last_synced_at IS NOT NULL",
				 2, types, values, NULL, SPI_OK_UPDATE);
	return SPI_processed > 0;
}

/*
 * Make the tables a run is about to sync known (dbsync.status shows them,
 * the auto-sync counts them as due) before the first of them starts.
 * Returns whether any was new.
 */
bool
catalog_register(const char *server, Oid serverid, const char *target_schema,
				 List *tables)
{
	Oid			types[4] = {TEXTOID, TEXTARRAYOID, TEXTOID, OIDOID};
	Datum		values[4];

	if (tables == NIL)
		return false;
	values[0] = CStringGetTextDatum(server);
	values[1] = list_to_text_array(tables);
	values[2] = CStringGetTextDatum(target_schema);
	values[3] = ObjectIdGetDatum(serverid);
	catalog_exec("INSERT INTO dbsync.tables (server, table_name, target_schema, target_table, server_oid) "
				 "SELECT $1, n, $3, n, $4 FROM pg_catalog.unnest($2) AS n "
				 /* never wait for a run that holds a known table's row */
				 "WHERE NOT EXISTS (SELECT FROM dbsync.tables k WHERE k.server OPERATOR(pg_catalog.=) $1 "
				 "AND k.table_name OPERATOR(pg_catalog.=) n) "
				 "ON CONFLICT (server, table_name) DO NOTHING",
				 4, types, values, NULL, SPI_OK_INSERT);
	return SPI_processed > 0;
}

/*
 * Tables selected again (back at the source, or no longer excluded): the
 * auto-sync counts them as due again.  Rows another run holds are left
 * alone (that run ends with its own schedule for them).
 */
void
catalog_unpark(const char *server, List *tables)
{
	Oid			types[2] = {TEXTOID, TEXTARRAYOID};
	Datum		values[2];

	if (tables == NIL)
		return;
	values[0] = CStringGetTextDatum(server);
	values[1] = list_to_text_array(tables);
	catalog_exec("UPDATE dbsync.tables SET next_attempt_at = NULL, excluded_since = NULL "
				 "WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT ctid FROM dbsync.tables "
				 "WHERE server OPERATOR(pg_catalog.=) $1 AND table_name OPERATOR(pg_catalog.=) ANY ($2) "
				 "AND (next_attempt_at OPERATOR(pg_catalog.=) 'infinity' OR excluded_since IS NOT NULL) "
				 "FOR UPDATE SKIP LOCKED))",
				 2, types, values, NULL, SPI_OK_UPDATE);
}

/* Remote table names this server has state for (synced_only: synced once). */
List *
catalog_known_tables(const char *server, bool synced_only)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	List	   *result = NIL;
	uint64		i;

	values[0] = CStringGetTextDatum(server);
	catalog_exec(synced_only ?
				 "SELECT table_name FROM dbsync.tables WHERE server OPERATOR(pg_catalog.=) $1 "
				 "AND last_synced_at IS NOT NULL ORDER BY table_name" :
				 "SELECT table_name FROM dbsync.tables WHERE server OPERATOR(pg_catalog.=) $1 "
				 "ORDER BY table_name", 1, types, values, NULL, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
		result = lappend(result, SPI_getvalue(SPI_tuptable->vals[i],
											  SPI_tuptable->tupdesc, 1));
	return result;
}
