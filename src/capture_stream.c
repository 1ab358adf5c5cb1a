/*-------------------------------------------------------------------------
 * capture_stream.c
 *	  Log capture's stream: the captured tables (targets prepared, source
 *	  descriptions mapped), each message of the replication stream taken
 *	  into the tables' sets (capture_apply.c), groups of source transactions
 *	  applied and committed with their position, the source acknowledged
 *	  after the commit, keepalives, and what a table that cannot go on does.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
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

/* ---- the captured tables ---- */

CapTable *
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
bool
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

/* Run fn on the table in a subtransaction: a failure is the table's alone. */
static void
table_step(CapturePass *p, CapTable *t, void (*fn) (CapTable *t))
{
	Subxact		sx;

	subxact_begin(&sx);
	PG_TRY();
	{
		fn(t);
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

static void
flush_set(CapTable *t)
{
	capture_flush_table(t, t->rows_total);
}

/* Apply a table's set (its failure is the table's). */
static void
flush_table(CapturePass *p, CapTable *t)
{
	if (t->failed || t->nchanges == 0)
		return;
	table_step(p, t, flush_set);
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

/* Empty (soft: flag) the target. */
static void
truncate_target(CapTable *t)
{
	if (t->soft)
		spi_exec(psprintf("UPDATE %s SET _dbsync_deleted = true, _dbsync_synced_at = pg_catalog.now() "
						  "WHERE NOT _dbsync_deleted", t->target), SPI_OK_UPDATE);
	else
		spi_exec(psprintf("DELETE FROM %s", t->target), SPI_OK_DELETE);
	t->removed += (int64) SPI_processed;
	t->deleted += (int64) SPI_processed;
	t->applied = true;
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
		table_step(p, t, truncate_target);
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
			/* (the sets of all tables summed every 1024 changes, not per row) */
			else if ((++p->changes_seen & 1023) == 0 && pending(p, true) >= CAPTURE_SET_BYTES)
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
		return capture_server_changed || ConfigReloadPending ||
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
		bool		idle;
		bool		quiet;
		MemoryContext old;

		old = MemoryContextSwitchTo(p->msgcxt);	/* (back to the group's below) */
		/*
		 * A call with nothing pending that knows where to stop (YugabyteDB
		 * tells no end of WAL: its call waits for the source's keepalive).
		 */
		idle = !p->follow && !XLogRecPtrIsInvalid(p->target) && !p->in_txn &&
			XLogRecPtrIsInvalid(group_end) && pending(p, false) == 0;
		kind = log->next(p->repl, !p->in_txn && !XLogRecPtrIsInvalid(group_end) ? 0 :
						 idle ? CAPTURE_ASK_MS : 1000,
						 &msg, &wal_end, &reply);
		if (kind == LOG_MESSAGE)
		{
			p->source_lsn = Max(p->source_lsn, wal_end);
			on_message(p, &msg, &group_end);
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(p->msgcxt);

		/*
		 * A call catching up with nothing pending: ask where the source's
		 * decoding is (a keepalive) instead of waiting for one to come.
		 */
		if (kind == LOG_NOTHING && idle)
			log->ack(p->repl, p->acked, true);
		if (kind == LOG_END)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("source \"%s\" ended the replication stream", p->cfg->server_name),
					 errhint("Run the server again; check the source's log if it goes on.")));
		if (kind == LOG_KEEPALIVE)
		{
			p->source_lsn = Max(p->source_lsn, wal_end);
			if (reply)
				log->ack(p->repl, p->acked, false);	/* (a status update: nothing new) */
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
		/*
		 * (a keepalive that tells the same position as the last one is
		 * quiet too: we asked for it; one that moves, even below what was
		 * confirmed (the source reads its WAL again from the slot's restart
		 * point), is the source making progress)
		 */
		quiet = kind == LOG_NOTHING ||
			(kind == LOG_KEEPALIVE && wal_end == p->keepalive_end);
		if (kind == LOG_KEEPALIVE)
			p->keepalive_end = wal_end;
		if (quiet && !p->in_txn)
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
				(t->applied || t->inserted != 0 || t->removed != 0 || (t->note && !t->note_saved)))
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
void
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
		p->cfg->driver->log->ack(p->repl, p->committed, false);
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

/*
 * Flush the warehouse's WAL as far as it was inserted (an earlier run's
 * commit may have been asynchronous).  Right after a page header nothing is
 * on the page yet: up to the page's start, which XLogFlush() can reach.
 */
static void
flush_local_wal(void)
{
	XLogRecPtr	upto = GetXLogInsertRecPtr();

	if (upto % XLOG_BLCKSZ <= SizeOfXLogLongPHD)
		upto -= upto % XLOG_BLCKSZ;
	XLogFlush(upto);
}

/* START_REPLICATION from the position applied, and what is committed told. */
static void
stream_start(CapturePass *p)
{
	const LogDriver *log = p->cfg->driver->log;

	if (!p->follow)
		p->target = log->current_position(p->repl);
	log->start(p->repl, p->cfg->slot_name, p->applied, p->cfg->publication);
	/*
	 * What an earlier pass committed (dbsync_run acks nothing itself); not a
	 * position this transaction stored (a second dbsync_run in one
	 * transaction): it may still roll back.
	 */
	p->committed = p->start_uncommitted ? InvalidXLogRecPtr : p->applied;
	/* (committed asynchronously, perhaps: on disk before the source hears) */
	flush_local_wal();
	ack_committed(p);
}

/* The last group's commit told, then the stream ended. */
static void
stream_stop(CapturePass *p)
{
	ack_committed(p);
	p->cfg->driver->log->stop(p->repl);
}

/* A group, after the source is told what the last one committed. */
static void
stream_next_group(CapturePass *p)
{
	ack_committed(p);
	stream_group(p);
}

/* Run fn in a subtransaction; a failure ends the pass (recorded). */
static bool
stream_step(CapturePass *p, void (*fn) (CapturePass *p))
{
	Subxact		sx;

	subxact_begin(&sx);
	PG_TRY();
	{
		fn(p);
		subxact_commit(&sx);
	}
	PG_CATCH();
	{
		pass_failed(p, &sx);
		return false;
	}
	PG_END_TRY();
	return true;
}

/* The stream from the position applied until the pass is done. */
void
capture_stream(CapturePass *p)
{
	if (!stream_step(p, stream_start))
		return;
	while (!p->stop)
	{
		if (!stream_step(p, stream_next_group))
			return;
		commit_group(p);
	}
	if (!stream_step(p, stream_stop))
		return;
	report_tables(p);
	p->out->capture_again = p->follow;
	p->streamed = true;
}

