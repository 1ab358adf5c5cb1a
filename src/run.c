/*-------------------------------------------------------------------------
 * run.c
 *	  The SQL functions that sync or preview: dbsync_run(), CALL
 *	  dbsync_sync(), dbsync_discover(), and the background worker's run.
 *
 * A run goes over servers x tables.  Each server is synced as its owner,
 * with the owner's user mapping.  Each table runs in its own
 * subtransaction under a non-blocking advisory lock: a failing table is
 * rolled back and recorded, the others go on; a table another run holds is
 * reported as skipped.  A cancel or shutdown is never swallowed: it stops
 * the whole statement.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "foreign/foreign.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "nodes/parsenodes.h"

#include "apply.h"
#include "capture.h"
#include "run.h"
#include "source.h"

PG_FUNCTION_INFO_V1(dbsync_run);
PG_FUNCTION_INFO_V1(dbsync_discover);
PG_FUNCTION_INFO_V1(dbsync_sync);

/*
 * Does "name" match a pattern where % stands for any run of characters?
 * Iterative, with one backtrack point (the last %): linear memory and at
 * most length(pat) x length(name) steps, whatever the pattern.
 */
static bool
like_match(const char *pat, const char *name)
{
	const char *star = NULL;	/* the last % seen */
	const char *resume = NULL;	/* where in name it matches from */

	while (*name)
	{
		if (*pat == '%')
		{
			while (*pat == '%')
				pat++;
			if (*pat == '\0')
				return true;
			star = pat;
			resume = name;
		}
		else if (*pat == *name)
		{
			pat++;
			name++;
		}
		else if (star)
		{
			pat = star;
			name = ++resume;
		}
		else
			return false;
	}
	while (*pat == '%')
		pat++;
	return *pat == '\0';
}

/* Does name match one of the patterns (% a wildcard)? */
bool
name_matches_any(List *patterns, const char *name)
{
	ListCell   *lc;

	foreach(lc, patterns)
	{
		if (like_match(lfirst(lc), name))
			return true;
	}
	return false;
}

bool
table_selected(SourceConfig *cfg, const char *name)
{
	if (cfg->tables != NIL && !name_matches_any(cfg->tables, name))
		return false;
	return !name_matches_any(cfg->exclude_tables, name);
}

static AclResult
object_aclcheck_compat(Oid serverid)
{
	return pg_foreign_server_aclcheck(serverid, GetUserId(), ACL_USAGE);
}

/* The caller may use this server: USAGE on it (owners and superusers have it). */
static void
check_server_usage(ForeignServer *server)
{
	if (object_aclcheck_compat(server->serverid) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for server \"%s\"", server->servername),
				 errhint("Ask the server's owner to GRANT USAGE ON FOREIGN SERVER %s TO you.",
						 quote_identifier(server->servername))));
}

/* Changing a server's sync configuration needs ownership of it. */
void
check_server_owner(ForeignServer *server)
{
	if (!pg_foreign_server_ownercheck(server->serverid, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of server \"%s\"", server->servername),
				 errhint("Run this as the server's owner or a superuser.")));
}

ForeignServer *
dbsync_server_by_name(const char *name)
{
	ForeignServer *server = GetForeignServerByName(name, true);

	if (server == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("server \"%s\" does not exist", name),
				 errhint("Create it with CREATE SERVER %s FOREIGN DATA WRAPPER dbsync OPTIONS (...).",
						 quote_identifier(name))));
	if (server->fdwid != dbsync_fdw_oid())
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("server \"%s\" is not a dbsync server", name),
				 errhint("dbsync functions take servers of the dbsync foreign-data wrapper.")));
	return server;
}

static int
cmp_cstring(const ListCell *a, const ListCell *b)
{
	return strcmp(lfirst(a), lfirst(b));
}

/* Every dbsync server the current role may use, by name. */
static List *
all_servers(void)
{
	Relation	rel = table_open(ForeignServerRelationId, AccessShareLock);
	SysScanDesc scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	HeapTuple	tup;
	Oid			fdw = dbsync_fdw_oid();
	List	   *result = NIL;

	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_foreign_server form = (Form_pg_foreign_server) GETSTRUCT(tup);

		if (form->srvfdw == fdw && object_aclcheck_compat(form->oid) == ACLCHECK_OK)
			result = lappend(result, pstrdup(NameStr(form->srvname)));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	list_sort(result, cmp_cstring);
	return result;
}


/* A failed table, for the ERROR that ends CALL dbsync_sync. */
static void
count_failure(RunOutput *out, const char *table)
{
	MemoryContext old;

	if (out->cxt == NULL)
		return;
	old = MemoryContextSwitchTo(out->cxt);
	if (out->failed == NULL)
		out->failed = makeStringInfo();
	if (out->nfailed < 10)
		appendStringInfo(out->failed, "%s%s.%s", out->nfailed ? ", " : "",
						 quote_identifier(out->server),
						 table ? quote_identifier(table) : "*");
	else if (out->nfailed == 10)
		appendStringInfoString(out->failed, ", ...");
	out->nfailed++;
	MemoryContextSwitchTo(old);
}

