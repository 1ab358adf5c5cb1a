/*-------------------------------------------------------------------------
 * capture.c
 *	  Log capture (server option capture 'log'): one pass over a server's
 *	  logical replication stream, as dbsync_run(), CALL dbsync_sync() or
 *	  its background worker runs it.
 *
 * The first pass makes the publication (when dbsync keeps it) and the
 * slot, and loads every selected table in the slot's snapshot with the
 * cursor sync's COPY path: the load commits with the slot's consistent
 * point as the position applied (dbsync.captures).  Every pass then
 * streams from the position applied: the changes of each source
 * transaction are applied set-based (capture_apply.c) and committed with
 * the end of the transaction as the new position, in the same local
 * transaction; a transaction that ends before the stored position is
 * skipped (the source resends whole transactions after a restart), and
 * the source is acknowledged only what is committed here.  When nothing
 * of the publication changes, a keepalive's end of WAL becomes the
 * position (and is acknowledged), so the slot does not hold the source's
 * WAL back.
 *
 * dbsync_run() and dbsync_sync() stream until they have applied what the
 * source had written when they started; the worker streams on (a pass at
 * most CAPTURE_PASS_MAX, then the next one).  A table selected later is
 * added to the publication first and then read in a snapshot taken after
 * that: the changes streamed from the stored position replay onto it and
 * converge (an upsert or delete per key, unchanged values filled from the
 * row).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/objectaccess.h"
#include "commands/extension.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "executor/spi.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "postmaster/interrupt.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "apply.h"
#include "capture.h"
#include "run.h"
#include "source.h"

/* A worker's pass ends after this long (the next one rediscovers). */
#define CAPTURE_PASS_MAX (10 * 60 * USECS_PER_SEC)
/* A group of source transactions commits after this long or many rows. */
#define CAPTURE_GROUP_USECS (500 * 1000)
#define CAPTURE_GROUP_ROWS 20000
/* dbsync_run() stops when the source has been quiet this long. */
#define CAPTURE_QUIET_USECS (5 * USECS_PER_SEC)
/* The sets of all tables are flushed beyond this (one table's: 50,000 keys). */
#define CAPTURE_SET_BYTES (64 * 1024 * 1024)

/* The lock a pass holds on its server (a name no table has). */
#define CAPTURE_LOCK_NAME "\x01log capture"

/* The server's row of dbsync.captures. */
typedef struct CaptureState
{
	bool		exists;
	char	   *slot;
	char	   *publication;
	bool		publication_ours;
	XLogRecPtr	applied;
	bool		uncommitted;	/* this transaction wrote it (dbsync_run twice) */
	char	   *resync_slot;	/* after dbsync_resync: the slot it had */
} CaptureState;

/* One pass. */
typedef struct CapturePass
{
	RunOutput  *out;
	ForeignServer *server;
	SourceConfig *cfg;
	SourceConn **conn;			/* the run's ordinary connection */
	SourceConn *repl;			/* the replication connection */
	List	   *all_tables;		/* discovery */
	List	   *captured;		/* CapTable * */
	Oid			run_as;
	int			sec;
	bool		follow;			/* the worker: stream on */
	TimestampTz started;
	XLogRecPtr	applied;		/* committed (or, in one transaction, applied) */
	XLogRecPtr	committed;		/* committed here (and flushed) */
	XLogRecPtr	acked;			/* acknowledged to the source */
	XLogRecPtr	target;			/* dbsync_run: stop here (Invalid: when quiet) */
	XLogRecPtr	source_lsn;		/* the source's end of WAL, last reported */
	TimestampTz commit_time;	/* of the last transaction applied */
	bool		in_txn;
	bool		skip_txn;		/* applied before: resent after a restart */
	bool		stop;
	bool		caught_up;
	TimestampTz fresh_at;		/* freshness_at last written */
	int64		groups;			/* applied so far in this pass */
	bool		start_uncommitted;	/* the stored position is not committed */
	char	   *resync_slot;	/* a slot dbsync_resync() left to replace */
	bool		publication_marked; /* the publication is this server's */
	bool		again;			/* a table must be loaded again: one more pass */
	bool		streamed;		/* the pass ended well */
	List	   *republished;	/* tables dbsync put in its publication again */
	MemoryContext msgcxt;		/* one message's decoding */
	MemoryContext groupcxt;		/* one group's statements */
} CapturePass;

static bool server_changed = false;
static bool callback_registered = false;

static void
server_changed_cb(Datum arg, int cacheid, uint32 hashvalue)
{
	server_changed = true;
}

static Datum
lsn_datum(XLogRecPtr lsn)
{
	return LSNGetDatum(lsn);
}

static object_access_hook_type prev_object_access = NULL;

/*
 * DROP SERVER of a log capture server: the slot and publication stay at
 * the source (the mapping that could reach it goes with the server), and a
 * slot left behind holds the source's WAL: say what to drop there.
 */
static void
capture_object_access(ObjectAccessType access, Oid classId, Oid objectId, int subId,
					  void *arg)
{
	ForeignServer *server;
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(objectId)};
	char	   *slot = NULL;
	char	   *publication = NULL;

	if (prev_object_access)
		prev_object_access(access, classId, objectId, subId, arg);
	if (access != OAT_DROP || classId != ForeignServerRelationId ||
		!OidIsValid(get_extension_oid("dbsync", true)))
		return;
	/* (DROP EXTENSION .. CASCADE may have dropped the catalog already) */
	if (!OidIsValid(get_relname_relid("captures", get_namespace_oid("dbsync", true))))
		return;
	server = GetForeignServerExtended(objectId, FSV_MISSING_OK);
	if (server == NULL || server->fdwid != dbsync_fdw_oid())
		return;
	/* only a server that made a slot (dbsync.captures) leaves one behind */
	SPI_connect();
	catalog_exec("SELECT slot_name, CASE WHEN publication_ours THEN publication END "
				 "FROM dbsync.captures WHERE server_oid OPERATOR(pg_catalog.=) $1",
				 1, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		slot = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		publication = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	}
	SPI_finish();
	if (slot == NULL)
		return;
	ereport(WARNING,
			(errmsg("replication slot \"%s\" of server \"%s\" is not dropped at the source",
					slot, server->servername),
			 errdetail("A slot nobody reads keeps the source's WAL from being removed."),
			 errhint("Drop it at the source: SELECT pg_drop_replication_slot(%s);%s",
					 quote_literal_cstr(slot), publication ?
					 psprintf(" DROP PUBLICATION %s;", quote_identifier(publication)) : "")));
}

void
capture_init(void)
{
	prev_object_access = object_access_hook;
	object_access_hook = capture_object_access;
}

/* ---- dbsync.captures ---- */

