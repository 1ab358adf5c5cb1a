/*-------------------------------------------------------------------------
 * source_pg.c
 *	  The PostgreSQL-family driver (YugabyteDB YSQL, PostgreSQL) over libpq.
 *
 * Every wait on the network goes through source_check_interrupts_wait(), so
 * a cancel, statement_timeout or shutdown interrupts a sync blocked on a
 * slow or frozen source.  Rows are streamed with COPY (SELECT ...) TO STDOUT
 * in text format, which is already the engine's row format.
 *
 * Catalog queries use only what PostgreSQL 11 has (YugabyteDB 2024.x and
 * earlier are PG 11 based).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "libpq-fe.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "source.h"

#include "source_pg.h"

static char *pg_query_value(SourceConn *sconn, const char *sql);

/* What the user can do about a remote SQLSTATE (NULL: nothing specific). */
static char *
pg_hint(PgConn *pc, const char *sqlstate)
{
	SourceConfig *cfg = pc->base.cfg;

	if (sqlstate == NULL)
		return NULL;
	if (strcmp(sqlstate, "42501") == 0)
		return psprintf("The source user \"%s\" lacks a privilege. At the source, run: GRANT USAGE ON SCHEMA %s TO %s; GRANT SELECT ON ALL TABLES IN SCHEMA %s TO %s;",
						cfg->user, quote_identifier(cfg->schema), quote_identifier(cfg->user),
						quote_identifier(cfg->schema), quote_identifier(cfg->user));
	if (strncmp(sqlstate, "28", 2) == 0)
		return psprintf("Check the user and password in the user mapping for server \"%s\".",
						cfg->server_name);
	if (strcmp(sqlstate, "3D000") == 0)
		return psprintf("Check the \"dbname\" option of server \"%s\": the database must exist at the source.",
						cfg->server_name);
	if (strcmp(sqlstate, "42P01") == 0)
		return psprintf("The table may have been dropped or renamed at the source; the next run rediscovers the tables (dbsync_discover(%s) shows them).",
						quote_literal_cstr(cfg->server_name));
	if (strcmp(sqlstate, "42703") == 0)
		return pstrdup("A column may have been dropped or renamed at the source; the next run rediscovers the columns.");
	if (strcmp(sqlstate, "53300") == 0)
		return pstrdup("The source has no free connection; try again later, or raise max_connections at the source.");
	if (strcmp(sqlstate, "57014") == 0)
		return pstrdup("The statement was canceled at the source (a statement_timeout there, or pg_cancel_backend).");
	if (strncmp(sqlstate, "40", 2) == 0)
		return pstrdup("A conflict at the source (serialization failure or deadlock); the next run tries again.");
	return NULL;
}

/*
 * A connection attempt failed.  libpq gives no SQLSTATE for it: the
 * source's message tells authentication, a missing database or role and an
 * unreachable host apart, each with what to check.
 */
static void
pg_attribute_noreturn()
pg_connect_failed(PgConn *pc)
{
	SourceConfig *cfg = pc->base.cfg;
	char	   *msg = pc->conn ? pchomp(pstrdup(PQerrorMessage(pc->conn))) : "out of memory";
	int			code = ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION;
	char	   *hint;

	if (strstr(msg, "too many clients") || strstr(msg, "connection slots are reserved"))
	{
		code = ERRCODE_TOO_MANY_CONNECTIONS;
		hint = pstrdup("The source has no free connection; the next run tries again (or raise max_connections at the source).");
	}
	else if (strstr(msg, "starting up") || strstr(msg, "shutting down") ||
			 strstr(msg, "in recovery") || strstr(msg, "not yet accepting connections"))
	{
		code = ERRCODE_CANNOT_CONNECT_NOW;
		hint = pstrdup("The source is starting, stopping or recovering; the next run tries again.");
	}
	else if (strstr(msg, "password authentication failed"))
	{
		code = ERRCODE_INVALID_PASSWORD;
		hint = psprintf("Check the user and password in the user mapping for server \"%s\".",
						cfg->server_name);
	}
	else if (strstr(msg, "no pg_hba.conf entry"))
	{
		code = ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
		hint = psprintf("The source refuses this host or user: add a line for user \"%s\" from this host to the source's pg_hba.conf.",
						cfg->user);
	}
	else if (strstr(msg, "role \"") && strstr(msg, "does not exist"))
	{
		code = ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
		hint = psprintf("Check the user in the user mapping for server \"%s\": the source has no such role.",
						cfg->server_name);
	}
	else if (strstr(msg, "database \"") && strstr(msg, "does not exist"))
	{
		code = ERRCODE_INVALID_CATALOG_NAME;
		hint = psprintf("Check the \"dbname\" option of server \"%s\": the database must exist at the source.",
						cfg->server_name);
	}
	else
		hint = psprintf("Check that the source is running and accepts connections at %s:%d from this host (options \"host\" and \"port\" of server \"%s\").",
						cfg->host, cfg->port, cfg->server_name);
	ereport(ERROR,
			(errcode(code),
			 errmsg("could not connect to source \"%s\"", cfg->server_name),
			 errdetail_internal("%s", msg),
			 errhint("%s", hint)));
}

