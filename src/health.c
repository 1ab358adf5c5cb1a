/*-------------------------------------------------------------------------
 * health.c
 *	  A table's health in dbsync.tables: failure streaks, backoff, pauses,
 *	  totals, and NOTIFY dbsync on every health transition.
 *
 * Every error is classified (transient, config, data, internal).  A failed
 * table is retried by the auto-sync after an exponential backoff with
 * jitter, between dbsync.retry_min and dbsync.retry_max (transient errors
 * start at retry_min, others four times higher), never earlier than its
 * sync_interval.  A failure in a run that committed progress (a checkpoint
 * of an initial load) starts a new streak.  A table pauses only when its
 * streak reaches dbsync.pause_after_failures failures AND has lasted
 * dbsync.pause_after: one bad night does not pause a new table.  Manual
 * runs ignore the backoff, not a pause; dbsync_resume() clears both.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "dbsync.h"

PG_FUNCTION_INFO_V1(dbsync_pause);
PG_FUNCTION_INFO_V1(dbsync_resume);

int			dbsync_retry_min = 60;	/* seconds */
int			dbsync_retry_max = 3600;
int			dbsync_pause_after_failures = 20;
int			dbsync_pause_after = 3 * 24 * 3600;

#define TABLE_WHERE "WHERE server OPERATOR(pg_catalog.=) $1 AND table_name OPERATOR(pg_catalog.=) $2"

/* What kind of failure an SQLSTATE is; transient ones are worth a quick retry. */
const char *
health_error_class(int sqlerrcode)
{
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_CONNECTION_EXCEPTION:	/* 08 */
		case ERRCODE_TRANSACTION_ROLLBACK:	/* 40: serialization, deadlock */
		case ERRCODE_INSUFFICIENT_RESOURCES:	/* 53 */
		case ERRCODE_OPERATOR_INTERVENTION: /* 57: shutdown, canceled at the source */
		case ERRCODE_SYSTEM_ERROR:	/* 58 */
			return "transient";
		case ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION:	/* 28 */
		case ERRCODE_INVALID_CATALOG_NAME:	/* 3D */
		case ERRCODE_INVALID_SCHEMA_NAME:	/* 3F */
		case ERRCODE_SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION: /* 42 */
		case ERRCODE_FDW_ERROR: /* HV */
		case ERRCODE_FEATURE_NOT_SUPPORTED: /* 0A */
		case ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE:	/* 55 */
			if (sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE)
				return "transient";
			return "config";
		case ERRCODE_DATA_EXCEPTION:	/* 22 */
		case ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION:	/* 23 */
			return "data";
		default:
			break;
	}
	if (sqlerrcode == ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION)
		return "transient";
	return "internal";
}

/* NOTIFY dbsync, '{...}': commits (is sent) with the state it reports. */
static void
notify_transition(const char *server, const char *table, const char *from,
				  const char *to, int failures, const char *sqlstate,
				  const char *error_class)
{
	StringInfoData buf;
	Oid			types[1] = {TEXTOID};
	Datum		v[1];

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"server\": ");
	escape_json(&buf, server);
	appendStringInfoString(&buf, ", \"table_name\": ");
	escape_json(&buf, table);
	appendStringInfo(&buf, ", \"health\": \"%s\", \"previous\": \"%s\", \"consecutive_failures\": %d",
					 to, from, failures);
	appendStringInfoString(&buf, ", \"sqlstate\": ");
	if (sqlstate)
		escape_json(&buf, sqlstate);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfoString(&buf, ", \"error_class\": ");
	if (error_class)
		escape_json(&buf, error_class);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfo(&buf, ", \"at\": \"%s\"}", timestamptz_to_str(GetCurrentTimestamp()));
	/* a payload has at most 8000 bytes: long names are cut, never an error */
	if (buf.len > 7900)
		ereport(WARNING,
				(errmsg("dbsync: health of table \"%s\" is now %s (names too long to notify)",
						table, to)));
	else
	{
		v[0] = CStringGetTextDatum(buf.data);
		catalog_exec("SELECT pg_catalog.pg_notify('dbsync', $1)", 1, types, v, NULL,
					 SPI_OK_SELECT);
	}
}

