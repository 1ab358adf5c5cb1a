/*-------------------------------------------------------------------------
 * source_pg_repl.c
 *	  The logical replication protocol of the PostgreSQL family: a
 *	  replication=database connection, a slot made with an exported
 *	  snapshot (its consistent point; PostgreSQL only so far: YugabyteDB
 *	  exports no snapshot, its handover is yb_read_time), START_REPLICATION
 *	  with pgoutput proto_version 1, the CopyBoth stream (XLogData,
 *	  keepalives) and standby status updates.  Second part of log capture
 *	  (issue 13); the engine does not use it yet.
 *
 * Every wait is on the socket with the latch (source_wait_socket):
 * a cancel or shutdown interrupts a stream within its tick.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog_internal.h"
#include "access/xlogdefs.h"
#include "foreign/foreign.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "pgoutput.h"
#include "source_pg.h"

/* A slot name the protocol takes unquoted: [a-z0-9_], at most 63 bytes. */
static void
check_slot_name(const char *slot)
{
	if (!slot_name_valid(slot))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid replication slot name \"%s\"", slot),
				 errhint("Use lower-case letters, digits and underscores, at most %d of them.",
						 NAMEDATALEN - 1)));
}

/*
 * A string literal for the replication command grammar, which knows no E''
 * strings: quotes doubled (backslashes are plain there).
 */
static char *
repl_literal(const char *s)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '\'');
	for (; *s; s++)
	{
		if (*s == '\'')
			appendStringInfoChar(&buf, '\'');
		appendStringInfoChar(&buf, *s);
	}
	appendStringInfoChar(&buf, '\'');
	return buf.data;
}

static bool
is_yugabyte(PgConn *pc)
{
	return pc->base.flavor && strncmp(pc->base.flavor, "YugabyteDB", 10) == 0;
}

/*
 * CREATE_REPLICATION_SLOT: with an exported snapshot on PostgreSQL;
 * YugabyteDB exports none, the snapshot_name it returns is the slot's
 * consistent commit time (a HybridTime), read with yb_read_time.
 */
char *
pgrepl_slot_sql(bool yugabyte, const char *slot)
{
	return psprintf("CREATE_REPLICATION_SLOT %s LOGICAL pgoutput%s", slot,
					yugabyte ? "" : " EXPORT_SNAPSHOT");
}

char *
pgrepl_start_sql(const char *slot, XLogRecPtr from, const char *publication)
{
	return psprintf("START_REPLICATION SLOT %s LOGICAL %X/%X (proto_version '1', publication_names %s)",
					slot, LSN_FORMAT_ARGS(from), repl_literal(quote_identifier(publication)));
}

/* Open a logical replication connection to the server's source (non-blocking). */
PgConn *
pgrepl_connect(SourceConfig *cfg)
{
	PgConn	   *pc = pg_open(cfg, true);

	/* so that no write (status update, CopyDone) blocks inside libpq */
	if (PQsetnonblocking(pc->conn, 1) != 0)
	{
		pg_close(&pc->base, false);
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not make the replication connection to source \"%s\" non-blocking",
						cfg->server_name),
				 errhint("Try again; report it if it persists.")));
	}
	return pc;
}

/*
 * The stream ended (PQgetCopyData() returned -1): the source's error, if it
 * ended with one.
 */
static void
stream_ended(PgConn *pc)
{
	PGresult   *res;

	for (;;)
	{
		while (PQisBusy(pc->conn))
		{
			pg_wait(pc, false);
			if (!PQconsumeInput(pc->conn))
				pg_report(pc, NULL, "read the end of the replication stream", NULL);
		}
		res = PQgetResult(pc->conn);
		if (res == NULL)
			break;
		if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_COPY_OUT &&
			PQresultStatus(res) != PGRES_COPY_BOTH && PQresultStatus(res) != PGRES_TUPLES_OK)
			pg_report(pc, res, "stream changes", NULL);
		PQclear(res);
	}
	pc->base.busy = false;
}

/*
 * CREATE_REPLICATION_SLOT .. LOGICAL pgoutput EXPORT_SNAPSHOT: the slot's
 * consistent point and the snapshot that sees exactly the transactions
 * committed before it (valid until this connection runs its next command).
 */
