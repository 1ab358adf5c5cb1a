/*-------------------------------------------------------------------------
 * history.c
 *	  dbsync.runs: one row per table per run, written once when the table
 *	  ends, and 'aborted' rows for runs that never got to end.
 *
 * A finished table's row is inserted in the transaction that holds its data
 * (or, after a failure, in the one that records the error), so it commits
 * or vanishes with them.  What a cancel, statement_timeout, terminated
 * backend or crash cuts short is remembered outside the transaction:
 *
 *	 - while tables run, this backend keeps the file pg_dbsync/<db>.<pid>
 *	   listing them (rewritten when a table starts, removed at the commit
 *	   that leaves none open); a crash or SIGKILL leaves it behind;
 *	 - when the transaction aborts (cancel, timeout, terminate, or a user's
 *	   ROLLBACK), its tables are written to pg_dbsync/<db>.<pid>.<n>.aborted
 *	   with the reason.
 *
 * history_recover() (every run, and the launcher every second) turns both
 * kinds of leftover into 'aborted' rows: .aborted files at once, pid files
 * once their process is gone or the server restarted.  Files are removed
 * only at the commit of the rows made from them.
 *
 * The files hold names, counts and the cursor positions that dbsync.status
 * shows anyway; no row values.  They live in the data directory, readable
 * by the server's OS user only.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/file_perm.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/lock.h"
#include "storage/procarray.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "datatype/timestamp.h"

#include "dbsync.h"

#define HISTORY_DIR		"pg_dbsync"
#define KEEP_PER_TABLE	10		/* runs kept per table whatever their age */

int			dbsync_history_retention = 14 * 24 * 3600;	/* seconds */

/* One table of the current transaction(s), not yet committed. */
typedef struct OpenRun
{
	RunRecord	rec;			/* in history_cxt */
	bool		recorded;		/* its row is in the current transaction */
	SubTransactionId subid;		/* opened in this (sub)transaction */
} OpenRun;

static MemoryContext history_cxt = NULL;
static List *open_runs = NIL;	/* OpenRun *, in history_cxt */
static List *files_done = NIL;	/* char *: unlink at commit */
static char *abort_reason = NULL;	/* why the statement was interrupted */
static char *abort_sqlstate = NULL;
static int	abort_files = 0;
static bool pid_file_written = false;	/* my_pid_file() may exist */

/* pg_dbsync/<db>.<pid>.<backend start>: no allocation (commit callbacks use it) */
static const char *
my_pid_file(void)
{
	static char path[MAXPGPATH];

	snprintf(path, sizeof(path), HISTORY_DIR "/%u.%d." INT64_FORMAT,
			 MyDatabaseId, MyProcPid, (int64) MyStartTime);
	return path;
}

static void
json_field(StringInfo buf, const char *key, const char *value)
{
	appendStringInfo(buf, "%s\"%s\": ", buf->len > 1 ? ", " : "", key);
	if (value)
		escape_json(buf, value);
	else
		appendStringInfoString(buf, "null");
}

static double
epoch_seconds(TimestampTz t)
{
	return (double) t / USECS_PER_SEC +
		((double) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY);
}

static void
json_int(StringInfo buf, const char *key, int64 value)
{
	appendStringInfo(buf, "%s\"%s\": " INT64_FORMAT, buf->len > 1 ? ", " : "",
					 key, value);
}

/* A run record as one line of JSON (the columns of dbsync.run_history). */
static void
append_record(StringInfo out, RunRecord *r)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	json_int(&buf, "run_id", r->run_id);
	json_field(&buf, "server", r->server);
	json_int(&buf, "server_oid", r->serverid);
	json_field(&buf, "table_name", r->table);
	json_field(&buf, "trigger", r->trigger);
	json_field(&buf, "mode", r->mode);
	/* epoch seconds: read back whatever DateStyle the reader has */
	appendStringInfo(&buf, ", \"started_at\": %.6f", epoch_seconds(r->started_at));
	if (r->finished_at)
		appendStringInfo(&buf, ", \"finished_at\": %.6f", epoch_seconds(r->finished_at));
	json_field(&buf, "status", r->status);
	json_int(&buf, "rows_read", r->rows_read);
	json_int(&buf, "rows_upserted", r->rows_upserted);
	json_int(&buf, "rows_deleted", r->rows_deleted);
	json_int(&buf, "rows_skipped", r->rows_skipped);
	json_int(&buf, "bytes_read", r->bytes_read);
	json_field(&buf, "cursor_from", r->cursor_from);
	json_field(&buf, "cursor_to", r->cursor_to);
	json_field(&buf, "sqlstate", r->sqlstate);
	json_field(&buf, "error_class", r->error_class);
	json_field(&buf, "error", r->error);
	json_field(&buf, "error_detail", r->detail);
	json_field(&buf, "error_hint", r->hint);
	json_field(&buf, "remote_sql", r->remote_sql);
	json_int(&buf, "pid", MyProcPid);
	appendStringInfoString(&buf, "}\n");
	appendBinaryStringInfo(out, buf.data, buf.len);
	pfree(buf.data);
}

