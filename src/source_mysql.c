/*-------------------------------------------------------------------------
 * source_mysql.c
 *	  The MySQL-family driver (TiDB, MySQL, MariaDB) over MariaDB
 *	  Connector/C.  This is the only file that includes <mysql.h>.
 *
 * Every call that may wait on the network uses Connector/C's non-blocking
 * API (*_start / *_cont): the library hands back what it waits for
 * (MYSQL_WAIT_READ/WRITE/TIMEOUT) and we wait for it on the process latch
 * and the socket together, so pg_cancel_backend(), statement_timeout and
 * shutdown interrupt a sync even when the source is frozen.  A call that
 * is abandoned that way leaves the MYSQL handle in an unknown state; the
 * engine then discards the connection (close with cancel_running), which
 * sends KILL QUERY on a short-lived side connection, shuts the socket down
 * and frees the handle without reading the rest of the result.
 *
 * The session is pinned right after connecting: utf8mb4, time_zone UTC,
 * sql_mode NO_BACKSLASH_ESCAPES (so a string literal is quoted by doubling
 * single quotes and nothing else), REPEATABLE READ (so that START
 * TRANSACTION WITH CONSISTENT SNAPSHOT really gives one snapshot).
 *
 * Rows are read with mysql_use_result() (never mysql_store_result(): memory
 * stays flat) and converted to COPY text according to each column's
 * ValueKind (see typemap_mysql.c) by mysql_values.c, which sees only plain
 * C types.  The end of a result set is checked with mysql_errno(): a stream
 * that the source cut is an error, never a short read.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

/* Connector/C's ma_list.h declares names that pg_list.h defines too */
#define list_length mysql_list_length
#define list_delete mysql_list_delete
#define list_free mysql_list_free
#include <mysql.h>
#include <errmsg.h>
#undef list_length
#undef list_delete
#undef list_free

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "mysql_values.h"
#include "source.h"
#include "typemap_mysql.h"

/* Rows are handed to the engine in chunks of about this size. */
#define CHUNK_TARGET	(64 * 1024)

/* Stack of Connector/C's non-blocking co-routine (TLS needs some room). */
#define NB_STACK_SIZE	((size_t) 256 * 1024)

/* The KILL QUERY side connection gives up after this long (abort path). */
#define KILL_BUDGET_MS	10000

/* Longest sample of a bad value shown in an error message. */
#define SAMPLE_MAX		100

/* Connection parameters, copied so that close() never needs cfg. */
typedef struct MyParams
{
	char	   *server;
	char	   *host;
	int			port;
	char	   *user;
	char	   *password;
	char	   *dbname;
	char	   *ssl_mode;
	char	   *ssl_ca;
	int			connect_timeout;
	int			read_timeout;
	bool		password_required;
} MyParams;

typedef struct MyConn
{
	SourceConn	base;			/* must be first */
	MemoryContext cxt;			/* everything below lives here */
	MyParams	p;
	MYSQL	   *my;				/* malloc'd by Connector/C */
	MYSQL_RES  *res;			/* result being read, or NULL */
	bool		in_call;		/* a non-blocking call has not finished */
	bool		connecting;		/* timeouts are connect timeouts */
	bool		is_tidb;
	bool		is_mariadb;
	int			sees_trx;		/* PROCESS privilege: 1 yes, -1 no, 0 not
								 * asked yet */
	bool		eof;			/* the stream's last row was read */
	int			ncols;
	MyColumn   *cols;
	char	   *stream_sql;		/* the stream's SELECT, for messages */
	const char *bad_column;		/* a value that could not be converted: */
	bool		bad_spatial;	/* in a spatial column (else a vector) */
	char	   *bad_sample;		/* raised once the rows before it are out */
	char	   *bad_reason;
	StringInfoData chunk;		/* COPY text handed to the engine */
	StringInfoData scratch;		/* one value being built */
	int			nkeys;			/* key columns of the stream */
	int		   *keycol;			/* the stream column of each key column */
	StringInfoData *keys;		/* the last row's key, source form, in key
								 * order */
} MyConn;

static void my_close(SourceConn *conn, bool cancel_running);
static char *my_quote_ident(const char *ident);
static char *my_quote_literal(const char *value);


/* ------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------
 */

/* A valid SQLSTATE that says more than "general error". */
static bool
useful_sqlstate(const char *s)
{
	int			i;

	if (s == NULL || strlen(s) != 5 || strcmp(s, "HY000") == 0 ||
		strcmp(s, "00000") == 0)
		return false;
	for (i = 0; i < 5; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'Z')))
			return false;
	return true;
}

static bool
is_lost_connection(unsigned int e)
{
	return e == CR_SERVER_GONE_ERROR || e == CR_SERVER_LOST ||
		e == CR_SERVER_LOST_EXTENDED;
}

static int
my_errcode(MyConn *c, unsigned int e, const char *sqlstate)
{
	if (is_lost_connection(e))
		return ERRCODE_CONNECTION_FAILURE;
	if (useful_sqlstate(sqlstate))
		return MAKE_SQLSTATE(sqlstate[0], sqlstate[1], sqlstate[2],
							 sqlstate[3], sqlstate[4]);
	if (c->connecting || e == CR_CONNECTION_ERROR || e == CR_CONN_HOST_ERROR ||
		e == CR_UNKNOWN_HOST)
		return ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION;
	return ERRCODE_FDW_ERROR;
}

static char *my_quote_ident(const char *ident);

/* What the user can do about remote error e (NULL: nothing specific). */
static char *
my_hint(MyConn *c, unsigned int e)
{
	switch (e)
	{
		case 1045:				/* ER_ACCESS_DENIED_ERROR */
		case 1698:				/* ER_ACCESS_DENIED_NO_PASSWORD_ERROR */
		case 1251:				/* ER_NOT_SUPPORTED_AUTH_MODE */
		case 2059:				/* CR_AUTH_PLUGIN_CANNOT_LOAD */
			return psprintf("Check the user and password in the user mapping for server \"%s\".",
							c->p.server);
		case 1044:				/* ER_DBACCESS_DENIED_ERROR */
		case 1049:				/* ER_BAD_DB_ERROR */
			return psprintf("Check the \"dbname\" option of server \"%s\": the database must exist at the source and the user must have access to it.",
							c->p.server);
		case CR_CONNECTION_ERROR:
		case CR_CONN_HOST_ERROR:
		case CR_UNKNOWN_HOST:
		case CR_IPSOCK_ERROR:
			return psprintf("Check that the source is running and accepts TCP connections at %s:%d (options \"host\" and \"port\" of server \"%s\").",
							c->p.host, c->p.port, c->p.server);
		case CR_SERVER_GONE_ERROR:
		case CR_SERVER_LOST:
		case CR_SERVER_LOST_EXTENDED:
			return pstrdup("The source closed the connection or the network failed; run the sync again once the source is reachable.");
		case CR_SSL_CONNECTION_ERROR:
			return psprintf("Check the \"ssl_mode\" and \"ssl_ca\" options of server \"%s\".",
							c->p.server);
		case 1146:				/* ER_NO_SUCH_TABLE */
			return pstrdup("The table may have been dropped or renamed at the source; the next run rediscovers the tables.");
		case 1054:				/* ER_BAD_FIELD_ERROR */
			return pstrdup("A column may have been dropped or renamed at the source; the next run rediscovers the columns.");
		case 1142:				/* ER_TABLEACCESS_DENIED_ERROR */
		case 1143:				/* ER_COLUMNACCESS_DENIED_ERROR */
			return psprintf("The source account lacks a privilege. At the source, grant SELECT on the tables of %s to the account dbsync connects as (SELECT CURRENT_USER() shows it): GRANT SELECT ON %s.* TO <that account>;",
							c->base.cfg->schema ? my_quote_ident(c->base.cfg->schema) : "the database",
							c->base.cfg->schema ? my_quote_ident(c->base.cfg->schema) : "<database>");
		case 1040:				/* ER_CON_COUNT_ERROR */
		case 1203:				/* ER_TOO_MANY_USER_CONNECTIONS */
			return pstrdup("The source has no free connection for this user; try again later.");
		case 1317:				/* ER_QUERY_INTERRUPTED */
		case 1927:				/* ER_CONNECTION_KILLED */
		case 1969:				/* ER_STATEMENT_TIMEOUT (MariaDB) */
		case 3024:				/* ER_QUERY_TIMEOUT (MySQL) */
			return pstrdup("The statement was interrupted at the source (KILL or a statement time limit).");
		default:
			return NULL;
	}
}

