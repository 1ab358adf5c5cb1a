/*-------------------------------------------------------------------------
 * capture_state.c
 *	  Log capture's state in the warehouse: dbsync.captures (the slot, the
 *	  publication and the source position applied, written in the same
 *	  transaction as the rows) and each table's captured_since in
 *	  dbsync.tables; the warning DROP SERVER gives for a slot left at the
 *	  source.
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

void
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

void
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
void
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

void
state_delete(SourceConfig *cfg)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(cfg->server_name)};

	catalog_exec("DELETE FROM dbsync.captures WHERE server OPERATOR(pg_catalog.=) $1",
				 1, types, values, NULL, SPI_OK_DELETE);
}

/* A table's position: loaded, its changes applied from lsn on (Invalid: none). */
void
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

void
tables_uncapture_others(SourceConfig *cfg, List *names)
{
	Oid			types[2] = {TEXTOID, TEXTARRAYOID};
	Datum		values[2] = {CStringGetTextDatum(cfg->server_name), list_to_text_array(names)};

	catalog_exec("UPDATE dbsync.tables SET captured_since = NULL "
				 "WHERE server OPERATOR(pg_catalog.=) $1 AND captured_since IS NOT NULL "
				 "AND NOT (table_name OPERATOR(pg_catalog.=) ANY ($2))",
				 2, types, values, NULL, SPI_OK_UPDATE);
}

bool
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
void
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
	t->applied = false;
	t->note_saved = t->note != NULL;
}

/* The captured tables failing before (a pass that failed): streaming again. */
void
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