/*
 * Write data to a file: appended, or replacing it whole (a new file renamed
 * over it, so a reader never sees half of it).  Never errors: it may run
 * while aborting.
 */
static bool
write_file(const char *path, const char *data, int len, bool append)
{
	char		tmp[MAXPGPATH];
	int			fd;
	bool		ok;

	(void) mkdir(HISTORY_DIR, pg_dir_create_mode);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(append ? path : tmp,
			  O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC) | PG_BINARY,
			  pg_file_create_mode);
	if (fd < 0)
		return false;
	ok = write(fd, data, len) == len;
	close(fd);
	if (!append && ok)
		ok = rename(tmp, path) == 0;
	return ok;
}

static void
warn_unwritten(const char *path)
{
	ereport(WARNING,
			(errcode_for_file_access(),
			 errmsg("could not write \"%s\": %m", path),
			 errhint("Without it, a crash during this run leaves no trace in dbsync.runs; check the permissions and free space of the data directory.")));
}

static void
append_header(StringInfo buf)
{
	appendStringInfo(buf, "dbsync runs of a backend started " INT64_FORMAT "\n",
					 (int64) PgStartTime);
}

/* The open runs of this backend, as the file a crash would leave. */
static void
write_pid_file(void)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	append_header(&buf);
	foreach(lc, open_runs)
	{
		OpenRun    *o = lfirst(lc);

		if (!o->recorded)
			append_record(&buf, &o->rec);
	}
	if (!write_file(my_pid_file(), buf.data, buf.len, false))
		warn_unwritten(my_pid_file());
	pfree(buf.data);
}

static char *
copy_str(const char *s)
{
	return s ? MemoryContextStrdup(history_cxt, s) : NULL;
}

static void
copy_record(RunRecord *dst, RunRecord *src)
{
	*dst = *src;
	dst->server = copy_str(src->server);
	dst->table = copy_str(src->table);
	dst->mode = copy_str(src->mode);
	dst->cursor_from = copy_str(src->cursor_from);
	dst->cursor_to = copy_str(src->cursor_to);
	dst->sqlstate = copy_str(src->sqlstate);
	dst->error = copy_str(src->error);
	dst->detail = copy_str(src->detail);
	dst->hint = copy_str(src->hint);
	dst->remote_sql = copy_str(src->remote_sql);
}

/* A table's run starts: until its row commits, a crash leaves a trace. */
void
history_open(RunRecord *r)
{
	OpenRun    *o = MemoryContextAllocZero(history_cxt, sizeof(OpenRun));
	MemoryContext old;

	StringInfoData buf;

	copy_record(&o->rec, r);
	o->rec.status = "aborted";
	o->rec.finished_at = 0;
	o->rec.error = copy_str("the run ended without finishing: its backend was killed or the server crashed or restarted");
	o->subid = GetCurrentSubTransactionId();
	old = MemoryContextSwitchTo(history_cxt);
	open_runs = lappend(open_runs, o);
	MemoryContextSwitchTo(old);
	/* one line appended per table (a rewrite per table would be quadratic) */
	initStringInfo(&buf);
	if (access(my_pid_file(), F_OK) != 0)
		append_header(&buf);
	append_record(&buf, &o->rec);
	pid_file_written = true;
	if (!write_file(my_pid_file(), buf.data, buf.len, true))
		warn_unwritten(my_pid_file());
	pfree(buf.data);
}