static void
state_load(SourceConfig *cfg, CaptureState *cs)
{
	Oid			types[2] = {TEXTOID, OIDOID};
	Datum		values[2] = {CStringGetTextDatum(cfg->server_name), ObjectIdGetDatum(cfg->serverid)};

	memset(cs, 0, sizeof(*cs));
	catalog_exec("SELECT slot_name, publication, publication_ours, applied_lsn, xmin::pg_catalog.text, "
				 "slot_state FROM dbsync.captures "
				 "WHERE server OPERATOR(pg_catalog.=) $1 AND server_oid OPERATOR(pg_catalog.=) $2",
				 2, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		return;
	cs->slot = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	cs->publication = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	cs->publication_ours = strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3), "t") == 0;
	/* dbsync_resync() keeps the slot's name: it is this server's to drop */
	if (strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6), "resync") == 0)
	{
		cs->resync_slot = cs->slot;
		return;
	}
	cs->exists = true;
	/* written by this very transaction: not committed, never to acknowledge */
	cs->uncommitted = TransactionIdIsCurrentTransactionId((TransactionId)
														  strtoul(SPI_getvalue(SPI_tuptable->vals[0],
																			   SPI_tuptable->tupdesc, 5),
																  NULL, 10));
	cs->applied = DatumGetLSN(DirectFunctionCall1(pg_lsn_in,
												  CStringGetDatum(SPI_getvalue(SPI_tuptable->vals[0],
																			   SPI_tuptable->tupdesc, 4))));
}

static void
state_save_new(SourceConfig *cfg, XLogRecPtr consistent)
{
	Oid			types[6] = {TEXTOID, OIDOID, TEXTOID, TEXTOID, BOOLOID, LSNOID};
	Datum		values[6];

	values[0] = CStringGetTextDatum(cfg->server_name);
	values[1] = ObjectIdGetDatum(cfg->serverid);
	values[2] = CStringGetTextDatum(cfg->slot_name);
	values[3] = CStringGetTextDatum(cfg->publication);
	values[4] = BoolGetDatum(cfg->publication_ours);
	values[5] = lsn_datum(consistent);
	catalog_exec("INSERT INTO dbsync.captures AS c (server, server_oid, slot_name, publication, "
				 "publication_ours, consistent_point, applied_lsn, source_lsn, slot_state, updated_at) "
				 "VALUES ($1, $2, $3, $4, $5, $6, $6, $6, 'streaming', pg_catalog.now()) "
				 "ON CONFLICT (server) DO UPDATE SET server_oid = $2, slot_name = $3, publication = $4, "
				 "publication_ours = $5, consistent_point = $6, applied_lsn = $6, source_lsn = $6, "
				 "applied_commit_at = NULL, lag = NULL, slot_state = 'streaming', "
				 "created_at = pg_catalog.now(), updated_at = pg_catalog.now()",
				 6, types, values, NULL, SPI_OK_INSERT);
}

/* The position applied, with the rows it brought (same transaction). */
static void
state_save_position(CapturePass *p)
{
	Oid			types[6] = {TEXTOID, LSNOID, LSNOID, TIMESTAMPTZOID, TEXTOID, BOOLOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};

	values[0] = CStringGetTextDatum(p->cfg->server_name);
	values[1] = lsn_datum(p->applied);
	values[2] = lsn_datum(Max(p->source_lsn, p->applied));
	values[3] = TimestampTzGetDatum(p->commit_time);
	nulls[3] = p->commit_time == 0 ? 'n' : ' ';
	values[4] = CStringGetTextDatum(p->caught_up ? "caught_up" : "streaming");
	values[5] = BoolGetDatum(p->caught_up);
	catalog_exec("UPDATE dbsync.captures SET applied_lsn = $2, source_lsn = $3, "
				 "applied_commit_at = COALESCE($4, applied_commit_at), slot_state = $5, "
				 "lag = CASE WHEN $6 THEN '0'::pg_catalog.interval "
				 "  ELSE pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-) COALESCE($4, applied_commit_at) END, "
				 "updated_at = pg_catalog.now() WHERE server OPERATOR(pg_catalog.=) $1",
				 6, types, values, nulls, SPI_OK_UPDATE);
	/* the tables are as fresh as the last transaction applied (now, caught up) */
	if (GetCurrentTimestamp() - p->fresh_at < 5 * USECS_PER_SEC)
		return;
	p->fresh_at = GetCurrentTimestamp();
	catalog_exec("UPDATE dbsync.tables SET freshness_at = CASE WHEN $6 THEN pg_catalog.now() "
				 "  ELSE COALESCE($4, freshness_at) END "
				 "WHERE server OPERATOR(pg_catalog.=) $1 AND captured_since IS NOT NULL",
				 6, types, values, nulls, SPI_OK_UPDATE);
}

static void
state_delete(SourceConfig *cfg)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(cfg->server_name)};

	catalog_exec("DELETE FROM dbsync.captures WHERE server OPERATOR(pg_catalog.=) $1",
				 1, types, values, NULL, SPI_OK_DELETE);
}

/* A table's position: loaded, its changes applied from lsn on (Invalid: none). */
static void
table_set_captured(SourceConfig *cfg, const char *table, XLogRecPtr lsn)
{
	Oid			types[3] = {TEXTOID, TEXTOID, LSNOID};
	Datum		values[3] = {CStringGetTextDatum(cfg->server_name), CStringGetTextDatum(table),
	lsn_datum(lsn)};
	char		nulls[3] = {' ', ' ', XLogRecPtrIsInvalid(lsn) ? 'n' : ' '};

	catalog_exec("UPDATE dbsync.tables SET captured_since = $3 "
				 "WHERE server OPERATOR(pg_catalog.=) $1 AND ($2 OPERATOR(pg_catalog.=) '' "
				 "OR table_name OPERATOR(pg_catalog.=) $2)",
				 3, types, values, nulls, SPI_OK_UPDATE);
}

static void
tables_uncapture_others(SourceConfig *cfg, List *names)
{
	Oid			types[2] = {TEXTOID, TEXTARRAYOID};
	Datum		values[2] = {CStringGetTextDatum(cfg->server_name), list_to_text_array(names)};

	catalog_exec("UPDATE dbsync.tables SET captured_since = NULL "
				 "WHERE server OPERATOR(pg_catalog.=) $1 AND captured_since IS NOT NULL "
				 "AND NOT (table_name OPERATOR(pg_catalog.=) ANY ($2))",
				 2, types, values, NULL, SPI_OK_UPDATE);
}

static bool
table_is_captured(SourceConfig *cfg, const char *table)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(cfg->server_name), CStringGetTextDatum(table)};

	catalog_exec("SELECT 1 FROM dbsync.tables WHERE server OPERATOR(pg_catalog.=) $1 "
				 "AND table_name OPERATOR(pg_catalog.=) $2 AND captured_since IS NOT NULL",
				 2, types, values, NULL, SPI_OK_SELECT);
	return SPI_processed == 1;
}