/* The auto-sync's next try after a success: the schedule, if any. */
static char *
schedule_next(int interval_secs)
{
	return interval_secs > 0 ? psprintf("%d", interval_secs) : NULL;
}

/*
 * A table ended well: its streak ends, the next auto-sync is due after the
 * server's sync_interval, totals grow.
 */
void
health_record_success(RunRecord *r, int64 step_upserted, int64 step_deleted,
					  TimestampTz freshness, int interval_secs)
{
	int64		read;
	int64		bytes;

	Oid			types[10] = {TEXTOID, TEXTOID, TIMESTAMPTZOID, TEXTOID, INT8OID, INT8OID,
	INT8OID, INT8OID, INT8OID, TIMESTAMPTZOID};
	Datum		v[10];
	char		n[10];
	char	   *before;

	memset(n, ' ', sizeof(n));
	v[0] = CStringGetTextDatum(r->server);
	v[1] = CStringGetTextDatum(r->table);
	v[2] = TimestampTzGetDatum(freshness);
	v[3] = text_param(schedule_next(interval_secs), &n[3]);
	/* earlier checkpoints of this run were counted when they committed */
	progress_take_uncredited(&read, &bytes);
	v[4] = Int64GetDatum(read);
	v[5] = Int64GetDatum(step_upserted);
	v[6] = Int64GetDatum(step_deleted);
	v[7] = Int64GetDatum(r->rows_skipped);
	v[8] = Int64GetDatum(bytes);
	v[9] = TimestampTzGetDatum(r->started_at);
	catalog_exec("WITH old AS (SELECT health_state FROM dbsync.tables " TABLE_WHERE ") "
				 "UPDATE dbsync.tables SET last_attempt_at = pg_catalog.now(), freshness_at = $3, "
				 "consecutive_failures = 0, first_failure_at = NULL, last_sqlstate = NULL, "
				 "last_remote_sql = NULL, "
				 "last_error_class = NULL, "
				 "next_attempt_at = pg_catalog.now() OPERATOR(pg_catalog.+) "
				 "  pg_catalog.make_interval(secs => $4::pg_catalog.float8), "
				 "health_state = CASE WHEN paused_at IS NULL THEN 'ok' ELSE health_state END, "
				 "runs_total = runs_total OPERATOR(pg_catalog.+) 1, "
				 "rows_read_total = rows_read_total OPERATOR(pg_catalog.+) $5, "
				 "rows_upserted_total = rows_upserted_total OPERATOR(pg_catalog.+) $6, "
				 "rows_deleted_total = rows_deleted_total OPERATOR(pg_catalog.+) $7, "
				 "rows_skipped_total = rows_skipped_total OPERATOR(pg_catalog.+) $8, "
				 "bytes_read_total = bytes_read_total OPERATOR(pg_catalog.+) $9, "
				 "last_duration = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) $10 "
				 TABLE_WHERE " RETURNING (SELECT health_state FROM old), health_state",
				 10, types, v, n, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed != 1)
		return;
	before = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (before && strcmp(before, "ok") != 0 &&
		strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2), "ok") == 0)
		notify_transition(r->server, r->table, before, "ok", 0, NULL, NULL);
}

/* Seconds until the next try after the n-th failure in a row. */
static double
backoff_seconds(int n, const char *error_class, int interval_secs)
{
	double		base = dbsync_retry_min * (strcmp(error_class, "transient") == 0 ? 1 : 4);
	double		wait = Min((double) dbsync_retry_max, base * pow(2.0, Min(n - 1, 30)));

	wait *= 0.8 + 0.4 * pg_prng_double(&pg_global_prng_state);
	return Max(wait, (double) interval_secs);
}

/*
 * A table failed (its row exists, see catalog_save_error): extend the
 * streak unless the run committed progress, back off, maybe pause.
 */