void
emit(RunOutput *out, const char *table, const char *mode, int64 upserted,
	 int64 deleted, TimestampTz started, const char *status,
	 const char *message)
{
	Datum		values[8];
	bool		nulls[8] = {0};
	Interval   *dur = palloc0(sizeof(Interval));
	NameData   *srv = palloc0(sizeof(NameData));

	dur->time = GetCurrentTimestamp() - started;
	if (strcmp(status, "error") == 0)
		count_failure(out, table);
	if (out->rsinfo == NULL)
	{
		ereport(NOTICE,
				(errmsg("dbsync: %s.%s: %s, %s, " INT64_FORMAT " upserted, " INT64_FORMAT " deleted%s%s",
						out->server, table ? table : "*", mode ? mode : "-",
						status, upserted, deleted,
						message ? ": " : "", message ? message : "")));
		return;
	}
	namestrcpy(srv, out->server);
	values[0] = NameGetDatum(srv);
	if (table)
		values[1] = CStringGetTextDatum(table);
	else
		nulls[1] = true;
	if (mode)
		values[2] = CStringGetTextDatum(mode);
	else
		nulls[2] = true;
	values[3] = Int64GetDatum(upserted);
	values[4] = Int64GetDatum(deleted);
	values[5] = IntervalPGetDatum(dur);
	values[6] = CStringGetTextDatum(status);
	if (message)
		values[7] = CStringGetTextDatum(message);
	else
		nulls[7] = true;
	tuplestore_putvalues(out->rsinfo->setResult, out->rsinfo->setDesc, values, nulls);
}

/* "message: detail (hint)" for dbsync.status and the run's result. */
char *
error_text(ErrorData *edata)
{
	StringInfoData buf;
	const char *hint = edata->hint;

	if (hint == NULL && ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_DATA_EXCEPTION)
		hint = DBSYNC_HINT_BAD_VALUE;
	initStringInfo(&buf);
	appendStringInfoString(&buf, edata->message);
	if (edata->detail)
		appendStringInfo(&buf, "\nDETAIL: %s", edata->detail);
	if (hint)
		appendStringInfo(&buf, "\nHINT: %s", hint);
	return buf.data;
}

/* A table's (or, table NULL, a server's) history row, as it starts. */
void
run_record_init(RunOutput *out, Oid serverid, const char *server,
				const char *table, RunRecord *rec)
{
	memset(rec, 0, sizeof(*rec));
	if (out->run_id == 0)
		out->run_id = history_new_run_id();
	rec->run_id = out->run_id;
	rec->server = pstrdup(server);
	rec->serverid = serverid;
	rec->table = table ? pstrdup(table) : NULL;
	rec->trigger = out->trigger;
	rec->started_at = GetCurrentTimestamp();
	rec->status = "ok";
}

/* The source statement an error names in its context ("remote SQL command: ..."). */
static char *
remote_sql_of(ErrorData *edata)
{
	const char *tag = "remote SQL command: ";
	char	   *at = edata->context ? strstr(edata->context, tag) : NULL;
	char	   *end;

	if (at == NULL)
		return NULL;
	/* the statement only, not the context lines after it */
	at = pstrdup(at + strlen(tag));
	if ((end = strchr(at, '\n')) != NULL)
		*end = '\0';
	return at;
}

/* The parts of an error a history row keeps (row contents already gone). */
static void
run_record_error(RunRecord *rec, ErrorData *edata)
{
	rec->status = "error";
	rec->sqlstate = pstrdup(unpack_sql_state(edata->sqlerrcode));
	rec->error_class = health_error_class(edata->sqlerrcode);
	rec->error = edata->message;
	rec->detail = edata->detail;
	rec->hint = edata->hint ? edata->hint :
		ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_DATA_EXCEPTION ?
		DBSYNC_HINT_BAD_VALUE : NULL;
}

/* A table this run passes over: a row saying why (not for the auto-sync). */
static void
run_record_skip(RunOutput *out, RunRecord *rec, const char *why)
{
	if (out->scheduled)
		return;
	emit(out, rec->table, NULL, 0, 0, rec->started_at, "skipped", why);
	rec->status = "skipped";
	rec->error = pstrdup(why);
	history_record(rec);
}

/*
 * Remove row contents from an error before it is stored or logged: the
 * value or whole line COPY quotes in its context, and the "Failing row
 * contains (...)" detail of a constraint.  dbsync.status and the server
 * log keep where it failed and why, never the row.
 */
static void
strip_row_contents(ErrorData *edata)
{
	if (edata->sqlerrcode == ERRCODE_NOT_NULL_VIOLATION ||
		edata->sqlerrcode == ERRCODE_CHECK_VIOLATION ||
		edata->sqlerrcode == ERRCODE_EXCLUSION_VIOLATION ||
		(edata->detail && strncmp(edata->detail, "Failing row contains", 20) == 0))
		edata->detail = NULL;
	if (edata->context)
	{
		/*
		 * Keep only where COPY was ("COPY t, line 5, column v"); any other
		 * context line (JSON data, a value continued on the next line) may
		 * quote the row.
		 */
		StringInfoData buf;
		char	   *line;
		char	   *save = NULL;

		initStringInfo(&buf);
		for (line = strtok_r(pstrdup(edata->context), "\n", &save); line;
			 line = strtok_r(NULL, "\n", &save))
		{
			char	   *cut;

			if (strncmp(line, "COPY ", 5) != 0)
				continue;
			if ((cut = strstr(line, ": ")) != NULL)
				*cut = '\0';
			appendStringInfo(&buf, "%s%s", buf.len ? "\n" : "", line);
		}
		edata->context = buf.len ? buf.data : NULL;
	}
}