static OpenRun *
find_open(RunRecord *r)
{
	ListCell   *lc;

	foreach(lc, open_runs)
	{
		OpenRun    *o = lfirst(lc);

		if (o->rec.run_id == r->run_id && o->rec.serverid == r->serverid &&
			strcmp(o->rec.table ? o->rec.table : "", r->table ? r->table : "") == 0)
			return o;
	}
	return NULL;
}

/* The row of a finished table, in the current transaction. */
void
history_record(RunRecord *r)
{
	Oid			types[22] = {INT8OID, TEXTOID, OIDOID, TEXTOID, TEXTOID, TEXTOID,
		TIMESTAMPTZOID, TEXTOID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID,
	TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		v[22];
	char		n[22];
	OpenRun    *o = find_open(r);

	memset(n, ' ', sizeof(n));
	v[0] = Int64GetDatum(r->run_id);
	v[1] = CStringGetTextDatum(r->server);
	v[2] = ObjectIdGetDatum(r->serverid);
	v[3] = text_param(r->table, &n[3]);
	v[4] = CStringGetTextDatum(r->trigger);
	v[5] = text_param(r->mode, &n[5]);
	v[6] = TimestampTzGetDatum(r->started_at);
	v[7] = CStringGetTextDatum(r->status);
	v[8] = Int64GetDatum(r->rows_read);
	v[9] = Int64GetDatum(r->rows_upserted);
	v[10] = Int64GetDatum(r->rows_deleted);
	v[11] = Int64GetDatum(r->rows_skipped);
	v[12] = Int64GetDatum(r->bytes_read);
	v[13] = text_param(r->cursor_from, &n[13]);
	v[14] = text_param(r->cursor_to, &n[14]);
	v[15] = text_param(r->sqlstate, &n[15]);
	v[16] = text_param(r->error_class, &n[16]);
	v[17] = text_param(r->error, &n[17]);
	v[18] = text_param(r->detail, &n[18]);
	v[19] = text_param(r->hint, &n[19]);
	v[20] = text_param(r->remote_sql, &n[20]);
	v[21] = text_param(r->message, &n[21]);
	catalog_exec("INSERT INTO dbsync.run_history (run_id, server, server_oid, table_name, "
				 "trigger, mode, started_at, finished_at, status, rows_read, rows_upserted, "
				 "rows_deleted, rows_skipped, bytes_read, cursor_from, cursor_to, sqlstate, "
				 "error_class, error, error_detail, error_hint, remote_sql, message, pid) "
				 "VALUES ($1, $2, $3, $4, $5, $6, $7, pg_catalog.clock_timestamp(), $8, $9, $10, "
				 "$11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, pg_catalog.pg_backend_pid())",
				 22, types, v, n, SPI_OK_INSERT);
	if (o)
	{
		MemoryContext old = MemoryContextSwitchTo(history_cxt);

		/* an abort from here on shows it as aborted, with these counts */
		o->recorded = true;
		o->rec.mode = copy_str(r->mode);
		o->rec.rows_read = r->rows_read;
		o->rec.bytes_read = r->bytes_read;
		o->rec.cursor_from = copy_str(r->cursor_from);
		MemoryContextSwitchTo(old);
	}
}

/* A cancel, timeout or shutdown is about to abort the statement. */
void
history_note_interrupt(ErrorData *edata)
{
	MemoryContext old = MemoryContextSwitchTo(history_cxt);

	abort_reason = psprintf("the run was interrupted: %s", edata->message);
	abort_sqlstate = pstrdup(unpack_sql_state(edata->sqlerrcode));
	MemoryContextSwitchTo(old);
}

/*
 * The open tables of an aborted (sub)transaction with subid >= from, for
 * history_recover(); they leave the list.
 */
static void
write_aborted_file(SubTransactionId from)
{
	StringInfoData buf;
	ListCell   *lc;
	char		path[MAXPGPATH];
	TimestampTz now = GetCurrentTimestamp();
	bool		any = false;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "dbsync aborted runs\n");
	foreach(lc, open_runs)
	{
		RunRecord  *r = &((OpenRun *) lfirst(lc))->rec;

		if (((OpenRun *) lfirst(lc))->subid < from)
			continue;
		open_runs = foreach_delete_current(open_runs, lc);
		any = true;

		r->finished_at = now;
		r->error = abort_reason ? abort_reason :
			proc_exit_inprogress ? "the run was interrupted: its backend was terminated" :
			"the run was interrupted: its transaction was rolled back";
		r->sqlstate = abort_sqlstate ? abort_sqlstate :
			proc_exit_inprogress ? "57P01" : NULL;
		r->error_class = "interrupted";
		append_record(&buf, r);
	}
	if (!any)
		return;
	snprintf(path, sizeof(path), HISTORY_DIR "/%u.%d." INT64_FORMAT ".%d.aborted",
			 MyDatabaseId, MyProcPid, (int64) MyStartTime, ++abort_files);
	if (!write_file(path, buf.data, buf.len, false))
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not write \"%s\": %m", path)));
}