/* Report a failed remote operation, forwarding the remote SQLSTATE. */
void
pg_report(PgConn *pc, PGresult *res, const char *what, const char *sql)
{
	const char *server = pc->base.cfg->server_name;
	char	   *sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	char	   *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	char	   *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
	char	   *hint = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_HINT) : NULL;
	int			code = ERRCODE_CONNECTION_FAILURE;
	char	   *msg;
	char	   *specific = pg_hint(pc, sqlstate);

	if (sqlstate && strlen(sqlstate) == 5)
		code = MAKE_SQLSTATE(sqlstate[0], sqlstate[1], sqlstate[2],
							 sqlstate[3], sqlstate[4]);
	msg = pstrdup(primary ? primary : PQerrorMessage(pc->conn));
	if (res)
		PQclear(res);
	/* the stream state is unknown from here on */
	pc->base.busy = true;
	ereport(ERROR,
			(errcode(code),
			 errmsg("could not %s on source \"%s\"", what, server),
			 errdetail_internal("%s%s%s", pchomp(msg),
								detail ? " " : "", detail ? detail : ""),
			 errhint("%s", hint ? hint : specific ? specific :
					 "Check that the source is up and that the server's options and user mapping are right."),
			 sql ? errcontext("remote SQL command: %s", sql) : 0));
}

/* Wait for the socket, honouring read_timeout. */
void
pg_wait(PgConn *pc, bool want_write)
{
	int			t = pc->base.cfg->read_timeout;

	source_check_interrupts_wait(PQsocket(pc->conn), want_write,
								 t > 0 ? t * 1000L : -1L, PG_WAIT_EXTENSION);
}

/*
 * Collect every result of the command in progress: the last one, or on an
 * error the error raised (report) or NULL (the connection stays usable
 * outside a transaction block).
 */
static PGresult *
pg_get_last_result(PgConn *pc, const char *what, const char *sql, bool report)
{
	PGresult   *last = NULL;

	for (;;)
	{
		PGresult   *res;

		while (PQisBusy(pc->conn))
		{
			pg_wait(pc, false);
			if (!PQconsumeInput(pc->conn))
			{
				if (last)
					PQclear(last);
				pg_report(pc, NULL, what, sql);
			}
		}
		res = PQgetResult(pc->conn);
		if (res == NULL)
			break;
		if (last)
			PQclear(last);
		last = res;
		if (PQresultStatus(res) == PGRES_COPY_OUT)
			return res;			/* the caller streams from here */
	}
	if (last == NULL ||
		(PQresultStatus(last) != PGRES_COMMAND_OK &&
		 PQresultStatus(last) != PGRES_TUPLES_OK))
	{
		if (report)
			pg_report(pc, last, what, sql);
		PQclear(last);
		last = NULL;
	}
	return last;
}

static PGresult *
pg_exec_internal(PgConn *pc, const char *sql, const char *what, bool report)
{
	PGresult   *res;

	pc->base.busy = true;
	if (!PQsendQuery(pc->conn, sql))
		pg_report(pc, NULL, what, sql);
	/* (a non-blocking connection may keep part of it: send it all) */
	while (PQflush(pc->conn) > 0)
		pg_wait(pc, true);
	res = pg_get_last_result(pc, what, sql, report);
	pc->base.busy = false;
	return res;
}

