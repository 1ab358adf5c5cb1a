/*-------------------------------------------------------------------------
 * sync.c
 *	  One table's sync: full, initial load, incremental.
 *
 * Modes:
 *	 full         no cursor column (or no primary key, or new columns that
 *				  must be backfilled): read the whole table, upsert what
 *				  differs, delete what is gone;
 *	 initial      first load of a cursor table: straight COPY into an empty
 *				  target, or a full merge into a non-empty one;
 *	 incremental  rows with cursor >= last cursor - lookback, plus rows whose
 *				  cursor is NULL; deletes found by primary-key
 *				  reconciliation when the row counts disagree.
 *
 * Everything one table writes (rows and its dbsync.tables state) happens in
 * the caller's subtransaction and commits together.  Values that reach
 * text (cursor values, bounds) are produced with DateStyle ISO, TimeZone
 * UTC and full float precision whatever the session says.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "apply.h"
#include "source.h"

/* The primary key in use: the override when set, else the discovered one. */
List *
effective_pk(RemoteTable *rt, TableState *st)
{
	ListCell   *lc;

	if (st->pk_override == NIL)
		return rt->primary_key;
	foreach(lc, st->pk_override)
	{
		if (find_column(rt, lfirst(lc)) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("primary key column \"%s\" set for table \"%s\" does not exist at the source",
							(char *) lfirst(lc), rt->name),
					 errhint("Fix it with dbsync_set_table(server, table, primary_key => '{...}'), or reset it with primary_key => '{}'.")));
	}
	return st->pk_override;
}

/* The cursor column in use, or NULL for a table synced in full. */
const char *
pick_cursor(SourceConfig *cfg, RemoteTable *rt, TableState *st)
{
	ListCell   *lc;

	if (st->cursor_override)
	{
		if (find_column(rt, st->cursor_override) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("cursor column \"%s\" set for table \"%s\" does not exist at the source",
							st->cursor_override, rt->name),
					 errhint("Fix it with dbsync_set_table(server, table, cursor_column => '...'), or reset it with cursor_column => ''.")));
		return st->cursor_override;
	}
	foreach(lc, cfg->cursor_columns)
	{
		if (find_column(rt, lfirst(lc)) != NULL)
			return lfirst(lc);
	}
	return NULL;
}

/*
 * The lower bound of an incremental read: last cursor minus lookback for
 * time types (as a zone-less UTC literal both dialects read the same way),
 * the last value itself for anything else.
 */
static char *
cursor_lower_bound(const char *value, const char *lookback, const char *type)
{
	const char *fmt;
	const char *args[2];

	if (strncmp(type, "timestamp", 9) == 0 && strstr(type, "with time zone"))
		fmt = "SELECT pg_catalog.to_char(($1::timestamptz - $2::interval) "
			"AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')";
	else if (strncmp(type, "timestamp", 9) == 0)
		fmt = "SELECT pg_catalog.to_char($1::timestamp - $2::interval, "
			"'YYYY-MM-DD HH24:MI:SS.US')";
	else if (strcmp(type, "date") == 0)
		fmt = "SELECT pg_catalog.to_char($1::date - $2::interval, 'YYYY-MM-DD')";
	else
		return pstrdup(value);

	args[0] = value;
	args[1] = lookback;
	return apply_query_value_args(fmt, 2, args);
}

static char *
max_value(const char *relname, const char *column)
{
	return apply_query_value(psprintf("SELECT pg_catalog.max(%s)::text FROM %s",
									  quote_identifier(column), relname));
}

static bool
is_empty(const char *relname)
{
	char	   *v = apply_query_value(psprintf("SELECT NOT EXISTS (SELECT 1 FROM %s)",
											   relname));

	return v && strcmp(v, "t") == 0;
}

static int64
local_count(const char *relname, bool soft)
{
	char	   *v = apply_query_value(psprintf("SELECT pg_catalog.count(*) FROM %s%s",
											   relname,
											   soft ? " WHERE NOT _dbsync_deleted" : ""));

	return v ? strtoll(v, NULL, 10) : 0;
}