/* Where a COPY choked (line and column, no values), from the context. */
static char *
row_error_sample(ErrorData *edata)
{
	StringInfoData buf;

	if (edata->context == NULL || strstr(edata->context, "COPY ") == NULL)
		return NULL;
	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"error\": ");
	escape_json(&buf, edata->message);
	appendStringInfoString(&buf, ", \"where\": ");
	escape_json(&buf, edata->context);
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

static void
table_locktag(LOCKTAG *tag, const char *server, const char *table)
{
	uint32		k1 = hash_bytes((const unsigned char *) server, strlen(server));
	uint32		k2 = hash_bytes((const unsigned char *) table, strlen(table));

	/* field4 3+: no SQL advisory lock function can take (or block) it */
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, k1, k2, 0x6473);
}

/*
 * Take the per-table advisory lock without waiting: for the transaction, or
 * (session) across the commits of a procedure's or worker's run.
 */
bool
try_lock_table(const char *server, const char *table, bool session)
{
	LOCKTAG		tag;

	table_locktag(&tag, server, table);
	return LockAcquire(&tag, ExclusiveLock, session, true) != LOCKACQUIRE_NOT_AVAIL;
}

void
unlock_table_session(const char *server, const char *table)
{
	LOCKTAG		tag;

	table_locktag(&tag, server, table);
	LockRelease(&tag, ExclusiveLock, true);
}

/* The table's history row and health after its last step succeeded. */
static void
run_record_success(RunOutput *out, RunRecord *rec, SyncResult *total,
				   SyncResult *res)
{
	rec->mode = (char *) (total->mode ? total->mode : res->mode);
	rec->status = res->status;
	rec->rows_upserted = total->rows_upserted + res->rows_upserted;
	rec->rows_deleted = total->rows_deleted + res->rows_deleted;
	rec->rows_skipped = res->rows_skipped;
	progress_counts(&rec->rows_read, &rec->bytes_read);
	rec->cursor_from = total->mode ? total->cursor_from : res->cursor_from;
	rec->cursor_to = res->cursor_to;
	if (strcmp(res->status, "ok") != 0)
		rec->error = res->message;
	else
		rec->message = res->message;
	history_record(rec);
	if (strcmp(res->status, "ok") == 0)
		health_record_success(rec, res->rows_upserted, res->rows_deleted,
							  rec->started_at, out->interval_secs);
}

/* A table step failed (rolled back): record it, with its history and health. */
static void
run_record_failure(RunOutput *out, SourceConfig *cfg, RunRecord *rec,
				   SyncResult *total, ErrorData *edata)
{
	rec->remote_sql = remote_sql_of(edata);
	strip_row_contents(edata);
	ereport(LOG,
			(errmsg("dbsync: sync of table \"%s\" of server \"%s\" failed: %s",
					rec->table, cfg->server_name, edata->message),
			 edata->context ? errcontext_msg("%s", edata->context) : 0));
	catalog_save_error(cfg->server_name, cfg->serverid, rec->table,
					   cfg->target_schema, error_text(edata),
					   row_error_sample(edata));
	rec->mode = (char *) total->mode;
	progress_counts(&rec->rows_read, &rec->bytes_read);
	rec->cursor_from = total->cursor_from;
	run_record_error(rec, edata);
	history_record(rec);
	health_record_failure(rec, total->progressed, out->interval_secs);
	if (out->first_errcode == 0)
		out->first_errcode = edata->sqlerrcode;
}

/*
 * The catch side of a step that used the source: roll the subtransaction
 * back, drop the connection (its state is unknown), stop the run on a real
 * cancel, timeout or shutdown.  Returns the error otherwise.
 */
ErrorData *
run_step_failed(Subxact *sx, SourceConn **conn)
{
	ErrorData  *edata = subxact_abort(sx);

	if (*conn)
		source_discard(*conn);
	*conn = NULL;
	if (subxact_is_interrupt(edata))
	{
		history_note_interrupt(edata);
		ReThrowError(edata);
	}
	return edata;
}

/*
 * Sync one table in a subtransaction.  *conn may be replaced (a connection
 * whose state is unknown after an error is discarded; NULL means reconnect).
 */