void
health_record_failure(RunRecord *r, bool progressed, int interval_secs)
{
	Oid			types[10] = {TEXTOID, TEXTOID, INT4OID, BOOLOID, FLOAT8OID, TEXTOID, TEXTOID,
	INT8OID, TIMESTAMPTZOID, TEXTOID};
	Datum		v[10];
	char		n[10];
	int			failures;
	bool		isnull;
	bool		streak_old = false;
	char	   *before;
	bool		pause;

	memset(n, ' ', sizeof(n));
	v[0] = CStringGetTextDatum(r->server);
	v[1] = CStringGetTextDatum(r->table);
	catalog_exec("SELECT consecutive_failures, health_state, "
				 "first_failure_at OPERATOR(pg_catalog.<=) (pg_catalog.now() "
				 "  OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $3)) "
				 "FROM dbsync.tables " TABLE_WHERE,
				 3, (Oid[]) {TEXTOID, TEXTOID, INT4OID},
				 (Datum[]) {v[0], v[1], Int32GetDatum(dbsync_pause_after)}, NULL,
				 SPI_OK_SELECT);
	if (SPI_processed != 1)
		return;
	failures = progressed ? 1 :
		DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
									&isnull)) + 1;
	before = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	if (!progressed && failures > 1)
		streak_old = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
												SPI_tuptable->tupdesc, 3, &isnull)) && !isnull;
	pause = failures >= dbsync_pause_after_failures &&
		(streak_old || (failures == 1 && dbsync_pause_after == 0));
	v[2] = Int32GetDatum(failures);
	v[3] = BoolGetDatum(pause);
	v[4] = Float8GetDatum(backoff_seconds(failures, r->error_class, interval_secs));
	v[5] = text_param(r->sqlstate, &n[5]);
	v[6] = CStringGetTextDatum(r->error_class);
	{
		int64		read;
		int64		bytes;

		progress_take_uncredited(&read, &bytes);
		v[7] = Int64GetDatum(read);
	}
	v[8] = TimestampTzGetDatum(r->started_at);
	v[9] = text_param(r->remote_sql, &n[9]);
	catalog_exec("UPDATE dbsync.tables SET last_attempt_at = pg_catalog.now(), "
				 "consecutive_failures = $3, last_remote_sql = $10, "
				 "first_failure_at = CASE WHEN $3 OPERATOR(pg_catalog.=) 1 THEN pg_catalog.now() "
				 "  ELSE COALESCE(first_failure_at, pg_catalog.now()) END, "
				 "next_attempt_at = pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $5), "
				 "paused_at = CASE WHEN $4 THEN COALESCE(paused_at, pg_catalog.now()) ELSE paused_at END, "
				 "paused_reason = CASE WHEN $4 AND paused_at IS NULL THEN pg_catalog.format("
				 "  '%s failures in a row since %s (dbsync.pause_after_failures, dbsync.pause_after); last: %s', "
				 "  $3, first_failure_at, $6) ELSE paused_reason END, "
				 "health_state = CASE WHEN $4 OR paused_at IS NOT NULL THEN 'paused' ELSE 'failing' END, "
				 "last_sqlstate = $6, last_error_class = $7, "
				 "runs_total = runs_total OPERATOR(pg_catalog.+) 1, "
				 "failures_total = failures_total OPERATOR(pg_catalog.+) 1, "
				 "rows_read_total = rows_read_total OPERATOR(pg_catalog.+) $8, "
				 "last_duration = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) $9 "
				 TABLE_WHERE " RETURNING health_state",
				 10, types, v, n, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed == 1)
	{
		char	   *after = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (strcmp(before, after) != 0)
			notify_transition(r->server, r->table, before, after, failures,
							  r->sqlstate, r->error_class);
	}
}

/*
 * May this run sync the table now?  Paused tables are never synced (until
 * dbsync_resume()); the auto-sync also waits for next_attempt_at (schedule
 * or backoff).  *why says why not.  A table without a row is due.
 */