/*
 * Stream rows into a stage: one COPY, or, in careful mode (on_row_error
 * 'skip' after a conversion error), row by row so bad rows are skipped and
 * the first one is kept as a sample.
 */
static uint64
stage_rows(SyncResult *res, SourceConn *conn, const char *sql, List *columns,
		   const char *stage, StringInfo last, List *pk)
{
	if (!res->careful)
		return apply_copy(conn, sql, columns, stage, last);
	return apply_copy_careful(conn, sql, columns, stage, last, pk,
							  &res->rows_skipped, &res->row_sample);
}

/* Columns of rt that make up the key, as RemoteColumn *. */
static List *
key_columns(RemoteTable *rt, List *pk)
{
	List	   *cols = NIL;
	ListCell   *lc;

	foreach(lc, pk)
		cols = lappend(cols, find_column(rt, lfirst(lc)));
	return cols;
}

/*
 * Read the whole table into a stage; upsert; delete what is gone.  Returns
 * the stage, for the caller to read the cursor from and drop.
 */
static char *
sync_full_with_key(SourceConfig *cfg, SourceConn *conn, RemoteTable *rt,
				   List *pk, bool dedupe, SyncResult *res)
{
	RemoteQuery q = {0};
	char	   *target = target_name(cfg, rt->name);
	char	   *stage = apply_create_stage(rt->columns);

	q.schema = cfg->schema;
	q.table = rt;
	q.columns = rt->columns;
	stage_rows(res, conn, remote_select_sql(conn->driver, &q), rt->columns, stage, NULL, pk);
	res->rows_upserted = apply_upsert(target, stage, rt->columns, pk,
									  cfg->deletes == DELETES_SOFT, dedupe,
									  COMPARE_JOIN, NULL);
	if (cfg->deletes != DELETES_IGNORE)
		res->rows_deleted = apply_delete_missing(target, stage, pk,
												 cfg->deletes == DELETES_SOFT);
	return stage;
}

/* Delete detection for a cursor table: counts first, keys only if needed. */
static void
reconcile_deletes(SourceConfig *cfg, SourceConn *conn, RemoteTable *rt,
				  List *pk, int64 local_rows, SyncResult *res, int64 *rows_total)
{
	char	   *remote = conn->driver->query_value(conn,
												   remote_count_sql(conn->driver, cfg->schema, rt->name));
	int64		remote_rows = remote ? strtoll(remote, NULL, 10) : 0;
	bool		soft = cfg->deletes == DELETES_SOFT;
	char	   *target = target_name(cfg, rt->name);
	List	   *kcols;
	char	   *keystage;
	RemoteQuery q = {0};

	*rows_total = local_rows;
	if (remote_rows == local_rows)
		return;

	kcols = key_columns(rt, pk);
	keystage = apply_create_stage(kcols);
	q.schema = cfg->schema;
	q.table = rt;
	q.columns = kcols;
	apply_copy(conn, remote_select_sql(conn->driver, &q), kcols, keystage, NULL);
	res->rows_deleted = apply_delete_missing(target, keystage, pk, soft);
	apply_drop_stage(keystage);
	*rows_total = local_count(target, soft);
	if (*rows_total < remote_rows)
		res->message = psprintf("%lld source row(s) are not in the local table (skipped as unconvertible, or committed later than lookback allows); dbsync_resync() reloads the table",
								(long long) (remote_rows - *rows_total));
}

/* A value in the text form of a local type, as the engine stores it. */
static char *
normalize_value(const char *value, const char *type)
{
	if (value == NULL)
		return NULL;
	return apply_query_value_args(psprintf("SELECT $1::%s::text", type), 1, &value);
}

/*
 * Hold a new timestamptz cursor value below the start of any transaction
 * still writing at the source (never below the old value): its rows commit
 * later with cursor values from about its start.
 */