/* A table's rows applied by the stream, in its status (same transaction). */
static void
table_save_applied(CapturePass *p, CapTable *t)
{
	Oid			types[6] = {TEXTOID, TEXTOID, INT8OID, INT8OID, INT8OID, TEXTOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', t->note ? ' ' : 'n'};

	values[0] = CStringGetTextDatum(p->cfg->server_name);
	values[1] = CStringGetTextDatum(t->name);
	values[2] = Int64GetDatum(t->upserted);
	values[3] = Int64GetDatum(t->deleted);
	values[4] = Int64GetDatum(t->inserted - t->removed);
	values[5] = t->note ? CStringGetTextDatum(t->note) : (Datum) 0;
	catalog_exec("UPDATE dbsync.tables SET last_status = 'ok', last_mode = 'incremental', "
				 "last_synced_at = pg_catalog.now(), last_error = NULL, last_error_at = NULL, "
				 "last_rows_upserted = $3, last_rows_deleted = $4, "
				 "rows_total = GREATEST(COALESCE(rows_total, 0) OPERATOR(pg_catalog.+) $5, 0), "
				 "last_message = COALESCE($6, last_message) "
				 "WHERE server OPERATOR(pg_catalog.=) $1 AND table_name OPERATOR(pg_catalog.=) $2",
				 6, types, values, nulls, SPI_OK_UPDATE);
	t->rows_total = Max(t->rows_total + t->inserted - t->removed, 0);
	t->inserted = 0;
	t->removed = 0;
	t->note_saved = t->note != NULL;
}

/* The captured tables failing before (a pass that failed): streaming again. */
static void
tables_clear_errors(CapturePass *p)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(p->cfg->server_name)};

	catalog_exec("UPDATE dbsync.tables SET last_status = 'ok', last_error = NULL, last_error_at = NULL, "
				 "consecutive_failures = 0, first_failure_at = NULL, last_sqlstate = NULL, "
				 "last_error_class = NULL, last_remote_sql = NULL, "
				 "health_state = CASE WHEN paused_at IS NULL THEN 'ok' ELSE health_state END "
				 "WHERE server OPERATOR(pg_catalog.=) $1 AND captured_since IS NOT NULL "
				 "AND last_status OPERATOR(pg_catalog.=) 'error'",
				 1, types, values, NULL, SPI_OK_UPDATE);
}

/* ---- the source's publication and slot ---- */

/*
 * What dbsync writes on a publication it makes (COMMENT ON PUBLICATION): a
 * publication, or a slot left by an earlier try, is this server's to
 * change or drop only when its publication says so.
 */
static char *
publication_marker(SourceConfig *cfg)
{
	return psprintf("dbsync: warehouse " UINT64_FORMAT ", database %u, server %s",
					GetSystemIdentifier(), MyDatabaseId, quote_identifier(cfg->server_name));
}

/*
 * The publication holds exactly the captured tables when dbsync keeps it
 * (created or changed); a publication the user named must hold them: the
 * ones it lacks are returned.
 */
static List *
ensure_publication(CapturePass *p, List *names)
{
	SourceConfig *cfg = p->cfg;
	const LogDriver *log = cfg->driver->log;
	bool		exists;
	char	   *comment = NULL;
	char	   *problem = NULL;
	List	   *has = log->publication_tables(*p->conn, cfg->publication, cfg->schema, &exists,
											  &comment, &problem);
	List	   *missing = NIL;
	ListCell   *lc;

	foreach(lc, names)
		if (!name_in_list(has, lfirst(lc)))
			missing = lappend(missing, lfirst(lc));
	if (problem)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("publication \"%s\" of server \"%s\" does not publish every change of its tables",
						cfg->publication, cfg->server_name),
				 errdetail("%s", problem),
				 errhint("Publish inserts, updates, deletes and truncates of whole rows, and partitions through their root: CREATE PUBLICATION ... FOR TABLE ... WITH (publish_via_partition_root = true), without row filters or column lists.")));
	if (cfg->publication_ours && exists && (comment == NULL || strcmp(comment, publication_marker(cfg)) != 0))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("publication \"%s\" exists at the source of server \"%s\" but dbsync did not make it for this server",
						cfg->publication, cfg->server_name),
				 errdetail("Another warehouse, server or tool may use it; dbsync changes only the publication it made."),
				 errhint("Name it with ALTER SERVER %s OPTIONS (ADD publication %s) to use it as it is, or give this server another one (publication option), or drop it at the source if nothing uses it.",
						 quote_identifier(cfg->server_name), quote_literal_cstr(cfg->publication))));
	/* made before this pass (with the slot after it): a slot there is ours */
	p->publication_marked = cfg->publication_ours && exists;
	if (!cfg->publication_ours)
	{
		if (!exists)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("publication \"%s\" does not exist at the source of server \"%s\"",
							cfg->publication, cfg->server_name),
					 errhint("Create it at the source (CREATE PUBLICATION %s FOR TABLE ...), or drop the server option \"publication\" to let dbsync keep one.",
							 quote_identifier(cfg->publication))));
		return missing;
	}
	if (names == NIL)
		return NIL;
	/* a table (re)added to the publication missed changes: loaded again */
	p->republished = missing;
	if (!exists || missing != NIL || list_length(has) != list_length(names))
	{
		MemoryContext mcxt = CurrentMemoryContext;

		PG_TRY();
		{
			log->publication_set(*p->conn, cfg->publication, !exists, cfg->schema, names,
								 publication_marker(cfg));
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(mcxt);
			edata = CopyErrorData();
			if (edata->sqlerrcode != ERRCODE_INSUFFICIENT_PRIVILEGE &&
				ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_INSUFFICIENT_PRIVILEGE)
				PG_RE_THROW();
			FlushErrorState();
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("the source role of server \"%s\" may not %s publication \"%s\"",
							cfg->server_name, exists ? "change" : "create", cfg->publication),
					 errdetail("%s", edata->message),
					 errhint("Run at the source, as the tables' owner: %s %s FOR TABLE ... (the selected tables); then ALTER SERVER %s OPTIONS (ADD publication %s).",
							 exists ? "ALTER PUBLICATION" : "CREATE PUBLICATION",
							 quote_identifier(cfg->publication),
							 quote_identifier(cfg->server_name),
							 quote_literal_cstr(cfg->publication))));
		}
		PG_END_TRY();
	}
	return NIL;
}

/* The slot must exist, be free and not lost. */
static void
check_slot(CapturePass *p, const char *slot, XLogRecPtr applied)
{
	bool		active;
	bool		lost;
	XLogRecPtr	confirmed;

	if (!p->cfg->driver->log->slot_exists(p->repl, slot, &active, &lost, &confirmed))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("replication slot \"%s\" of server \"%s\" is gone at the source",
						slot, p->cfg->server_name),
				 errdetail("The changes since the last position applied cannot be read any more."),
				 errhint("Load the tables again from a new slot: SELECT dbsync_resync(%s); then run the server.",
						 quote_literal_cstr(p->cfg->server_name))));
	if (lost)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replication slot \"%s\" of server \"%s\" was invalidated at the source",
						slot, p->cfg->server_name),
				 errdetail("The source removed WAL the slot still needed (max_slot_wal_keep_size, or retention expired)."),
				 errhint("Load the tables again from a new slot: SELECT dbsync_resync(%s); then run the server.",
						 quote_literal_cstr(p->cfg->server_name))));
	/*
	 * The source was told more than is committed here (a run rolled back
	 * after it replaced the slot, another consumer): what lies between is
	 * gone from the stream.
	 */
	if (!XLogRecPtrIsInvalid(applied) && confirmed > applied)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replication slot \"%s\" of server \"%s\" is past the position applied here (%X/%X, slot at %X/%X)",
						slot, p->cfg->server_name, LSN_FORMAT_ARGS(applied), LSN_FORMAT_ARGS(confirmed)),
				 errdetail("Changes between them cannot be read any more: a run that replaced the slot was rolled back, or another consumer reads it."),
				 errhint("Load the tables again from a new slot: SELECT dbsync_resync(%s); then run the server.",
						 quote_literal_cstr(p->cfg->server_name))));
	if (active)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("replication slot \"%s\" of server \"%s\" is in use by another process",
						slot, p->cfg->server_name),
				 errhint("Another consumer reads this slot: stop it, or give this server another slot_name.")));
}