PGresult *
pg_exec(PgConn *pc, const char *sql, const char *what)
{
	return pg_exec_internal(pc, sql, what, true);
}

/* sql's result, or NULL when the source answered it with an error. */
PGresult *
pg_exec_or_null(PgConn *pc, const char *sql, const char *what)
{
	return pg_exec_internal(pc, sql, what, false);
}

static void
pg_command(PgConn *pc, const char *sql, const char *what)
{
	PQclear(pg_exec(pc, sql, what));
}

static SourceConn *
pg_connect(SourceConfig *cfg)
{
	return &pg_open(cfg, false)->base;
}

/*
 * Connect with the server's options and the owner's user mapping, pin the
 * session's settings and read the source's version.  With replication, a
 * logical replication connection (replication=database: SQL works too).
 */
PgConn *
pg_open(SourceConfig *cfg, bool replication)
{
	const char *keys[16];
	const char *vals[16];
	int			n = 0;
	char		portbuf[16];
	char		tobuf[16];
	PgConn	   *pc;
	volatile PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	TimestampTz deadline;

	snprintf(portbuf, sizeof(portbuf), "%d", cfg->port);
	snprintf(tobuf, sizeof(tobuf), "%d", cfg->connect_timeout);
	keys[n] = "host"; vals[n++] = cfg->host;
	keys[n] = "port"; vals[n++] = portbuf;
	keys[n] = "dbname"; vals[n++] = cfg->dbname;
	keys[n] = "user"; vals[n++] = cfg->user;
	if (cfg->password)
	{
		keys[n] = "password"; vals[n++] = cfg->password;
	}
	if (cfg->password_required)
	{
		/* no .pgpass or service file may stand in for the password */
		keys[n] = "passfile"; vals[n++] = "/dev/null";
	}
	keys[n] = "sslmode"; vals[n++] = cfg->sslmode ? cfg->sslmode : "prefer";
	if (cfg->sslrootcert)
	{
		keys[n] = "sslrootcert"; vals[n++] = cfg->sslrootcert;
	}
	keys[n] = "connect_timeout"; vals[n++] = tobuf;
	keys[n] = "application_name"; vals[n++] = "dbsync";
	keys[n] = "client_encoding"; vals[n++] = GetDatabaseEncodingName();
	if (replication)
	{
		keys[n] = "replication"; vals[n++] = "database";
	}
	keys[n] = NULL; vals[n] = NULL;

	if (!AcquireExternalFD())
		ereport(ERROR,
				(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
				 errmsg("could not connect to source \"%s\": out of file descriptors",
						cfg->server_name),
				 errhint("Raise the server's \"max_files_per_process\" setting.")));

	pc = MemoryContextAllocZero(TopMemoryContext, sizeof(PgConn));
	pc->base.cfg = cfg;
	pc->conn = PQconnectStartParams(keys, vals, false);
	deadline = GetCurrentTimestamp() +
		(TimestampTz) (cfg->connect_timeout > 0 ? cfg->connect_timeout : 3600) * USECS_PER_SEC;

	PG_TRY();
	{
		if (pc->conn == NULL || PQstatus(pc->conn) == CONNECTION_BAD)
			st = PGRES_POLLING_FAILED;
		while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED)
		{
			long		left = (long) ((deadline - GetCurrentTimestamp()) / 1000);

			if (left <= 0)
				left = 1;
			source_check_interrupts_wait(PQsocket(pc->conn),
										 st == PGRES_POLLING_WRITING, left,
										 PG_WAIT_EXTENSION);
			st = PQconnectPoll(pc->conn);
		}
		if (st == PGRES_POLLING_FAILED)
			pg_connect_failed(pc);
		if (cfg->password_required && !PQconnectionUsedPassword(pc->conn))
			ereport(ERROR,
					(errcode(ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED),
					 errmsg("password is required for source \"%s\"", cfg->server_name),
					 errdetail("Non-superuser server owners cannot connect if the source does not ask for a password."),
					 errhint("Configure the source to require password authentication for this user.")));

		/*
		 * The default time zone (reported at startup, before ours is set),
		 * for zone-less cursors; then pin the session, so that what the
		 * engine parses does not depend on it, and read the version: one
		 * round trip.
		 */
		{
			const char *tz = PQparameterStatus(pc->conn, "TimeZone");

			pc->zone = MemoryContextStrdup(TopMemoryContext,
										   quote_literal_cstr(tz ? tz : "UTC"));
		}
		{
			PGresult   *res = pg_exec(pc, "SET search_path = pg_catalog; SET timezone = 'UTC'; "
									  "SET datestyle = 'ISO'; SET intervalstyle = 'postgres'; "
									  "SET extra_float_digits = 3; SET bytea_output = 'hex'; "
									  "SELECT pg_catalog.version()",
									  "configure the session");
			const char *v = PQntuples(res) == 1 && PQnfields(res) >= 1 &&
				!PQgetisnull(res, 0, 0) ? PQgetvalue(res, 0, 0) : "";
			const char *yb = strstr(v, "-YB-");
			const char *sv = PQparameterStatus(pc->conn, "server_version");

			if (yb)
			{
				/* "PostgreSQL 11.2-YB-2024.2.0.0-b0 on ..." */
				char	   *ver = pstrdup(yb + 4);

				ver[strcspn(ver, " ")] = '\0';
				pc->base.flavor = MemoryContextStrdup(TopMemoryContext,
													  psprintf("YugabyteDB %s", ver));
			}
			else
			{
				/* "15.20 (Debian 15.20-1.pgdg120+1)": the version alone */
				char	   *ver = pstrdup(sv ? sv : "(version unknown)");

				ver[strcspn(ver, " ")] = '\0';
				pc->base.flavor = MemoryContextStrdup(TopMemoryContext,
													  psprintf("PostgreSQL %s", ver));
			}
			PQclear(res);
		}
	}
	PG_CATCH();
	{
		pg_close(&pc->base, false);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return pc;
}