static void
history_xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;
	bool		mixed = false;

	if (event == XACT_EVENT_PRE_COMMIT || event == XACT_EVENT_PARALLEL_PRE_COMMIT)
	{
		/* tables that go on past this commit (checkpoints): only they stay */
		foreach(lc, open_runs)
		{
			if (((OpenRun *) lfirst(lc))->recorded)
				mixed = true;
		}
		if (mixed && list_length(open_runs) > 1)
			write_pid_file();
		return;
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		/* no allocation here: an error now could not abort any more */
		foreach(lc, open_runs)
		{
			if (((OpenRun *) lfirst(lc))->recorded)
				open_runs = foreach_delete_current(open_runs, lc);
		}
		foreach(lc, files_done)
			(void) unlink(lfirst(lc));
		files_done = NIL;
		if (open_runs != NIL)
			return;				/* a table's run goes on across its checkpoints */
		if (pid_file_written)
			(void) unlink(my_pid_file());
		pid_file_written = false;
	}
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		if (open_runs != NIL)
			write_aborted_file(InvalidSubTransactionId);
		if (pid_file_written)
			(void) unlink(my_pid_file());
		pid_file_written = false;
		open_runs = NIL;
		files_done = NIL;
	}
	else
		return;
	abort_reason = NULL;
	abort_sqlstate = NULL;
	MemoryContextReset(history_cxt);
}

/*
 * A rolled-back savepoint takes the rows of the runs it contained with it:
 * those runs are aborted too (never "nothing").
 */
static void
history_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB && open_runs != NIL)
		write_aborted_file(mySubid);
}

void
history_init(void)
{
	history_cxt = AllocSetContextCreate(TopMemoryContext, "dbsync history",
										ALLOCSET_SMALL_SIZES);
	RegisterXactCallback(history_xact_callback, NULL);
	RegisterSubXactCallback(history_subxact_callback, NULL);
}

/* Is the process of a pid file still running this backend's runs? */
static bool
pid_file_live(int pid, const char *header)
{
	char	   *expect = psprintf("dbsync runs of a backend started " INT64_FORMAT,
								  (int64) PgStartTime);

	if (strcmp(header, expect) != 0)
		return false;			/* written before the server started */
	/* a pid reused after a crash restart only delays the recovery */
	return pid == MyProcPid || BackendPidGetProc(pid) != NULL;
}

/*
 * Insert every record of one leftover file as an 'aborted' row, unless the
 * run has a row already (it committed after all, or the file was recovered
 * before: recovery is idempotent).
 */