void
pgrepl_create_slot(PgConn *pc, const char *slot, XLogRecPtr *consistent,
				   char **snapshot)
{
	char	   *sql;
	PGresult   *res;

	check_slot_name(slot);
	/*
	 * YugabyteDB exports no snapshot: the snapshot_name it returns is the
	 * slot's consistent commit time (a HybridTime), read with yb_read_time.
	 */
	sql = pgrepl_slot_sql(is_yugabyte(pc), slot);
	res = pg_exec(pc, sql, "create the replication slot");
	if (PQntuples(res) != 1 || PQnfields(res) < 3 || PQgetisnull(res, 0, 1))
		pg_report(pc, res, "read the new replication slot", sql);
	*consistent = DatumGetLSN(DirectFunctionCall1(pg_lsn_in,
												  CStringGetDatum(PQgetvalue(res, 0, 1))));
	if (PQgetisnull(res, 0, 2))
		pg_report(pc, res, "read the snapshot of the new replication slot", sql);
	*snapshot = pstrdup(PQgetvalue(res, 0, 2));
	PQclear(res);
}

/* Drop a slot (the connection must not be streaming). */
void
pgrepl_drop_slot(PgConn *pc, const char *slot)
{
	check_slot_name(slot);
	PQclear(pg_exec(pc, psprintf("DROP_REPLICATION_SLOT %s", slot), "drop the replication slot"));
}

/* START_REPLICATION of the slot from "from", publication's tables only. */
void
pgrepl_start(PgConn *pc, const char *slot, XLogRecPtr from, const char *publication)
{
	char	   *sql;
	PGresult   *res;

	check_slot_name(slot);
	sql = pgrepl_start_sql(slot, from, publication);
	if (!PQsendQuery(pc->conn, sql))
		pg_report(pc, NULL, "start replication", sql);
	while (PQflush(pc->conn) > 0)
		pg_wait(pc, true);
	for (;;)
	{
		while (PQisBusy(pc->conn))
		{
			pg_wait(pc, false);
			if (!PQconsumeInput(pc->conn))
				pg_report(pc, NULL, "start replication", sql);
		}
		res = PQgetResult(pc->conn);
		if (res == NULL || PQresultStatus(res) != PGRES_COPY_BOTH)
			pg_report(pc, res, "start replication", sql);
		PQclear(res);
		break;
	}
	pc->base.busy = true;
}

/*
 * End the stream (CopyDone) and read what the source sends until it ends
 * too: a standby status update sent before is then processed.
 */
void
pgrepl_stop(PgConn *pc)
{
	char	   *buf;
	int			rc;

	while ((rc = PQputCopyEnd(pc->conn, NULL)) == 0)
		pg_wait(pc, true);
	if (rc < 0)
		pg_report(pc, NULL, "end the replication stream", NULL);
	while (PQflush(pc->conn) > 0)
		pg_wait(pc, true);
	for (;;)
	{
		int			len = PQgetCopyData(pc->conn, &buf, 1);

		CHECK_FOR_INTERRUPTS();
		if (len > 0)
		{
			PQfreemem(buf);
			continue;
		}
		if (len == 0)
		{
			pg_wait(pc, false);
			if (!PQconsumeInput(pc->conn))
				pg_report(pc, NULL, "end the replication stream", NULL);
			continue;
		}
		break;
	}
	stream_ended(pc);
}

/* Big-endian integers of the streaming protocol. */
static uint64
be64(const char *p)
{
	uint64		v = 0;
	int			i;

	for (i = 0; i < 8; i++)
		v = (v << 8) | (uint8) p[i];
	return v;
}

static void
put_be64(char *p, uint64 v)
{
	int			i;

	for (i = 7; i >= 0; i--)
	{
		p[i] = (char) (v & 0xff);
		v >>= 8;
	}
}

/*
 * Standby status update: written, flushed and applied up to "flushed" (what
 * the warehouse committed; the source may release what lies before it).
 */