bool
run_table_step(RunOutput *out, SourceConfig *cfg, SourceConn **conn,
			   RemoteTable *rt, SyncResult *total, RunRecord *rec)
{
	SyncResult	res = {0};
	int			attempt;

	PushActiveSnapshot(GetTransactionSnapshot());
	for (attempt = 0; attempt < 2; attempt++)
	{
		bool		retry = false;
		Subxact		sx;

		memset(&res, 0, sizeof(res));
		res.done = true;
		res.careful = total->careful;
		res.run_mode = total->mode;
		res.run_upserted = total->rows_upserted;
		res.run_deleted = total->rows_deleted;
		res.run_notes = total->run_notes;
		res.log_load = total->log_load;
		subxact_begin(&sx);
		PG_TRY();
		{
			/* what SPI allocates for this step goes with it (flat long runs) */
			SPI_connect();
			if (!try_lock_table(cfg->server_name, rt->name, false))
			{
				res.mode = NULL;
				res.status = "skipped";
				res.message = "another run is syncing this table";
				rec->status = "skipped";
				rec->error = res.message;
				history_record(rec);
			}
			else
			{
				if (*conn == NULL)
					*conn = source_acquire(cfg);
				sync_table(cfg, *conn, rt, out->commit_batches, &res);
				if (res.done)
					run_record_success(out, rec, total, &res);
				/*
				 * Selected and synced: no longer parked, in the same
				 * transaction as its rows (the unpark at registration skips a
				 * row another process held at that moment).
				 */
				if (table_selected(cfg, rt->name))
					catalog_unpark(cfg->server_name, list_make1(rt->name));
			}
			if (res.message)
				res.message = MemoryContextStrdup(sx.cxt, res.message);
			if (res.cursor_from)
				res.cursor_from = MemoryContextStrdup(sx.cxt, res.cursor_from);
			if (res.notes)
				res.notes = MemoryContextStrdup(sx.cxt, total->run_notes ?
												psprintf("%s; %s", total->run_notes, res.notes) :
												res.notes);
			SPI_finish();
			subxact_commit(&sx);
		}
		PG_CATCH();
		{
			/* a real cancel, timeout or shutdown stops the run, not one table */
			ErrorData  *edata = run_step_failed(&sx, conn);

			/* a value that cannot be converted: with skip, go row by row */
			if (cfg->on_row_error == ROW_ERROR_SKIP && !total->careful &&
				ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_DATA_EXCEPTION)
			{
				total->careful = true;
				retry = true;
			}
			else
			{
				run_record_failure(out, cfg, rec, total, edata);
				res.rows_upserted = 0;
				res.rows_deleted = 0;
				res.status = "error";
				res.done = true;
				res.message = error_text(edata);
			}
		}
		PG_END_TRY();
		if (!retry)
			break;
	}
	PopActiveSnapshot();
	total->rows_upserted += res.rows_upserted;
	total->rows_deleted += res.rows_deleted;
	if (total->mode == NULL)
	{
		total->mode = res.mode;
		total->cursor_from = res.cursor_from;
	}
	if (!res.done && res.notes)
		total->run_notes = res.notes;
	progress_mode(total->mode);
	progress_applied(res.rows_upserted + res.rows_deleted);
	total->status = res.status;
	total->message = res.message;
	if (res.done)
		emit(out, rt->name, total->mode, total->rows_upserted,
			 total->rows_deleted, rec->started_at, total->status, total->message);
	return res.done;
}

static void run_table_batches(RunOutput *out, SourceConfig *cfg,
							  SourceConn **conn, RemoteTable *rt,
							  SyncResult *total, RunRecord *rec,
							  Oid run_as, int sec);

/*
 * May this run sync the table?  Never while paused (dbsync_resume()); the
 * auto-sync also waits for its schedule or backoff, and passes over
 * disabled tables without a word.
 */
bool
table_may_run(RunOutput *out, SourceConfig *cfg, const char *table,
			  RunRecord *rec)
{
	char	   *why;
	bool		failing;

	run_record_init(out, cfg->serverid, cfg->server_name, table, rec);
	if (health_table_due_ext(cfg->server_name, table, out->scheduled, &why, &failing))
		return true;
	run_record_skip(out, rec, why);
	/* paused after failures in a row: still a failure to a scheduler */
	if (failing && !out->scheduled)
		count_failure(out, table);
	return false;
}

void
run_table_begin(RunOutput *out, SourceConfig *cfg, RunRecord *rec)
{
	history_open(rec);
	progress_begin(cfg->serverid, cfg->server_name, rec->table, out->trigger,
				   strcmp(out->trigger, "call") == 0);
}

/*
 * Sync one table; in a procedure, commit after every checkpoint of an
 * initial load so that a killed run resumes from there.
 */
static void
run_table(RunOutput *out, SourceConfig *cfg, SourceConn **conn, RemoteTable *rt,
		  Oid run_as, int sec)
{
	SyncResult	total = {0};
	RunRecord	rec;

	if (!out->commit_batches)
	{
		if (!table_may_run(out, cfg, rt->name, &rec))
			return;
		run_table_begin(out, cfg, &rec);
		(void) run_table_step(out, cfg, conn, rt, &total, &rec);
		progress_end();
		return;
	}

	/* commits in between would release a transaction lock: hold it */
	if (!try_lock_table(cfg->server_name, rt->name, true))
	{
		if (!out->scheduled)
		{
			run_record_init(out, cfg->serverid, cfg->server_name, rt->name, &rec);
			run_record_skip(out, &rec, "another run is syncing this table");
		}
		return;
	}
	PG_TRY();
	{
		if (table_may_run(out, cfg, rt->name, &rec))
		{
			run_table_begin(out, cfg, &rec);
			run_table_batches(out, cfg, conn, rt, &total, &rec, run_as, sec);
		}
	}
	PG_FINALLY();
	{
		progress_end();
		unlock_table_session(cfg->server_name, rt->name);
	}
	PG_END_TRY();
}

