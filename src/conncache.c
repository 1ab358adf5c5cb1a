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
 * nothing arrived on its socket) and was made under the same user mapping
 * and password rule; any error while it is in use discards it (source.c).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <poll.h>

#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "source.h"

typedef struct CacheEntry
{
	Oid			serverid;
	Oid			umid;			/* user mapping the connection was made with */
	bool		password_required;
	bool		invalid;		/* server or user mapping changed */
	SourceConn *conn;			/* idle connection, or NULL */
	MemoryContext cxt;			/* the discovery below */
	char	   *catalog_version;	/* of the source when discovered */
	List	   *tables;			/* RemoteTable *, as discover() gave them */
} CacheEntry;

static List *entries = NIL;		/* CacheEntry *, in TopMemoryContext */
static bool callbacks_registered = false;

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
			e->invalid = true;
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

/* Forget the entry's connection (closed) and discovery; never throws. */
static void
entry_reset(CacheEntry *e)
{
	if (e->conn)
		e->conn->driver->close(e->conn, false);
	e->conn = NULL;
	MemoryContextReset(e->cxt);
	e->catalog_version = NULL;
	e->tables = NIL;
	e->invalid = false;
}

/* Close what was invalidated meanwhile (end of a transaction). */
void
conncache_at_xact_end(void)
{
	ListCell   *lc;

	foreach(lc, entries)
	{
		CacheEntry *e = lfirst(lc);

		if (e->invalid)
			entry_reset(e);
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

	if (e->invalid || e->umid != cfg->umid ||
		e->password_required != cfg->password_required)
		entry_reset(e);
	else if (conn && !conn->driver->idle_ok(conn))
	{
		/* the source closed it, or it is in a state we did not leave */
		e->conn = NULL;
		conn->driver->close(conn, false);
	}
	e->umid = cfg->umid;
	e->password_required = cfg->password_required;
	conn = e->conn;
	if (conn == NULL)
		return source_connect(cfg);
	e->conn = NULL;
	conn->cfg = cfg;
	source_register(conn);
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
	if (e == NULL || e->invalid || conn->busy || conn->in_snapshot ||
		e->umid != conn->cfg->umid || !conn->driver->idle_ok(conn))
	{
		source_close(conn);
		return;
	}
	source_forget(conn);
	if (e->conn)
		e->conn->driver->close(e->conn, false);
	e->conn = conn;
	conn->cfg = NULL;			/* the run's, about to go */
}

static RemoteTable *
copy_table_deep(RemoteTable *rt)
{
	RemoteTable *copy = palloc0(sizeof(RemoteTable));
	ListCell   *lc;

	copy->name = pstrdup(rt->name);
	foreach(lc, rt->columns)
	{
		RemoteColumn *col = palloc(sizeof(RemoteColumn));

		*col = *(RemoteColumn *) lfirst(lc);
		col->name = pstrdup(col->name);
		col->remote_type = pstrdup(col->remote_type);
		col->local_type = col->local_type ? pstrdup(col->local_type) : NULL;
		col->fallback_type = col->fallback_type ? pstrdup(col->fallback_type) : NULL;
		col->cast_type = col->cast_type ? pstrdup(col->cast_type) : NULL;
		copy->columns = lappend(copy->columns, col);
	}
	foreach(lc, rt->primary_key)
		copy->primary_key = lappend(copy->primary_key, pstrdup(lfirst(lc)));
	return copy;
}

static List *
copy_tables(List *tables)
{
	List	   *copy = NIL;
	ListCell   *lc;

	foreach(lc, tables)
		copy = lappend(copy, copy_table_deep(lfirst(lc)));
	return copy;
}

/*
 * The tables of the connection's source: the last discovery when the
 * source's catalog version says nothing changed since, else a new one
 * (kept for the next run).  At most one catalog round trip either way,
 * plus the version's.
 */
List *
source_discover(SourceConn *conn)
{
	CacheEntry *e = entry_for(conn->cfg->serverid, true);
	char	   *version = conn->driver->catalog_version ?
		conn->driver->catalog_version(conn) : NULL;
	List	   *tables;
	MemoryContext old;

	if (version && e->catalog_version && !e->invalid &&
		strcmp(version, e->catalog_version) == 0)
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
		MemoryContextSwitchTo(old);
	}
	return tables;
}
