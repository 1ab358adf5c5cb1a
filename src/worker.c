/*-------------------------------------------------------------------------
 * worker.c
 *	  Background auto-sync: a launcher and one worker per due server.
 *
 * With dbsync in shared_preload_libraries, the launcher connects to the
 * database named by dbsync.database and, every second, looks for dbsync
 * servers with a sync_interval option and for their tables that are due
 * (dbsync.tables.next_attempt_at: the schedule after a success, the backoff
 * after a failure).  It starts dynamic background workers, up to
 * dbsync.max_workers at once, fairly across servers (the server with the
 * fewest running first).  A server gets one more worker when tables of it
 * are due that nobody syncs and each of its workers is busy with a table
 * (dbsync.progress tells): a long initial load never holds up the other
 * tables, and a server that cannot be reached gets one worker at a time.  A worker syncs the due
 * tables of its server like CALL dbsync_sync(server) (as the server's
 * owner, committing after every checkpoint), passing over tables that are
 * not due or that another run holds, then exits.  A server none of whose
 * tables is known yet gets one worker per sync_interval, which discovers
 * them.  The launcher also turns what interrupted runs left into
 * 'aborted' rows of dbsync.runs and prunes that history hourly.
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

int			dbsync_max_workers = 2;

/* A server the launcher schedules. */
typedef struct Scheduled
{
	Oid			serverid;
	TimestampTz next_run;		/* next discovery round of a server with no
								 * known tables */
	TimestampTz last_start;		/* when a worker was last started for it */
	TimestampTz next_start;		/* no new worker before (a worker that found
								 * its tables held by a long manual run must
								 * not be followed by one every second) */
	List	   *workers;		/* BackgroundWorkerHandle *, running */
	bool		seen;			/* still has a sync_interval */
	int			want;			/* this tick: tables due that nobody syncs */
	int64		round_wait;		/* wait after this tick's discovery round
								 * (0: not one), applied when it starts */
	int64		every;			/* its sync_interval */
} Scheduled;

static List *scheduled = NIL;	/* Scheduled *, in TopMemoryContext */
static TimestampTz last_start_warning = 0;

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

static bool
start_worker(Scheduled *s)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
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
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		MemoryContextSwitchTo(old);
		/* once a minute, not every second */
		if (TimestampDifferenceExceeds(last_start_warning, GetCurrentTimestamp(), 60000))
		{
			last_start_warning = GetCurrentTimestamp();
			ereport(WARNING,
					(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
					 errmsg("could not start a dbsync worker for server %u", s->serverid),
					 errhint("Increase max_worker_processes (it must leave room for dbsync.max_workers workers next to other background workers), or lower dbsync.max_workers.")));
		}
		return false;
	}
	s->workers = lappend(s->workers, handle);
	s->last_start = GetCurrentTimestamp();
	MemoryContextSwitchTo(old);
	return true;
}

/* Forget workers that ended; returns how many still run. */
static int
reap_workers(Scheduled *s)
{
	ListCell   *lc;
	pid_t		pid;

	foreach(lc, s->workers)
	{
		BackgroundWorkerHandle *h = lfirst(lc);

		if (GetBackgroundWorkerPid(h, &pid) == BGWH_STOPPED)
		{
			s->workers = foreach_delete_current(s->workers, lc);
			pfree(h);
		}
	}
	return list_length(s->workers);
}

/*
 * The servers with a sync_interval and, per server, its known tables that
 * the auto-sync counts (enabled, not paused, not parked) and those of them
 * due now.
 */
#define ACTIVE "t.enabled AND t.paused_at IS NULL AND t.next_attempt_at IS DISTINCT FROM 'infinity'"
/* a server's tables the auto-sync counts, and those of them due now */
#define ACTIVE_AND_DUE \
	"  pg_catalog.count(t.table_name) FILTER (WHERE " ACTIVE "), " \
	"  pg_catalog.count(t.table_name) FILTER (WHERE " ACTIVE " AND (t.next_attempt_at IS NULL " \
	"    OR t.next_attempt_at OPERATOR(pg_catalog.<=) pg_catalog.now()))"