/* ---- the captured tables ---- */

static CapTable *
captable_new(CapturePass *p, RemoteTable *orig)
{
	CapTable   *t = palloc0(sizeof(CapTable));
	TableState *st = catalog_load(p->cfg->server_name, orig->name);

	t->name = pstrdup(orig->name);
	t->rt = remote_table_copy(orig);
	t->pk = effective_pk(t->rt, st);
	t->rt->primary_key = t->pk;
	typemap_resolve(t->rt);
	t->target = target_name(p->cfg, orig->name);
	t->soft = p->cfg->deletes == DELETES_SOFT;
	t->keep_deleted = p->cfg->deletes == DELETES_IGNORE;
	t->rows_total = st->rows_total;
	capture_table_reset(t);
	return t;
}

/*
 * The target as the source's table is now: created or widened, checked
 * writable for the owner (apply_prepare_target).  Returns false when it
 * must be loaded again: created (dropped since), or columns added or
 * retyped at the source since it was loaded.
 */
static bool
prepare_target(CapturePass *p, CapTable *t)
{
	TableState *st = catalog_load(p->cfg->server_name, t->name);
	List	   *added;
	char	   *note = NULL;
	bool		created;
	bool		reshaped;

	(void) apply_prepare_target(p->cfg, t->rt, t->pk, t->soft, st->target_relid, &added,
								&note, &created, &reshaped);
	/* columns added or retyped at the source: rewritten rows are not streamed */
	if (added != NIL || reshaped)
		created = true;
	if (citus_target(t->target))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("log capture into Citus table %s is not supported", t->target),
				 errhint("Use capture 'cursor' for servers whose targets Citus distributes.")));
	if (note)
		t->note = note;
	return !created;
}

static CapTable *
captable_by_relid(CapturePass *p, uint32 relid)
{
	ListCell   *lc;

	foreach(lc, p->captured)
	{
		CapTable   *t = lfirst(lc);

		if (t->relid == relid)
			return t->failed ? NULL : t;
	}
	return NULL;
}

/* Where each target column and key column is in the source's description. */
static void
map_columns(CapTable *t, const PgoRelation *rel)
{
	ListCell   *lc;
	MemoryContext old = MemoryContextSwitchTo(GetMemoryChunkContext(t));

	t->col_att = palloc(sizeof(int) * Max(list_length(t->rt->columns), 1));
	t->key_att = palloc(sizeof(int) * Max(list_length(t->pk), 1));
	foreach(lc, t->rt->columns)
	{
		t->col_att[foreach_current_index(lc)] = -1;
		for (int i = 0; i < rel->natts; i++)
			if (strcmp(rel->attnames[i], ((RemoteColumn *) lfirst(lc))->name) == 0)
				t->col_att[foreach_current_index(lc)] = i;
	}
	foreach(lc, t->pk)
	{
		t->key_att[foreach_current_index(lc)] = -1;
		for (int i = 0; i < rel->natts; i++)
			if (strcmp(rel->attnames[i], lfirst(lc)) == 0)
				t->key_att[foreach_current_index(lc)] = i;
	}
	t->natts = rel->natts;
	t->atttypes = palloc(sizeof(Oid) * Max(rel->natts, 1));
	memcpy(t->atttypes, rel->atttypes, sizeof(Oid) * rel->natts);
	t->atttypmods = palloc(sizeof(int32) * Max(rel->natts, 1));
	memcpy(t->atttypmods, rel->atttypmods, sizeof(int32) * rel->natts);
	MemoryContextSwitchTo(old);
}

/*
 * A table the stream cannot go on applying (its identity lacks the key, a
 * value its target refuses ...): its error recorded, its changes left out
 * from here, and it is loaded again by a later pass.  The other tables go
 * on.
 */
static void
table_fail(CapturePass *p, CapTable *t, const char *message)
{
	catalog_save_error(p->cfg->server_name, p->cfg->serverid, t->name, p->cfg->target_schema,
					   message, NULL);
	table_set_captured(p->cfg, t->name, InvalidXLogRecPtr);
	emit(p->out, t->name, "incremental", 0, 0, p->started, "error", message);
	capture_table_reset(t);
	t->inserted = 0;
	t->removed = 0;
	t->failed = true;
}

/* Apply a table's set in a subtransaction: a failure is the table's. */
static void
flush_table(CapturePass *p, CapTable *t)
{
	Subxact		sx;

	if (t->failed || t->nchanges == 0)
		return;
	subxact_begin(&sx);
	PG_TRY();
	{
		capture_flush_table(t, t->rows_total);
		subxact_commit(&sx);
	}
	PG_CATCH();
	{
		ErrorData  *edata = subxact_abort(&sx);

		if (subxact_is_interrupt(edata))
			ReThrowError(edata);
		table_fail(p, t, error_text(edata));
	}
	PG_END_TRY();
}

/*
 * A change of the table's columns at the source (a new column, a type):
 * rows it rewrote (defaults, USING) send no change, so the table is loaded
 * again, by another pass of the same call, and the stream goes on.
 */
static void
table_reload(CapturePass *p, CapTable *t)
{
	flush_table(p, t);
	table_set_captured(p->cfg, t->name, InvalidXLogRecPtr);
	capture_table_reset(t);
	t->failed = true;
	p->again = true;
	p->stop = true;
}

/* Can the table's changes be keyed: its replica identity holds the key? */
static bool
identity_holds_key(CapTable *t, const PgoRelation *rel)
{
	if (rel->replident == 'f')
		return true;
	for (int k = 0; k < list_length(t->pk); k++)
	{
		int			i = t->key_att[k];

		if (i < 0 || !rel->attkey[i])
			return false;
	}
	return true;
}

/* Does the description name a column the target lacks, or change a type? */
static bool
relation_drifted(CapTable *t, const PgoRelation *rel)
{
	if (t->atttypes && t->natts == rel->natts &&
		(memcmp(t->atttypes, rel->atttypes, sizeof(Oid) * rel->natts) != 0 ||
		 memcmp(t->atttypmods, rel->atttypmods, sizeof(int32) * rel->natts) != 0))
		return true;
	for (int i = 0; i < rel->natts; i++)
		if (find_column(t->rt, rel->attnames[i]) == NULL)
			return true;
	return false;
}

/*
 * A Relation message: the table's columns as the source has them now.  A
 * new column or a changed type makes the table load again (table_reload);
 * a replica identity without the key fails the table.
 */