/*
 * Report the handle's current error: "could not <what> on source", the
 * remote text and number as detail, the remote SQL as context.
 */
static void
pg_attribute_noreturn()
my_report(MyConn *c, const char *what, const char *sql)
{
	unsigned int e = mysql_errno(c->my);
	char	   *msg = pstrdup(e ? mysql_error(c->my) : "unknown error");
	char	   *sqlstate = pstrdup(mysql_sqlstate(c->my));
	char	   *hint = my_hint(c, e);

	/*
	 * A server error (1xxx) ends the statement; after anything else the
	 * session state is unknown and a statement may still run remotely.
	 */
	if (e < 1000 || e >= 2000)
		c->base.busy = true;
	ereport(ERROR,
			(errcode(my_errcode(c, e, sqlstate)),
			 errmsg("could not %s source \"%s\"", what, c->p.server),
			 errdetail_internal("%s (MySQL error %u, SQLSTATE %s)", msg, e, sqlstate),
			 hint ? errhint("%s", hint) : 0,
			 sql ? errcontext("remote SQL command: %s", sql) : 0));
	pg_unreachable();
}

/* At most SAMPLE_MAX bytes of a value, printable in any message. */
static char *
value_sample(const char *v, size_t len)
{
	StringInfoData buf;
	int			n = (int) Min(len, (size_t) SAMPLE_MAX);
	int			i;

	initStringInfo(&buf);
	n = pg_mbcliplen(v, n, n);
	if (pg_verifymbstr(v, n, true))
		appendBinaryStringInfo(&buf, v, n);
	else
	{
		/* not valid text: show the first bytes in hex */
		appendStringInfoString(&buf, "\\x");
		for (i = 0; i < (int) Min(len, (size_t) SAMPLE_MAX / 2); i++)
			appendStringInfo(&buf, "%02x", (unsigned char) v[i]);
		n = i;
	}
	if ((size_t) n < len)
		appendStringInfoString(&buf, "...");
	return buf.data;
}


/* ------------------------------------------------------------------------
 * Non-blocking calls
 * ------------------------------------------------------------------------
 */

/*
 * Wait for what a suspended call asked for (MYSQL_WAIT_* bits in status),
 * serving interrupts meanwhile.  Returns the MYSQL_WAIT_* events that
 * happened.  A timeout the library asked for is an ERROR here.
 */
static int
my_wait(MyConn *c, int status)
{
	pgsocket	sock = mysql_get_socket(c->my);
	int			wl = WL_LATCH_SET | WL_EXIT_ON_PM_DEATH;
	TimestampTz deadline = 0;
	long		budget = -1;

	if (sock != PGINVALID_SOCKET)
	{
		if (status & (MYSQL_WAIT_READ | MYSQL_WAIT_EXCEPT))
			wl |= WL_SOCKET_READABLE;
		if (status & MYSQL_WAIT_WRITE)
			wl |= WL_SOCKET_WRITEABLE;
	}
	if (status & MYSQL_WAIT_TIMEOUT)
	{
		budget = (long) mysql_get_timeout_value_ms(c->my);
		deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), budget);
		wl |= WL_TIMEOUT;
	}

	for (;;)
	{
		long		timeout = -1;
		int			rc;
		int			ev = 0;

		if (deadline)
		{
			timeout = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
													  deadline);
			if (timeout <= 0 && !(wl & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE)))
				return MYSQL_WAIT_TIMEOUT;
		}
		rc = WaitLatchOrSocket(MyLatch, wl, sock, timeout, PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		if (rc & WL_SOCKET_READABLE)
			ev |= MYSQL_WAIT_READ;
		if (rc & WL_SOCKET_WRITEABLE)
			ev |= MYSQL_WAIT_WRITE;
		if (ev)
			return ev;
		if (rc & WL_TIMEOUT)
		{
			c->base.busy = true;
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("timed out %s source \"%s\"",
							c->connecting ? "connecting to" : "waiting for",
							c->p.server),
					 errdetail("The source did not answer within %ld ms.", budget),
					 errhint("Check that the source at %s:%d is up and responsive, or raise the \"%s\" option of server \"%s\".",
							 c->p.host, c->p.port,
							 c->connecting ? "connect_timeout" : "read_timeout",
							 c->p.server)));
		}
	}
}

/*
 * mysql_real_query() without blocking; throws on error, except that with
 * soft an error of the server (1xxx: the statement failed, the session is
 * fine) only returns false.
 */
static bool
my_real_query_ext(MyConn *c, const char *sql, bool soft)
{
	int			err = 0;
	int			status;

	c->in_call = true;
	status = mysql_real_query_start(&err, c->my, sql, strlen(sql));
	while (status)
		status = mysql_real_query_cont(&err, c->my, my_wait(c, status));
	c->in_call = false;
	if (err)
	{
		unsigned int e = mysql_errno(c->my);

		if (soft && e >= 1000 && e < 2000)
			return false;
		my_report(c, "run a query on", sql);
	}
	return true;
}

static void
my_real_query(MyConn *c, const char *sql)
{
	(void) my_real_query_ext(c, sql, false);
}

/* Next row of c->res, NULL at the end (checked for errors). */
static MYSQL_ROW
my_fetch_row(MyConn *c, const char *sql)
{
	MYSQL_ROW	row = NULL;
	int			status;

	c->in_call = true;
	status = mysql_fetch_row_start(&row, c->res);
	while (status)
		status = mysql_fetch_row_cont(&row, c->res, my_wait(c, status));
	c->in_call = false;
	if (row == NULL && mysql_errno(c->my) != 0)
		my_report(c, "read rows from", sql);
	return row;
}

