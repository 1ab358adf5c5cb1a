/*-------------------------------------------------------------------------
 * progress.c
 *	  Live progress of the tables being synced, and the counters a run's
 *	  history row takes from it.
 *
 * With dbsync in shared_preload_libraries, every backend and worker owns one
 * slot of a shared array (indexed by its backend id, like PgBackendStatus,
 * so no slot is ever allocated or leaked): server, table, mode, phase and
 * counters, published at most every PROGRESS_FLUSH_MS while rows stream
 * (pg_squeeze's pattern).  dbsync.progress reads the slots of the servers
 * the caller may use.  Without preloading there are no slots; the counters
 * are still kept in backend memory for dbsync.runs.
 *
 * Slots hold names and counts only, never row values.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/backendid.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "catalog/pg_authid.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "dbsync.h"

PG_FUNCTION_INFO_V1(dbsync_progress_slots);
PG_FUNCTION_INFO_V1(dbsync_progress_preloaded);

#define PROGRESS_FLUSH_MS	100
#define PROGRESS_NOTICE_MS	10000
#define PROGRESS_NAME_LEN	256

typedef struct ProgressSlot
{
	slock_t		mutex;
	pid_t		pid;			/* 0: free */
	Oid			dbid;
	Oid			serverid;
	char		server[NAMEDATALEN];
	char		table[PROGRESS_NAME_LEN];	/* "" while connecting */
	char		trigger[8];
	char		mode[16];
	char		phase[16];
	TimestampTz started_at;
	TimestampTz phase_started_at;
	TimestampTz updated_at;
	int64		rows_read;
	int64		rows_applied;
	int64		bytes_read;
	int64		rows_estimated; /* -1: unknown */
} ProgressSlot;

static ProgressSlot *slots = NULL;
static pg_atomic_uint64 *last_prune = NULL;	/* when history was last pruned */
static pg_atomic_uint64 *slot_wanted = NULL;	/* when the launcher last
												 * lacked a worker slot */
static int	nslots = 0;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* This backend's table in progress (also without shared memory). */
static ProgressSlot mine;
static bool active = false;
static bool estimated = false;	/* the source was asked for an estimate */
static bool notices = false;	/* CALL: NOTICE every PROGRESS_NOTICE_MS */
static TimestampTz last_flush = 0;
static TimestampTz last_notice = 0;

static Size
progress_shmem_size(void)
{
	return add_size(mul_size(MaxBackends, sizeof(ProgressSlot)),
					2 * sizeof(pg_atomic_uint64));
}

static void
progress_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(progress_shmem_size());
}