static void
pg_send_cancel(void *arg)
{
	char		errbuf[256];

	(void) PQcancel((PGcancel *) arg, errbuf, sizeof(errbuf));
	_exit(0);
}

/*
 * Cancel the running query.  libpq 15's PQcancel waits for the remote
 * postmaster without a timeout (a frozen source would hang us), so the
 * request goes from a detached process that gives up after timeout_s: the
 * interrupted statement returns at once either way.
 */
static void
pg_cancel(PgConn *pc, int timeout_s)
{
	PGcancel   *cancel = PQgetCancel(pc->conn);

	if (cancel == NULL)
		return;
	source_detach(pg_send_cancel, cancel, timeout_s, -1);
	PQfreeCancel(cancel);
}

/* Free the connection; never throws (it runs during abort). */
void
pg_close(SourceConn *sconn, bool cancel_running)
{
	PgConn	   *pc = (PgConn *) sconn;

	if (pc->copy_row)
		PQfreemem(pc->copy_row);
	pc->copy_row = NULL;
	if (pc->conn)
	{
		if (cancel_running && PQtransactionStatus(pc->conn) == PQTRANS_ACTIVE)
			pg_cancel(pc, 10);
		PQfinish(pc->conn);
		ReleaseExternalFD();
	}
	pc->conn = NULL;
	if (pc->base.flavor)
		pfree(pc->base.flavor);
	if (pc->zone)
		pfree(pc->zone);
	pgrepl_close_decoder(pc);
	pfree(pc);
}

static char *
pg_quote_ident(const char *ident)
{
	return pstrdup(quote_identifier(ident));
}

static char *
pg_quote_literal(const char *value)
{
	return quote_literal_cstr(value);
}

static char *
pg_column_expr(RemoteColumn *col)
{
	return pg_quote_ident(col->name);
}