/* Commit what the run did so far (a procedure's or worker's run). */
void
run_commit(RunOutput *out, Oid run_as, int sec)
{
	Oid			save_userid;
	int			save_sec;

	progress_phase("committing");
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(run_as, sec);
	if (out->own_snapshot)
		PopActiveSnapshot();
	/* the commit ends the guard's GUC level: open a new one */
	SPI_commit();
	out->guard_nest = guard_begin();
	if (out->own_snapshot)
		PushActiveSnapshot(GetTransactionSnapshot());
	SetUserIdAndSecContext(save_userid, save_sec);
	CHECK_FOR_INTERRUPTS();
}

/* The steps of one table's run, with a commit after each checkpoint. */
static void
run_table_batches(RunOutput *out, SourceConfig *cfg, SourceConn **conn,
				  RemoteTable *rt, SyncResult *total, RunRecord *rec,
				  Oid run_as, int sec)
{
	bool		done;

	/* a commit after every checkpoint, and after the table */
	do
	{
		done = run_table_step(out, cfg, conn, rt, total, rec);
		run_commit(out, run_as, sec);
		/* a later failure of this run does not extend a failure streak */
		total->progressed = !done;
	} while (!done);
}

/* Record a server-level failure (connect, discover) for its tables. */
void
record_server_error(RunOutput *out, SourceConfig *cfg, ForeignServer *server,
					const char *only_table, ErrorData *edata,
					TimestampTz started)
{
	char	   *msg = error_text(edata);
	List	   *known = NIL;
	ListCell   *lc;
	RunRecord	rec;
	bool		recorded = false;

	if (out->first_errcode == 0)
		out->first_errcode = edata->sqlerrcode;
	if (cfg)
	{
		catalog_forget_stale(server->servername, cfg->serverid);
		known = catalog_known_tables(server->servername, false);
	}
	foreach(lc, known)
	{
		char	   *why;

		if (only_table && strcmp(only_table, lfirst(lc)) != 0)
			continue;
		/*
		 * A paused table, or one the auto-sync was not due to try, did not
		 * fail; one another run holds is that run's to record (never wait
		 * for it).
		 */
		if (!health_table_due(server->servername, lfirst(lc), out->scheduled, &why) ||
			!try_lock_table(server->servername, lfirst(lc), false))
			continue;
		catalog_save_error(server->servername, cfg->serverid, lfirst(lc),
						   cfg->target_schema, msg, NULL);
		run_record_init(out, server->serverid, server->servername, lfirst(lc), &rec);
		rec.started_at = started;
		rec.remote_sql = remote_sql_of(edata);
		run_record_error(&rec, edata);
		history_record(&rec);
		health_record_failure(&rec, false, out->interval_secs);
		recorded = true;
	}
	if (!recorded)
	{
		/* nothing synced yet: the failure is the server's */
		run_record_init(out, server->serverid, server->servername, only_table, &rec);
		rec.started_at = started;
		rec.remote_sql = remote_sql_of(edata);
		run_record_error(&rec, edata);
		history_record(&rec);
	}
	emit(out, only_table, NULL, 0, 0, started, "error", msg);
}

/*
 * Connect and discover as the owner; a failure is recorded for the server.
 * A connection kept from an earlier run that turns out broken here (a
 * load balancer dropped it while idle) is replaced by a new one, once, as
 * postgres_fdw does: only a failure of a new connection counts.
 */
static bool
run_server_connect(RunOutput *out, ForeignServer *server, const char *only_table,
				   SourceConfig **cfg_out, SourceConn **conn, List **tables)
{
	TimestampTz started = GetCurrentTimestamp();
	SourceConfig *volatile cfg = NULL;
	volatile int attempt;

	for (attempt = 0;; attempt++)
	{
		Subxact		sx;
		volatile bool reused = false;
		volatile bool retry = false;

		subxact_begin(&sx);
		PG_TRY();
		{
			GuardUser	as_owner;

			cfg = source_config_get(server->serverid);
			out->interval_secs = cfg->sync_interval ?
				(int) Min(interval_usecs(cfg->sync_interval) / USECS_PER_SEC, INT_MAX) : 0;
			guard_enter_owner(cfg->owner, &as_owner);
			*conn = source_acquire(cfg);
			reused = (*conn)->reused;
			progress_phase("discovering");
			*tables = source_discover(*conn);
			guard_leave(&as_owner);
			subxact_commit(&sx);
		}
		PG_CATCH();
		{
			ErrorData  *edata = run_step_failed(&sx, conn);

			if (reused && attempt == 0 &&
				(ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_CONNECTION_EXCEPTION ||
				 edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN))
			{
				ereport(LOG,
						(errmsg("dbsync: the kept connection to source \"%s\" failed, connecting again: %s",
								server->servername, edata->message)));
				FreeErrorData(edata);
				retry = true;
			}
			else
			{
				record_server_error(out, cfg, server, only_table, edata, started);
				return false;
			}
		}
		PG_END_TRY();
		if (!retry)
			break;
	}
	*cfg_out = cfg;
	return true;
}