#define SERVERS_SQL \
	"SELECT s.oid, o.option_value, " \
	ACTIVE_AND_DUE ", " \
	"  pg_catalog.count(t.table_name) FILTER (WHERE NOT t.enabled OR t.paused_at IS NOT NULL), " \
	"  pg_catalog.count(t.table_name), " \
	"  (SELECT pg_catalog.count(*) FROM dbsync.run_history h WHERE h.server_oid OPERATOR(pg_catalog.=) s.oid " \
	"    AND h.table_name IS NULL AND h.status OPERATOR(pg_catalog.=) 'error' " \
	"    AND h.finished_at OPERATOR(pg_catalog.>) COALESCE((SELECT pg_catalog.max(k.finished_at) " \
	"      FROM dbsync.run_history k WHERE k.server_oid OPERATOR(pg_catalog.=) s.oid " \
	"      AND k.table_name IS NULL AND k.status OPERATOR(pg_catalog.=) 'ok'), '-infinity')) " \
	"FROM pg_catalog.pg_foreign_server s " \
	"JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid OPERATOR(pg_catalog.=) s.srvfdw " \
	"CROSS JOIN LATERAL pg_catalog.pg_options_to_table(s.srvoptions) o " \
	"LEFT JOIN dbsync.tables t ON t.server_oid OPERATOR(pg_catalog.=) s.oid " \
	"  AND t.server OPERATOR(pg_catalog.=) s.srvname::pg_catalog.text " \
	"WHERE w.fdwname OPERATOR(pg_catalog.=) 'dbsync' " \
	"AND o.option_name OPERATOR(pg_catalog.=) 'sync_interval' " \
	"GROUP BY s.oid, o.option_value"

/* Wait before the next discovery round of a server failing failures times. */
static int64
server_backoff(int64 every, int64 failures)
{
	int64		wait = (int64) dbsync_retry_min * USECS_PER_SEC;
	int			i;

	if (failures == 0)
		return every;
	for (i = 1; i < failures && wait < (int64) dbsync_retry_max * USECS_PER_SEC; i++)
		wait *= 2;
	wait = Min(wait, (int64) dbsync_retry_max * USECS_PER_SEC);
	return Max(wait, every);
}

