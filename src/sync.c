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
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "apply.h"
#include "source.h"

/* One table's sync, as its modes share it. */
typedef struct SyncCtx
{
	SourceConfig *cfg;
	SourceConn *conn;
	RemoteTable *rt;
	TableState *st;				/* the state at the start */
	SyncResult *res;
	List	   *pk;				/* char *: the key in force, NIL = none */
	const char *cursor;			/* cursor column, NULL = none */
	RemoteColumn *ccol;			/* its column */
	char	   *target;			/* quoted schema.table */
	bool		soft;			/* deletes 'soft' */
	bool		citus;			/* the target is a Citus table */
	char	   *ceiling;		/* highest storable cursor, NULL = none */
	char	   *clock_ceiling;	/* the same from the clock alone */
	char	   *new_cursor;		/* out: cursor value to store */
	const char *cursor_lost;	/* a cursor column gone at the source */
	int64		rows_total;		/* out: live local rows */
	bool		deletes_checked;	/* out: deletes were reconciled exactly */
} SyncCtx;

/*
 * Without a delete_check_interval, a table under this many rows is checked
 * on every run (a few milliseconds), a larger one at most every
 * DELETE_CHECK_DEFAULT.
 */
#define DELETE_CHECK_SMALL_ROWS 100000
#define DELETE_CHECK_DEFAULT "10 minutes"

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
												 cfg->deletes == DELETES_SOFT, NULL);
	return stage;
}

/*
 * Deletes of a cursor table, found exactly (deletes.c); then the live row
 * count, and a note when the source has rows the table lacks.
 */
