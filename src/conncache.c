/*-------------------------------------------------------------------------
 * conncache.c
 *	  Source connections and discoveries kept for the next run of the same
 *	  backend: the next dbsync_run() of a session, the next round of a
 *	  background worker.
 *
 * One entry per server, as postgres_fdw's connection cache keeps one per
 * user mapping: the idle connection (the server owner's user mapping) and
 * the last discovery of its tables with the source's catalog version.
 * ALTER or DROP SERVER / USER MAPPING invalidates the entry (syscache
 * callbacks); an invalid connection is closed at the end of the
 * transaction, or when it is asked for.  A connection is handed out again
 * only when it is idle and healthy (driver idle_ok: open, nothing pending,
 * nothing arrived on its socket), was made under the same user mapping and
 * password rule, has been idle less than CONN_MAX_IDLE (load balancers and
 * NAT drop idle flows without a word) and open less than CONN_MAX_AGE; any
 * error while it is in use discards it (source.c).  At most
 * CONN_CACHE_MAX idle connections are kept (the least recently used goes),
 * idle ones past CONN_MAX_IDLE are closed at the end of any transaction,
 * and all are closed politely when the backend exits.  A discovery is used
 * again for at most DISCOVERY_MAX_AGE, whatever the catalog version says
 * (a grant can make tables visible without moving it).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <poll.h>

#include "storage/ipc.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "source.h"

#define CONN_CACHE_MAX 16
#define CONN_MAX_IDLE (240 * USECS_PER_SEC)
#define CONN_MAX_AGE (3600 * USECS_PER_SEC)
#define DISCOVERY_MAX_AGE (300 * USECS_PER_SEC)

typedef struct CacheEntry
{
	Oid			serverid;
	Oid			umid;			/* user mapping the connection was made with */
	bool		password_required;
	bool		invalid;		/* server or user mapping changed */
	uint64		generation;		/* moves with every invalidation: a
								 * connection handed out before one is not
								 * kept when it comes back */
	bool		no_version;		/* the source could not say its catalog
								 * version: discover every time */
	SourceConn *conn;			/* idle connection, or NULL */
	TimestampTz idle_since;
	MemoryContext cxt;			/* the discovery below */
	char	   *catalog_version;	/* of the source when discovered */
	TimestampTz discovered_at;
	List	   *tables;			/* RemoteTable *, as discover() gave them */
} CacheEntry;

static List *entries = NIL;		/* CacheEntry *, in TopMemoryContext */
static bool callbacks_registered = false;

static void conncache_exit(int code, Datum arg);

/* ALTER / DROP SERVER or USER MAPPING: forget what was made with it. */
static void
conncache_inval(Datum arg, int cacheid, uint32 hashvalue)
{
	ListCell   *lc;

	foreach(lc, entries)
	{
		CacheEntry *e = lfirst(lc);
		Oid			oid = cacheid == FOREIGNSERVEROID ? e->serverid : e->umid;

		if (hashvalue == 0 ||
			GetSysCacheHashValue1(cacheid, ObjectIdGetDatum(oid)) == hashvalue)
		{
			e->invalid = true;
			e->generation++;
		}
	}
}