bool
health_table_due(const char *server, const char *table, bool scheduled,
				 char **why)
{
	return health_table_due_ext(server, table, scheduled, why, NULL);
}

/* The same; *failing: it is paused after failures in a row (NULL: unused). */
bool
health_table_due_ext(const char *server, const char *table, bool scheduled,
					 char **why, bool *failing)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		v[2];
	bool		isnull;
	TupleDesc	desc;
	HeapTuple	tup;

	v[0] = CStringGetTextDatum(server);
	v[1] = CStringGetTextDatum(table);
	catalog_exec("SELECT paused_at IS NOT NULL, pg_catalog.format('paused since %s: %s', "
				 "paused_at, COALESCE(paused_reason, 'dbsync_pause()')), "
				 "COALESCE(next_attempt_at OPERATOR(pg_catalog.>) pg_catalog.now(), false), "
				 "NOT enabled, consecutive_failures OPERATOR(pg_catalog.>) 0 "
				 "FROM dbsync.tables " TABLE_WHERE,
				 2, types, v, NULL, SPI_OK_SELECT);
	*why = NULL;
	if (failing)
		*failing = false;
	if (SPI_processed != 1)
		return true;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	if (DatumGetBool(SPI_getbinval(tup, desc, 1, &isnull)))
	{
		*why = psprintf("%s; dbsync_resume(%s, %s) resumes it",
						SPI_getvalue(tup, desc, 2), quote_literal_cstr(server),
						quote_literal_cstr(table));
		if (failing)
			*failing = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
		return false;
	}
	if (scheduled && (DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull)) ||
					  DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull))))
	{
		*why = "not due";
		return false;
	}
	return true;
}

/* Tables the auto-sync need not count as due (excluded, gone at the source). */
void
health_park(const char *server, List *tables, bool excluded)
{
	Oid			types[3] = {TEXTOID, TEXTARRAYOID, BOOLOID};
	Datum		v[3];

	if (tables == NIL)
		return;
	v[0] = CStringGetTextDatum(server);
	v[1] = list_to_text_array(tables);
	v[2] = BoolGetDatum(excluded);
	/* a row another run holds is left alone (never wait for it) */
	catalog_exec("UPDATE dbsync.tables SET next_attempt_at = 'infinity', "
				 "excluded_since = CASE WHEN $3 THEN COALESCE(excluded_since, pg_catalog.now()) END "
				 "WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT ctid FROM dbsync.tables "
				 "WHERE server OPERATOR(pg_catalog.=) $1 AND table_name OPERATOR(pg_catalog.=) ANY ($2) "
				 "AND (next_attempt_at IS DISTINCT FROM 'infinity' "
				 "  OR (excluded_since IS NULL) IS DISTINCT FROM NOT $3) "
				 "FOR UPDATE SKIP LOCKED))",
				 3, types, v, NULL, SPI_OK_UPDATE);
}