static void
reconcile_deletes(SourceConfig *cfg, SourceConn *conn, RemoteTable *rt,
				  List *pk, int64 local_rows, SyncResult *res, int64 *rows_total)
{
	char	   *target = target_name(cfg, rt->name);
	bool		soft = cfg->deletes == DELETES_SOFT;
	int64		remote_rows = 0;
	int64		deleted;

	*rows_total = local_rows;
	deleted = deletes_reconcile(conn, cfg, rt, pk, target, &remote_rows);
	res->rows_deleted += deleted;
	if (deleted > 0)
		*rows_total = local_count(target, soft);
	if (*rows_total < remote_rows)
		res->message = psprintf("%s%s%lld source row(s) are not in the local table (skipped as unconvertible, or committed later than lookback allows); dbsync_resync() reloads the table",
								res->message ? res->message : "", res->message ? "; " : "",
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

static bool
is_timestamptz(const char *type)
{
	return strncmp(type, "timestamp", 9) == 0 && strstr(type, "with time zone") != NULL;
}

/*
 * The highest value the stored cursor may take (NULL: no limit): the
 * source's clock and the start of its oldest open transaction, both read
 * before the snapshot (SourceDriver.read_clock).  A cursor without a time
 * zone (timestamp, date) holds wall-clock values: it is compared with the
 * source's wall clock in its default time zone.  Rows stamped beyond the
 * limit (in the future, or by a transaction still open) are read again by
 * every run until the stored cursor may pass them.
 */
static char *
cursor_ceiling(const char *type, const char *now, const char *offset,
			   const char *oldest)
{
	const char *args[3] = {now, oldest, offset ? offset : "0"};

	if (now == NULL)
		return NULL;
	if (is_timestamptz(type))
		return apply_query_value_args("SELECT LEAST($1::pg_catalog.timestamptz, "
									  "$2::pg_catalog.timestamptz)::pg_catalog.text",
									  2, args);
	if (strncmp(type, "timestamp", 9) == 0 || strcmp(type, "date") == 0)
		return apply_query_value_args(psprintf("SELECT (pg_catalog.timezone('UTC', "
											   "LEAST($1::pg_catalog.timestamptz, $2::pg_catalog.timestamptz)) "
											   "OPERATOR(pg_catalog.+) $3::pg_catalog.interval)::%s::pg_catalog.text",
											   type), 3, args);
	return NULL;
}

/*
 * The larger of two cursor values (either may be NULL), never above the
 * ceiling: a value stored above it (by an older version, or before a clock
 * went back, as at a DST fall-back on a zone-less cursor) comes down to it,
 * so the next read starts low enough.
 */
static char *
limit_cursor(SyncCtx *cx, const char *old_value, const char *new_value)
{
	const char *args[3] = {old_value, new_value, cx->ceiling};
	const char *t = cx->ccol->local_type;

	if (old_value == NULL && new_value == NULL)
		return NULL;
	if (cx->ceiling == NULL && (old_value == NULL || new_value == NULL))
		return (char *) (old_value ? old_value : new_value);
	return apply_query_value_args(psprintf("SELECT LEAST(GREATEST($1::%s, $2::%s), $3::%s)::pg_catalog.text",
										   t, t, t), 3, args);
}

/* The cursor value to store; the run says so when the source's clock held it. */
static char *
cap_cursor(SyncCtx *cx, const char *old_value, const char *new_value)
{
	if (cx->clock_ceiling && new_value)
	{
		const char *t = cx->ccol->local_type;
		const char *args[2] = {new_value, cx->clock_ceiling};
		char	   *ahead = apply_query_value_args(psprintf("SELECT $1::%s > $2::%s", t, t),
												   2, args);

		if (ahead && strcmp(ahead, "t") == 0)
			cx->res->message = pstrdup("cursor values ahead of the source's clock: the stored cursor stays at the clock, and those rows are read again by every run until it passes them");
	}
	return limit_cursor(cx, old_value, new_value);
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

/* Notes for the run's message, then the table's state. */
static void
finish_table(SyncCtx *cx, const char *drift_note)
{
	SyncResult *res = cx->res;

	if (drift_note)
		res->message = res->message ? psprintf("%s; %s", res->message, drift_note) :
			pstrdup(drift_note);
	if (res->rows_skipped > 0)
	{
		char	   *skip = psprintf(INT64_FORMAT " source row(s) could not be converted and were skipped (on_row_error 'skip'); see last_row_error_sample",
								   res->rows_skipped);

		res->message = res->message ? psprintf("%s; %s", res->message, skip) : skip;
	}
	res->cursor_to = cx->new_cursor;
	if (res->run_notes)
		res->message = res->message ? psprintf("%s; %s", res->run_notes, res->message) :
			pstrdup(res->run_notes);
	catalog_save_success(cx->cfg->server_name, cx->rt->name, cx->rt, cx->cursor,
						 cx->new_cursor, NIL, cx->rows_total, res->mode,
						 res->run_upserted + res->rows_upserted,
						 res->run_deleted + res->rows_deleted, res->row_sample,
						 res->message, cx->cursor_lost, cx->deletes_checked);
	res->status = "ok";
}

/* Number the columns of the key in force (RemoteColumn.key_index). */
static void
mark_key_columns(RemoteTable *rt, List *pk)
{
	ListCell   *lc;

	foreach(lc, rt->columns)
	{
		RemoteColumn *col = lfirst(lc);
		ListCell   *lk;
		int			i = 0;

		col->key_index = 0;
		foreach(lk, pk)
		{
			i++;
			if (strcmp(lfirst(lk), col->name) == 0)
				col->key_index = i;
		}
	}
}

/*
 * Rows of an initial load into an empty target (or after the key of its
 * last batch), straight in: COPY into the target; for a Citus table, which
 * is written through Citus's planner only, COPY into a stage and one
 * INSERT .. SELECT (Citus streams it to the shards).  In careful mode the
 * rows are staged one by one where COPY fails, then inserted.
 */
static uint64
load_direct(SyncCtx *cx, SourceConn *conn, const char *sql, StringInfo last)
{
	char	   *stage;
	uint64		n;

	if (!cx->res->careful && !cx->citus)
		return apply_copy(conn, sql, cx->rt->columns, cx->target, last);
	/* a resumed load retried in careful mode (on_row_error 'skip') stages too */
	stage = apply_create_stage(cx->rt->columns);
	n = stage_rows(cx->res, conn, sql, cx->rt->columns, stage, last, cx->pk);
	if (cx->citus)
		citus_insert(cx->target, stage, cx->rt->columns, cx->soft);
	else
		(void) apply_upsert(cx->target, stage, cx->rt->columns, cx->pk, cx->soft,
							false, COMPARE_KEY_RANGE, NULL);
	apply_drop_stage(stage);
	return n;
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
sync_initial(SyncCtx *cx, bool one_batch)
{
	SourceConfig *cfg = cx->cfg;
	SourceConn *conn = cx->conn;
	RemoteTable *rt = cx->rt;
	TableState *st = cx->st;
	SyncResult *res = cx->res;
	List	   *key = st->resume_key;
	char	   *hw = st->cursor_value;
	bool		direct = st->load_direct;
	int64		total = st->rows_total;
	StringInfoData last;

	initStringInfo(&last);
	if (key == NIL)
	{
		char	   *sql = remote_max_sql(conn->driver, cfg->schema, rt->name, cx->cursor);

		res->mode = "initial";
		hw = cap_cursor(cx, NULL, normalize_value(conn->driver->query_value(conn, sql),
												  cx->ccol->local_type));
		direct = st->pk_override == NIL && !res->careful && apply_is_empty(cx->target);
		total = 0;
	}
	else
		res->mode = res->run_mode ? res->run_mode : "resume";
	progress_mode(res->mode);

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
		q.pk = one_batch || key != NIL ? cx->pk : NIL;
		q.after_key = key;
		q.limit = one_batch ? cfg->batch_size : 0;
		sql = remote_select_sql(conn->driver, &q);
		if (direct)
		{
			n = load_direct(cx, conn, sql, &last);
			res->rows_upserted += (int64) n;
			total += (int64) n;
		}
		else
		{
			char	   *stage = apply_create_stage(rt->columns);

			n = stage_rows(res, conn, sql, rt->columns, stage, &last, cx->pk);
			res->rows_upserted += apply_upsert(cx->target, stage, rt->columns, cx->pk,
											   cx->soft, st->pk_override != NIL,
											   one_batch ? COMPARE_KEY_RANGE : COMPARE_JOIN,
											   NULL);
			apply_drop_stage(stage);
		}
		if (n > 0)
			key = conn->driver->last_key ? conn->driver->last_key(conn) :
				key_of_row(rt, cx->pk, last.data);
		if (!one_batch || n < (uint64) cfg->batch_size)
			break;
		catalog_save_checkpoint(cfg->server_name, rt->name, key, hw, direct, total,
								cx->pk, cx->cursor, res->rows_upserted);
		if (one_batch)
		{
			res->done = false;
			return;
		}
	}

	if (!direct)
	{
		total = local_count(cx->target, cx->soft);
		if (cfg->deletes != DELETES_IGNORE)
			reconcile_deletes(cfg, conn, rt, cx->pk, total, res, &total);
	}
	/*
	 * A merge reconciled deletes; a direct load holds exactly the rows of
	 * its snapshot only when it was read in one (not resumed, not committed
	 * in batches): else rows deleted while it ran are found by the first
	 * incremental run's check.
	 */
	cx->deletes_checked = cfg->deletes != DELETES_IGNORE &&
		(!direct || (st->resume_key == NIL && res->run_mode == NULL));
	cx->new_cursor = hw;
	cx->rows_total = total;
}

/* No key: mirror the multiset of rows. */
static void
sync_multiset(SyncCtx *cx)
{
	RemoteQuery q = {0};
	char	   *stage = apply_create_stage(cx->rt->columns);
	SyncResult *res = cx->res;

	res->mode = "full";
	progress_mode(res->mode);
	q.schema = cx->cfg->schema;
	q.table = cx->rt;
	q.columns = cx->rt->columns;
	stage_rows(res, cx->conn, remote_select_sql(cx->conn->driver, &q), cx->rt->columns,
			   stage, NULL, NIL);
	apply_mirror_multiset(cx->target, stage, cx->rt->columns, cx->cfg->deletes,
						  &res->rows_upserted, &res->rows_deleted);
	cx->deletes_checked = cx->cfg->deletes != DELETES_IGNORE;
	apply_drop_stage(stage);
	cx->rows_total = local_count(cx->target, cx->soft);
}

/*
 * Read the whole table: no cursor, new columns to backfill, or a state that
 * no longer means what it did (key, cursor column or a type changed).
 */
static void
sync_full(SyncCtx *cx, const char *why)
{
	char	   *stage;

	cx->res->mode = "full";
	progress_mode(cx->res->mode);
	stage = sync_full_with_key(cx->cfg, cx->conn, cx->rt, cx->pk,
							   cx->st->pk_override != NIL, cx->res);
	cx->deletes_checked = cx->cfg->deletes != DELETES_IGNORE;
	if (cx->cursor)
		cx->new_cursor = cap_cursor(cx, NULL, max_value(stage, cx->cursor));
	apply_drop_stage(stage);
	cx->rows_total = local_count(cx->target, cx->soft);
	if (why)
		cx->res->message = cx->res->message ?
			psprintf("%s; %s", why, cx->res->message) : pstrdup(why);
}

/*
 * Log capture's load of a table, read in the replication slot's snapshot
 * (the connection's begin_snapshot imports it): an empty target is filled
 * by COPY straight into it, another one is compared in full (upserts and
 * deletes).  The stream goes on from the snapshot; no cursor is kept.
 */
static void
sync_log_load(SyncCtx *cx)
{
	RemoteQuery q = {0};
	StringInfoData last;

	if (cx->res->careful || cx->st->pk_override != NIL || !apply_is_empty(cx->target))
	{
		sync_full(cx, NULL);
		return;
	}
	cx->res->mode = "initial";
	progress_mode(cx->res->mode);
	initStringInfo(&last);
	q.schema = cx->cfg->schema;
	q.table = cx->rt;
	q.columns = cx->rt->columns;
	cx->res->rows_upserted = (int64) load_direct(cx, cx->conn,
												 remote_select_sql(cx->conn->driver, &q),
												 &last);
	cx->rows_total = cx->res->rows_upserted;
	cx->deletes_checked = cx->cfg->deletes != DELETES_IGNORE;
}

/*
 * Is the exact delete check (deletes.c: an aggregate over every key, at
 * the source and locally) due in this incremental run?  At most every
 * delete_check_interval ('0': every run); without it, every run for a
 * small table and every DELETE_CHECK_DEFAULT for a larger one.  Full
 * reads and loads always reconcile deletes, and count as a check.
 */
static bool
delete_check_due(SyncCtx *cx)
{
	const char *every = cx->cfg->delete_check_interval;

	if (cx->cfg->deletes == DELETES_IGNORE)
		return false;
	if (cx->st->deletes_checked_at == 0)
		return true;
	if (every == NULL)
	{
		if (cx->rows_total < DELETE_CHECK_SMALL_ROWS)
			return true;
		every = DELETE_CHECK_DEFAULT;
	}
	return GetCurrentTimestamp() - cx->st->deletes_checked_at >= interval_usecs(every);
}

/*
 * An incremental run's change set: streamed into a stage, and, while it is
 * small next to the table, applied a chunk at a time as it arrives (the
 * source reads the next rows while the last ones are applied).
 */
typedef struct ChangeSet
{
	char	   *stage;
	int64		staged;			/* rows read */
	bool		pending;		/* rows in the stage not applied yet */
	int64		upserted;
	int64		inserted;
	int64		revived;		/* soft: flagged rows that came back */
	char	   *max_cursor;		/* of the rows read */
} ChangeSet;

/* Bytes of rows per chunk applied while the stream goes on. */
#define CHANGE_CHUNK_BYTES (256 * 1024)

/* Few rows next to a large table: probe for them, don't scan it. */
static bool
change_set_small(SyncCtx *cx, int64 rows)
{
	return rows * 20 < cx->st->rows_total;
}

/*
 * Apply the staged rows and empty the stage.  Rows inserted keep
 * rows_total (live rows) exact without a scan; with soft deletes, so do
 * flagged rows that come back.  An override key may repeat in the stage:
 * the upsert dedupes.
 */
static void
apply_change_set(SyncCtx *cx, ChangeSet *cs, bool small)
{
	int64		inserted = 0;
	const char *args[2];

	if (cx->soft)
		cs->revived += apply_count_revived(cx->target, cs->stage, cx->pk);
	if (small && cx->st->pk_override == NIL)
		cs->upserted += apply_upsert_small(cx->target, cs->stage, cx->rt->columns,
										   cx->pk, cx->soft, &inserted);
	else
		cs->upserted += apply_upsert(cx->target, cs->stage, cx->rt->columns, cx->pk,
									 cx->soft, cx->st->pk_override != NIL,
									 small ? COMPARE_PROBE : COMPARE_JOIN, &inserted);
	cs->inserted += inserted;
	args[0] = cs->max_cursor;
	cs->max_cursor = apply_query_value_args(psprintf("SELECT GREATEST(pg_catalog.max(%s), $1::%s)::pg_catalog.text FROM %s",
													 quote_identifier(cx->cursor),
													 cx->ccol->local_type, cs->stage),
											1, args);
	spi_exec(psprintf("TRUNCATE %s", cs->stage), SPI_OK_UTILITY);
	cs->pending = false;
}

/*
 * Read one query's rows into the change set, applying chunks as they come
 * while the set stays small; once it is not, the rest waits in the stage
 * for one set-based apply.  Careful mode (on_row_error 'skip') stages
 * everything first.
 */
static void
read_changes(SyncCtx *cx, ChangeSet *cs, const char *sql)
{
	bool		more = true;

	if (cx->res->careful)
	{
		cs->staged += stage_rows(cx->res, cx->conn, sql, cx->rt->columns, cs->stage,
								 NULL, cx->pk);
		cs->pending = true;
		return;
	}
	apply_copy_start(cx->conn, sql, cx->rt->columns, NULL);
	while (more)
	{
		/* (a Citus statement costs a distributed transaction: one, not many) */
		bool		chunked = !cx->citus && !cs->pending && change_set_small(cx, cs->staged);
		uint64		n = apply_copy_next(cx->rt->columns, cs->stage,
										chunked ? CHANGE_CHUNK_BYTES : 0, &more);

		cs->staged += (int64) n;
		if (n > 0)
			cs->pending = true;
		if (chunked && n > 0 && change_set_small(cx, cs->staged))
		{
			apply_change_set(cx, cs, true);
			elog(DEBUG1, "dbsync: applied a chunk of " UINT64_FORMAT " changed rows to %s",
				 n, cx->target);
		}
	}
	apply_copy_end();
}

/*
 * Rows whose cursor is at or after the last one minus lookback, and rows
 * whose cursor is NULL; then deletes, when a check is due.
 */
static void
sync_incremental(SyncCtx *cx)
{
	RemoteQuery q = {0};
	SyncResult *res = cx->res;
	TableState *st = cx->st;
	ChangeSet	cs = {0};
	char	   *lower = cursor_lower_bound(limit_cursor(cx, st->cursor_value, NULL),
										   cx->cfg->lookback, cx->ccol->local_type);

	res->mode = "incremental";
	progress_mode(res->mode);
	cs.stage = apply_create_stage(cx->rt->columns);
	q.schema = cx->cfg->schema;
	q.table = cx->rt;
	q.columns = cx->rt->columns;
	q.cursor_column = cx->cursor;
	q.cursor_lower = lower;
	read_changes(cx, &cs, remote_select_sql(cx->conn->driver, &q));
	q.cursor_lower = NULL;
	q.cursor_is_null = true;
	read_changes(cx, &cs, remote_select_sql(cx->conn->driver, &q));
	if (cs.pending)
		apply_change_set(cx, &cs, change_set_small(cx, cs.staged));
	apply_drop_stage(cs.stage);

	res->rows_upserted = cs.upserted;
	cx->rows_total = st->rows_total + cs.inserted + cs.revived;
	cx->new_cursor = cap_cursor(cx, st->cursor_value, cs.max_cursor);
	if (delete_check_due(cx))
	{
		reconcile_deletes(cx->cfg, cx->conn, cx->rt, cx->pk, cx->rows_total, res,
						  &cx->rows_total);
		cx->deletes_checked = true;
	}
}

/*
 * Why the stored state no longer describes the table (NULL: it does): the
 * key or cursor column in use changed (at the source, by cursor_columns or
 * an override), or the local key or a column type had to follow the source.
 * Such a table is read again in full (compare, upsert, delete), never
 * emptied and never continued with a cursor that means something else.
 */
static const char *
state_outdated(SyncCtx *cx, bool reshaped)
{
	TableState *st = cx->st;

	if (st->cursor_value == NULL && st->resume_key == NIL)
		return NULL;
	if (st->last_pk != NIL && !same_names(st->last_pk, cx->pk))
		return "primary key changed: table read again in full";
	if (st->last_cursor && (cx->cursor == NULL || strcmp(st->last_cursor, cx->cursor) != 0))
		return "cursor column changed: table read again in full";
	if (reshaped)
		return "the local key or a column type changed to follow the source: table read again in full";
	return NULL;
}

/*
 * For dbsync.progress: the rows a read of the whole table (or the rest of a
 * resumed load) will bring, from the source's statistics.  Once per
 * table run; an estimate the source cannot give is left unknown.
 */
static void
estimate_rows(SyncCtx *cx)
{
	char	   *v;
	int64		rows;

	if (progress_has_estimate())
		return;
	v = cx->conn->driver->query_value(cx->conn,
									  remote_estimate_sql(cx->conn->driver, cx->cfg->schema,
														  cx->rt->name));
	rows = v ? strtoll(v, NULL, 10) : -1;
	if (rows >= 0 && cx->st->resume_key != NIL)
		rows = Max(rows - cx->st->rows_total, 0);
	progress_estimate(rows);
}

static char *
add_note(char *notes, char *note)
{
	if (note == NULL)
		return notes;
	return notes ? psprintf("%s; %s", notes, note) : note;
}

/*
 * A new target was created while the old one (another schema: the
 * target_schema changed) still exists: say so, it is no longer synced.
 */
static char *
moved_target_note(SourceConfig *cfg, RemoteTable *rt, Oid old)
{
	char	   *name = OidIsValid(old) ? get_rel_name(old) : NULL;

	if (name == NULL)
		return NULL;
	return psprintf("target_schema changed: loaded into %s; the old table %s keeps its rows but is no longer synced (drop it; to move targets without a reload, rename their schema and set target_schema in one transaction: BEGIN; ALTER SCHEMA ... RENAME TO ...; ALTER SERVER ... OPTIONS (SET target_schema '...'); COMMIT)",
					target_name(cfg, rt->name),
					quote_qualified_identifier(get_namespace_name(get_rel_namespace(old)), name));
}

/*
 * A keyed table without a cursor column that had one: the column is gone
 * at the source (or left cursor_columns).  Said on every run (and kept in
 * dbsync.tables.cursor_lost), since every run now reads the whole table.
 */
static char *
lost_cursor_note(SyncCtx *cx)
{
	if (cx->pk == NIL || cx->cursor != NULL)
		return NULL;
	cx->cursor_lost = cx->st->last_cursor ? cx->st->last_cursor : cx->st->cursor_lost;
	if (cx->cursor_lost == NULL)
		return NULL;
	return psprintf("cursor column \"%s\" %s: the table is read in full on every run; pick a cursor with dbsync_set_table(%s, %s, cursor_column => '...')",
					cx->cursor_lost,
					find_column(cx->rt, cx->cursor_lost) ?
					"is no longer used (it left the server's cursor_columns, or its override was reset)" :
					"is no longer at the source",
					quote_literal_cstr(cx->cfg->server_name),
					quote_literal_cstr(cx->rt->name));
}

/*
 * Sync one table in the caller's subtransaction: prepare the target, pick
 * the mode, run it in one snapshot of the source, and record the state.
 * With one_batch, an initial load stops after a checkpoint (res->done =
 * false) for the caller to commit.
 */
void
sync_table(SourceConfig *cfg, SourceConn *conn, RemoteTable *orig,
		   bool one_batch, SyncResult *res)
{
	SyncCtx		cx = {0};
	RemoteTable *rt = remote_table_copy(orig);
	TableState *st = catalog_load(cfg->server_name, rt->name);
	List	   *added;
	int			nest;
	char	   *drift_note = NULL;
	bool		created;
	bool		reshaped;
	const char *outdated;
	char	   *now = NULL;
	char	   *offset = NULL;
	char	   *oldest = NULL;

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
	cx.cfg = cfg;
	cx.conn = conn;
	cx.rt = rt;
	cx.st = st;
	cx.res = res;
	cx.soft = cfg->deletes == DELETES_SOFT;
	cx.pk = effective_pk(rt, st);
	cx.cursor = cx.pk != NIL && !res->log_load ? pick_cursor(cfg, rt, st) : NULL;
	cx.ccol = cx.cursor ? find_column(rt, cx.cursor) : NULL;
	cx.rows_total = st->rows_total;
	rt->primary_key = cx.pk;
	mark_key_columns(rt, cx.pk);
	typemap_resolve(rt);
	catalog_ensure(cfg->server_name, cfg->serverid, rt->name, cfg->target_schema);
	catalog_save_flavor(cfg->server_name, rt->name, conn->flavor);
	apply_prepare_target(cfg, rt, cx.pk, cx.soft, st->target_relid, &added,
						 &drift_note, &created, &reshaped);
	if (created)
	{
		/*
		 * A new target (the old one was dropped, or target_schema changed):
		 * what the state says about the old one does not hold for it, and
		 * no load resumes into it.
		 */
		drift_note = add_note(drift_note, moved_target_note(cfg, rt, st->target_relid));
		st->cursor_value = NULL;
		st->resume_key = NIL;
		st->rows_total = 0;
		st->load_direct = false;
		st->deletes_checked_at = 0;
		cx.rows_total = 0;
	}
	cx.target = target_name(cfg, rt->name);
	cx.citus = citus_target(cx.target);
	outdated = res->log_load ? NULL : state_outdated(&cx, reshaped);
	if (!res->log_load)
		drift_note = add_note(drift_note, lost_cursor_note(&cx));

	/* the source's clock and open transactions, before the snapshot */
	if (cx.ccol && conn->driver->read_clock)
	{
		conn->driver->read_clock(conn, &now, &offset, &oldest);
		cx.ceiling = cursor_ceiling(cx.ccol->local_type, now, offset, oldest);
		cx.clock_ceiling = cursor_ceiling(cx.ccol->local_type, now, offset, NULL);
	}
	res->cursor_from = st->cursor_value;
	if (cx.pk == NIL || cx.cursor == NULL || added != NIL || outdated ||
		st->cursor_value == NULL || st->resume_key != NIL)
		estimate_rows(&cx);
	conn->driver->begin_snapshot(conn);

	if (res->log_load)
		sync_log_load(&cx);
	else if (cx.pk == NIL)
		sync_multiset(&cx);
	else if (cx.cursor == NULL || added != NIL || outdated)
		sync_full(&cx, added != NIL ?
				  psprintf("%d new source column(s) added and backfilled", list_length(added)) :
				  outdated);
	else if (st->cursor_value == NULL || st->resume_key != NIL)
	{
		sync_initial(&cx, one_batch);
		if (!res->done)
		{
			conn->driver->end_snapshot(conn);
			guard_end(nest);
			res->status = "ok";
			res->message = "checkpoint saved; the initial load goes on";
			res->notes = drift_note;
			return;
		}
	}
	else
		sync_incremental(&cx);

	conn->driver->end_snapshot(conn);
	finish_table(&cx, drift_note);
	guard_end(nest);
}