static void
on_relation(CapturePass *p, const PgoRelation *rel)
{
	ListCell   *lc;

	if (strcmp(rel->nspname, p->cfg->schema) != 0)
		return;
	foreach(lc, p->captured)
	{
		CapTable   *t = lfirst(lc);

		if (strcmp(t->name, rel->relname) != 0)
			continue;
		t->relid = rel->relid;
		if (t->failed)
			continue;
		if (relation_drifted(t, rel))
		{
			table_reload(p, t);
			continue;
		}
		map_columns(t, rel);
		if (!identity_holds_key(t, rel))
			table_fail(p, t, psprintf("the replica identity of table \"%s\" at the source does not hold its key (%s): its updates and deletes cannot be applied\nHINT: Run at the source: ALTER TABLE %s REPLICA IDENTITY DEFAULT (or FULL); then SELECT dbsync_resync(%s, %s).",
									  t->name, apply_name_list_text(t->pk),
									  quote_qualified_identifier(p->cfg->schema, t->name),
									  quote_literal_cstr(p->cfg->server_name),
									  quote_literal_cstr(t->name)));
	}
}

/* Empty (soft: flag) the target, in a subtransaction: a failure is the table's. */
static void
truncate_target(CapturePass *p, CapTable *t)
{
	Subxact		sx;

	subxact_begin(&sx);
	PG_TRY();
	{
		if (t->soft)
			spi_exec(psprintf("UPDATE %s SET _dbsync_deleted = true, _dbsync_synced_at = pg_catalog.now() "
							  "WHERE NOT _dbsync_deleted", t->target), SPI_OK_UPDATE);
		else
			spi_exec(psprintf("DELETE FROM %s", t->target), SPI_OK_DELETE);
		t->removed += (int64) SPI_processed;
		t->deleted += (int64) SPI_processed;
		subxact_commit(&sx);
	}
	PG_CATCH();
	{
		ErrorData  *edata = subxact_abort(&sx);

		if (subxact_is_interrupt(edata))
			ReThrowError(edata);
		table_fail(p, t, error_text(edata));
	}
	PG_END_TRY();
}

/* TRUNCATE at the source: the set so far applied, then the target emptied. */
static void
on_truncate(CapturePass *p, const PgoMessage *msg)
{
	for (int i = 0; i < msg->ntruncate; i++)
	{
		CapTable   *t = captable_by_relid(p, msg->truncated[i]->relid);

		if (t == NULL || t->keep_deleted)
			continue;
		flush_table(p, t);
		if (t->failed)
			continue;
		truncate_target(p, t);
	}
}

/* ---- the stream ---- */

static void
flush_all(CapturePass *p)
{
	ListCell   *lc;

	foreach(lc, p->captured)
		flush_table(p, lfirst(lc));
}

/* Changes held in memory, not applied yet: keys (or, bytes, their size). */
static int64
pending(CapturePass *p, bool bytes)
{
	ListCell   *lc;
	int64		n = 0;

	foreach(lc, p->captured)
		n += bytes ? ((CapTable *) lfirst(lc))->bytes : ((CapTable *) lfirst(lc))->nchanges;
	return n;
}

/* A decoded message. */
static void
on_message(CapturePass *p, PgoMessage *msg, XLogRecPtr *group_end)
{
	CapTable   *t;

	switch (msg->kind)
	{
		case PGO_BEGIN:
			p->in_txn = true;
			/* ends before what is applied: applied before a restart */
			p->skip_txn = msg->lsn < p->applied;
			break;
		case PGO_COMMIT:
			p->in_txn = false;
			if (!p->skip_txn)
			{
				*group_end = Max(*group_end, msg->end_lsn);
				p->commit_time = msg->commit_time;
			}
			p->skip_txn = false;
			break;
		case PGO_RELATION:
			on_relation(p, msg->rel);
			break;
		case PGO_INSERT:
		case PGO_UPDATE:
		case PGO_DELETE:
			if (p->skip_txn)
				break;
			t = captable_by_relid(p, msg->rel->relid);
			if (t == NULL)
				break;
			{
				char	   *why = capture_add_change(t, msg);

				if (why)
				{
					table_fail(p, t, why);
					break;
				}
			}
			if (capture_table_full(t))
				flush_table(p, t);
			else if (pending(p, true) >= CAPTURE_SET_BYTES)
				flush_all(p);
			break;
		case PGO_TRUNCATE:
			if (!p->skip_txn)
				on_truncate(p, msg);
			break;
		default:
			break;
	}
}

/* Should the pass end at this transaction boundary? */
static bool
pass_done(CapturePass *p, XLogRecPtr reached)
{
	if (p->follow)
		return server_changed || ConfigReloadPending ||
			GetCurrentTimestamp() - p->started > CAPTURE_PASS_MAX;
	if (XLogRecPtrIsInvalid(p->target))
		return false;
	return reached >= p->target;
}

/*
 * One group of source transactions, received and applied in the caller's
 * subtransaction: ends at a transaction boundary after CAPTURE_GROUP_USECS
 * or CAPTURE_GROUP_ROWS, when the stream is quiet, or when the pass is
 * done.  The position reached is saved with the rows.
 */
static void
stream_group(CapturePass *p)
{
	const LogDriver *log = p->cfg->driver->log;
	TimestampTz group_start = GetCurrentTimestamp();
	TimestampTz quiet_since = 0;
	XLogRecPtr	group_end = InvalidXLogRecPtr;
	bool		idle_advance = false;
	MemoryContext caller = MemoryContextSwitchTo(p->groupcxt);

	/* what the group's statements leave (tuple tables) goes with it */
	SPI_connect();

	for (;;)
	{
		PgoMessage	msg;
		XLogRecPtr	wal_end = InvalidXLogRecPtr;
		bool		reply = false;
		LogEventKind kind;
		bool		boundary;
		MemoryContext old;

		old = MemoryContextSwitchTo(p->msgcxt);	/* (back to the group's below) */
		kind = log->next(p->repl, !p->in_txn && !XLogRecPtrIsInvalid(group_end) ? 0 : 1000,
						 &msg, &wal_end, &reply);
		if (kind == LOG_MESSAGE)
		{
			p->source_lsn = Max(p->source_lsn, wal_end);
			on_message(p, &msg, &group_end);
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(p->msgcxt);

		if (kind == LOG_END)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("source \"%s\" ended the replication stream", p->cfg->server_name),
					 errhint("Run the server again; check the source's log if it goes on.")));
		if (kind == LOG_KEEPALIVE)
		{
			p->source_lsn = Max(p->source_lsn, wal_end);
			if (reply)
				log->ack(p->repl, p->acked);	/* (a status update: nothing new) */
			/* nothing of ours before wal_end is left unapplied */
			if (!p->in_txn && XLogRecPtrIsInvalid(group_end) && pending(p, false) == 0)
			{
				p->caught_up = true;
				if (wal_end > p->applied)
				{
					group_end = wal_end;
					idle_advance = true;
				}
				if (!p->follow && XLogRecPtrIsInvalid(p->target))
					p->stop = true;
			}
		}
		if (kind == LOG_MESSAGE && msg.kind == PGO_BEGIN)
			p->caught_up = false;
		/* an ALTER or DROP SERVER meanwhile ends a worker's pass (pass_done) */
		if (kind == LOG_NOTHING || kind == LOG_KEEPALIVE)
			AcceptInvalidationMessages();
		if (kind == LOG_NOTHING && !p->in_txn)
		{
			if (quiet_since == 0)
				quiet_since = GetCurrentTimestamp();
			else if (!p->follow && GetCurrentTimestamp() - quiet_since > CAPTURE_QUIET_USECS)
				p->stop = true;
		}
		else
			quiet_since = 0;

		boundary = !p->in_txn;
		if (!boundary)
			continue;
		if (pass_done(p, Max(Max(group_end, p->applied), p->source_lsn)))
			p->stop = true;
		if (p->stop)
			break;
		if (!XLogRecPtrIsInvalid(group_end) &&
			(kind == LOG_NOTHING || idle_advance ||
			 GetCurrentTimestamp() - group_start >= CAPTURE_GROUP_USECS ||
			 pending(p, false) >= CAPTURE_GROUP_ROWS))
			break;
		/* a quiet worker still commits now and then: no snapshot held for long */
		if (kind == LOG_NOTHING && p->follow && pending(p, false) == 0 &&
			GetCurrentTimestamp() - group_start >= CAPTURE_QUIET_USECS)
			break;
		CHECK_FOR_INTERRUPTS();
	}

	flush_all(p);
	if (!XLogRecPtrIsInvalid(group_end) && group_end > p->applied)
		p->applied = group_end;
	state_save_position(p);
	{
		ListCell   *lc;

		foreach(lc, p->captured)
		{
			CapTable   *t = lfirst(lc);

			if (!t->failed &&
				(t->inserted != 0 || t->removed != 0 || (t->note && !t->note_saved)))
				table_save_applied(p, t);
		}
	}
	/* the stream works: a failure recorded before is over */
	if (p->groups++ == 0)
		tables_clear_errors(p);
	SPI_finish();
	MemoryContextSwitchTo(caller);
	MemoryContextReset(p->groupcxt);
}