/* Free c->res, reading what is left of it. */
static void
my_free_result(MyConn *c)
{
	int			status;

	if (c->res == NULL)
		return;
	c->in_call = true;
	status = mysql_free_result_start(c->res);
	while (status)
		status = mysql_free_result_cont(c->res, my_wait(c, status));
	c->in_call = false;
	c->res = NULL;
}

/* Start reading the result of the statement just run (NULL: none). */
static MYSQL_RES *
my_use_result(MyConn *c, const char *sql)
{
	MYSQL_RES  *res;

	if (mysql_field_count(c->my) == 0)
		return NULL;
	res = mysql_use_result(c->my);
	if (res == NULL)
		my_report(c, "read the result of a query on", sql);
	c->res = res;
	return res;
}

/* Run a statement, discarding any result; soft: see my_real_query_ext. */
static bool
my_command_ext(MyConn *c, const char *sql, bool soft)
{
	c->base.busy = true;
	my_free_result(c);
	if (!my_real_query_ext(c, sql, soft))
	{
		c->base.busy = false;
		return false;
	}
	if (my_use_result(c, sql))
		my_free_result(c);
	c->base.busy = false;
	return true;
}

static void
my_command(MyConn *c, const char *sql)
{
	(void) my_command_ext(c, sql, false);
}


/* ------------------------------------------------------------------------
 * Connecting
 * ------------------------------------------------------------------------
 */

/*
 * Set every option of a handle from p.  Returns NULL or an error message
 * (never throws: the KILL QUERY side connection uses this during abort).
 */