RemoteTable *
find_remote_table(List *tables, const char *name)
{
	ListCell   *lc;

	foreach(lc, tables)
	{
		if (strcmp(((RemoteTable *) lfirst(lc))->name, name) == 0)
			return lfirst(lc);
	}
	return NULL;
}

/*
 * Known tables this run does not sync: gone at the source (their data is
 * kept, and said so), or no longer selected.  The auto-sync stops counting
 * them as due until they come back.
 */
static bool
run_server_unsynced(RunOutput *out, SourceConfig *cfg, List *tables,
					const char *only_table)
{
	List	   *known = catalog_known_tables(cfg->server_name, false);
	List	   *missing = NIL;
	List	   *excluded = NIL;
	ListCell   *lc;
	bool		found = false;

	foreach(lc, known)
	{
		const char *name = lfirst(lc);

		if (only_table && strcmp(only_table, name) != 0)
			continue;
		if (find_remote_table(tables, name) == NULL)
		{
			missing = lappend(missing, (char *) name);
			if (!catalog_note_missing(cfg->server_name, name))
				continue;		/* never synced: nothing kept */
			found = true;
			emit(out, name, NULL, 0, 0, GetCurrentTimestamp(), "skipped",
				 "table no longer exists at the source; local data kept");
		}
		else if (!only_table && !table_selected(cfg, name))
			excluded = lappend(excluded, (char *) name);
	}
	health_park(cfg->server_name, missing, false);
	health_park(cfg->server_name, excluded, true);
	return found;
}

/* One table asked for by name: a pause is told without connecting. */
static bool
only_table_may_run(RunOutput *out, ForeignServer *server, const char *table)
{
	RunRecord	rec;
	char	   *why;
	bool		failing;

	if (health_table_due_ext(server->servername, table, false, &why, &failing))
		return true;
	run_record_init(out, server->serverid, server->servername, table, &rec);
	run_record_skip(out, &rec, why);
	if (failing)
		count_failure(out, table);
	return false;
}

/*
 * The tables this run syncs are due again if they were parked; in a
 * procedure or worker run, new ones are known (to dbsync.status and the
 * launcher) from the start, committed at once.  A new table another run is
 * syncing is left to that run: registering never waits.
 */
static void
run_server_register(RunOutput *out, SourceConfig *cfg, List *names,
					Oid run_as, int sec)
{
	List	   *known;
	List	   *fresh = NIL;
	ListCell   *lc;

	catalog_unpark(cfg->server_name, names);
	if (!out->commit_batches)
		return;
	known = catalog_known_tables(cfg->server_name, false);
	foreach(lc, names)
	{
		if (!name_in_list(known, lfirst(lc)) &&
			try_lock_table(cfg->server_name, lfirst(lc), false))
			fresh = lappend(fresh, lfirst(lc));
	}
	if (catalog_register(cfg->server_name, cfg->serverid, cfg->target_schema, fresh))
		run_commit(out, run_as, sec);
}

static void
run_server(RunOutput *out, const char *server_name, const char *only_table)
{
	SourceConfig *cfg = NULL;
	SourceConn *conn = NULL;
	List	   *tables = NIL;
	List	   *names = NIL;
	ListCell   *lc;
	GuardUser	as_owner;
	bool		found = false;
	ForeignServer *server = dbsync_server_by_name(server_name);

	out->server = server_name;
	check_server_usage(server);
	/* the state of a dropped server of the same name is not this one's */
	catalog_forget_stale(server->servername, server->serverid);
	if (only_table && !only_table_may_run(out, server, only_table))
		return;
	progress_begin(server->serverid, server->servername, NULL, out->trigger, false);
	if (!run_server_connect(out, server, only_table, &cfg, &conn, &tables))
	{
		progress_end();
		return;
	}

	{
		RunRecord	rec;

		run_record_init(out, server->serverid, server->servername, NULL, &rec);
		history_server_recovered(&rec);
	}
	guard_enter_owner(cfg->owner, &as_owner);
	catalog_forget_stale(cfg->server_name, cfg->serverid);
	foreach(lc, tables)
	{
		RemoteTable *rt = lfirst(lc);

		if (only_table ? strcmp(only_table, rt->name) == 0 : table_selected(cfg, rt->name))
			names = lappend(names, rt->name);
	}
	names = citus_order_tables(cfg, names);
	run_server_register(out, cfg, names, as_owner.userid, as_owner.sec);
	if (cfg->capture_log && !only_table)
	{
		found = names != NIL;
		capture_server(out, server, cfg, &conn, tables, names, as_owner.userid,
					   as_owner.sec);
	}
	else if (cfg->capture_log)
	{
		found = true;
		emit(out, only_table, NULL, 0, 0, GetCurrentTimestamp(), "skipped",
			 psprintf("server \"%s\" captures its tables' changes from the source's log: run dbsync_run(%s) for all of them",
					  server_name, quote_literal_cstr(server_name)));
	}
	else
	{
		capture_forget(out, server, cfg, &conn);
		foreach(lc, names)
		{
			found = true;
			run_table(out, cfg, &conn, find_remote_table(tables, lfirst(lc)),
					  as_owner.userid, as_owner.sec);
		}
	}
	if (run_server_unsynced(out, cfg, tables, only_table))
		found = true;
	if (only_table && !found)
		emit(out, only_table, NULL, 0, 0, GetCurrentTimestamp(), "error",
			 psprintf("table \"%s\" not found in schema \"%s\" of the source\nHINT: Check the name (it is case sensitive) with dbsync_discover(%s).",
					  only_table, cfg->schema, quote_literal_cstr(server_name)));
	guard_leave(&as_owner);
	progress_end();
	source_release(conn);
}