/*
 * Commit what the pass applied (a procedure or worker); the source is told
 * at the start of the next group (in its subtransaction: a failure there
 * is the pass's, recorded), never before the commit is flushed.
 */
static void
commit_group(CapturePass *p)
{
	if (!p->out->commit_batches)
		return;
	run_commit(p->out, p->run_as, p->sec);
	if (XactLastCommitEnd != 0)
		XLogFlush(XactLastCommitEnd);
	p->committed = p->applied;
}

/* Acknowledge what is committed (streaming only). */
static void
ack_committed(CapturePass *p)
{
	if (p->committed > p->acked)
	{
		p->cfg->driver->log->ack(p->repl, p->committed);
		p->acked = p->committed;
	}
}

/* Report each captured table's changes of this pass (history, health, output). */
static void
report_tables(CapturePass *p)
{
	ListCell   *lc;

	foreach(lc, p->captured)
	{
		CapTable   *t = lfirst(lc);
		RunRecord	rec;

		/* (failed: its error stands; loaded again: that load reported it) */
		if (t->failed)
			continue;
		run_record_init(p->out, p->cfg->serverid, p->cfg->server_name, t->name, &rec);
		rec.started_at = p->started;
		rec.mode = "incremental";
		rec.rows_upserted = t->upserted;
		rec.rows_deleted = t->deleted;
		rec.message = t->note;
		history_record(&rec);
		health_record_success(&rec, t->upserted, t->deleted, GetCurrentTimestamp(),
							  p->out->interval_secs);
		emit(p->out, t->name, "incremental", t->upserted, t->deleted, p->started, "ok",
			 t->note);
	}
}

/* ---- a pass ---- */

/*
 * Load tables in a snapshot: the slot's (snapshot set: the first load) or
 * a new one (a table selected later).  Returns the tables that loaded;
 * *failed counts those that failed (a paused or disabled table is passed
 * over: a later pass loads it).
 */
static List *
load_tables(CapturePass *p, List *rts, const char *snapshot, int *failed)
{
	List	   *loaded = NIL;
	SourceConn *reader = NULL;
	ListCell   *lc;

	foreach(lc, rts)
	{
		RemoteTable *rt = lfirst(lc);
		SyncResult	total = {0};
		RunRecord	rec;

		if (!table_may_run(p->out, p->cfg, rt->name, &rec))
			continue;
		if (reader == NULL)
		{
			reader = source_connect(p->cfg);
			reader->snapshot = snapshot ? pstrdup(snapshot) : NULL;
		}
		total.log_load = true;
		run_table_begin(p->out, p->cfg, &rec);
		(void) run_table_step(p->out, p->cfg, &reader, rt, &total, &rec);
		progress_end();
		if (total.status && strcmp(total.status, "ok") == 0)
			loaded = lappend(loaded, rt);
		else if (!total.status || strcmp(total.status, "skipped") != 0)
			(*failed)++;
	}
	if (reader)
		source_close(reader);
	return loaded;
}

/* Why the table's updates and deletes cannot be keyed (NULL: they can). */
static char *
identity_problem(CapturePass *p, const char *table, List *pk)
{
	List	   *ident = p->cfg->driver->log->replica_identity(*p->conn, p->cfg->schema, table);
	ListCell   *lc;

	if (list_length(ident) == 1 && strcmp(linitial(ident), "*") == 0)
		return NULL;
	foreach(lc, pk)
		if (!name_in_list(ident, lfirst(lc)))
			return psprintf("the replica identity of table \"%s\" at the source does not hold its key (%s): its updates and deletes cannot be applied\nHINT: Run at the source: ALTER TABLE %s REPLICA IDENTITY DEFAULT (or FULL); then run the server again.",
							table, apply_name_list_text(pk),
							quote_qualified_identifier(p->cfg->schema, table));
	return NULL;
}

/* Tables without a key cannot be captured: said once per pass. */
static List *
keyed_tables(CapturePass *p, List *names)
{
	List	   *keyed = NIL;
	ListCell   *lc;

	foreach(lc, names)
	{
		RemoteTable *rt = find_remote_table(p->all_tables, lfirst(lc));
		TableState *st = catalog_load(p->cfg->server_name, rt->name);

		List	   *pk = effective_pk(rt, st);

		if (pk != NIL)
		{
			char	   *why = identity_problem(p, rt->name, pk);

			if (why == NULL)
			{
				keyed = lappend(keyed, rt);
				continue;
			}
			catalog_ensure(p->cfg->server_name, p->cfg->serverid, rt->name, p->cfg->target_schema);
			catalog_save_error(p->cfg->server_name, p->cfg->serverid, rt->name,
							   p->cfg->target_schema, why, NULL);
			emit(p->out, rt->name, NULL, 0, 0, p->started, "error", why);
			continue;
		}
		catalog_ensure(p->cfg->server_name, p->cfg->serverid, rt->name, p->cfg->target_schema);
		catalog_save_error(p->cfg->server_name, p->cfg->serverid, rt->name, p->cfg->target_schema,
						   psprintf("table \"%s\" has no primary key: log capture needs one\nHINT: Add a primary key at the source, set one with dbsync_set_table(%s, %s, primary_key => '{...}'), or sync this server with capture 'cursor'.",
									rt->name, quote_literal_cstr(p->cfg->server_name),
									quote_literal_cstr(rt->name)), NULL);
		emit(p->out, rt->name, NULL, 0, 0, p->started, "error",
			 psprintf("table \"%s\" has no primary key: log capture needs one\nHINT: Add a primary key at the source, or sync this server with capture 'cursor'.",
					  rt->name));
	}
	return keyed;
}