/* How many more workers each server wants this tick. */
static void
read_servers(TimestampTz now)
{
	uint64		i;
	ListCell   *lc;

	if (SPI_execute(SERVERS_SQL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read dbsync servers");
	foreach(lc, scheduled)
		((Scheduled *) lfirst(lc))->seen = false;
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Oid			serverid = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
		int64		every = Max(interval_usecs(SPI_getvalue(tup, desc, 2)), USECS_PER_SEC);
		int64		known = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		int64		due = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
		int64		stopped = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
		int64		all = DatumGetInt64(SPI_getbinval(tup, desc, 6, &isnull));
		int64		failures = DatumGetInt64(SPI_getbinval(tup, desc, 7, &isnull));
		Scheduled  *s = find_scheduled(serverid);
		int			busy;
		int			busy_workers;
		int			running;

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
		s->every = every;
		s->round_wait = 0;
		running = reap_workers(s);
		progress_busy(serverid, &busy, &busy_workers);
		if (all > 0 && stopped == all)
			s->want = 0;		/* every table paused or disabled: leave it be */
		else if (known == 0)
		{
			/*
			 * Nothing to sync that is known: a discovery round every
			 * sync_interval, backing off while the server cannot even be
			 * reached (its failures have no table to record them on).
			 */
			s->want = now >= s->next_run && running == 0 ? 1 : 0;
			if (s->want)
				s->round_wait = server_backoff(every, all == 0 ? failures : 0);
		}
		else if (running > busy_workers || now < s->next_start)
			s->want = 0;		/* a worker is still connecting or choosing */
		else
			/* one more worker when tables are due that nobody syncs */
			s->want = due > busy ? 1 : 0;
	}
}

/* dbsync workers running now (whoever started them). */
static int
running_workers(void)
{
	if (SPI_execute("SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity "
					"WHERE backend_type OPERATOR(pg_catalog.=) 'dbsync worker'", true, 0) != SPI_OK_SELECT ||
		SPI_processed != 1)
		return 0;
	return atoi(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
}

/* Start workers where tables are due, fairly: fewest running first. */
static void
start_due_workers(void)
{
	int			total = 0;
	TimestampTz now;
	ListCell   *lc;

	foreach(lc, scheduled)
		total += list_length(((Scheduled *) lfirst(lc))->workers);
	/* workers a restarted launcher no longer has handles for count too */
	total = Max(total, running_workers());
	while (total < dbsync_max_workers)
	{
		Scheduled  *best = NULL;

		foreach(lc, scheduled)
		{
			Scheduled  *s = lfirst(lc);

			if (!s->seen || s->want <= 0)
				continue;
			if (best == NULL ||
				list_length(s->workers) < list_length(best->workers) ||
				(list_length(s->workers) == list_length(best->workers) &&
				 s->last_start < best->last_start))
				best = s;
		}
		if (best == NULL)
			break;
		if (!start_worker(best))
		{
			/* no background worker slot left: idle dbsync workers free theirs */
			progress_want_worker_slot();
			break;
		}
		/* the waits start with a worker, not with a wish for one */
		now = GetCurrentTimestamp();
		if (best->round_wait > 0)
			best->next_run = now + best->round_wait;
		best->next_start = now + Min(best->every, 5 * USECS_PER_SEC);
		best->want--;
		total++;
	}
	/* tables wait for a slot: idle workers give theirs up */
	foreach(lc, scheduled)
	{
		Scheduled  *s = lfirst(lc);

		if (s->seen && s->want > 0 && total >= dbsync_max_workers)
			progress_want_worker_slot();
	}
}

/* Read the servers that have sync_interval; start workers for due tables. */
static void
launcher_tick(void)
{
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
	history_recover();
	if (progress_claim_prune(3600))
		history_prune();
	read_servers(now);
	start_due_workers();
	PopActiveSnapshot();
	SPI_finish();
	guard_end(nest);
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);

	/* forget servers that lost their sync_interval (and run no worker) */
	foreach(lc, scheduled)
	{
		Scheduled  *s = lfirst(lc);

		if (!s->seen && reap_workers(s) == 0)
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

/*
 * Between rounds a worker waits for its server's next due table, keeping
 * its source connection and discovery (conncache.c), as long as nobody
 * else needs its slot and not longer than WORKER_LINGER_MAX.  Returns
 * true when a round is due, false when the worker should exit.
 */
#define WORKER_LINGER_MAX (10 * 60 * USECS_PER_SEC)

/* One server's sync_interval, its tables the auto-sync counts, those due. */
#define SERVER_DUE_SQL \
	"SELECT o.option_value, " \
	ACTIVE_AND_DUE " " \
	"FROM pg_catalog.pg_foreign_server s " \
	"CROSS JOIN LATERAL pg_catalog.pg_options_to_table(s.srvoptions) o " \
	"LEFT JOIN dbsync.tables t ON t.server_oid OPERATOR(pg_catalog.=) s.oid " \
	"  AND t.server OPERATOR(pg_catalog.=) s.srvname::pg_catalog.text " \
	"WHERE s.oid OPERATOR(pg_catalog.=) %u " \
	"AND o.option_name OPERATOR(pg_catalog.=) 'sync_interval' " \
	"GROUP BY o.option_value"

static bool
worker_next_round(Oid serverid, TimestampTz last_round)
{
	TimestampTz idle_since = GetCurrentTimestamp();

	for (;;)
	{
		TimestampTz now;
		int64		every = 0;
		int64		known = 0;
		int64		due = 0;
		int			busy;
		int			busy_workers;
		int			nest;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		/* new settings (max_workers, database...): the launcher decides again */
		if (ConfigReloadPending)
			return false;
		now = GetCurrentTimestamp();
		if (progress_worker_slot_wanted() > idle_since ||
			now - idle_since > WORKER_LINGER_MAX)
			return false;

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		if (!OidIsValid(get_extension_oid("dbsync", true)))
		{
			CommitTransactionCommand();
			return false;
		}
		nest = guard_begin();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (SPI_execute(psprintf(SERVER_DUE_SQL, serverid), true, 0) == SPI_OK_SELECT &&
			SPI_processed == 1)
		{
			HeapTuple	tup = SPI_tuptable->vals[0];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;

			every = Max(interval_usecs(SPI_getvalue(tup, desc, 1)), USECS_PER_SEC);
			known = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
			due = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		}
		PopActiveSnapshot();
		SPI_finish();
		guard_end(nest);
		CommitTransactionCommand();

		/* gone, no sync_interval, or only the launcher's discovery rounds */
		if (every == 0 || known == 0)
			return false;
		if (now - idle_since > every + 10 * USECS_PER_SEC)
			return false;		/* nothing came due for a whole interval */
		progress_busy(serverid, &busy, &busy_workers);
		/* due tables nobody syncs; held ones are not retried every second */
		if (due > busy && now - last_round >= Min(every, 5 * USECS_PER_SEC))
			return true;
	}
}

void
dbsync_worker_main(Datum main_arg)
{
	Oid			serverid = DatumGetObjectId(main_arg);
	char		database[BGW_EXTRALEN];
	TimestampTz round_start;
	bool		stream_on;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	strlcpy(database, MyBgworkerEntry->bgw_extra, BGW_EXTRALEN);
	BackgroundWorkerInitializeConnection(database, NULL, 0);

	do
	{
		round_start = GetCurrentTimestamp();
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		pgstat_report_activity(STATE_RUNNING, "dbsync worker: syncing");
		stream_on = dbsync_sync_server_batched(serverid);
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);
		/* a log capture pass ended well: the next one at once (new settings first) */
	} while ((stream_on && !ConfigReloadPending) || worker_next_round(serverid, round_start));
	proc_exit(0);
}