/* Leftovers of interrupted runs become history; old history goes. */
static void
run_housekeeping(void)
{
	history_recover();
	if (progress_claim_prune(3600))
		history_prune();
}

Datum
dbsync_run(PG_FUNCTION_ARGS)
{
	RunOutput	out = {0};
	List	   *servers;
	ListCell   *lc;
	const char *only_table = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));

	guard_check_not_active();
	out.guard_nest = guard_begin();
	out.trigger = "sql";
	InitMaterializedSRF(fcinfo, 0);
	out.rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	if (!PG_ARGISNULL(0))
		servers = list_make1(pstrdup(NameStr(*PG_GETARG_NAME(0))));
	else
	{
		if (only_table)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a table name needs a server name"),
					 errhint("Call dbsync_run('server', 'table').")));
		servers = all_servers();
	}

	SPI_connect();
	run_housekeeping();
	foreach(lc, servers)
		run_server(&out, lfirst(lc), only_table);
	SPI_finish();
	guard_end(out.guard_nest);
	return (Datum) 0;
}

/*
 * CALL dbsync_sync(server, table): like dbsync_run(), but commits after
 * every checkpoint of an initial load, so a large first load that is
 * interrupted resumes from its last checkpoint.  Reports with NOTICEs.
 */
Datum
dbsync_sync(PG_FUNCTION_ARGS)
{
	RunOutput	out = {0};
	List	   *servers;
	ListCell   *lc;
	const char *only_table = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	bool		nonatomic = fcinfo->context && IsA(fcinfo->context, CallContext) &&
		!castNode(CallContext, fcinfo->context)->atomic;

	if (!nonatomic)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_TERMINATION),
				 errmsg("dbsync_sync() cannot commit here"),
				 errhint("Run CALL dbsync_sync(...) outside a transaction block, or use SELECT dbsync_run(...), which commits once at the end.")));
	out.commit_batches = true;
	out.trigger = "call";
	guard_check_not_active();
	out.guard_nest = guard_begin();
	if (!PG_ARGISNULL(0))
		servers = list_make1(pstrdup(NameStr(*PG_GETARG_NAME(0))));
	else
		servers = all_servers();

	out.cxt = CurrentMemoryContext;
	SPI_connect_ext(SPI_OPT_NONATOMIC);
	run_housekeeping();
	foreach(lc, servers)
		run_server(&out, lfirst(lc), only_table);
	/* what succeeded is committed, failures recorded; a scheduler must still see them */
	if (out.nfailed > 0)
	{
		SPI_commit();
		out.guard_nest = guard_begin();
	}
	SPI_finish();
	guard_end(out.guard_nest);
	if (out.nfailed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("dbsync_sync: %d table(s) failed: %s", out.nfailed, out.failed->data),
				 out.first_errcode ?
				 errdetail("The other tables were synced and committed. The first failure had SQLSTATE %s.",
						   unpack_sql_state(out.first_errcode)) :
				 errdetail("The other tables were synced and committed."),
				 errhint("See last_error in dbsync.status, or error and error_hint in dbsync.runs, for each failed table.")));
	PG_RETURN_VOID();
}

/*
 * Background worker entry: sync one server, committing after every
 * checkpoint.  The caller has started a transaction.  True when a log
 * capture pass ended well and the stream should go on at once.
 */
bool
dbsync_sync_server_batched(Oid serverid)
{
	RunOutput	out = {0};
	ForeignServer *server;

	out.commit_batches = true;
	out.own_snapshot = true;
	out.trigger = "worker";
	out.scheduled = true;
	guard_check_not_active();
	out.guard_nest = guard_begin();
	SPI_connect_ext(SPI_OPT_NONATOMIC);
	PushActiveSnapshot(GetTransactionSnapshot());
	run_housekeeping();
	server = GetForeignServerExtended(serverid, FSV_MISSING_OK);
	if (server != NULL)
		run_server(&out, pstrdup(server->servername), NULL);
	PopActiveSnapshot();
	SPI_finish();
	guard_end(out.guard_nest);
	return out.capture_again;
}