static const char *
my_set_options(MYSQL *my, const MyParams *p, unsigned int connect_timeout,
			   unsigned int rw_timeout)
{
	my_bool		on = 1;
	my_bool		off = 0;
	unsigned int zero = 0;
	unsigned int tcp = MYSQL_PROTOCOL_TCP;
	size_t		stack = NB_STACK_SIZE;
	const char *mode = p->ssl_mode ? p->ssl_mode : "preferred";

	/*
	 * No option file is read (Connector/C reads one only when told to), no
	 * LOAD DATA LOCAL, no automatic reconnect (it would silently lose the
	 * snapshot), TCP even for "localhost" (a Unix socket could authenticate
	 * the server's OS user without the password).
	 */
	mysql_options(my, MYSQL_OPT_LOCAL_INFILE, &zero);
	mysql_options(my, MYSQL_OPT_RECONNECT, &off);
	mysql_options(my, MYSQL_OPT_PROTOCOL, &tcp);
	mysql_options(my, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	mysql_options4(my, MYSQL_OPT_CONNECT_ATTR_ADD, "program_name", "dbsync");
	if (connect_timeout > 0)
		mysql_options(my, MYSQL_OPT_CONNECT_TIMEOUT, &connect_timeout);
	if (rw_timeout > 0)
	{
		mysql_options(my, MYSQL_OPT_READ_TIMEOUT, &rw_timeout);
		mysql_options(my, MYSQL_OPT_WRITE_TIMEOUT, &rw_timeout);
	}
	if (p->password_required)
	{
		/* only plugins that really send the password */
		mysql_options(my, MARIADB_OPT_RESTRICTED_AUTH,
					  "mysql_native_password,caching_sha2_password,"
					  "sha256_password,client_ed25519");
	}

	/* TLS: Connector/C 3.x asks for TLS when use_ssl (SSL_ENFORCE) is set */
	if (strcmp(mode, "disabled") == 0)
	{
		mysql_options(my, MYSQL_OPT_SSL_ENFORCE, &off);
		mysql_options(my, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &off);
	}
	else if (strcmp(mode, "preferred") == 0 || strcmp(mode, "required") == 0 ||
			 strcmp(mode, "verify_ca") == 0 ||
			 strcmp(mode, "verify_identity") == 0)
	{
		const char *ca = p->ssl_ca;
		bool		verify = strncmp(mode, "verify_", 7) == 0;

		mysql_options(my, MYSQL_OPT_SSL_ENFORCE, &on);
		/* verification needs a CA: default to the system's bundle */
		if (verify && (ca == NULL || ca[0] == '\0'))
		{
			ca = "/etc/ssl/certs/ca-certificates.crt";
			if (access(ca, R_OK) != 0)
				return "ssl_mode verify_ca and verify_identity need the \"ssl_ca\" option";
		}
		/* a CA makes the TLS library verify the certificate chain */
		if (ca && ca[0])
			mysql_options(my, MYSQL_OPT_SSL_CA, ca);
		/* the host name is checked only for verify_identity */
		mysql_options(my, MYSQL_OPT_SSL_VERIFY_SERVER_CERT,
					  strcmp(mode, "verify_identity") == 0 ? &on : &off);
	}
	else
		return "invalid ssl_mode";

	if (mysql_options(my, MYSQL_OPT_NONBLOCK, &stack) != 0)
		return "could not enable the non-blocking client API";
	return NULL;
}

/*
 * Connector/C 3.3 leaves the socket in blocking mode after a TLS handshake,
 * and then SSL_read() inside a "non-blocking" call blocks in read(2),
 * deaf to cancels.  Put the socket back in non-blocking mode: the async
 * paths then yield on SSL_ERROR_WANT_READ/WRITE, and the library's blocking
 * paths poll() on EAGAIN, so both keep working.  (The handshake itself
 * stays blocking, bounded by connect_timeout.)
 */
static void
set_nonblocking(MyConn *c)
{
	pgsocket	s = mysql_get_socket(c->my);
	int			flags;

	if (s == PGINVALID_SOCKET)
		return;
	flags = fcntl(s, F_GETFL);
	if (flags >= 0 && !(flags & O_NONBLOCK))
		(void) fcntl(s, F_SETFL, flags | O_NONBLOCK);
}

/* "MariaDB 10.11", "TiDB v7.5.1", "MySQL 8.0" from VERSION(). */
static char *
flavor_of(MyConn *c, const char *version)
{
	const char *t = strstr(version, "TiDB-");
	int			major = 0,
				minor = 0;

	if (t)
	{
		c->is_tidb = true;
		return psprintf("TiDB %s", t + 5);
	}
	sscanf(version, "%d.%d", &major, &minor);
	if (strstr(version, "MariaDB"))
	{
		c->is_mariadb = true;
		return psprintf("MariaDB %d.%d", major, minor);
	}
	return psprintf("MySQL %d.%d", major, minor);
}

/* Run a query; field "field" of its first row, NULL for no row or SQL NULL. */
static char *
my_query_field(MyConn *c, const char *sql, unsigned int field)
{
	MYSQL_ROW	row;
	char	   *value = NULL;

	c->base.busy = true;
	my_free_result(c);
	my_real_query(c, sql);
	if (my_use_result(c, sql))
	{
		row = my_fetch_row(c, sql);
		if (row && field < mysql_num_fields(c->res) && row[field])
		{
			unsigned long *lengths = mysql_fetch_lengths(c->res);

			value = pnstrdup(row[field], lengths[field]);
		}
		my_free_result(c);
	}
	c->base.busy = false;
	return value;
}

/* Run a query returning one value; NULL for no row or SQL NULL. */
static char *
my_query_value_internal(MyConn *c, const char *sql)
{
	return my_query_field(c, sql, 0);
}

/*
 * The statement that reads the source's catalog version, and the field
 * of its row that holds it: TiDB's schema version (every DDL moves it);
 * NULL for MySQL and MariaDB, which keep none (discovery runs each time).
 */
char *
my_catalog_version_sql(bool tidb, unsigned int *field)
{
	*field = 1;
	return tidb ? pstrdup("SHOW STATUS LIKE 'ddl_schema_version'") : NULL;
}

static char *
my_catalog_version(SourceConn *conn)
{
	MyConn	   *c = (MyConn *) conn;
	unsigned int field;
	char	   *sql = my_catalog_version_sql(c->is_tidb, &field);

	return sql ? my_query_field(c, sql, field) : NULL;
}

/* An idle connection is good for another run (never throws). */
static bool
my_idle_ok(SourceConn *conn)
{
	MyConn	   *c = (MyConn *) conn;

	return c->my != NULL && c->res == NULL && !c->in_call && !conn->busy &&
		source_socket_quiet((int) mysql_get_socket(c->my));
}

static SourceConn *
my_connect(SourceConfig *cfg)
{
	MyConn	   *c;
	MemoryContext cxt;
	MemoryContext old;

	if (cfg->password_required &&
		(cfg->password == NULL || cfg->password[0] == '\0'))
		ereport(ERROR,
				(errcode(ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED),
				 errmsg("password is required"),
				 errdetail("Non-superuser server owners must authenticate to the source with a password."),
				 errhint("Add a password to the user mapping of server \"%s\".",
						 cfg->server_name)));

	cxt = AllocSetContextCreate(TopMemoryContext, "dbsync mysql connection",
								ALLOCSET_SMALL_SIZES);
	c = MemoryContextAllocZero(cxt, sizeof(MyConn));
	c->cxt = cxt;
	c->base.cfg = cfg;

	old = MemoryContextSwitchTo(cxt);
	c->p.server = pstrdup(cfg->server_name);
	c->p.host = pstrdup(cfg->host && cfg->host[0] ? cfg->host : "localhost");
	c->p.port = cfg->port > 0 ? cfg->port :
		(cfg->source_type && strcmp(cfg->source_type, "tidb") == 0 ? 4000 : 3306);
	c->p.user = cfg->user ? pstrdup(cfg->user) : NULL;
	c->p.password = cfg->password ? pstrdup(cfg->password) : NULL;
	c->p.dbname = cfg->dbname ? pstrdup(cfg->dbname) : NULL;
	c->p.ssl_mode = cfg->ssl_mode ? pstrdup(cfg->ssl_mode) : NULL;
	c->p.ssl_ca = cfg->ssl_ca ? pstrdup(cfg->ssl_ca) : NULL;
	c->p.connect_timeout = cfg->connect_timeout;
	c->p.read_timeout = cfg->read_timeout;
	c->p.password_required = cfg->password_required;
	initStringInfo(&c->chunk);
	initStringInfo(&c->scratch);
	MemoryContextSwitchTo(old);

	PG_TRY();
	{
		MYSQL	   *ret = NULL;
		const char *problem;
		const char *version;
		char	   *flavor;
		int			status;

		c->my = mysql_init(NULL);
		if (c->my == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory"),
					 errdetail("mysql_init() failed."),
					 errhint("Free memory on the warehouse host and run the sync again.")));
		problem = my_set_options(c->my, &c->p,
								 (unsigned int) Max(c->p.connect_timeout, 0),
								 (unsigned int) Max(c->p.read_timeout, 0));
		if (problem)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("could not connect to source \"%s\": %s",
							c->p.server, problem),
					 errhint("Valid ssl_mode values are disabled, preferred, required, verify_ca and verify_identity.")));

		c->connecting = true;
		c->in_call = true;
		/* "" rather than NULL: Connector/C would read $MYSQL_PWD and $USER */
		status = mysql_real_connect_start(&ret, c->my, c->p.host,
										  c->p.user ? c->p.user : "",
										  c->p.password ? c->p.password : "",
										  c->p.dbname,
										  (unsigned int) c->p.port, NULL, 0);
		while (status)
			status = mysql_real_connect_cont(&ret, c->my, my_wait(c, status));
		c->in_call = false;
		if (ret == NULL)
			my_report(c, "connect to", NULL);
		set_nonblocking(c);

		if (c->p.ssl_mode && strcmp(c->p.ssl_mode, "preferred") != 0 &&
			strcmp(c->p.ssl_mode, "disabled") != 0 &&
			mysql_get_ssl_cipher(c->my) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
					 errmsg("could not connect to source \"%s\": the source does not support TLS",
							c->p.server),
					 errhint("Enable TLS at the source, or change the \"ssl_mode\" option of server \"%s\".",
							 c->p.server)));

		/* Flavor, then pin the session. */
		version = my_query_value_internal(c, "SELECT VERSION()");
		flavor = flavor_of(c, version ? version : "");
		c->base.flavor = MemoryContextStrdup(cxt, flavor);
		my_command(c, "SET NAMES utf8mb4, time_zone = '+00:00', "
				   "sql_mode = 'NO_BACKSLASH_ESCAPES'");
		my_command(c, "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ");

		/*
		 * Nice to have: no statement time limit on long reads, and time for
		 * the warehouse to take a chunk before the server gives up writing.
		 * A server that lacks one of these variables is fine.
		 */
		(void) my_command_ext(c, psprintf("SET net_write_timeout = 600, %s = 0",
										  c->is_mariadb ? "max_statement_time" :
										  "max_execution_time"),
							  true);
		c->connecting = false;
	}
	PG_CATCH();
	{
		my_close(&c->base, false);
		PG_RE_THROW();
	}
	PG_END_TRY();

	return &c->base;
}

/*
 * Best effort: KILL QUERY the connection's statement from a side
 * connection, within KILL_BUDGET_MS.  Runs in a detached process
 * (source_detach) while the backend goes on: never throws, never
 * processes interrupts.
 */