static List *
rt_names(List *rts)
{
	List	   *names = NIL;
	ListCell   *lc;

	foreach(lc, rts)
		names = lappend(names, ((RemoteTable *) lfirst(lc))->name);
	return names;
}

/*
 * No capture state: a new slot (one left by an earlier try is dropped: the
 * slot_name is this server's), every table loaded in its snapshot, and
 * the state saved with the slot's consistent point.  False when a table
 * failed (the slot is dropped; the next pass starts again).
 */
static bool
start_capture(CapturePass *p, List *keyed)
{
	const LogDriver *log = p->cfg->driver->log;
	XLogRecPtr	consistent;
	char	   *snapshot;
	bool		active;
	bool		lost;
	List	   *loaded;
	ListCell   *lc;
	int			failed = 0;
	XLogRecPtr	confirmed;

	if (log->slot_exists(p->repl, p->cfg->slot_name, &active, &lost, &confirmed))
	{
		if (active)
			check_slot(p, p->cfg->slot_name, InvalidXLogRecPtr);
		/*
		 * Left by an earlier try or by dbsync_resync() of this server: its
		 * name is in dbsync.captures, or dbsync's own publication (made
		 * before the slot) is there.  Anybody else's is left alone.
		 */
		if (!(p->resync_slot && strcmp(p->resync_slot, p->cfg->slot_name) == 0) &&
			!p->publication_marked)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("replication slot \"%s\" exists at the source of server \"%s\" but dbsync did not make it for this server",
							p->cfg->slot_name, p->cfg->server_name),
					 errhint("Give this server another slot with ALTER SERVER %s OPTIONS (ADD slot_name '...'), or drop the slot at the source if nothing uses it: SELECT pg_drop_replication_slot(%s).",
							 quote_identifier(p->cfg->server_name), quote_literal_cstr(p->cfg->slot_name))));
		log->drop_slot(p->repl, p->cfg->slot_name);
	}
	log->create_slot(p->repl, p->cfg->slot_name, &consistent, &snapshot);
	/* a table that fails its load is loaded again by a later pass (fresh) */
	loaded = load_tables(p, keyed, snapshot, &failed);
	state_save_new(p->cfg, consistent);
	foreach(lc, loaded)
		table_set_captured(p->cfg, ((RemoteTable *) lfirst(lc))->name, consistent);
	p->applied = consistent;
	return true;
}

static void
pass_failed(CapturePass *p, Subxact *sx)
{
	ErrorData  *edata = run_step_failed(sx, &p->repl);

	record_server_error(p->out, p->cfg, p->server, NULL, edata, p->started);
}

/* Prepare the pass: publication, slot, loads.  False: nothing to stream. */
static bool
capture_prepare(CapturePass *p, List *keyed)
{
	CaptureState cs;
	List	   *fresh = NIL;
	ListCell   *lc;

	state_load(p->cfg, &cs);
	if (cs.exists && strcmp(cs.slot, p->cfg->slot_name) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("server \"%s\" streams from slot \"%s\", not from its slot_name \"%s\"",
						p->cfg->server_name, cs.slot, p->cfg->slot_name),
				 errhint("To move to the new slot, load again: SELECT dbsync_resync(%s); the old slot is then left at the source (drop it there: SELECT pg_drop_replication_slot(%s)).",
						 quote_literal_cstr(p->cfg->server_name), quote_literal_cstr(cs.slot))));
	keyed = list_copy(keyed);	/* (the caller's list stays whole) */
	{
		List	   *missing = ensure_publication(p, rt_names(keyed));

		foreach(lc, missing)
		{
			RemoteTable *rt = find_remote_table(keyed, lfirst(lc));

			keyed = list_delete_ptr(keyed, rt);
			catalog_ensure(p->cfg->server_name, p->cfg->serverid, rt->name, p->cfg->target_schema);
			catalog_save_error(p->cfg->server_name, p->cfg->serverid, rt->name, p->cfg->target_schema,
							   psprintf("table \"%s\" is not in publication \"%s\"\nHINT: Run at the source: ALTER PUBLICATION %s ADD TABLE %s;",
										rt->name, p->cfg->publication, quote_identifier(p->cfg->publication),
										quote_qualified_identifier(p->cfg->schema, rt->name)), NULL);
			emit(p->out, rt->name, NULL, 0, 0, p->started, "error",
				 psprintf("table \"%s\" is not in publication \"%s\"\nHINT: Run at the source: ALTER PUBLICATION %s ADD TABLE %s;",
						  rt->name, p->cfg->publication, quote_identifier(p->cfg->publication),
						  quote_qualified_identifier(p->cfg->schema, rt->name)));
		}
	}
	p->repl = source_log_connect(p->cfg);
	if (!cs.exists)
	{
		p->resync_slot = cs.resync_slot;
		return start_capture(p, keyed);
	}

	check_slot(p, cs.slot, cs.applied);
	p->applied = cs.applied;
	p->start_uncommitted = cs.uncommitted;
	/* a table no longer captured misses changes: loaded again if it comes back */
	tables_uncapture_others(p->cfg, rt_names(keyed));
	foreach(lc, p->republished)
		table_set_captured(p->cfg, lfirst(lc), InvalidXLogRecPtr);
	/* tables selected since, or whose target was dropped: loaded now */
	foreach(lc, keyed)
	{
		RemoteTable *rt = lfirst(lc);

		if (!table_is_captured(p->cfg, rt->name))
			fresh = lappend(fresh, rt);
	}
	{
		int			failed = 0;

		foreach(lc, load_tables(p, fresh, NULL, &failed))
			table_set_captured(p->cfg, ((RemoteTable *) lfirst(lc))->name, p->applied);
	}
	return true;
}

/* The tables whose changes this pass applies (loaded, target ready). */
static void
capture_tables(CapturePass *p, List *keyed)
{
	ListCell   *lc;

	foreach(lc, keyed)
	{
		RemoteTable *rt = lfirst(lc);
		CapTable   *t;

		if (!table_is_captured(p->cfg, rt->name))
			continue;
		if (!catalog_load(p->cfg->server_name, rt->name)->enabled)
		{
			/* not written while disabled: loaded again when enabled */
			table_set_captured(p->cfg, rt->name, InvalidXLogRecPtr);
			continue;
		}
		t = captable_new(p, rt);
		if (!prepare_target(p, t))
		{
			/* the next pass of this call loads it again */
			table_set_captured(p->cfg, rt->name, InvalidXLogRecPtr);
			p->again = true;
			continue;
		}
		p->captured = lappend(p->captured, t);
	}
}