/*
 * What the next run will do with a table, as sync_table() will decide it:
 * excluded, disabled, paused, blocked (a table dbsync did not create holds
 * the target's name), initial (no state, or a new target: the old one was
 * dropped or target_schema changed), full (no cursor, or the state was made
 * with another key or cursor), resume, incremental.
 */
static const char *
predicted_mode(SourceConfig *cfg, RemoteTable *rt, TableState *st, List *pk,
			   const char *cursor, Oid target)
{
	char	   *why;

	if (!table_selected(cfg, rt->name))
		return "excluded";
	if (!st->enabled)
		return "disabled";
	if (!health_table_due(cfg->server_name, rt->name, false, &why))
		return "paused";
	if (OidIsValid(target) && target != st->target_relid)
		return "blocked";
	if (pk == NIL || cursor == NULL)
		return "full";
	if (!OidIsValid(target))
		return "initial";		/* created: no state holds for a new table */
	if (st->cursor_value == NULL && st->resume_key == NIL)
		return "initial";
	if ((st->last_pk != NIL && !same_names(st->last_pk, pk)) ||
		(st->last_cursor && strcmp(st->last_cursor, cursor) != 0))
		return "full";
	return st->resume_key != NIL ? "resume" : "incremental";
}

/* What a run would do with each table of a server; changes nothing. */
Datum
dbsync_discover(PG_FUNCTION_ARGS)
{
	const char *server_name = NameStr(*PG_GETARG_NAME(0));
	ForeignServer *server = dbsync_server_by_name(server_name);
	ReturnSetInfo *rsinfo;
	SourceConfig *cfg;
	SourceConn *conn;
	List	   *tables;
	ListCell   *lc;
	GuardUser	as_owner;
	int			nest;

	guard_check_not_active();
	nest = guard_begin();
	check_server_usage(server);
	InitMaterializedSRF(fcinfo, 0);
	rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	cfg = source_config_get(server->serverid);
	guard_enter_owner(cfg->owner, &as_owner);
	conn = source_acquire(cfg);
	tables = source_discover(conn);
	guard_leave(&as_owner);

	SPI_connect();
	catalog_forget_stale(cfg->server_name, cfg->serverid);
	foreach(lc, tables)
	{
		RemoteTable *rt = lfirst(lc);
		TableState *st;
		Datum		values[9];
		bool		nulls[9] = {0};
		Datum	   *names;
		Datum	   *rtypes;
		Datum	   *ltypes;
		int			n = list_length(rt->columns);
		int			i = 0;
		ListCell   *lc2;
		List	   *pk;
		const char *cursor;
		Oid			target;

		st = catalog_load(cfg->server_name, rt->name);
		/* left out by tables/exclude_tables: shown only if dbsync knows it */
		if (!table_selected(cfg, rt->name) && !st->exists)
			continue;
		typemap_resolve(rt);
		names = palloc(sizeof(Datum) * n);
		rtypes = palloc(sizeof(Datum) * n);
		ltypes = palloc(sizeof(Datum) * n);
		foreach(lc2, rt->columns)
		{
			RemoteColumn *col = lfirst(lc2);

			names[i] = CStringGetTextDatum(col->name);
			rtypes[i] = CStringGetTextDatum(col->remote_type);
			ltypes[i] = CStringGetTextDatum(col->local_type);
			i++;
		}
		/* overrides are shown as set; a run reports them if they are wrong */
		pk = st->pk_override ? st->pk_override : rt->primary_key;
		cursor = pk == NIL ? NULL : st->cursor_override ? st->cursor_override :
			pick_cursor(cfg, rt, st);
		target = get_relname_relid(rt->name, get_namespace_oid(cfg->target_schema, true));

		values[0] = CStringGetTextDatum(rt->name);
		if (OidIsValid(target))
			values[1] = ObjectIdGetDatum(target);
		else
			nulls[1] = true;
		values[2] = PointerGetDatum(construct_array(names, n, TEXTOID, -1, false, TYPALIGN_INT));
		values[3] = PointerGetDatum(construct_array(rtypes, n, TEXTOID, -1, false, TYPALIGN_INT));
		values[4] = PointerGetDatum(construct_array(ltypes, n, TEXTOID, -1, false, TYPALIGN_INT));
		if (pk != NIL)
		{
			Datum	   *k = palloc(sizeof(Datum) * list_length(pk));

			i = 0;
			foreach(lc2, pk)
				k[i++] = CStringGetTextDatum(lfirst(lc2));
			values[5] = PointerGetDatum(construct_array(k, i, TEXTOID, -1, false, TYPALIGN_INT));
		}
		else
			nulls[5] = true;
		if (cursor)
			values[6] = CStringGetTextDatum(cursor);
		else
			nulls[6] = true;
		values[7] = CStringGetTextDatum(predicted_mode(cfg, rt, st, pk, cursor, target));
		values[8] = CStringGetTextDatum(conn->flavor ? conn->flavor : "");
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	source_release(conn);
	guard_end(nest);
	return (Datum) 0;
}