/* Pause or resume one table, or (table NULL) every known table of a server. */
static Datum
pause_or_resume(FunctionCallInfo fcinfo, bool pause)
{
	ForeignServer *server;
	Oid			types[4] = {TEXTOID, TEXTOID, BOOLOID, TEXTOID};
	Datum		v[4];
	char		n[4] = {' ', ' ', ' ', ' '};
	const char *table = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	const char *reason = pause && !PG_ARGISNULL(2) ? text_to_cstring(PG_GETARG_TEXT_PP(2)) : NULL;
	int			nest;
	uint64		i;
	uint64		count;
	SPITupleTable *tt;
	int			known;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("server must not be NULL"),
				 errhint("Name a dbsync server, e.g. %s('iot').", pause ? "dbsync_pause" : "dbsync_resume")));
	guard_check_not_active();
	nest = guard_begin();
	server = dbsync_server_by_name(NameStr(*PG_GETARG_NAME(0)));
	check_server_owner(server);
	v[0] = CStringGetTextDatum(server->servername);
	v[1] = text_param(table, &n[1]);
	v[2] = BoolGetDatum(pause);
	v[3] = CStringGetTextDatum(reason ? psprintf("%s (by %s)", reason, GetUserNameFromId(GetUserId(), false)) :
							   psprintf("dbsync_pause() by %s", GetUserNameFromId(GetUserId(), false)));
	SPI_connect();
	/* a row a run holds is not waited for (it is said below) */
	catalog_exec("WITH old AS (SELECT table_name, health_state FROM dbsync.tables "
				 "  WHERE server OPERATOR(pg_catalog.=) $1 "
				 "  AND ($2::pg_catalog.text IS NULL OR table_name OPERATOR(pg_catalog.=) $2) "
				 "  FOR UPDATE SKIP LOCKED) "
				 "UPDATE dbsync.tables t SET "
				 "paused_at = CASE WHEN $3 THEN COALESCE(t.paused_at, pg_catalog.now()) END, "
				 "paused_reason = CASE WHEN $3 THEN COALESCE(t.paused_reason, $4) END, "
				 /* a failing table stays failing until its next success */
				 "health_state = CASE WHEN $3 THEN 'paused' "
				 "  WHEN t.consecutive_failures OPERATOR(pg_catalog.>) 0 "
				 "    OR t.last_status OPERATOR(pg_catalog.=) 'error' THEN 'failing' ELSE 'ok' END, "
				 "consecutive_failures = CASE WHEN $3 THEN t.consecutive_failures ELSE 0 END, "
				 "first_failure_at = CASE WHEN $3 THEN t.first_failure_at END, "
				 "next_attempt_at = CASE WHEN $3 THEN t.next_attempt_at END "
				 "FROM old WHERE t.server OPERATOR(pg_catalog.=) $1 "
				 "AND t.table_name OPERATOR(pg_catalog.=) old.table_name "
				 "RETURNING t.table_name, old.health_state, t.health_state, t.consecutive_failures",
				 4, types, v, n, SPI_OK_UPDATE_RETURNING);
	count = SPI_processed;
	tt = SPI_tuptable;
	catalog_exec("SELECT pg_catalog.count(*) FROM dbsync.tables WHERE server OPERATOR(pg_catalog.=) $1 "
				 "AND ($2::pg_catalog.text IS NULL OR table_name OPERATOR(pg_catalog.=) $2)",
				 2, types, v, n, SPI_OK_SELECT);
	known = atoi(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
	if (known > (int) count)
		ereport(WARNING,
				(errmsg("%d table(s) of server \"%s\" are being synced right now and were not %s",
						known - (int) count, server->servername, pause ? "paused" : "resumed"),
				 errhint("Run %s again once that run has ended (dbsync.progress shows it).",
						 pause ? "dbsync_pause" : "dbsync_resume")));
	if (known == 0 && table)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("table \"%s\" of server \"%s\" has never been synced", table,
						server->servername),
				 errhint("Run dbsync_run(%s, %s) once, or check the name with dbsync_discover(%s).",
						 quote_literal_cstr(server->servername), quote_literal_cstr(table),
						 quote_literal_cstr(server->servername))));
	{
		for (i = 0; i < count; i++)
		{
			char	   *name = SPI_getvalue(tt->vals[i], tt->tupdesc, 1);
			char	   *from = SPI_getvalue(tt->vals[i], tt->tupdesc, 2);
			char	   *to = SPI_getvalue(tt->vals[i], tt->tupdesc, 3);

			if (strcmp(from, to) != 0)
				notify_transition(server->servername, name, from, to,
								  atoi(SPI_getvalue(tt->vals[i], tt->tupdesc, 4)),
								  NULL, NULL);
		}
		SPI_finish();
		guard_end(nest);
		PG_RETURN_INT64((int64) count);
	}
}

Datum
dbsync_pause(PG_FUNCTION_ARGS)
{
	return pause_or_resume(fcinfo, true);
}

Datum
dbsync_resume(PG_FUNCTION_ARGS)
{
	return pause_or_resume(fcinfo, false);
}
