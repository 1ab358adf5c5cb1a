/*-------------------------------------------------------------------------
 * worker.c
 *	  Background auto-sync: a launcher and one worker per due server.
 *
 * With dbsync in shared_preload_libraries, the launcher connects to the
 * database named by dbsync.database and, every second, looks for dbsync
 * servers with a sync_interval option.  When a server is due and no worker
 * runs for it, the launcher starts a dynamic background worker that syncs
 * that server exactly like CALL dbsync_sync(server): as the server's owner,
 * committing after every checkpoint of an initial load.  Results are in
 * dbsync.status.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "dbsync.h"

PGDLLEXPORT void dbsync_launcher_main(Datum main_arg);
PGDLLEXPORT void dbsync_worker_main(Datum main_arg);

/* A server the launcher schedules. */
typedef struct Scheduled
{
	Oid			serverid;
	TimestampTz next_run;
	BackgroundWorkerHandle *handle;
	bool		seen;			/* still has a sync_interval */
} Scheduled;

static List *scheduled = NIL;	/* Scheduled *, in TopMemoryContext */

void
dbsync_register_launcher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "dbsync");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "dbsync_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "dbsync launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "dbsync launcher");
	RegisterBackgroundWorker(&worker);
}

static int64
interval_usecs(const char *text)
{
	Interval   *iv = DatumGetIntervalP(DirectFunctionCall3(interval_in,
														   CStringGetDatum(text),
														   ObjectIdGetDatum(InvalidOid),
														   Int32GetDatum(-1)));

	return iv->time + (int64) iv->day * USECS_PER_DAY +
		(int64) iv->month * DAYS_PER_MONTH * USECS_PER_DAY;
}

static Scheduled *
find_scheduled(Oid serverid)
{
	ListCell   *lc;

	foreach(lc, scheduled)
	{
		Scheduled  *s = lfirst(lc);

		if (s->serverid == serverid)
			return s;
	}
	return NULL;
}

static void
start_worker(Scheduled *s)
{
	BackgroundWorker worker;
	MemoryContext old;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "dbsync");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "dbsync_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "dbsync worker for server %u", s->serverid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "dbsync worker");
	worker.bgw_main_arg = ObjectIdGetDatum(s->serverid);
	worker.bgw_notify_pid = MyProcPid;
	strlcpy(worker.bgw_extra, dbsync_database, BGW_EXTRALEN);

	old = MemoryContextSwitchTo(TopMemoryContext);
	if (!RegisterDynamicBackgroundWorker(&worker, &s->handle))
	{
		s->handle = NULL;
		ereport(WARNING,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not start a dbsync worker for server %u", s->serverid),
				 errhint("You might need to increase max_worker_processes.")));
	}
	MemoryContextSwitchTo(old);
}

static bool
worker_running(Scheduled *s)
{
	pid_t		pid;

	if (s->handle == NULL)
		return false;
	if (GetBackgroundWorkerPid(s->handle, &pid) == BGWH_STOPPED)
	{
		pfree(s->handle);
		s->handle = NULL;
		return false;
	}
	return true;
}

/* Read the servers that have sync_interval; start the due ones. */
static void
launcher_tick(void)
{
	uint64		i;
	ListCell   *lc;
	TimestampTz now = GetCurrentTimestamp();
	int			nest;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (!OidIsValid(get_extension_oid("dbsync", true)))
	{
		CommitTransactionCommand();
		return;
	}
	/* the database's or role's search_path never reaches this superuser */
	nest = guard_begin();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "dbsync launcher: reading servers");
	if (SPI_execute("SELECT s.oid, o.option_value "
					"FROM pg_catalog.pg_foreign_server s "
					"JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid OPERATOR(pg_catalog.=) s.srvfdw "
					"CROSS JOIN LATERAL pg_catalog.pg_options_to_table(s.srvoptions) o "
					"WHERE w.fdwname OPERATOR(pg_catalog.=) 'dbsync' "
					"AND o.option_name OPERATOR(pg_catalog.=) 'sync_interval'",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read dbsync servers");

	foreach(lc, scheduled)
		((Scheduled *) lfirst(lc))->seen = false;
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Oid			serverid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
															  SPI_tuptable->tupdesc, 1, &isnull));
		char	   *iv = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		int64		every = Max(interval_usecs(iv), USECS_PER_SEC);
		Scheduled  *s = find_scheduled(serverid);

		if (s == NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			s = palloc0(sizeof(Scheduled));
			s->serverid = serverid;
			s->next_run = now;
			scheduled = lappend(scheduled, s);
			MemoryContextSwitchTo(old);
		}
		s->seen = true;
		if (now >= s->next_run && !worker_running(s))
		{
			start_worker(s);
			s->next_run = now + every;
		}
	}
	PopActiveSnapshot();
	SPI_finish();
	guard_end(nest);
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);

	/* forget servers that lost their sync_interval (and are not running) */
	foreach(lc, scheduled)
	{
		Scheduled  *s = lfirst(lc);

		if (!s->seen && !worker_running(s))
		{
			scheduled = foreach_delete_current(scheduled, lc);
			pfree(s);
		}
	}
}

void
dbsync_launcher_main(Datum main_arg)
{
	char	   *database;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	database = pstrdup(dbsync_database);
	BackgroundWorkerInitializeConnection(database, NULL, 0);
	ereport(LOG, (errmsg("dbsync launcher started for database \"%s\"", database)));

	for (;;)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (strcmp(database, dbsync_database) != 0)
			{
				ereport(LOG,
						(errmsg("dbsync launcher restarting for database \"%s\"",
								dbsync_database)));
				proc_exit(1);	/* restarted by the postmaster */
			}
		}
		launcher_tick();
	}
}

void
dbsync_worker_main(Datum main_arg)
{
	Oid			serverid = DatumGetObjectId(main_arg);
	char		database[BGW_EXTRALEN];

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	strlcpy(database, MyBgworkerEntry->bgw_extra, BGW_EXTRALEN);
	BackgroundWorkerInitializeConnection(database, NULL, 0);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, "dbsync worker: syncing");
	dbsync_sync_server_batched(serverid);
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	proc_exit(0);
}