static char *
cap_inflight(SourceConn *conn, RemoteColumn *ccol, const char *old_value,
			 const char *new_value)
{
	const char *args[3];

	if (new_value == NULL || conn->driver->inflight_floor == NULL ||
		strncmp(ccol->local_type, "timestamp", 9) != 0 ||
		strstr(ccol->local_type, "with time zone") == NULL)
		return (char *) new_value;
	args[0] = new_value;
	args[1] = conn->driver->inflight_floor(conn);
	args[2] = old_value;
	if (args[1] == NULL)
		return (char *) new_value;
	return apply_query_value_args("SELECT GREATEST(LEAST($1::timestamptz, $2::timestamptz), "
								  "$3::timestamptz)::text", 3, args);
}

/* The key of a streamed row (COPY text), taken in the source's own order. */
static List *
key_of_row(RemoteTable *rt, List *pk, const char *row)
{
	List	   *key = NIL;
	ListCell   *lc;

	foreach(lc, pk)
	{
		int			pos = 0;
		ListCell   *lc2;

		foreach(lc2, rt->columns)
		{
			if (strcmp(((RemoteColumn *) lfirst(lc2))->name, lfirst(lc)) == 0)
				break;
			pos++;
		}
		key = lappend(key, copy_row_field(row, pos));
	}
	return key;
}

/*
 * Initial load of a cursor table, in primary-key order, batch_size rows at
 * a time, with a checkpoint (last key) after each batch.  The high-water
 * mark of the cursor is taken when the load starts: rows changed while it
 * runs are read again by the first incremental run.  An empty target is
 * filled by COPY straight into it; a non-empty one (after dbsync_resync)
 * through staging and upsert, then delete reconciliation.  With one_batch,
 * returns after a checkpoint with res->done = false so the caller can
 * commit.
 */
static void
sync_initial(SourceConfig *cfg, SourceConn *conn, RemoteTable *rt, List *pk,
			 const char *cursor, TableState *st, bool one_batch,
			 SyncResult *res, char **new_cursor, int64 *rows_total)
{
	char	   *target = target_name(cfg, rt->name);
	bool		soft = cfg->deletes == DELETES_SOFT;
	List	   *key = st->resume_key;
	char	   *hw = st->cursor_value;
	bool		direct = st->load_direct;
	int64		total = st->rows_total;
	StringInfoData last;

	initStringInfo(&last);
	if (key == NIL)
	{
		RemoteColumn *ccol = find_column(rt, cursor);
		char	   *sql = remote_max_sql(conn->driver, cfg->schema, rt->name, cursor);

		res->mode = "initial";
		hw = normalize_value(conn->driver->query_value(conn, sql), ccol->local_type);
		hw = cap_inflight(conn, ccol, NULL, hw);
		direct = st->pk_override == NIL && !res->careful && is_empty(target);
		total = 0;
	}
	else
		res->mode = res->run_mode ? res->run_mode : "resume";

	for (;;)
	{
		RemoteQuery q = {0};
		char	   *sql;
		uint64		n;

		q.schema = cfg->schema;
		q.table = rt;
		q.columns = rt->columns;
		/*
		 * Batches, and the key order that makes them resumable, matter only
		 * where a checkpoint can commit (or when going on after a key).
		 */
		q.pk = one_batch || key != NIL ? pk : NIL;
		q.after_key = key;
		q.limit = one_batch ? cfg->batch_size : 0;
		sql = remote_select_sql(conn->driver, &q);
		if (direct)
		{
			n = apply_copy(conn, sql, rt->columns, target, &last);
			res->rows_upserted += (int64) n;
			total += (int64) n;
		}
		else
		{
			char	   *stage = apply_create_stage(rt->columns);

			n = stage_rows(res, conn, sql, rt->columns, stage, &last, pk);
			res->rows_upserted += apply_upsert(target, stage, rt->columns, pk,
											   soft, st->pk_override != NIL,
											   one_batch ? COMPARE_KEY_RANGE : COMPARE_JOIN,
											   NULL);
			apply_drop_stage(stage);
		}
		if (n > 0)
			key = key_of_row(rt, pk, last.data);
		if (!one_batch || n < (uint64) cfg->batch_size)
			break;
		catalog_save_checkpoint(cfg->server_name, rt->name, key, hw, direct, total);
		if (one_batch)
		{
			res->done = false;
			return;
		}
	}

	if (!direct)
	{
		total = local_count(target, soft);
		if (cfg->deletes != DELETES_IGNORE)
			reconcile_deletes(cfg, conn, rt, pk, total, res, &total);
	}
	*new_cursor = hw;
	*rows_total = total;
}

