/*-------------------------------------------------------------------------
 * admin.c
 *	  The SQL functions that change a server's per-table configuration:
 *	  dbsync_set_table(), dbsync_resync(), dbsync_adopt_table().
 *
 * Each needs ownership of the server and enters through guard_begin(), like
 * every entry point.  The catalog rows they write are those of catalog.c.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "executor/spi.h"
#include "foreign/foreign.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "apply.h"
#include "dbsync.h"
#include "source.h"

PG_FUNCTION_INFO_V1(dbsync_set_table);
PG_FUNCTION_INFO_V1(dbsync_resync);
PG_FUNCTION_INFO_V1(dbsync_adopt_table);
PG_FUNCTION_INFO_V1(dbsync_generated_sql);

/*
 * The server (argument 0, owned by the caller) and table name (argument 1)
 * of a function that changes a table's configuration; example shows the
 * call in the hint when either is NULL.
 */
static SourceConfig *
owned_server_table(FunctionCallInfo fcinfo, const char *example,
				   ForeignServer **server, char **table)
{
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("server and table name must not be NULL"),
				 errhint("Call %s.", example)));
	*server = dbsync_server_by_name(NameStr(*PG_GETARG_NAME(0)));
	check_server_owner(*server);
	*table = text_to_cstring(PG_GETARG_TEXT_PP(1));
	return source_config_get((*server)->serverid);
}

/*
 * dbsync_set_table(server, table, primary_key, cursor_column, enabled):
 * NULL keeps a setting; '{}' / '' resets it to what discovery finds.  A
 * changed key or cursor makes the next run re-read the table.
 */
Datum
dbsync_set_table(PG_FUNCTION_ARGS)
{
	ForeignServer *server;
	SourceConfig *cfg;
	char	   *table;
	int			nest;

	guard_check_not_active();
	nest = guard_begin();
	cfg = owned_server_table(fcinfo, "dbsync_set_table('server', 'table', primary_key => '{id}')",
							 &server, &table);

	SPI_connect();
	catalog_forget_stale(server->servername, server->serverid);
	catalog_ensure(server->servername, server->serverid, table, cfg->target_schema);
	catalog_set_table(server->servername, table,
					  PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2), PG_ARGISNULL(2),
					  PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3)),
					  PG_ARGISNULL(4) ? -1 : (int) PG_GETARG_BOOL(4));
	SPI_finish();
	guard_end(nest);
	PG_RETURN_VOID();
}

/* Forget the sync state of one table or of all tables of a server. */
Datum
dbsync_resync(PG_FUNCTION_ARGS)
{
	ForeignServer *server;
	int64		n;
	int			nest;

	guard_check_not_active();
	nest = guard_begin();
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("server name must not be NULL"),
				 errhint("Call dbsync_resync('server') or dbsync_resync('server', 'table').")));
	server = dbsync_server_by_name(NameStr(*PG_GETARG_NAME(0)));
	check_server_owner(server);

	SPI_connect();
	n = catalog_forget_state(server->servername,
							 PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)));
	SPI_finish();
	guard_end(nest);
	PG_RETURN_INT64(n);
}

/*
 * dbsync_adopt_table(server, table): make the table that exists under the
 * target's name (after a restore from a dump, or one the owner made by
 * hand) the target of this server's table.  The server's owner must own it
 * and may write it; no other server's table may hold it.  The table's state
 * is forgotten, so the next run compares it in full with the source.
 */
Datum
dbsync_adopt_table(PG_FUNCTION_ARGS)
{
	ForeignServer *server;
	SourceConfig *cfg;
	char	   *table;
	Oid			relid;
	char	   *holder;
	char	   *mine;
	GuardUser	as_owner;
	int			nest;

	guard_check_not_active();
	nest = guard_begin();
	cfg = owned_server_table(fcinfo, "dbsync_adopt_table('server', 'table')", &server, &table);
	relid = apply_lock_target(cfg->target_schema, table);
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table %s does not exist", target_name(cfg, table)),
				 errhint("dbsync_adopt_table() takes a table in the server's target_schema \"%s\" named like the remote table.",
						 cfg->target_schema)));

	SPI_connect();
	holder = catalog_target_user(relid);
	mine = psprintf("%s.%s", quote_identifier(server->servername), quote_identifier(table));
	if (holder && strcmp(holder, mine) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("table %s is the target of table %s", target_name(cfg, table), holder),
				 errhint("One local table receives the rows of one server's table: point this server's target_schema elsewhere.")));
	guard_enter_owner(cfg->owner, &as_owner);
	apply_check_writable(relid);
	guard_leave(&as_owner);
	catalog_forget_stale(server->servername, server->serverid);
	catalog_ensure(server->servername, server->serverid, table, cfg->target_schema);
	catalog_save_target(server->servername, table, relid);
	(void) catalog_forget_state(server->servername, table);
	SPI_finish();
	guard_end(nest);
	PG_RETURN_OID(relid);
}

/*
 * dbsync.generated_sql(what, flavor): the text of a statement dbsync sends
 * to a source of that flavor, for tests of flavors no test can run (TiDB,
 * YugabyteDB).  Generates text only: nothing is sent anywhere.  Superuser.
 */
Datum
dbsync_generated_sql(PG_FUNCTION_ARGS)
{
	const char *what = text_to_cstring(PG_GETARG_TEXT_PP(0));
	const char *flavor = text_to_cstring(PG_GETARG_TEXT_PP(1));
	unsigned int field = 0;
	char	   *sql = NULL;

	bool		yb = strcmp(flavor, "yugabytedb") == 0;
	bool		pg = yb || strcmp(flavor, "postgresql") == 0;

	if (strcmp(what, "catalog_version") != 0 && strcmp(what, "log_slot") != 0 &&
		strcmp(what, "log_snapshot") != 0 && strcmp(what, "log_start") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown statement \"%s\"", what),
				 errhint("Known: catalog_version, log_slot, log_snapshot, log_start.")));
	/* log capture: a sample slot, snapshot name (or HybridTime) and position */
	if (pg && strcmp(what, "log_slot") == 0)
		sql = pgrepl_slot_sql(yb, "dbsync_srv");
	else if (pg && strcmp(what, "log_snapshot") == 0)
		sql = pg_snapshot_sql(yb, yb ? "6959837165271326720" : "00000003-00000002-1");
	else if (pg && strcmp(what, "log_start") == 0)
		sql = pgrepl_start_sql("dbsync_srv", (XLogRecPtr) 0x1A2B3C4D5ULL, "dbsync_srv");
	else if (strcmp(what, "catalog_version") != 0)
		sql = NULL;
	else if (pg)
		sql = pg_catalog_version_sql(yb, "public");
	else if (strcmp(flavor, "tidb") == 0 || strcmp(flavor, "mysql") == 0)
	{
		sql = my_catalog_version_sql(strcmp(flavor, "tidb") == 0, &field);
		if (sql)
			sql = psprintf("%s -- field %u", sql, field);
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown flavor \"%s\"", flavor),
				 errhint("Known: yugabytedb, postgresql, tidb, mysql.")));
	if (sql == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(sql));
}