void
pgrepl_ack(PgConn *pc, XLogRecPtr flushed, bool reply)
{
	char		msg[1 + 8 * 4 + 1];
	int			rc;

	msg[0] = 'r';
	put_be64(msg + 1, flushed);
	put_be64(msg + 9, flushed);
	put_be64(msg + 17, flushed);
	put_be64(msg + 25, (uint64) GetCurrentTimestamp());
	msg[33] = reply ? 1 : 0;	/* asks for a keepalive: its end of WAL */
	while ((rc = PQputCopyData(pc->conn, msg, sizeof(msg))) == 0)
		pg_wait(pc, true);		/* non-blocking: the buffer is full */
	if (rc < 0)
		pg_report(pc, NULL, "acknowledge the replication position", NULL);
	while (PQflush(pc->conn) > 0)
		pg_wait(pc, true);
}

/*
 * The next message of the stream, waiting at most timeout_ms: returns the
 * length of a pgoutput message (*data points into *chunk, which the caller
 * frees with PQfreemem, and *lsn is the source's end of WAL), 0 when none
 * came in time, -1 when the source ended the stream, -2 for a keepalive
 * (*lsn its end of WAL, *reply_wanted whether it asks for a status update).
 */
int
pgrepl_next(PgConn *pc, long timeout_ms, char **chunk, const char **data,
			XLogRecPtr *lsn, bool *reply_wanted)
{
	TimestampTz deadline = GetCurrentTimestamp() + (TimestampTz) timeout_ms * 1000;
	bool		consumed = false;

	for (;;)
	{
		char	   *buf = NULL;
		int			len = PQgetCopyData(pc->conn, &buf, 1);

		CHECK_FOR_INTERRUPTS();
		if (len == 0)
		{
			long		left = (long) ((deadline - GetCurrentTimestamp()) / 1000);

			/* what already came is read before a wait (or a zero timeout) */
			if (!consumed)
			{
				if (!PQconsumeInput(pc->conn))
					pg_report(pc, NULL, "read the replication stream", NULL);
				consumed = true;
				continue;
			}
			if (left <= 0)
				return 0;
			(void) source_wait_socket(PQsocket(pc->conn), false, Min(left, 1000L),
									  PG_WAIT_EXTENSION);
			consumed = false;
			continue;
		}
		if (len == -1)
		{
			stream_ended(pc);
			return -1;
		}
		if (len < 0)
			pg_report(pc, NULL, "read the replication stream", NULL);
		if (buf[0] == 'w' && len > 25)
		{
			*chunk = buf;
			*data = buf + 25;
			*lsn = be64(buf + 9);
			return len - 25;
		}
		if (buf[0] == 'k' && len >= 18)
		{
			*lsn = be64(buf + 1);
			*reply_wanted = buf[17] != 0;
			PQfreemem(buf);
			return -2;
		}
		{
			uint8		type = (uint8) buf[0];

			PQfreemem(buf);
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("unexpected replication stream message 0x%02x of %d bytes from source \"%s\"",
							type, len, pc->base.cfg->server_name),
					 errhint("Check that the source speaks PostgreSQL's logical replication protocol.")));
		}
	}
}

/* ---- the LogDriver of the PostgreSQL family ---- */

void
pgrepl_close_decoder(PgConn *pc)
{
	if (pc->dec == NULL)
		return;
	pgo_decoder_free(pc->dec);
	pfree(pc->dec);
	pc->dec = NULL;
}

static SourceConn *
log_connect(SourceConfig *cfg)
{
	return &pgrepl_connect(cfg)->base;
}