/* The catalog rows discovery reads: the columns of a schema's tables. */
static char *
pg_catalog_from(const char *schema)
{
	return psprintf("FROM pg_catalog.pg_class c "
					"JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
					"JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid "
					"AND a.attnum > 0 AND NOT a.attisdropped "
					"LEFT JOIN pg_catalog.pg_constraint con ON con.conrelid = c.oid "
					"AND con.contype = 'p' "
					"WHERE n.nspname = %s AND c.relkind IN ('r', 'p') "
					"AND NOT c.relispartition",
					quote_literal_cstr(schema));
}

/*
 * The statement that reads the source's catalog version.  YugabyteDB keeps
 * one (ALTERs and DROPs move it; reading it costs no catalog scan), but a
 * plain CREATE TABLE does not move it: the count and highest OID of the
 * schema's tables go with it.  PostgreSQL keeps none, so a digest of the
 * very rows discovery reads stands in (one aggregate instead of the rows;
 * hashtextextended, not md5, which FIPS-mode servers refuse).
 */
char *
pg_catalog_version_sql(bool yugabyte, const char *schema)
{
	if (yugabyte)
		return psprintf("SELECT pg_catalog.yb_catalog_version()::pg_catalog.text "
						"OPERATOR(pg_catalog.||) '/' OPERATOR(pg_catalog.||) "
						"pg_catalog.count(*)::pg_catalog.text OPERATOR(pg_catalog.||) '/' "
						"OPERATOR(pg_catalog.||) COALESCE(pg_catalog.max(c.oid::pg_catalog.int8), 0)::pg_catalog.text "
						"FROM pg_catalog.pg_class c "
						"JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
						"WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
						quote_literal_cstr(schema));
	return psprintf("SELECT pg_catalog.count(*)::pg_catalog.text OPERATOR(pg_catalog.||) '/' "
					"OPERATOR(pg_catalog.||) pg_catalog.hashtextextended(pg_catalog.string_agg("
					"pg_catalog.concat_ws('/', pg_catalog.quote_ident(c.relname), "
					"pg_catalog.quote_ident(a.attname), "
					"pg_catalog.format_type(a.atttypid, a.atttypmod), "
					"pg_catalog.array_position(con.conkey, a.attnum)), ',' "
					"ORDER BY c.relname COLLATE \"C\", a.attnum), 0)::pg_catalog.text %s",
					pg_catalog_from(schema));
}

static char *
pg_catalog_version(SourceConn *sconn)
{
	bool		yb = sconn->flavor && strncmp(sconn->flavor, "YugabyteDB", 10) == 0;

	return pg_query_value(sconn, pg_catalog_version_sql(yb, sconn->cfg->schema));
}

/* An idle connection is good for another run (never throws). */
static bool
pg_idle_ok(SourceConn *sconn)
{
	PgConn	   *pc = (PgConn *) sconn;

	return pc->conn != NULL && PQstatus(pc->conn) == CONNECTION_OK &&
		PQtransactionStatus(pc->conn) == PQTRANS_IDLE &&
		!PQisBusy(pc->conn) && source_socket_quiet(PQsocket(pc->conn));
}