static void
progress_shmem_startup(void)
{
	bool		found;
	int			i;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	last_prune = ShmemInitStruct("dbsync progress", progress_shmem_size(), &found);
	slot_wanted = last_prune + 1;
	slots = (ProgressSlot *) (last_prune + 2);
	nslots = MaxBackends;
	if (!found)
	{
		memset(slots, 0, mul_size(nslots, sizeof(ProgressSlot)));
		pg_atomic_init_u64(last_prune, 0);
		pg_atomic_init_u64(slot_wanted, 0);
		for (i = 0; i < nslots; i++)
			SpinLockInit(&slots[i].mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* From _PG_init, when preloaded. */
void
progress_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = progress_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = progress_shmem_startup;
}

/*
 * The launcher could not start a worker for a server with due tables:
 * every worker slot is taken.  Workers that wait idle for their server's
 * next round give theirs up when they see it.
 */
void
progress_want_worker_slot(void)
{
	if (slot_wanted)
		pg_atomic_write_u64(slot_wanted, (uint64) GetCurrentTimestamp());
}

TimestampTz
progress_worker_slot_wanted(void)
{
	return slot_wanted ? (TimestampTz) pg_atomic_read_u64(slot_wanted) : 0;
}

/*
 * Is it this backend's turn to prune the run history (at most once per
 * every_secs across the server; without shared memory, per backend)?
 */
bool
progress_claim_prune(int every_secs)
{
	static uint64 mine_last = 0;
	uint64		now = (uint64) GetCurrentTimestamp();
	uint64		seen;

	if (last_prune == NULL)
	{
		if (mine_last != 0 && now - mine_last < (uint64) every_secs * USECS_PER_SEC)
			return false;
		mine_last = now;
		return true;
	}
	seen = pg_atomic_read_u64(last_prune);
	if (seen != 0 && now - seen < (uint64) every_secs * USECS_PER_SEC)
		return false;
	return pg_atomic_compare_exchange_u64(last_prune, &seen, now);
}

static ProgressSlot *
my_slot(void)
{
	if (slots == NULL || MyBackendId <= 0 || MyBackendId > nslots)
		return NULL;
	return &slots[MyBackendId - 1];
}

static void
publish(void)
{
	ProgressSlot *s = my_slot();

	last_flush = GetCurrentTimestamp();
	mine.updated_at = last_flush;
	if (s == NULL)
		return;
	SpinLockAcquire(&s->mutex);
	memcpy((char *) s + offsetof(ProgressSlot, pid),
		   (char *) &mine + offsetof(ProgressSlot, pid),
		   sizeof(ProgressSlot) - offsetof(ProgressSlot, pid));
	if (!active)
		s->pid = 0;
	SpinLockRelease(&s->mutex);
}

/* The slot goes with the process, whatever ends it. */
static void
progress_exit(int code, Datum arg)
{
	active = false;
	publish();
}

/* A statement that aborts (cancel, timeout) ends what it was syncing. */
static void
progress_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		progress_end();
}

/*
 * A table's (or, with table NULL, a server's) sync starts.  with_notices:
 * report progress as NOTICEs too (CALL dbsync_sync).
 */
void
progress_begin(Oid serverid, const char *server, const char *table,
			   const char *trigger, bool with_notices)
{
	static bool registered = false;

	if (!registered)
	{
		before_shmem_exit(progress_exit, (Datum) 0);
		RegisterXactCallback(progress_xact_callback, NULL);
		registered = true;
	}
	memset((char *) &mine + offsetof(ProgressSlot, pid), 0,
		   sizeof(ProgressSlot) - offsetof(ProgressSlot, pid));
	mine.pid = MyProcPid;
	mine.dbid = MyDatabaseId;
	mine.serverid = serverid;
	strlcpy(mine.server, server, sizeof(mine.server));
	strlcpy(mine.table, table ? table : "", sizeof(mine.table));
	strlcpy(mine.trigger, trigger, sizeof(mine.trigger));
	strlcpy(mine.phase, table ? "starting" : "connecting", sizeof(mine.phase));
	mine.started_at = mine.phase_started_at = GetCurrentTimestamp();
	mine.rows_estimated = -1;
	estimated = false;
	active = true;
	notices = with_notices;
	last_notice = mine.started_at;
	publish();
}

void
progress_end(void)
{
	if (!active)
		return;
	active = false;
	publish();
}

void
progress_phase(const char *phase)
{
	if (!active || strcmp(mine.phase, phase) == 0)
		return;
	strlcpy(mine.phase, phase, sizeof(mine.phase));
	mine.phase_started_at = GetCurrentTimestamp();
	publish();
}

/* Rows stream in: "copying", unless the delete check reads its keys. */
void
progress_phase_copy(void)
{
	if (strcmp(mine.phase, "deleting") != 0)
		progress_phase("copying");
}

void
progress_mode(const char *mode)
{
	if (!active || mode == NULL)
		return;
	strlcpy(mine.mode, mode, sizeof(mine.mode));
	publish();
}

/* Rows the table is expected to have left to read (< 0: unknown). */
void
progress_estimate(int64 rows)
{
	if (!active || estimated)
		return;
	estimated = true;
	mine.rows_estimated = rows < 0 ? -1 : rows;
	publish();
}

bool
progress_has_estimate(void)
{
	return !active || estimated;
}

static void
progress_notice(TimestampTz now)
{
	last_notice = now;
	if (mine.rows_estimated > 0)
		ereport(NOTICE,
				(errmsg("dbsync: %s.%s: %s, " INT64_FORMAT " of about " INT64_FORMAT " rows read (%d%%)",
						mine.server, mine.table, mine.phase, mine.rows_read,
						mine.rows_estimated,
						(int) Min(100, mine.rows_read * 100 / mine.rows_estimated))));
	else
		ereport(NOTICE,
				(errmsg("dbsync: %s.%s: %s, " INT64_FORMAT " rows read",
						mine.server, mine.table, mine.phase, mine.rows_read)));
}

/* One row read from the source (len bytes of COPY text). */
void
progress_row(int len)
{
	TimestampTz now;

	/* key reads of the delete check are not rows of the table */
	if (mine.phase[0] != 'd')
		mine.rows_read++;
	mine.bytes_read += len;
	if (!active || (mine.rows_read & 15) != 0)
		return;
	now = GetCurrentTimestamp();
	if (TimestampDifferenceExceeds(last_flush, now, PROGRESS_FLUSH_MS))
		publish();
	if (notices && TimestampDifferenceExceeds(last_notice, now, PROGRESS_NOTICE_MS))
		progress_notice(now);
}

void
progress_applied(int64 rows)
{
	mine.rows_applied += rows;
	if (active)
		publish();
}

/*
 * Rows and bytes read since the last call (totals in dbsync.tables grow by
 * what each committed checkpoint and each finished run read).
 */
void
progress_take_uncredited(int64 *rows_read, int64 *bytes_read)
{
	static int64 credited_rows = 0;
	static int64 credited_bytes = 0;
	static TimestampTz credited_for = 0;

	if (credited_for != mine.started_at)
	{
		credited_for = mine.started_at;
		credited_rows = credited_bytes = 0;
	}
	*rows_read = mine.rows_read - credited_rows;
	*bytes_read = mine.bytes_read - credited_bytes;
	credited_rows = mine.rows_read;
	credited_bytes = mine.bytes_read;
}

/* Counters of the table in progress, for its history row. */
void
progress_counts(int64 *rows_read, int64 *bytes_read)
{
	*rows_read = mine.rows_read;
	*bytes_read = mine.bytes_read;
}

/*
 * For the launcher: tables of a server being synced now, by anyone
 * (*busy), and by dbsync workers (*busy_workers).
 */
void
progress_busy(Oid serverid, int *busy, int *busy_workers)
{
	int			i;

	*busy = *busy_workers = 0;
	for (i = 0; slots != NULL && i < nslots; i++)
	{
		ProgressSlot *s = &slots[i];

		SpinLockAcquire(&s->mutex);
		if (s->pid != 0 && s->dbid == MyDatabaseId && s->serverid == serverid &&
			s->table[0] != '\0')
		{
			(*busy)++;
			if (strcmp(s->trigger, "worker") == 0)
				(*busy_workers)++;
		}
		SpinLockRelease(&s->mutex);
	}
}

/*
 * dbsync.progress_slots(): the slots of this database whose server the
 * caller may use (the function is callable by anyone; it filters itself).
 */
Datum
dbsync_progress_slots(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	for (i = 0; slots != NULL && i < nslots; i++)
	{
		ProgressSlot s;
		Datum		values[14];
		bool		nulls[14] = {0};

		SpinLockAcquire(&slots[i].mutex);
		memcpy(&s, &slots[i], sizeof(s));
		SpinLockRelease(&slots[i].mutex);
		if (s.pid == 0 || s.dbid != MyDatabaseId ||
			!SearchSysCacheExists1(FOREIGNSERVEROID, ObjectIdGetDatum(s.serverid)))
			continue;
		/* the server's users, and monitoring roles */
		if (pg_foreign_server_aclcheck(s.serverid, GetUserId(), ACL_USAGE) != ACLCHECK_OK &&
			!has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS))
			continue;
		values[0] = Int32GetDatum(s.pid);
		values[1] = ObjectIdGetDatum(s.serverid);
		values[2] = CStringGetDatum(s.server);
		values[3] = CStringGetTextDatum(s.table);
		nulls[3] = s.table[0] == '\0';
		values[4] = CStringGetTextDatum(s.trigger);
		values[5] = CStringGetTextDatum(s.mode);
		nulls[5] = s.mode[0] == '\0';
		values[6] = CStringGetTextDatum(s.phase);
		values[7] = TimestampTzGetDatum(s.started_at);
		values[8] = TimestampTzGetDatum(s.phase_started_at);
		values[9] = TimestampTzGetDatum(s.updated_at);
		values[10] = Int64GetDatum(s.rows_read);
		values[11] = Int64GetDatum(s.rows_applied);
		values[12] = Int64GetDatum(s.bytes_read);
		values[13] = Int64GetDatum(s.rows_estimated);
		nulls[13] = s.rows_estimated < 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* dbsync.progress_preloaded(): are there slots (dbsync preloaded)? */
Datum
dbsync_progress_preloaded(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(slots != NULL);
}