static void
recover_records(char *data)
{
	char	   *line;
	char	   *save = NULL;
	Oid			types[1] = {TEXTOID};

	for (line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
	{
		Datum		v[1];

		if (line[0] != '{')
			continue;			/* the header */
		v[0] = CStringGetTextDatum(line);
		catalog_exec("INSERT INTO dbsync.run_history (run_id, server, server_oid, table_name, "
					 "trigger, mode, started_at, finished_at, status, rows_read, rows_upserted, "
					 "rows_deleted, rows_skipped, bytes_read, cursor_from, cursor_to, sqlstate, "
					 "error_class, error, pid) "
					 "SELECT r.run_id, r.server, r.server_oid, r.table_name, r.trigger, r.mode, "
					 "pg_catalog.to_timestamp(r.started_at), "
					 "COALESCE(pg_catalog.to_timestamp(r.finished_at), pg_catalog.now()), 'aborted', "
					 "r.rows_read, r.rows_upserted, r.rows_deleted, r.rows_skipped, r.bytes_read, "
					 "r.cursor_from, r.cursor_to, COALESCE(r.sqlstate, 'XX000'), "
					 "COALESCE(r.error_class, 'interrupted'), r.error, r.pid "
					 "FROM pg_catalog.jsonb_to_record($1::pg_catalog.jsonb) AS r(run_id bigint, "
					 "server text, server_oid oid, table_name text, trigger text, mode text, "
					 "started_at float8, finished_at float8, rows_read bigint, "
					 "rows_upserted bigint, rows_deleted bigint, rows_skipped bigint, "
					 "bytes_read bigint, cursor_from text, cursor_to text, sqlstate text, "
					 "error_class text, error text, pid integer) "
					 "WHERE NOT EXISTS (SELECT FROM dbsync.run_history h "
					 "  WHERE h.run_id OPERATOR(pg_catalog.=) r.run_id "
					 "  AND h.server_oid OPERATOR(pg_catalog.=) r.server_oid "
					 "  AND h.table_name IS NOT DISTINCT FROM r.table_name)",
					 1, types, v, NULL, SPI_OK_INSERT);
	}
}

/* The whole of a small file, or NULL. */
static char *
read_small_file(const char *path)
{
	FILE	   *f = AllocateFile(path, PG_BINARY_R);
	struct stat sb;
	char	   *data = NULL;

	if (f == NULL)
		return NULL;
	if (fstat(fileno(f), &sb) == 0 && sb.st_size <= 64 * 1024 * 1024)
	{
		data = palloc(sb.st_size + 1);
		data[fread(data, 1, sb.st_size, f)] = '\0';
	}
	FreeFile(f);
	return data;
}

/*
 * Recover one file in a subtransaction: a file that cannot be read as
 * records (cut short by a full disk, say) is set aside as .bad with a
 * warning, and never stops a run or the launcher.
 */
static void
recover_file(const char *path, bool is_pid_file, int pid)
{
	char	   *data = read_small_file(path);
	char	   *nl;
	Subxact		sx;

	if (data == NULL)
		return;
	nl = strchr(data, '\n');
	if (is_pid_file && nl)
	{
		*nl = '\0';
		if (pid_file_live(pid, data))
			return;
		*nl = '\n';
	}
	subxact_begin(&sx);
	PG_TRY();
	{
		recover_records(data);
		subxact_commit(&sx);
	}
	PG_CATCH();
	{
		ErrorData  *edata = subxact_abort(&sx);

		if (subxact_is_interrupt(edata))
			ReThrowError(edata);
		ereport(WARNING,
				(errmsg("dbsync: could not record the interrupted runs in \"%s\": %s",
						path, edata->message),
				 errhint("The file was renamed to \"%s.bad\"; look at it, then delete it.", path)));
		(void) rename(path, psprintf("%s.bad", path));
		return;
	}
	PG_END_TRY();
	{
		MemoryContext old = MemoryContextSwitchTo(history_cxt);

		files_done = lappend(files_done, pstrdup(path));
		MemoryContextSwitchTo(old);
	}
}

static bool
ends_with(const char *s, const char *suffix)
{
	size_t		n = strlen(s);
	size_t		m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/*
 * Turn what aborted or crashed runs of this database left into 'aborted'
 * rows (SPI connected, in a transaction).  One backend at a time; the
 * others skip (the lock is held until the rows commit).
 */
void
history_recover(void)
{
	DIR		   *dir;
	struct dirent *de;
	LOCKTAG		tag;
	char	   *prefix = psprintf("%u.", MyDatabaseId);

	if (access(HISTORY_DIR, F_OK) != 0)
		return;
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, 0, 0, 0x6474);
	if (LockAcquire(&tag, ExclusiveLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
		return;
	dir = AllocateDir(HISTORY_DIR);
	while ((de = ReadDir(dir, HISTORY_DIR)) != NULL)
	{
		int			pid = 0;
		int64		started;
		char		rest[64];
		int			n;

		if (strncmp(de->d_name, prefix, strlen(prefix)) != 0)
		{
			/* a dropped database's leftovers go (nobody can record them) */
			unsigned int dboid;

			if (sscanf(de->d_name, "%u.", &dboid) == 1 &&
				!SearchSysCacheExists1(DATABASEOID, ObjectIdGetDatum(dboid)))
				(void) unlink(psprintf(HISTORY_DIR "/%s", de->d_name));
			continue;
		}
		if (ends_with(de->d_name, ".tmp") || ends_with(de->d_name, ".bad"))
			continue;
		n = sscanf(de->d_name + strlen(prefix), "%d." INT64_FORMAT "%63s", &pid, &started, rest);
		if (ends_with(de->d_name, ".aborted"))
			recover_file(psprintf(HISTORY_DIR "/%s", de->d_name), false, 0);
		else if (n == 2)
			recover_file(psprintf(HISTORY_DIR "/%s", de->d_name), true, pid);
	}
	FreeDir(dir);
}

/*
 * Delete runs older than dbsync.history_retention, keeping each table's
 * last KEEP_PER_TABLE runs and its last failure.
 */
void
history_prune(void)
{
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		v[2];

	v[0] = Int32GetDatum(dbsync_history_retention);
	v[1] = Int32GetDatum(KEEP_PER_TABLE - 1);
	catalog_exec("DELETE FROM dbsync.run_history h "
				 "WHERE h.finished_at OPERATOR(pg_catalog.<) (pg_catalog.now() "
				 "  OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1)) "
				 "AND h.finished_at OPERATOR(pg_catalog.<) (SELECT k.finished_at "
				 "  FROM dbsync.run_history k WHERE k.server OPERATOR(pg_catalog.=) h.server "
				 "  AND COALESCE(k.table_name, '') OPERATOR(pg_catalog.=) COALESCE(h.table_name, '') "
				 "  ORDER BY k.finished_at DESC OFFSET $2 LIMIT 1) "
				 "AND NOT (h.status OPERATOR(pg_catalog.=) ANY ('{error,aborted}'::pg_catalog.text[]) "
				 "  AND h.finished_at OPERATOR(pg_catalog.=) (SELECT pg_catalog.max(k.finished_at) "
				 "  FROM dbsync.run_history k WHERE k.server OPERATOR(pg_catalog.=) h.server "
				 "  AND COALESCE(k.table_name, '') OPERATOR(pg_catalog.=) COALESCE(h.table_name, '') "
				 "  AND k.status OPERATOR(pg_catalog.=) ANY ('{error,aborted}'::pg_catalog.text[])))",
				 2, types, v, NULL, SPI_OK_DELETE);
}

/*
 * A server whose last server-level row is a failure (it could not connect
 * or discover) connected and discovered again: say so, which also ends its
 * row in dbsync.status and the launcher's backoff for it.
 */
void
history_server_recovered(RunRecord *r)
{
	Oid			types[5] = {INT8OID, TEXTOID, OIDOID, TEXTOID, TIMESTAMPTZOID};
	Datum		v[5];

	v[0] = Int64GetDatum(r->run_id);
	v[1] = CStringGetTextDatum(r->server);
	v[2] = ObjectIdGetDatum(r->serverid);
	v[3] = CStringGetTextDatum(r->trigger);
	v[4] = TimestampTzGetDatum(r->started_at);
	catalog_exec("INSERT INTO dbsync.run_history (run_id, server, server_oid, trigger, started_at, "
				 "finished_at, status, message, pid) "
				 "SELECT $1, $2, $3, $4, $5, pg_catalog.clock_timestamp(), 'ok', "
				 "'connected and discovered the tables again', pg_catalog.pg_backend_pid() "
				 "WHERE (SELECT h.status FROM dbsync.run_history h "
				 "  WHERE h.server_oid OPERATOR(pg_catalog.=) $3 AND h.table_name IS NULL "
				 "  ORDER BY h.finished_at DESC LIMIT 1) OPERATOR(pg_catalog.=) 'error'",
				 5, types, v, NULL, SPI_OK_INSERT);
}

/* A new id for a run (one per dbsync_run(), CALL or worker run). */
int64
history_new_run_id(void)
{
	catalog_exec("SELECT pg_catalog.nextval('dbsync.run_id_seq'::pg_catalog.regclass)",
				 0, NULL, NULL, NULL, SPI_OK_SELECT);
	return DatumGetInt64(DirectFunctionCall1(int8in,
											 CStringGetDatum(SPI_getvalue(SPI_tuptable->vals[0],
																		  SPI_tuptable->tupdesc, 1))));
}