static bool
log_slot_exists(SourceConn *conn, const char *slot, bool *active, bool *lost,
				XLogRecPtr *confirmed)
{
	PgConn	   *pc = (PgConn *) conn;
	PGresult   *res;
	bool		exists;

	/* (YugabyteDB 2024.1 has no wal_status: read it from the row as json) */
	res = pg_exec(pc, psprintf("SELECT active, pg_catalog.to_jsonb(s) OPERATOR(pg_catalog.->>) 'wal_status', "
							   "confirmed_flush_lsn "
							   "FROM pg_catalog.pg_replication_slots s WHERE slot_name = %s",
							   quote_literal_cstr(slot)),
				  "look for the replication slot");
	exists = PQntuples(res) == 1;
	*active = exists && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	*lost = exists && !PQgetisnull(res, 0, 1) && strcmp(PQgetvalue(res, 0, 1), "lost") == 0;
	*confirmed = exists && !PQgetisnull(res, 0, 2) ?
		DatumGetLSN(DirectFunctionCall1(pg_lsn_in, CStringGetDatum(PQgetvalue(res, 0, 2)))) :
		InvalidXLogRecPtr;
	PQclear(res);
	return exists;
}

static void
log_create_slot(SourceConn *conn, const char *slot, XLogRecPtr *consistent, char **snapshot)
{
	pgrepl_create_slot((PgConn *) conn, slot, consistent, snapshot);
}

static void
log_drop_slot(SourceConn *conn, const char *slot)
{
	pgrepl_drop_slot((PgConn *) conn, slot);
}

/*
 * The source's end of WAL: IDENTIFY_SYSTEM's xlogpos is what it flushed; a
 * commit acknowledged with synchronous_commit off may lie beyond it, not
 * flushed yet, so a primary's insert position counts too (the WAL writer
 * flushes such commits within three times wal_writer_delay).  YugabyteDB
 * has no IDENTIFY_SYSTEM.
 */