/* The stream from the position applied until the pass is done. */
static void
capture_stream(CapturePass *p)
{
	const LogDriver *log = p->cfg->driver->log;
	Subxact		sx;

	subxact_begin(&sx);
	PG_TRY();
	{
		if (!p->follow)
			p->target = log->current_position(p->repl);
		log->start(p->repl, p->cfg->slot_name, p->applied, p->cfg->publication);
		/*
		 * What an earlier pass committed (dbsync_run acks nothing itself);
		 * not a position this transaction stored (a second dbsync_run in
		 * one transaction): it may still roll back.
		 */
		p->committed = p->start_uncommitted ? InvalidXLogRecPtr : p->applied;
		/* (committed asynchronously, perhaps: on disk before the source hears) */
		XLogFlush(GetXLogInsertRecPtr());
		ack_committed(p);
		subxact_commit(&sx);
	}
	PG_CATCH();
	{
		pass_failed(p, &sx);
		return;
	}
	PG_END_TRY();
	while (!p->stop)
	{
		subxact_begin(&sx);
		PG_TRY();
		{
			ack_committed(p);
			stream_group(p);
			subxact_commit(&sx);
		}
		PG_CATCH();
		{
			pass_failed(p, &sx);
			return;
		}
		PG_END_TRY();
		commit_group(p);
	}
	subxact_begin(&sx);
	PG_TRY();
	{
		ack_committed(p);
		log->stop(p->repl);
		subxact_commit(&sx);
	}
	PG_CATCH();
	{
		pass_failed(p, &sx);
		return;
	}
	PG_END_TRY();
	report_tables(p);
	p->out->capture_again = p->follow;
	p->streamed = true;
}

/*
 * One pass: prepare (publication, slot, loads), then stream.  Returns true
 * when a table must be loaded again at once (another pass).
 */
static bool
capture_pass(RunOutput *out, ForeignServer *server, SourceConfig *cfg,
			 SourceConn **conn, List *tables, List *names, Oid run_as, int sec)
{
	CapturePass p = {0};
	List	   *volatile keyed = NIL;
	Subxact		sx;
	volatile bool ready = false;

	p.out = out;
	p.server = server;
	p.cfg = cfg;
	p.conn = conn;
	p.all_tables = tables;
	p.run_as = run_as;
	p.sec = sec;
	/* the worker streams on while the server keeps its sync_interval */
	p.follow = out->scheduled && cfg->sync_interval != NULL;
	p.started = GetCurrentTimestamp();
	p.msgcxt = AllocSetContextCreate(CurrentMemoryContext, "dbsync capture message",
									 ALLOCSET_DEFAULT_SIZES);
	p.groupcxt = AllocSetContextCreate(CurrentMemoryContext, "dbsync capture group",
									   ALLOCSET_DEFAULT_SIZES);
	PG_TRY();
	{
		subxact_begin(&sx);
		PG_TRY();
		{
			if (*conn == NULL)
				*conn = source_acquire(cfg);
			keyed = keyed_tables(&p, names);
			ready = capture_prepare(&p, keyed);
			if (ready)
				capture_tables(&p, keyed);
			subxact_commit(&sx);
		}
		PG_CATCH();
		{
			pass_failed(&p, &sx);
			ready = false;
		}
		PG_END_TRY();
		if (ready)
		{
			commit_group(&p);
			capture_stream(&p);
		}
	}
	PG_FINALLY();
	{
		if (p.repl)
			source_discard(p.repl);
		MemoryContextDelete(p.msgcxt);
		MemoryContextDelete(p.groupcxt);
	}
	PG_END_TRY();
	return p.streamed && p.again;
}

/*
 * One pass over the server's stream (dbsync_run, dbsync_sync, the worker),
 * as the server's owner.  Errors are recorded for the server's tables.
 */
void
capture_server(RunOutput *out, ForeignServer *server, SourceConfig *cfg,
			   SourceConn **conn, List *tables, List *names, Oid run_as, int sec)
{
	/* a table loaded again (drift, a new target) takes one more pass */
	bool		again = true;
	List	   *volatile discovered = tables;

	if (!callback_registered)
	{
		CacheRegisterSyscacheCallback(FOREIGNSERVEROID, server_changed_cb, (Datum) 0);
		callback_registered = true;
	}
	server_changed = false;
	/*
	 * One pass per server at a time; a dbsync_run() holds it until its
	 * transaction ends (its position commits then), a procedure or worker
	 * until the pass ends (it committed).
	 */
	if (!try_lock_table(cfg->server_name, CAPTURE_LOCK_NAME, out->commit_batches))
	{
		emit(out, NULL, NULL, 0, 0, GetCurrentTimestamp(), "skipped",
			 "another run is capturing this server's changes");
		return;
	}
	PG_TRY();
	{
		for (int i = 0; i < 3 && again; i++)
		{
			/* a reload follows the source's columns as they are now */
			if (i > 0 && *conn != NULL)
				discovered = source_discover(*conn);
			again = capture_pass(out, server, cfg, conn, discovered, names, run_as, sec);
		}
	}
	PG_FINALLY();
	{
		if (out->commit_batches)
			unlock_table_session(cfg->server_name, CAPTURE_LOCK_NAME);
	}
	PG_END_TRY();
}

/*
 * capture 'cursor' again (or never log): a slot and publication dbsync
 * made for the server are dropped at the source, and its state forgotten.
 * If the source cannot be reached, the run says what to drop there.
 */
void
capture_forget(RunOutput *out, ForeignServer *server, SourceConfig *cfg, SourceConn **conn)
{
	CaptureState cs;
	SourceConn *volatile repl = NULL;
	Subxact		sx;

	state_load(cfg, &cs);
	if ((!cs.exists && cs.resync_slot == NULL) || cfg->driver->log == NULL)
		return;
	subxact_begin(&sx);
	PG_TRY();
	{
		bool		active;
		bool		lost;
		XLogRecPtr	confirmed;

		repl = source_log_connect(cfg);
		/* a worker that streamed it lets go within a second of ALTER SERVER */
		for (int i = 0; i < 30; i++)
		{
			if (!cfg->driver->log->slot_exists(repl, cs.slot, &active, &lost, &confirmed) || !active)
				break;
			CHECK_FOR_INTERRUPTS();
			pg_usleep(100 * 1000L);
		}
		if (cfg->driver->log->slot_exists(repl, cs.slot, &active, &lost, &confirmed))
		{
			if (active)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_IN_USE),
						 errmsg("replication slot \"%s\" is still in use", cs.slot),
						 errhint("Stop its consumer (a dbsync worker stops within a second after ALTER SERVER), then run the server again.")));
			cfg->driver->log->drop_slot(repl, cs.slot);
		}
		source_close(repl);
		repl = NULL;
		if (cs.publication_ours)
		{
			if (*conn == NULL)
				*conn = source_acquire(cfg);
			cfg->driver->log->publication_drop(*conn, cs.publication);
		}
		state_delete(cfg);
		table_set_captured(cfg, "", InvalidXLogRecPtr);
		subxact_commit(&sx);
	}
	PG_CATCH();
	{
		ErrorData  *edata = subxact_abort(&sx);

		if (repl)
			source_discard(repl);
		if (subxact_is_interrupt(edata))
			ReThrowError(edata);
		emit(out, NULL, NULL, 0, 0, GetCurrentTimestamp(), "error",
			 psprintf("capture 'cursor': could not drop replication slot \"%s\"%s at the source: %s\nHINT: Drop them at the source: SELECT pg_drop_replication_slot(%s);%s",
					  cs.slot, cs.publication_ours ? psprintf(" and publication \"%s\"", cs.publication) : "",
					  edata->message, quote_literal_cstr(cs.slot),
					  cs.publication_ours ? psprintf(" DROP PUBLICATION %s;", quote_identifier(cs.publication)) : ""));
	}
	PG_END_TRY();
}