static void
my_kill_query(MyConn *c)
{
	unsigned long id = mysql_thread_id(c->my);
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   KILL_BUDGET_MS);
	MYSQL	   *k;
	MYSQL	   *ret = NULL;
	int			status;
	int			err = 0;
	char		sql[64];
	bool		ok = true;

	if (id == 0 || (k = mysql_init(NULL)) == NULL)
		return;
	if (my_set_options(k, &c->p, (KILL_BUDGET_MS + 999) / 1000,
					   (KILL_BUDGET_MS + 999) / 1000) != NULL)
	{
		mysql_close(k);
		return;
	}
	snprintf(sql, sizeof(sql), "KILL QUERY %lu", id);

	/* phase 0: connect, phase 1: KILL QUERY */
	for (int phase = 0; phase < 2 && ok; phase++)
	{
		if (phase == 0)
			status = mysql_real_connect_start(&ret, k, c->p.host,
											  c->p.user ? c->p.user : "",
											  c->p.password ? c->p.password : "",
											  NULL, (unsigned int) c->p.port,
											  NULL, 0);
		else
			status = mysql_real_query_start(&err, k, sql, strlen(sql));
		while (status && ok)
		{
			struct pollfd pfd;
			long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
															   deadline);
			int			rc;

			if (left <= 0)
			{
				ok = false;
				break;
			}
			pfd.fd = mysql_get_socket(k);
			pfd.events = ((status & (MYSQL_WAIT_READ | MYSQL_WAIT_EXCEPT)) ? POLLIN : 0) |
				((status & MYSQL_WAIT_WRITE) ? POLLOUT : 0);
			pfd.revents = 0;
			rc = poll(&pfd, 1, (int) left);
			if (rc < 0 && errno != EINTR)
			{
				ok = false;
				break;
			}
			if (rc <= 0)
				continue;
			rc = 0;
			if (pfd.revents & (POLLIN | POLLHUP | POLLERR))
				rc |= MYSQL_WAIT_READ;
			if (pfd.revents & (POLLOUT | POLLHUP | POLLERR))
				rc |= MYSQL_WAIT_WRITE;
			if (phase == 0)
				status = mysql_real_connect_cont(&ret, k, rc);
			else
				status = mysql_real_query_cont(&err, k, rc);
		}
		if (phase == 0 && ret == NULL)
			ok = false;
	}
	if (!ok || status)
	{
		pgsocket	s = mysql_get_socket(k);

		if (s != PGINVALID_SOCKET)
			shutdown(s, SHUT_RDWR);
	}
	mysql_close(k);
}

/* In the process source_detach() starts: the statement's session is ours. */
static void
my_kill_query_detached(void *arg)
{
	my_kill_query((MyConn *) arg);
	_exit(0);
}

static void
my_close(SourceConn *conn, bool cancel_running)
{
	MyConn	   *c = (MyConn *) conn;
	bool		unclean = c->in_call || c->res != NULL || conn->busy;

	if (c->my)
	{
		pgsocket	s = mysql_get_socket(c->my);
		bool		killing = cancel_running && unclean && !c->connecting &&
			s != PGINVALID_SOCKET;

		/*
		 * The detached process keeps the session's socket open until its
		 * KILL QUERY is done: the session (and its id) lives until then, so
		 * the KILL never reaches another session that reused the id.
		 */
		if (killing)
			source_detach(my_kill_query_detached, c, KILL_BUDGET_MS / 1000 + 1, s);
		if (unclean)
		{
			/* free what was read of the result without reading the rest */
			if (c->res)
			{
				c->res->handle = NULL;
				mysql_free_result(c->res);
				c->res = NULL;
			}

			/*
			 * Make mysql_close's COM_QUIT go nowhere instead of waiting: to
			 * /dev/null while the detached process holds the session, else
			 * into a shut socket.
			 */
			if (killing)
			{
				int			devnull = open("/dev/null", O_WRONLY);

				if (devnull >= 0)
				{
					dup2(devnull, s);
					close(devnull);
				}
				else
					shutdown(s, SHUT_RDWR);
			}
			else if (s != PGINVALID_SOCKET)
				shutdown(s, SHUT_RDWR);
		}
		mysql_close(c->my);
		c->my = NULL;
	}
	if (c->p.password)
		memset(c->p.password, 0, strlen(c->p.password));
	MemoryContextDelete(c->cxt);	/* c itself lives there */
}


/* ------------------------------------------------------------------------
 * Dialect
 * ------------------------------------------------------------------------
 */

static char *
my_quote_ident(const char *ident)
{
	StringInfoData buf;
	const char *p;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '`');
	for (p = ident; *p; p++)
	{
		if (*p == '`')
			appendStringInfoChar(&buf, '`');
		appendStringInfoChar(&buf, *p);
	}
	appendStringInfoChar(&buf, '`');
	return buf.data;
}

/* The session runs with NO_BACKSLASH_ESCAPES: only ' needs doubling. */
static char *
my_quote_literal(const char *value)
{
	StringInfoData buf;
	const char *p;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '\'');
	for (p = value; *p; p++)
	{
		if (*p == '\'')
			appendStringInfoChar(&buf, '\'');
		appendStringInfoChar(&buf, *p);
	}
	appendStringInfoChar(&buf, '\'');
	return buf.data;
}

/*
 * ENUM and SET keys order and compare by label (not by their index), in
 * binary order: under the connection's case-insensitive collation 'a' and
 * 'A' would tie and a resumed load would skip one of them.
 */
static char *
my_key_expr(RemoteColumn *col)
{
	if (col->remote_type && (pg_strncasecmp(col->remote_type, "enum", 4) == 0 ||
							 pg_strncasecmp(col->remote_type, "set", 3) == 0))
		return psprintf("CAST(%s AS CHAR CHARACTER SET utf8mb4) COLLATE utf8mb4_bin",
						my_quote_ident(col->name));
	return my_quote_ident(col->name);
}

static bool
all_chars_in(const char *s, const char *set)
{
	return *s != '\0' && strspn(s, set) == strlen(s);
}

/* A key value from my_last_key() as a literal of the source's own type. */
static char *
my_key_literal(RemoteColumn *col, const char *value)
{
	if (col->kind == VK_BINARY && all_chars_in(value, "0123456789abcdef") &&
		strlen(value) % 2 == 0)
		return psprintf("X%s", my_quote_literal(value));
	if ((col->kind == VK_BOOL || col->kind == VK_BIT1 || col->kind == VK_BITS) &&
		all_chars_in(value, "0123456789"))
		return pstrdup(value);
	return my_quote_literal(value);
}

/*
 * A key column's text as key_text_local() renders the local value, or NULL
 * for the kinds whose text differs (float, time, set, json, vectors,
 * spatial): those tables read all keys for delete detection.
 */
static char *
my_key_text(RemoteColumn *col)
{
	char	   *qi = my_quote_ident(col->name);
	const char *local = col->local_type ? col->local_type : "";

	switch (col->kind)
	{
		case VK_BINARY:
			return psprintf("LOWER(HEX(%s))", qi);
		case VK_BOOL:
		case VK_BIT1:
			return psprintf("CAST((%s <> 0) AS CHAR)", qi);
		case VK_BITS:
			return psprintf("LPAD(BIN(%s), %d, '0')", qi, col->dims > 0 ? col->dims : 64);
		case VK_DATE:
			return psprintf("CAST(%s AS CHAR)", qi);
		case VK_DATETIME:
			if (strncmp(local, "timestamp", 9) != 0)
				return NULL;
			return psprintf("DATE_FORMAT(%s, '%%Y-%%m-%%d %%H:%%i:%%s.%%f')", qi);
		case VK_PLAIN:
			if (strcmp(local, "real") == 0 || strcmp(local, "double precision") == 0 ||
				strncmp(local, "bit", 3) == 0)
				return NULL;
			return psprintf("CAST(%s AS CHAR)", qi);
		default:
			return NULL;
	}
}