void
sync_table(SourceConfig *cfg, SourceConn *conn, RemoteTable *rt,
		   bool one_batch, SyncResult *res)
{
	TableState *st = catalog_load(cfg->server_name, rt->name);
	List	   *pk;
	const char *cursor;
	bool		soft = cfg->deletes == DELETES_SOFT;
	List	   *added;
	char	   *target;
	char	   *new_cursor = NULL;
	int64		rows_total = st->rows_total;
	int			nest;
	char	   *drift_note = NULL;
	bool		created;

	res->rows_upserted = 0;
	res->rows_deleted = 0;
	res->message = NULL;
	res->done = true;
	res->rows_skipped = 0;
	res->row_sample = NULL;
	if (!st->enabled)
	{
		res->mode = NULL;
		res->status = "skipped";
		res->message = "disabled with dbsync_set_table(enabled => false)";
		return;
	}

	/* undo, at the end, whatever the owner's code SETs meanwhile */
	nest = guard_begin();
	pk = effective_pk(rt, st);
	cursor = pk != NIL ? pick_cursor(cfg, rt, st) : NULL;
	rt->primary_key = pk;
	typemap_resolve(rt);
	catalog_ensure(cfg->server_name, cfg->serverid, rt->name, cfg->target_schema);
	catalog_save_flavor(cfg->server_name, rt->name, conn->flavor);
	apply_prepare_target(cfg, rt, pk, soft, st->target_relid, &added,
						 &drift_note, &created);
	if (created)
	{
		/*
		 * A new target (the old one was dropped, or target_schema changed):
		 * what the state says about the old one does not hold for it, and
		 * no load resumes into it.
		 */
		st->cursor_value = NULL;
		st->resume_key = NIL;
		st->rows_total = 0;
		st->load_direct = false;
		rows_total = 0;
	}
	target = target_name(cfg, rt->name);

	conn->driver->begin_snapshot(conn);

	if (pk == NIL)
	{
		/* no key: mirror the multiset of rows */
		RemoteQuery q = {0};
		char	   *stage = apply_create_stage(rt->columns);

		res->mode = "full";
		q.schema = cfg->schema;
		q.table = rt;
		q.columns = rt->columns;
		stage_rows(res, conn, remote_select_sql(conn->driver, &q), rt->columns, stage, NULL, NIL);
		apply_mirror_multiset(target, stage, rt->columns,
							  &res->rows_upserted, &res->rows_deleted);
		apply_drop_stage(stage);
		rows_total = local_count(target, false);
	}
	else if (cursor == NULL || added != NIL)
	{
		/* full read: no cursor, or new columns to backfill */
		char	   *stage;

		res->mode = "full";
		stage = sync_full_with_key(cfg, conn, rt, pk, st->pk_override != NIL, res);
		if (cursor)
		{
			new_cursor = max_value(stage, cursor);
			if (st->cursor_value && new_cursor == NULL)
				new_cursor = st->cursor_value;
		}
		apply_drop_stage(stage);
		rows_total = local_count(target, soft);
		if (added != NIL)
			res->message = psprintf("%d new source column(s) added and backfilled",
									list_length(added));
	}
	else if (st->cursor_value == NULL || st->resume_key != NIL)
	{
		sync_initial(cfg, conn, rt, pk, cursor, st, one_batch, res,
					 &new_cursor, &rows_total);
		if (!res->done)
		{
			conn->driver->end_snapshot(conn);
			guard_end(nest);
			res->status = "ok";
			res->message = "checkpoint saved; the initial load goes on";
			return;
		}
	}
	else
	{
		/* incremental */
		RemoteQuery q = {0};
		RemoteColumn *ccol = find_column(rt, cursor);
		char	   *stage = apply_create_stage(rt->columns);
		char	   *lower = cursor_lower_bound(st->cursor_value, cfg->lookback,
											   ccol->local_type);
		int64		inserted;
		int64		revived = 0;
		int64		staged;
		char	   *maxv;

		res->mode = "incremental";
		q.schema = cfg->schema;
		q.table = rt;
		q.columns = rt->columns;
		q.cursor_column = cursor;
		q.cursor_lower = lower;
		staged = stage_rows(res, conn, remote_select_sql(conn->driver, &q), rt->columns, stage, NULL, pk);
		q.cursor_lower = NULL;
		q.cursor_is_null = true;
		staged += stage_rows(res, conn, remote_select_sql(conn->driver, &q), rt->columns, stage, NULL, pk);

		/*
		 * Rows inserted keep rows_total (live rows) exact without a scan;
		 * with soft deletes, so do flagged rows that come back.
		 */
		if (soft)
		{
			StringInfoData sql;
			ListCell   *lc;

			initStringInfo(&sql);
			appendStringInfo(&sql, "SELECT pg_catalog.count(*) FROM %s s JOIN %s t ON ",
							 stage, target);
			foreach(lc, pk)
			{
				const char *k = quote_identifier(lfirst(lc));

				appendStringInfo(&sql, "t.%s OPERATOR(pg_catalog.=) s.%s AND ", k, k);
			}
			appendStringInfoString(&sql, "t._dbsync_deleted");
			revived = strtoll(apply_query_value(sql.data), NULL, 10);
		}
		/* few changed rows next to a large table: probe, don't scan it */
		res->rows_upserted = apply_upsert(target, stage, rt->columns, pk, soft,
										  st->pk_override != NIL,
										  staged * 20 < st->rows_total ?
										  COMPARE_PROBE : COMPARE_JOIN,
										  &inserted);
		rows_total = st->rows_total + inserted + revived;
		maxv = max_value(stage, cursor);
		new_cursor = st->cursor_value;
		if (maxv)
		{
			const char *args[2] = {st->cursor_value, maxv};

			new_cursor = apply_query_value_args(psprintf("SELECT GREATEST($1::%s, $2::%s)::text",
														 ccol->local_type, ccol->local_type),
												2, args);
			new_cursor = cap_inflight(conn, ccol, st->cursor_value, new_cursor);
		}
		apply_drop_stage(stage);
		if (cfg->deletes != DELETES_IGNORE)
			reconcile_deletes(cfg, conn, rt, pk, rows_total, res, &rows_total);
	}

	conn->driver->end_snapshot(conn);
	if (drift_note)
		res->message = res->message ? psprintf("%s; %s", res->message, drift_note) : drift_note;
	if (res->rows_skipped > 0)
	{
		char	   *skip = psprintf(INT64_FORMAT " source row(s) could not be converted and were skipped (on_row_error 'skip'); see last_row_error_sample",
								   res->rows_skipped);

		res->message = res->message ? psprintf("%s; %s", res->message, skip) : skip;
	}
	catalog_save_success(cfg->server_name, rt->name, rt, cursor, new_cursor,
						 NIL, rows_total, res->mode,
						 res->run_upserted + res->rows_upserted,
						 res->run_deleted + res->rows_deleted, res->row_sample);
	guard_end(nest);
	res->status = "ok";
}