static XLogRecPtr
log_current_position(SourceConn *conn)
{
	PgConn	   *pc = (PgConn *) conn;
	PGresult   *res;
	XLogRecPtr	pos;
	const char *insert_sql = "SELECT pg_catalog.pg_current_wal_insert_lsn() "
		"WHERE NOT pg_catalog.pg_is_in_recovery()";

	if (is_yugabyte(pc))
		return InvalidXLogRecPtr;
	res = pg_exec(pc, "IDENTIFY_SYSTEM", "read the source's WAL position");
	if (PQntuples(res) != 1 || PQnfields(res) < 3 || PQgetisnull(res, 0, 2))
		pg_report(pc, res, "read the source's WAL position", "IDENTIFY_SYSTEM");
	pos = DatumGetLSN(DirectFunctionCall1(pg_lsn_in, CStringGetDatum(PQgetvalue(res, 0, 2))));
	PQclear(res);
	/* (a fork without these functions: the flush position alone) */
	res = pg_exec_or_null(pc, insert_sql, "read the source's WAL insert position");
	if (res && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
	{
		XLogRecPtr	insert = DatumGetLSN(DirectFunctionCall1(pg_lsn_in,
															 CStringGetDatum(PQgetvalue(res, 0, 0))));

		/*
		 * Right after a page header nothing is on the page yet: the last
		 * record ended at the page's start, which is as far as the source's
		 * decoding will ever say it read.
		 */
		if (insert % XLOG_BLCKSZ <= SizeOfXLogLongPHD)
			insert -= insert % XLOG_BLCKSZ;
		pos = Max(pos, insert);
	}
	PQclear(res);
	return pos;
}

static void
log_start(SourceConn *conn, const char *slot, XLogRecPtr from, const char *publication)
{
	PgConn	   *pc = (PgConn *) conn;

	pgrepl_close_decoder(pc);
	pc->dec = MemoryContextAllocZero(TopMemoryContext, sizeof(PgoDecoder));
	pgo_decoder_init(pc->dec, TopMemoryContext);
	pgrepl_start(pc, slot, from, publication);
}

/* The next message, decoded in CurrentMemoryContext (the caller's to reset). */
static LogEventKind
log_next(SourceConn *conn, long timeout_ms, PgoMessage *msg, XLogRecPtr *wal_end,
		 bool *reply_wanted)
{
	PgConn	   *pc = (PgConn *) conn;
	char	   *chunk = NULL;
	const char *data;
	int			len;

	*reply_wanted = false;
	len = pgrepl_next(pc, timeout_ms, &chunk, &data, wal_end, reply_wanted);
	if (len == 0)
		return LOG_NOTHING;
	if (len == -1)
		return LOG_END;
	if (len == -2)
		return LOG_KEEPALIVE;
	PG_TRY();
	{
		pgo_decode(pc->dec, data, len, msg);
	}
	PG_FINALLY();
	{
		PQfreemem(chunk);
	}
	PG_END_TRY();
	return LOG_MESSAGE;
}

static void
log_ack(SourceConn *conn, XLogRecPtr flushed, bool reply)
{
	pgrepl_ack((PgConn *) conn, flushed, reply);
}

static void
log_stop(SourceConn *conn)
{
	pgrepl_stop((PgConn *) conn);
}

/*
 * The publication's tables in the schema (*exists false when it is
 * missing), its comment, and what keeps it from publishing every change of
 * them whole (*problem): actions left out, row filters, column lists,
 * partitions published as themselves.  (Read as json where a column is
 * newer than YugabyteDB's PostgreSQL 11.)
 */
static List *
log_publication_tables(SourceConn *conn, const char *pub, const char *schema, bool *exists,
					   char **comment, char **problem)
{
	PgConn	   *pc = (PgConn *) conn;
	PGresult   *res;
	List	   *tables = NIL;
	char	   *lpub = quote_literal_cstr(pub);
	char	   *lschema = quote_literal_cstr(schema);

	res = pg_exec(pc, psprintf("SELECT p.tablename::text FROM pg_catalog.pg_publication pb "
							   "LEFT JOIN pg_catalog.pg_publication_tables p ON p.pubname = pb.pubname "
							   "AND p.schemaname = %s WHERE pb.pubname = %s",
							   lschema, lpub),
				  "read the publication's tables");
	*exists = PQntuples(res) > 0;
	for (int i = 0; i < PQntuples(res); i++)
		if (!PQgetisnull(res, i, 0))
			tables = lappend(tables, pstrdup(PQgetvalue(res, i, 0)));
	PQclear(res);
	*comment = NULL;
	*problem = NULL;
	if (!*exists)
		return tables;
	res = pg_exec(pc, psprintf("SELECT pg_catalog.obj_description(pb.oid, 'pg_publication'), "
							   "pg_catalog.concat_ws('; ', "
							   "CASE WHEN NOT (pb.pubinsert AND pb.pubupdate AND pb.pubdelete AND pb.pubtruncate) "
							   "THEN 'it leaves inserts, updates, deletes or truncates out' END, "
							   "CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_publication_tables t "
							   "  WHERE t.pubname = pb.pubname AND t.schemaname = %s "
							   "  AND pg_catalog.to_jsonb(t) OPERATOR(pg_catalog.->>) 'rowfilter' IS NOT NULL) "
							   "THEN 'a table has a row filter' END, "
							   "CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_publication_rel r "
							   "  JOIN pg_catalog.pg_class c ON c.oid = r.prrelid "
							   "  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace AND n.nspname = %s "
							   "  WHERE r.prpubid = pb.oid "
							   "  AND pg_catalog.to_jsonb(r) OPERATOR(pg_catalog.->>) 'prattrs' IS NOT NULL) "
							   "THEN 'a table has a column list' END, "
							   "CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_publication_tables t "
							   "  JOIN pg_catalog.pg_namespace n ON n.nspname = t.schemaname "
							   "  JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = t.tablename "
							   "  WHERE t.pubname = pb.pubname AND t.schemaname = %s "
							   "  AND pg_catalog.to_jsonb(c) OPERATOR(pg_catalog.->>) 'relispartition' = 'true') "
							   "THEN 'it publishes partitions as themselves, not through their partitioned table' END) "
							   "FROM pg_catalog.pg_publication pb WHERE pb.pubname = %s",
							   lschema, lschema, lschema, lpub),
				  "check the publication");
	if (PQntuples(res) == 1)
	{
		if (!PQgetisnull(res, 0, 0))
			*comment = pstrdup(PQgetvalue(res, 0, 0));
		if (!PQgetisnull(res, 0, 1) && PQgetvalue(res, 0, 1)[0] != '\0')
			*problem = pstrdup(PQgetvalue(res, 0, 1));
	}
	PQclear(res);
	return tables;
}

/*
 * The columns of the table's replica identity at the source, or "*" for
 * REPLICA IDENTITY FULL (none: NOTHING, or no primary key for DEFAULT).
 */
static List *
log_replica_identity(SourceConn *conn, const char *schema, const char *table)
{
	PgConn	   *pc = (PgConn *) conn;
	PGresult   *res;
	List	   *cols = NIL;

	res = pg_exec(pc, psprintf("SELECT CASE WHEN c.relreplident = 'f' THEN '*' ELSE a.attname::text END "
							   "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
							   "LEFT JOIN pg_catalog.pg_index i ON i.indrelid = c.oid AND c.relreplident <> 'f' "
							   "  AND CASE c.relreplident WHEN 'd' THEN i.indisprimary WHEN 'i' THEN i.indisreplident ELSE false END "
							   "LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY (i.indkey) "
							   "WHERE n.nspname = %s AND c.relname = %s",
							   quote_literal_cstr(schema), quote_literal_cstr(table)),
				  "read the table's replica identity");
	for (int i = 0; i < PQntuples(res); i++)
		if (!PQgetisnull(res, i, 0))
			cols = lappend(cols, pstrdup(PQgetvalue(res, i, 0)));
	PQclear(res);
	return cols;
}

static void
log_publication_set(SourceConn *conn, const char *pub, bool create, const char *schema,
					List *tables, const char *comment)
{
	PgConn	   *pc = (PgConn *) conn;
	StringInfoData sql;
	ListCell   *lc;

	initStringInfo(&sql);
	appendStringInfo(&sql, create ? "CREATE PUBLICATION %s FOR TABLE " :
					 "ALTER PUBLICATION %s SET TABLE ", quote_identifier(pub));
	foreach(lc, tables)
		appendStringInfo(&sql, "%s%s", foreach_current_index(lc) ? ", " : "",
						 quote_qualified_identifier(schema, lfirst(lc)));
	/* a partitioned table's changes under its own name (YugabyteDB: PG 11, none) */
	if (create && !is_yugabyte(pc) && PQserverVersion(pc->conn) >= 130000)
		appendStringInfoString(&sql, " WITH (publish_via_partition_root = true)");
	if (create)
		appendStringInfo(&sql, "; COMMENT ON PUBLICATION %s IS %s", quote_identifier(pub),
						 quote_literal_cstr(comment));
	PQclear(pg_exec(pc, sql.data,
					create ? "create the publication" : "change the publication's tables"));
}

static void
log_publication_drop(SourceConn *conn, const char *pub)
{
	PQclear(pg_exec((PgConn *) conn, psprintf("DROP PUBLICATION IF EXISTS %s", quote_identifier(pub)),
					"drop the publication"));
}

const LogDriver pg_log_driver = {
	.connect = log_connect,
	.slot_exists = log_slot_exists,
	.create_slot = log_create_slot,
	.drop_slot = log_drop_slot,
	.current_position = log_current_position,
	.start = log_start,
	.next = log_next,
	.ack = log_ack,
	.stop = log_stop,
	.publication_tables = log_publication_tables,
	.publication_set = log_publication_set,
	.publication_drop = log_publication_drop,
	.replica_identity = log_replica_identity,
};

/* A row (kind, relation or NULL, text) of the probe's result. */
static void
put_row(ReturnSetInfo *rsinfo, const char *kind, const char *relation, const char *text)
{
	Datum		values[3];
	bool		nulls[3] = {false, relation == NULL, false};

	values[0] = CStringGetTextDatum(kind);
	values[1] = relation ? CStringGetTextDatum(relation) : (Datum) 0;
	values[2] = CStringGetTextDatum(text);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * dbsync.log_capture_probe(server, slot, publication, schema, table,
 * wait_ms): make the slot, count the rows of the table in its exported
 * snapshot (over a
 * second, ordinary connection), stream the changes after the consistent
 * point for wait_ms, acknowledge them, and return the snapshot's count and
 * the decoded changes.  A test of the protocol client and of the handover
 * (no change both in the snapshot and in the stream, none in neither).
 * Superuser; the slot stays (the caller drops it).
 */
PG_FUNCTION_INFO_V1(dbsync_log_capture_probe);

Datum
dbsync_log_capture_probe(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *slot = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *publication = text_to_cstring(PG_GETARG_TEXT_PP(2));
	char	   *schema = text_to_cstring(PG_GETARG_TEXT_PP(3));
	char	   *table = text_to_cstring(PG_GETARG_TEXT_PP(4));
	int			wait_ms = PG_GETARG_INT32(5);
	SourceConfig *cfg;
	PgConn	   *volatile repl = NULL;
	PgConn	   *volatile reader = NULL;
	PgoDecoder	dec;

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for function log_capture_probe"),
				 errhint("It is a test of the replication client: run it as a superuser.")));
	check_slot_name(slot);
	cfg = source_config_get(GetForeignServerByName(NameStr(*PG_GETARG_NAME(0)), false)->serverid);
	InitMaterializedSRF(fcinfo, 0);
	pgo_decoder_init(&dec, CurrentMemoryContext);
	PG_TRY();
	{
		XLogRecPtr	consistent;
		XLogRecPtr	last = InvalidXLogRecPtr;
		char	   *snapshot;
		PGresult   *res;
		TimestampTz until;

		repl = pgrepl_connect(cfg);
		pgrepl_create_slot(repl, slot, &consistent, &snapshot);
		reader = pg_open(cfg, false);
		PQclear(pg_exec(reader, "BEGIN ISOLATION LEVEL REPEATABLE READ", "begin"));
		PQclear(pg_exec(reader, psprintf("SET TRANSACTION SNAPSHOT %s", quote_literal_cstr(snapshot)),
						"import the slot's snapshot"));
		res = pg_exec(reader, psprintf("SELECT pg_catalog.count(*) FROM %s",
									   quote_qualified_identifier(schema, table)), "count");
		if (PQntuples(res) != 1)
			pg_report(reader, res, "count the table in the slot's snapshot", NULL);
		put_row(rsinfo, "snapshot", NULL, PQgetvalue(res, 0, 0));
		PQclear(res);
		PQclear(pg_exec(reader, "COMMIT", "commit"));
		put_row(rsinfo, "consistent", NULL, psprintf("%X/%X", LSN_FORMAT_ARGS(consistent)));
		pgrepl_start(repl, slot, consistent, publication);
		until = GetCurrentTimestamp() + (TimestampTz) wait_ms * 1000;
		while (GetCurrentTimestamp() < until)
		{
			char	   *chunk;
			const char *data;
			XLogRecPtr	lsn;
			bool		reply = false;
			int			len = pgrepl_next(repl, 200, &chunk, &data, &lsn, &reply);
			PgoMessage	msg;

			if (len == -2)
			{
				if (reply)
					pgrepl_ack(repl, last, false);
				continue;
			}
			if (len < 0)
				break;
			if (len == 0)
				continue;
			pgo_decode(&dec, data, len, &msg);
			PQfreemem(chunk);
			if (msg.kind == PGO_COMMIT)
				last = msg.end_lsn;
			if (msg.kind == PGO_INSERT || msg.kind == PGO_UPDATE || msg.kind == PGO_DELETE)
				put_row(rsinfo,
						msg.kind == PGO_INSERT ? "insert" : msg.kind == PGO_UPDATE ? "update" : "delete",
						quote_qualified_identifier(msg.rel->nspname, msg.rel->relname),
						msg.kind == PGO_DELETE ?
						pgo_tuple_text(&msg.old, msg.oldkind == 'K', msg.rel) :
						pgo_tuple_text(&msg.new, false, msg.rel));
		}
		if (!XLogRecPtrIsInvalid(last))
		{
			pgrepl_ack(repl, last, false);
			put_row(rsinfo, "acked", NULL, psprintf("%X/%X", LSN_FORMAT_ARGS(last)));
		}
		pgrepl_stop(repl);
	}
	PG_FINALLY();
	{
		if (reader)
			pg_close(&reader->base, true);
		if (repl)
			pg_close(&repl->base, false);
		pgo_decoder_free(&dec);
	}
	PG_END_TRY();
	return (Datum) 0;
}
