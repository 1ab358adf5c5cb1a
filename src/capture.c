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
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "commands/extension.h"
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

/* The lock a pass holds on its server (a name no table has). */
#define CAPTURE_LOCK_NAME "\x01log capture"

bool		capture_server_changed = false;
static bool callback_registered = false;

static void
server_changed_cb(Datum arg, int cacheid, uint32 hashvalue)
{
	capture_server_changed = true;
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

/* The slot cannot be read on from the position applied: load again. */
static void slot_unusable(CapturePass *p, int code, const char *msg, const char *detail) pg_attribute_noreturn();

static void
slot_unusable(CapturePass *p, int code, const char *msg, const char *detail)
{
	ereport(ERROR,
			(errcode(code),
			 errmsg_internal("%s", msg),
			 errdetail_internal("%s", detail),
			 errhint("Load the tables again from a new slot: SELECT dbsync_resync(%s); then run the server.",
					 quote_literal_cstr(p->cfg->server_name))));
}

/* The slot must exist, be free and not lost. */
static void
check_slot(CapturePass *p, const char *slot, XLogRecPtr applied)
{
	bool		active;
	bool		lost;
	XLogRecPtr	confirmed;

	if (!p->cfg->driver->log->slot_exists(p->repl, slot, &active, &lost, &confirmed))
		slot_unusable(p, ERRCODE_UNDEFINED_OBJECT,
					  psprintf("replication slot \"%s\" of server \"%s\" is gone at the source",
							   slot, p->cfg->server_name),
					  "The changes since the last position applied cannot be read any more.");
	if (lost)
		slot_unusable(p, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
					  psprintf("replication slot \"%s\" of server \"%s\" was invalidated at the source",
							   slot, p->cfg->server_name),
					  "The source removed WAL the slot still needed (max_slot_wal_keep_size, or retention expired).");
	/*
	 * The source was told more than is committed here (a run rolled back
	 * after it replaced the slot, another consumer): what lies between is
	 * gone from the stream.
	 */
	if (!XLogRecPtrIsInvalid(applied) && confirmed > applied)
		slot_unusable(p, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
					  psprintf("replication slot \"%s\" of server \"%s\" is past the position applied here (%X/%X, slot at %X/%X)",
							   slot, p->cfg->server_name, LSN_FORMAT_ARGS(applied),
							   LSN_FORMAT_ARGS(confirmed)),
					  "Changes between them cannot be read any more: a run that replaced the slot was rolled back, or another consumer reads it.");
	if (active)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("replication slot \"%s\" of server \"%s\" is in use by another process",
						slot, p->cfg->server_name),
				 errhint("Another consumer reads this slot: stop it, or give this server another slot_name.")));
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

/* A table log capture cannot take: its error, in its status and the run's rows. */
static void
refuse_table(CapturePass *p, const char *table, const char *why)
{
	catalog_ensure(p->cfg->server_name, p->cfg->serverid, table, p->cfg->target_schema);
	catalog_save_error(p->cfg->server_name, p->cfg->serverid, table, p->cfg->target_schema,
					   why, NULL);
	emit(p->out, table, NULL, 0, 0, p->started, "error", why);
}

/*
 * The selected tables whose changes can be keyed; the others (no key, a
 * replica identity without the key) are refused, once per pass.
 */
static List *
keyed_tables(CapturePass *p, List *names)
{
	List	   *keyed = NIL;
	ListCell   *lc;

	foreach(lc, names)
	{
		RemoteTable *rt = find_remote_table(p->all_tables, lfirst(lc));
		List	   *pk = effective_pk(rt, catalog_load(p->cfg->server_name, rt->name));
		char	   *why;

		if (pk == NIL)
			why = psprintf("table \"%s\" has no primary key: log capture needs one\nHINT: Add a primary key at the source, set one with dbsync_set_table(%s, %s, primary_key => '{...}'), or sync this server with capture 'cursor'.",
						   rt->name, quote_literal_cstr(p->cfg->server_name),
						   quote_literal_cstr(rt->name));
		else
			why = identity_problem(p, rt->name, pk);
		if (why)
			refuse_table(p, rt->name, why);
		else
			keyed = lappend(keyed, rt);
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
 * No capture state: a new slot (one left by an earlier try of this server
 * or by dbsync_resync is replaced, anybody else's is an error), every table
 * loaded in its snapshot, and the state saved with the slot's consistent
 * point; a table whose load failed is loaded by a later pass.
 */
static void
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
}

void
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
		start_capture(p, keyed);
		return true;
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
	capture_server_changed = false;
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