static char *
my_key_concat(List *texts)
{
	StringInfoData buf;
	ListCell   *lc;

	if (list_length(texts) == 1)
		return linitial(texts);
	initStringInfo(&buf);
	appendStringInfoString(&buf, "CONCAT_WS(CHAR(1 USING utf8mb4)");
	foreach(lc, texts)
		appendStringInfo(&buf, ", %s", (char *) lfirst(lc));
	appendStringInfoChar(&buf, ')');
	return buf.data;
}

static char *
my_key_digest(const char *text)
{
	return psprintf("CAST(CONV(SUBSTR(MD5(%s), 1, 15), 16, 10) AS UNSIGNED)", text);
}

static char *
my_key_bucket(const char *text)
{
	return psprintf("SUBSTR(MD5(%s), 1, 2)", text);
}

static List *
my_last_key(SourceConn *conn)
{
	MyConn	   *c = (MyConn *) conn;
	List	   *key = NIL;
	int			i;

	for (i = 0; i < c->nkeys; i++)
		key = lappend(key, pnstrdup(c->keys[i].data, c->keys[i].len));
	return key;
}

static char *
my_column_expr(RemoteColumn *col)
{
	char	   *qi = my_quote_ident(col->name);

	/*
	 * The text protocol prints FLOAT with 6 significant digits; as a double
	 * it prints the exact float32 value (shortest round-trip digits).
	 */
	if (col->kind == VK_FLOAT)
		return psprintf("(%s + 0e0)", qi);
	/* everything else reads losslessly as is (BIT and spatial as raw bytes) */
	return qi;
}


/* ------------------------------------------------------------------------
 * Discovery
 * ------------------------------------------------------------------------
 */

typedef struct JsonCheck
{
	char	   *table;
	char	   *column;
} JsonCheck;

/* "json_valid(`col`)" -> col (palloc'd), else NULL. */
static char *
json_valid_column(const char *clause)
{
	const char *p = clause;
	StringInfoData col;

	while (*p == ' ' || *p == '(')
		p++;
	if (pg_strncasecmp(p, "json_valid", 10) != 0)
		return NULL;
	p += 10;
	while (*p == ' ')
		p++;
	if (*p++ != '(')
		return NULL;
	while (*p == ' ')
		p++;
	if (*p++ != '`')
		return NULL;
	initStringInfo(&col);
	for (;;)
	{
		if (*p == '\0')
			return NULL;
		if (*p == '`')
		{
			if (p[1] != '`')
				break;
			p++;
		}
		appendStringInfoChar(&col, *p++);
	}
	p++;						/* closing backtick */
	while (*p == ' ' || *p == ')')
		p++;
	return *p == '\0' ? col.data : NULL;
}

/* MariaDB: which text columns carry a json_valid() check (its JSON type). */
static List *
discover_json_checks(MyConn *c, const char *schema)
{
	char	   *sql = psprintf("SELECT TABLE_NAME, CHECK_CLAUSE "
							   "FROM information_schema.CHECK_CONSTRAINTS "
							   "WHERE CONSTRAINT_SCHEMA = %s",
							   my_quote_literal(schema));
	List	   *checks = NIL;
	MYSQL_ROW	row;

	c->base.busy = true;
	my_free_result(c);
	/* a server without this view is fine */
	if (!my_real_query_ext(c, sql, true))
	{
		c->base.busy = false;
		return NIL;
	}
	if (my_use_result(c, sql))
	{
		while ((row = my_fetch_row(c, sql)) != NULL)
		{
			char	   *col;

			if (row[0] == NULL || row[1] == NULL)
				continue;
			col = json_valid_column(row[1]);
			if (col)
			{
				JsonCheck  *jc = palloc(sizeof(JsonCheck));

				jc->table = pstrdup(row[0]);
				jc->column = col;
				checks = lappend(checks, jc);
			}
		}
		my_free_result(c);
	}
	c->base.busy = false;
	return checks;
}

static bool
json_checked(List *checks, const char *table, const char *column)
{
	ListCell   *lc;

	foreach(lc, checks)
	{
		JsonCheck  *jc = lfirst(lc);

		if (strcmp(jc->table, table) == 0 &&
			pg_strcasecmp(jc->column, column) == 0)
			return true;
	}
	return false;
}

/* Is "table.column" in the server's vector_columns option? */
static bool
vector_option(SourceConfig *cfg, const char *table, const char *column)
{
	ListCell   *lc;
	size_t		tl = strlen(table);

	foreach(lc, cfg->vector_columns)
	{
		const char *item = lfirst(lc);

		if (strlen(item) == tl + 1 + strlen(column) &&
			pg_strncasecmp(item, table, tl) == 0 && item[tl] == '.' &&
			pg_strcasecmp(item + tl + 1, column) == 0)
			return true;
	}
	return false;
}

static int
int_or(const char *s, int dflt)
{
	long long	v;
	char	   *end;

	if (s == NULL || *s == '\0')
		return dflt;
	v = strtoll(s, &end, 10);
	if (*end != '\0' || v < 0)
		return dflt;
	return v > INT_MAX ? INT_MAX : (int) v;
}

static int
table_cmp(const ListCell *a, const ListCell *b)
{
	RemoteTable *ta = lfirst(a);
	RemoteTable *tb = lfirst(b);

	return strcmp(ta->name, tb->name);
}