static CacheEntry *
entry_for(Oid serverid, bool create)
{
	ListCell   *lc;
	CacheEntry *e;
	MemoryContext old;

	foreach(lc, entries)
	{
		e = lfirst(lc);
		if (e->serverid == serverid)
			return e;
	}
	if (!create)
		return NULL;
	if (!callbacks_registered)
	{
		CacheRegisterSyscacheCallback(FOREIGNSERVEROID, conncache_inval, (Datum) 0);
		CacheRegisterSyscacheCallback(USERMAPPINGOID, conncache_inval, (Datum) 0);
		on_proc_exit(conncache_exit, (Datum) 0);
		callbacks_registered = true;
	}
	e = MemoryContextAllocZero(TopMemoryContext, sizeof(CacheEntry));
	e->serverid = serverid;
	e->cxt = AllocSetContextCreate(TopMemoryContext, "dbsync discovery cache",
								   ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(TopMemoryContext);
	entries = lappend(entries, e);
	MemoryContextSwitchTo(old);
	return e;
}

/* Close the entry's idle connection, if any; never throws. */
static void
entry_close(CacheEntry *e)
{
	if (e->conn)
		e->conn->driver->close(e->conn, false);
	e->conn = NULL;
}

/* Forget the entry's connection (closed) and discovery; never throws. */
static void
entry_reset(CacheEntry *e)
{
	entry_close(e);
	MemoryContextReset(e->cxt);
	e->catalog_version = NULL;
	e->tables = NIL;
	e->no_version = false;
	e->invalid = false;
}

/*
 * End of a transaction: close what was invalidated meanwhile, and idle
 * connections past CONN_MAX_IDLE (a pooled session that runs other
 * transactions but no longer calls dbsync does not keep them; one that runs
 * nothing keeps them until it ends, as with postgres_fdw).
 */
void
conncache_at_xact_end(void)
{
	ListCell   *lc;
	TimestampTz now = 0;

	foreach(lc, entries)
	{
		CacheEntry *e = lfirst(lc);

		if (e->invalid)
			entry_reset(e);
		else if (e->conn)
		{
			if (now == 0)
				now = GetCurrentTimestamp();
			if (now - e->idle_since > CONN_MAX_IDLE)
				entry_close(e);
		}
	}
}

/* Backend exit: say goodbye to the sources (no "aborted connection"). */
static void
conncache_exit(int code, Datum arg)
{
	ListCell   *lc;

	foreach(lc, entries)
		entry_close(lfirst(lc));
}

/* At most CONN_CACHE_MAX idle connections: close the least recently used. */
static void
limit_idle(void)
{
	ListCell   *lc;
	CacheEntry *oldest;
	int			idle;

	for (;;)
	{
		idle = 0;
		oldest = NULL;
		foreach(lc, entries)
		{
			CacheEntry *e = lfirst(lc);

			if (e->conn == NULL)
				continue;
			idle++;
			if (oldest == NULL || e->idle_since < oldest->idle_since)
				oldest = e;
		}
		if (idle <= CONN_CACHE_MAX)
			return;
		entry_close(oldest);
	}
}

/* Nothing arrived on an idle connection's socket (no EOF, no message). */
bool
source_socket_quiet(int sock)
{
	struct pollfd pfd;

	if (sock < 0)
		return false;
	pfd.fd = sock;
	pfd.events = POLLIN;
	pfd.revents = 0;
	return poll(&pfd, 1, 0) == 0;
}

/*
 * A connection to cfg's source: the one kept from an earlier run when it
 * is still good for cfg, else a new one.  Registered (closed on abort).
 */
SourceConn *
source_acquire(SourceConfig *cfg)
{
	CacheEntry *e = entry_for(cfg->serverid, true);
	SourceConn *conn = e->conn;
	TimestampTz now = GetCurrentTimestamp();

	if (e->invalid || e->umid != cfg->umid ||
		e->password_required != cfg->password_required)
		entry_reset(e);
	else if (conn && (now - e->idle_since > CONN_MAX_IDLE ||
					  now - conn->opened_at > CONN_MAX_AGE ||
					  !conn->driver->idle_ok(conn)))
		entry_close(e);			/* old, or closed by the source, or odd */
	e->umid = cfg->umid;
	e->password_required = cfg->password_required;
	conn = e->conn;
	if (conn == NULL)
	{
		conn = source_connect(cfg);
		conn->reused = false;
	}
	else
	{
		e->conn = NULL;
		conn->cfg = cfg;
		conn->reused = true;
		source_register(conn);
	}
	conn->cache_gen = e->generation;
	return conn;
}

/*
 * A run is done with a connection: keep it for the next one when it is
 * idle (no snapshot or stream open), else close it.
 */
void
source_release(SourceConn *conn)
{
	CacheEntry *e;

	if (conn == NULL)
		return;
	e = entry_for(conn->cfg->serverid, false);
	if (e == NULL || e->invalid || conn->cache_gen != e->generation ||
		conn->busy || conn->in_snapshot ||
		e->umid != conn->cfg->umid || !conn->driver->idle_ok(conn))
	{
		source_close(conn);
		return;
	}
	source_forget(conn);
	entry_close(e);
	e->conn = conn;
	e->idle_since = GetCurrentTimestamp();
	conn->cfg = NULL;			/* the run's, about to go */
	limit_idle();
}

static List *
copy_tables(List *tables)
{
	List	   *copy = NIL;
	ListCell   *lc;

	foreach(lc, tables)
		copy = lappend(copy, remote_table_copy(lfirst(lc)));
	return copy;
}

/*
 * The tables of the connection's source: the last discovery when the
 * source's catalog version says nothing changed since, else a new one
 * (kept for the next run).  At most one catalog round trip either way,
 * plus the version's.
 */
/*
 * The source's catalog version, or NULL: also when reading it fails (an
 * older release without the function, say); the entry then stops asking
 * and every run discovers.
 */
static char *
catalog_version_of(CacheEntry *e, SourceConn *conn)
{
	Subxact		sx;
	MemoryContext cxt = CurrentMemoryContext;
	char	   *volatile version = NULL;

	if (conn->driver->catalog_version == NULL || e->no_version)
		return NULL;
	subxact_begin(&sx);
	PG_TRY();
	{
		char	   *v = conn->driver->catalog_version(conn);

		version = v ? MemoryContextStrdup(cxt, v) : NULL;
		subxact_commit(&sx);
	}
	PG_CATCH();
	{
		ErrorData  *edata = subxact_abort(&sx);

		if (subxact_is_interrupt(edata) ||
			ERRCODE_TO_CATEGORY(edata->sqlerrcode) == ERRCODE_CONNECTION_EXCEPTION)
			ReThrowError(edata);
		ereport(LOG,
				(errmsg("dbsync: source \"%s\" does not tell its catalog version, its tables are discovered by every run: %s",
						conn->cfg->server_name, edata->message)));
		FreeErrorData(edata);
		e->no_version = true;
	}
	PG_END_TRY();
	return version;
}

List *
source_discover(SourceConn *conn)
{
	CacheEntry *e = entry_for(conn->cfg->serverid, true);
	char	   *version = catalog_version_of(e, conn);
	List	   *tables;
	MemoryContext old;

	if (version && e->catalog_version && !e->invalid &&
		strcmp(version, e->catalog_version) == 0 &&
		GetCurrentTimestamp() - e->discovered_at <= DISCOVERY_MAX_AGE)
		return copy_tables(e->tables);

	tables = conn->driver->discover(conn);
	MemoryContextReset(e->cxt);
	e->catalog_version = NULL;
	e->tables = NIL;
	if (version && !e->invalid)
	{
		old = MemoryContextSwitchTo(e->cxt);
		e->tables = copy_tables(tables);
		e->catalog_version = pstrdup(version);
		e->discovered_at = GetCurrentTimestamp();
		MemoryContextSwitchTo(old);
	}
	return tables;
}