/* Tables of the remote schema: one catalog query, PG 11 compatible. */
static List *
pg_discover(SourceConn *sconn)
{
	PgConn	   *pc = (PgConn *) sconn;
	char	   *sql;
	PGresult   *res;
	List	   *tables = NIL;
	RemoteTable *cur = NULL;
	int			i;

	sql = psprintf("SELECT c.relname, a.attname, "
				   "pg_catalog.format_type(a.atttypid, a.atttypmod), "
				   "pg_catalog.array_position(con.conkey, a.attnum) %s "
				   "ORDER BY c.relname COLLATE \"C\", a.attnum",
				   pg_catalog_from(sconn->cfg->schema));
	res = pg_exec(pc, sql, "discover tables");
	if (PQntuples(res) == 0)
	{
		char	   *found = pg_query_value(sconn,
										   psprintf("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s",
													quote_literal_cstr(sconn->cfg->schema)));

		if (found == NULL)
		{
			PQclear(res);
			ereport(ERROR,
					(errcode(ERRCODE_FDW_SCHEMA_NOT_FOUND),
					 errmsg("schema \"%s\" does not exist at source \"%s\"",
							sconn->cfg->schema, sconn->cfg->server_name),
					 errhint("Set the server option \"schema\" to an existing schema: ALTER SERVER %s OPTIONS (SET schema '...').",
							 quote_identifier(sconn->cfg->server_name))));
		}
	}
	for (i = 0; i < PQntuples(res); i++)
	{
		const char *relname = PQgetvalue(res, i, 0);
		RemoteColumn *col = palloc0(sizeof(RemoteColumn));

		if (cur == NULL || strcmp(cur->name, relname) != 0)
		{
			cur = palloc0(sizeof(RemoteTable));
			cur->name = pstrdup(relname);
			tables = lappend(tables, cur);
		}
		col->name = pstrdup(PQgetvalue(res, i, 1));
		col->remote_type = pstrdup(PQgetvalue(res, i, 2));
		col->local_type = col->remote_type;
		col->fallback_type = "text";
		col->kind = VK_PLAIN;
		col->pk_position = PQgetisnull(res, i, 3) ? 0 : atoi(PQgetvalue(res, i, 3));
		cur->columns = lappend(cur->columns, col);
	}
	PQclear(res);

	/* primary key column names in key order */
	{
		ListCell   *lc;

		foreach(lc, tables)
		{
			RemoteTable *t = lfirst(lc);
			int			pos;

			for (pos = 1;; pos++)
			{
				ListCell   *lc2;
				char	   *name = NULL;

				foreach(lc2, t->columns)
				{
					RemoteColumn *col = lfirst(lc2);

					if (col->pk_position == pos)
						name = col->name;
				}
				if (name == NULL)
					break;
				t->primary_key = lappend(t->primary_key, name);
			}
		}
	}
	return tables;
}

/*
 * A read transaction in the snapshot a log capture slot exported
 * (PostgreSQL), or at the commit time its creation returned (YugabyteDB
 * exports no snapshot: yb_read_time, which needs a superuser there).
 */
char *
pg_snapshot_sql(bool yugabyte, const char *snapshot)
{
	const char *begin = "START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY";

	if (snapshot == NULL)
		return pstrdup(begin);
	if (yugabyte)
		return psprintf("%s; SET LOCAL yb_read_time TO %s", begin,
						quote_literal_cstr(psprintf("%s ht", snapshot)));
	return psprintf("%s; SET TRANSACTION SNAPSHOT %s", begin, quote_literal_cstr(snapshot));
}

static void
pg_begin_snapshot(SourceConn *sconn)
{
	pg_command((PgConn *) sconn,
			   pg_snapshot_sql(sconn->flavor && strncmp(sconn->flavor, "YugabyteDB", 10) == 0,
							   sconn->snapshot),
			   sconn->snapshot ? "read in the replication slot's snapshot" :
			   "start a read transaction");
	sconn->in_snapshot = true;
}

static void
pg_end_snapshot(SourceConn *sconn)
{
	if (!sconn->in_snapshot)
		return;
	pg_command((PgConn *) sconn, "COMMIT", "end the read transaction");
	sconn->in_snapshot = false;
}

static char *
pg_query_value(SourceConn *sconn, const char *sql)
{
	PGresult   *res = pg_exec((PgConn *) sconn, sql, "run a query");
	char	   *v = NULL;

	if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
		v = pstrdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return v;
}

static void
pg_stream_start(SourceConn *sconn, const char *select_sql, List *columns)
{
	PgConn	   *pc = (PgConn *) sconn;
	char	   *sql = psprintf("COPY (%s) TO STDOUT", select_sql);
	PGresult   *res;

	sconn->busy = true;
	pc->sql = sql;
	if (!PQsendQuery(pc->conn, sql))
		pg_report(pc, NULL, "read rows", sql);
	res = pg_get_last_result(pc, "read rows", sql, true);
	if (PQresultStatus(res) != PGRES_COPY_OUT)
		pg_report(pc, res, "read rows", sql);
	PQclear(res);
}