static List *
my_discover(SourceConn *conn)
{
	MyConn	   *c = (MyConn *) conn;
	SourceConfig *cfg = conn->cfg;
	const char *schema = cfg->schema ? cfg->schema : cfg->dbname;
	List	   *checks = NIL;
	List	   *tables = NIL;
	RemoteTable *cur = NULL;
	ListCell   *lc;
	MYSQL_ROW	row;
	char	   *sql;

	if (schema == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("server \"%s\" names no database", c->p.server),
				 errhint("ALTER SERVER %s OPTIONS (ADD dbname '...').",
						 quote_identifier(c->p.server))));

	if (c->is_mariadb)
		checks = discover_json_checks(c, schema);

	sql = psprintf("SELECT c.TABLE_NAME, c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, "
				   "c.CHARACTER_MAXIMUM_LENGTH, c.NUMERIC_PRECISION, "
				   "c.NUMERIC_SCALE, c.DATETIME_PRECISION, k.ORDINAL_POSITION "
				   "FROM information_schema.TABLES t "
				   "JOIN information_schema.COLUMNS c "
				   "ON c.TABLE_SCHEMA = t.TABLE_SCHEMA AND c.TABLE_NAME = t.TABLE_NAME "
				   "LEFT JOIN information_schema.KEY_COLUMN_USAGE k "
				   "ON k.TABLE_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME "
				   "AND k.COLUMN_NAME = c.COLUMN_NAME AND k.CONSTRAINT_NAME = 'PRIMARY' "
				   "WHERE t.TABLE_SCHEMA = %s "
				   "AND t.TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') "
				   "ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION",
				   my_quote_literal(schema));

	c->base.busy = true;
	my_free_result(c);
	my_real_query(c, sql);
	if (my_use_result(c, sql) == NULL)
		my_report(c, "discover the tables of", sql);
	if (mysql_num_fields(c->res) != 9)
		elog(ERROR, "unexpected result shape of the discovery query");

	while ((row = my_fetch_row(c, sql)) != NULL)
	{
		RemoteColumn *col;

		if (row[0] == NULL || row[1] == NULL)
			continue;
		/* rows come grouped by table (but "A" and "a" may interleave) */
		if (cur == NULL || strcmp(cur->name, row[0]) != 0)
		{
			cur = NULL;
			foreach(lc, tables)
			{
				RemoteTable *t = lfirst(lc);

				if (strcmp(t->name, row[0]) == 0)
				{
					cur = t;
					break;
				}
			}
			if (cur == NULL)
			{
				cur = palloc0(sizeof(RemoteTable));
				cur->name = pstrdup(row[0]);
				tables = lappend(tables, cur);
			}
		}
		col = palloc0(sizeof(RemoteColumn));
		col->name = pstrdup(row[1]);
		col->remote_type = pstrdup(row[3] ? row[3] : (row[2] ? row[2] : "text"));
		col->pk_position = int_or(row[8], 0);
		mysql_map_column(col, row[2] ? row[2] : "", col->remote_type,
						 int_or(row[4], -1), int_or(row[5], -1),
						 int_or(row[6], -1), int_or(row[7], -1),
						 json_checked(checks, cur->name, col->name),
						 vector_option(cfg, cur->name, col->name));
		cur->columns = lappend(cur->columns, col);
	}
	my_free_result(c);
	c->base.busy = false;

	/* primary keys in key order */
	foreach(lc, tables)
	{
		RemoteTable *t = lfirst(lc);
		int			pos;

		for (pos = 1;; pos++)
		{
			ListCell   *lc2;
			RemoteColumn *found = NULL;

			foreach(lc2, t->columns)
			{
				RemoteColumn *col = lfirst(lc2);

				if (col->pk_position == pos)
				{
					found = col;
					break;
				}
			}
			if (found == NULL)
				break;
			t->primary_key = lappend(t->primary_key, found->name);
		}
	}
	list_sort(tables, table_cmp);
	return tables;
}


/* ------------------------------------------------------------------------
 * Snapshot and single values
 * ------------------------------------------------------------------------
 */

static void
my_begin_snapshot(SourceConn *conn)
{
	MyConn	   *c = (MyConn *) conn;

	/* TiDB's grammar takes one characteristic; its START is a snapshot */
	my_command(c, c->is_tidb ?
			   "START TRANSACTION WITH CONSISTENT SNAPSHOT" :
			   "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY");
	conn->in_snapshot = true;
}

static void
my_end_snapshot(SourceConn *conn)
{
	MyConn	   *c = (MyConn *) conn;

	my_command(c, "COMMIT");
	conn->in_snapshot = false;
}

static char *
my_query_value(SourceConn *conn, const char *sql)
{
	return my_query_value_internal((MyConn *) conn, sql);
}

/*
 * The source's clock (UTC), then the start of its oldest open transaction
 * other than ours.  InnoDB shows trx_started in the server's system time
 * zone, to the second: converted to UTC and taken a second early.  TiDB
 * lists the transactions of every node in CLUSTER_TIDB_TRX.
 */
static void
my_read_clock(SourceConn *conn, char **now, char **offset, char **oldest)
{
	MyConn	   *c = (MyConn *) conn;

	/*
	 * Other sessions' transactions need the PROCESS privilege; without it
	 * lookback alone covers late commits (as the README says).
	 */
	if (c->sees_trx == 0)
	{
		char	   *n = my_query_value_internal(c,
												"SELECT COUNT(*) FROM information_schema.USER_PRIVILEGES "
												"WHERE PRIVILEGE_TYPE = 'PROCESS' AND GRANTEE = "
												"CONCAT('''', REPLACE(CURRENT_USER(), '@', '''@'''), '''')");

		c->sees_trx = n && strcmp(n, "0") != 0 ? 1 : -1;
	}
	source_read_clock(conn,
					  "SELECT CONCAT(DATE_FORMAT(UTC_TIMESTAMP(6), '%Y-%m-%d %H:%i:%s.%f+00'), '|', "
					  "COALESCE(TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), "
					  "CONVERT_TZ(UTC_TIMESTAMP(6), '+00:00', @@global.time_zone)), 0), "
					  "' microseconds')",
					  c->sees_trx < 0 ? NULL : c->is_tidb ?
					  "SELECT DATE_FORMAT(MIN(START_TIME), '%Y-%m-%d %H:%i:%s.%f+00') "
					  "FROM information_schema.CLUSTER_TIDB_TRX "
					  "WHERE SESSION_ID <> CONNECTION_ID()" :
					  "SELECT DATE_FORMAT(CONVERT_TZ(MIN(trx_started), 'SYSTEM', '+00:00') "
					  "- INTERVAL 1 SECOND, '%Y-%m-%d %H:%i:%s+00') "
					  "FROM information_schema.INNODB_TRX "
					  "WHERE trx_mysql_thread_id <> CONNECTION_ID()",
					  now, offset, oldest);
}


/* ------------------------------------------------------------------------
 * Streaming: rows to COPY text (values: mysql_values.c)
 * ------------------------------------------------------------------------
 */

/*
 * A value that cannot be converted.  The rows before it in the chunk are
 * handed out first, so that COPY's line number points at this row.
 */
static void
pg_attribute_noreturn()
raise_pending(MyConn *c)
{
	c->base.busy = true;		/* the stream is abandoned */
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("invalid %s value in column \"%s\": \"%s\"",
					c->bad_spatial ? "spatial" : "vector", c->bad_column, c->bad_sample),
			 errdetail("%s", c->bad_reason),
			 errhint(DBSYNC_HINT_BAD_VALUE)));
	pg_unreachable();
}