static bool
pg_stream_next(SourceConn *sconn, const char **data, int *len)
{
	PgConn	   *pc = (PgConn *) sconn;

	if (pc->copy_row)
	{
		PQfreemem(pc->copy_row);
		pc->copy_row = NULL;
	}
	for (;;)
	{
		int			n = PQgetCopyData(pc->conn, &pc->copy_row, 1);

		if (n > 0)
		{
			*data = pc->copy_row;
			*len = n;
			return true;
		}
		if (n == 0)
		{
			pg_wait(pc, false);
			if (!PQconsumeInput(pc->conn))
				pg_report(pc, NULL, "read rows", pc->sql);
			continue;
		}
		if (n == -1)
		{
			/* end of data: the command's own status says if it completed */
			PGresult   *res = pg_get_last_result(pc, "read rows", pc->sql, true);

			PQclear(res);
			sconn->busy = false;
			return false;
		}
		pg_report(pc, NULL, "read rows", pc->sql);
	}
}

/*
 * The source's clock, then the start of its oldest open transaction.
 * Every open client transaction counts, writing or not yet: PostgreSQL's
 * now() is a transaction's start, so one that writes later still stamps
 * rows with it.  Seeing other roles' sessions needs pg_read_all_stats (or
 * superuser) on the source; without it only the sync user's own count.
 */
static void
pg_read_clock(SourceConn *sconn, char **now, char **offset, char **oldest)
{
	PgConn	   *pc = (PgConn *) sconn;
	char	   *v;
	char	   *bar;

	/*
	 * One round trip; the subquery runs for the clock's row, so after the
	 * clock is read, as read_clock() requires.
	 */
	v = pg_query_value(sconn,
					   psprintf("SELECT c.t::pg_catalog.text OPERATOR(pg_catalog.||) '|' "
								"OPERATOR(pg_catalog.||) (pg_catalog.timezone(%s, c.t) "
								"OPERATOR(pg_catalog.-) pg_catalog.timezone('UTC', c.t))::pg_catalog.text "
								"OPERATOR(pg_catalog.||) '|' OPERATOR(pg_catalog.||) "
								"COALESCE((SELECT pg_catalog.min(a.xact_start) FROM pg_catalog.pg_stat_activity a "
								"WHERE a.xact_start IS NOT NULL AND c.t IS NOT NULL "
								"AND a.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid() "
								"AND a.backend_type OPERATOR(pg_catalog.=) 'client backend' "
								"AND a.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())::pg_catalog.text, '') "
								"FROM (SELECT pg_catalog.clock_timestamp() AS t OFFSET 0) c",
								pc->zone ? pc->zone : "'UTC'"));
	*now = v;
	*offset = NULL;
	*oldest = NULL;
	if (v == NULL || (bar = strchr(v, '|')) == NULL)
		return;
	*bar = '\0';
	*offset = bar + 1;
	if ((bar = strchr(*offset, '|')) == NULL)
		return;
	*bar = '\0';
	if (bar[1] != '\0')
		*oldest = bar + 1;
}

/*
 * A key column renders as the local side renders it, when its local type is
 * the remote one (a type kept locally after a change at the source: NULL,
 * the engine then reads all keys).
 */
static char *
pg_key_text(RemoteColumn *col)
{
	if (col->remote_type == NULL || strcmp(col->remote_type, col->local_type) != 0)
		return NULL;
	return key_text_local(col->local_type, pg_quote_ident(col->name));
}

const SourceDriver pg_driver = {
	.name = "postgresql",
	.connect = pg_connect,
	.close = pg_close,
	.discover = pg_discover,
	.begin_snapshot = pg_begin_snapshot,
	.end_snapshot = pg_end_snapshot,
	.quote_ident = pg_quote_ident,
	.quote_literal = pg_quote_literal,
	.column_expr = pg_column_expr,
	.query_value = pg_query_value,
	.stream_start = pg_stream_start,
	.stream_next = pg_stream_next,
	.read_clock = pg_read_clock,
	.idle_ok = pg_idle_ok,
	.catalog_version = pg_catalog_version,
	.key_text = pg_key_text,
	.key_concat = pg_key_concat,
	.key_digest = pg_key_digest_fast,
	.key_bucket = pg_key_bucket_fast,
	.local_key_digest = pg_key_digest_fast,
	.local_key_bucket = pg_key_bucket_fast,
	.log = &pg_log_driver,
};