static void
my_stream_start(SourceConn *conn, const char *select_sql, List *columns)
{
	MyConn	   *c = (MyConn *) conn;
	MYSQL_FIELD *fields;
	ListCell   *lc;
	int			i;

	c->base.busy = true;
	my_free_result(c);
	if (c->cols)
	{
		for (i = 0; i < c->ncols; i++)
			pfree(unconstify(char *, c->cols[i].name));
		pfree(c->cols);
	}
	if (c->bad_sample)
		pfree(c->bad_sample);
	if (c->bad_reason)
		pfree(c->bad_reason);
	c->bad_sample = c->bad_reason = NULL;
	if (c->stream_sql)
		pfree(c->stream_sql);
	c->stream_sql = MemoryContextStrdup(c->cxt, select_sql);
	c->ncols = list_length(columns);
	c->bad_column = NULL;
	/* a huge row of the last stream must not pin its buffer forever */
	if (c->chunk.maxlen > 16 * CHUNK_TARGET)
	{
		MemoryContext old = MemoryContextSwitchTo(c->cxt);

		pfree(c->chunk.data);
		initStringInfo(&c->chunk);
		MemoryContextSwitchTo(old);
	}
	c->cols = MemoryContextAllocZero(c->cxt, sizeof(MyColumn) * Max(c->ncols, 1));
	c->eof = false;
	if (c->keys)
	{
		for (i = 0; i < c->nkeys; i++)
			pfree(c->keys[i].data);
		pfree(c->keys);
		pfree(c->keycol);
		c->keys = NULL;
	}
	c->nkeys = 0;

	my_real_query(c, select_sql);
	if (my_use_result(c, select_sql) == NULL)
		my_report(c, "read rows from", select_sql);
	if ((int) mysql_num_fields(c->res) != c->ncols)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("source \"%s\" returned %u columns, expected %d",
						c->p.server, mysql_num_fields(c->res), c->ncols),
				 errhint("The table changed at the source while it was read; run the sync again."),
				 errcontext("remote SQL command: %s", select_sql)));
	fields = mysql_fetch_fields(c->res);

	i = 0;
	foreach(lc, columns)
	{
		RemoteColumn *col = lfirst(lc);
		MyColumn   *mc = &c->cols[i];
		const char *local = col->local_type ? col->local_type : "text";

		mc->name = MemoryContextStrdup(c->cxt, col->name);
		mc->kind = col->kind;
		mc->key_index = col->key_index;
		c->nkeys = Max(c->nkeys, col->key_index);
		mc->width = col->dims;
		mc->as_utc = col->kind == VK_DATETIME && col->remote_type &&
			pg_strncasecmp(col->remote_type, "timestamp", 9) == 0;
		/* staged as text (on_row_error 'skip'): the type it is cast to decides */
		mc->geometry = col->kind == VK_SPATIAL &&
			strcmp(col->cast_type ? col->cast_type : local, "bytea") != 0 &&
			strcmp(col->cast_type ? col->cast_type : local, "text") != 0;
		if (col->kind == VK_VECTOR)
		{
			/* pgvector's '[1,2]', else real[]'s '{1,2}' */
			mc->vec_open = col->local_is_vector ? '[' : '{';

			/*
			 * Read into a text column (the engine's row-by-row mode for
			 * on_row_error 'skip' stages raw text and casts each row): a bad
			 * value goes through as is, so that only its row fails.
			 */
			mc->lenient = strcmp(local, "text") == 0;
			/* MySQL 9 and MariaDB 11.7 send VECTOR as float32 bytes */
			mc->vec_binary = !c->is_tidb && fields[i].charsetnr == 63 &&
				col->remote_type &&
				pg_strncasecmp(col->remote_type, "vector", 6) == 0;
		}
		if (col->kind == VK_SPATIAL)
			mc->lenient = strcmp(local, "text") == 0;
		if (col->kind == VK_BITS && mc->width <= 0)
			mc->width = 64;
		i++;
	}
	if (c->nkeys > 0)
	{
		MemoryContext old = MemoryContextSwitchTo(c->cxt);

		c->keys = palloc(sizeof(StringInfoData) * c->nkeys);
		c->keycol = palloc0(sizeof(int) * c->nkeys);
		for (i = 0; i < c->nkeys; i++)
			initStringInfo(&c->keys[i]);
		for (i = 0; i < c->ncols; i++)
		{
			if (c->cols[i].key_index > 0)
				c->keycol[c->cols[i].key_index - 1] = i;
		}
		MemoryContextSwitchTo(old);
	}
}

static bool
my_stream_next(SourceConn *conn, const char **data, int *len)
{
	MyConn	   *c = (MyConn *) conn;

	if (c->bad_column)
		raise_pending(c);
	if (c->res == NULL)
	{
		c->base.busy = false;
		return false;
	}
	resetStringInfo(&c->chunk);
	while (c->chunk.len < CHUNK_TARGET)
	{
		MYSQL_ROW	row = my_fetch_row(c, c->stream_sql);
		unsigned long *lengths;
		int			row_start = c->chunk.len;
		int			i;

		if (row == NULL)
		{
			c->eof = true;
			break;
		}
		lengths = mysql_fetch_lengths(c->res);
		for (i = 0; i < c->ncols; i++)
		{
			const char *why;

			if (i > 0)
				appendStringInfoChar(&c->chunk, '\t');
			if (row[i] == NULL)
			{
				appendBinaryStringInfo(&c->chunk, "\\N", 2);
				continue;
			}
			why = mysql_append_value(&c->chunk, &c->scratch, &c->cols[i],
									 row[i], lengths[i]);
			if (why)
			{
				c->bad_column = c->cols[i].name;
				c->bad_spatial = c->cols[i].kind == VK_SPATIAL;
				c->bad_sample = MemoryContextStrdup(c->cxt,
													value_sample(row[i], lengths[i]));
				c->bad_reason = MemoryContextStrdup(c->cxt, why);
				break;
			}
		}
		if (c->bad_column)
		{
			/* hand out the rows before this one; raise on the next call */
			c->chunk.len = row_start;
			c->chunk.data[row_start] = '\0';
			break;
		}
		appendStringInfoChar(&c->chunk, '\n');
		/* the key of the row, as the source sent it (a resume starts after it) */
		for (i = 0; i < c->nkeys; i++)
		{
			int			k = c->keycol[i];

			if (row[k] != NULL)
				mysql_key_source_form(&c->keys[i], &c->cols[k], row[k], lengths[k]);
		}
	}
	if (c->eof)
	{
		my_free_result(c);
		c->base.busy = false;
	}
	if (c->chunk.len == 0)
	{
		if (c->bad_column)
			raise_pending(c);
		return false;
	}
	*data = c->chunk.data;
	*len = c->chunk.len;
	return true;
}

const SourceDriver mysql_driver = {
	.name = "mysql",
	.row_errors = true,
	.connect = my_connect,
	.close = my_close,
	.discover = my_discover,
	.begin_snapshot = my_begin_snapshot,
	.read_clock = my_read_clock,
	.key_expr = my_key_expr,
	.key_literal = my_key_literal,
	.last_key = my_last_key,
	.key_text = my_key_text,
	.key_concat = my_key_concat,
	.key_digest = my_key_digest,
	.key_bucket = my_key_bucket,
	.local_key_digest = pg_key_digest,
	.local_key_bucket = pg_key_bucket,
	.end_snapshot = my_end_snapshot,
	.idle_ok = my_idle_ok,
	.catalog_version = my_catalog_version,
	.quote_ident = my_quote_ident,
	.quote_literal = my_quote_literal,
	.column_expr = my_column_expr,
	.query_value = my_query_value,
	.stream_start = my_stream_start,
	.stream_next = my_stream_next,
};
