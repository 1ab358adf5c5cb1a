/*-------------------------------------------------------------------------
 * source.c
 *	  Driver selection, the registry of open remote connections, and small
 *	  helpers every driver shares (interruptible socket wait, COPY escaping).
 *
 * Open connections are registered so that a transaction abort (an error
 * that escaped, a cancel, a terminated backend) closes them: a remote
 * connection whose state is unknown is never reused.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pg_shmem.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "source.h"

static SourceConn *open_conns = NULL;
static bool xact_callback_registered = false;

/* Map a source_type option value to its driver. */
const SourceDriver *
source_driver_for(const char *source_type)
{
	if (strcmp(source_type, "yugabytedb") == 0 ||
		strcmp(source_type, "postgresql") == 0)
		return &pg_driver;
	if (strcmp(source_type, "tidb") == 0 ||
		strcmp(source_type, "mysql") == 0)
		return &mysql_driver;
	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
			 errmsg("unknown source_type \"%s\"", source_type),
			 errhint("Valid values are: yugabytedb, tidb, postgresql, mysql.")));
	return NULL;				/* keep compiler quiet */
}

/* Take a connection off the registry (it is no longer closed on abort). */
void
source_forget(SourceConn *conn)
{
	SourceConn **p;

	for (p = &open_conns; *p; p = &(*p)->next)
	{
		if (*p == conn)
		{
			*p = conn->next;
			conn->next = NULL;
			return;
		}
	}
}

/*
 * Abort: close every open connection (cancel what still runs).  Commit or
 * abort: close the cached connections that were invalidated meanwhile.
 */
static void
source_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
		conncache_at_xact_end();
	if (event != XACT_EVENT_ABORT && event != XACT_EVENT_PARALLEL_ABORT)
		return;
	conncache_at_xact_end();
	while (open_conns)
	{
		SourceConn *c = open_conns;

		open_conns = c->next;
		c->next = NULL;
		c->driver->close(c, c->busy);
	}
}

void
source_init(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(source_xact_callback, NULL);
		xact_callback_registered = true;
	}
}

void
source_register(SourceConn *conn)
{
	source_init();
	conn->next = open_conns;
	open_conns = conn;
}

/* Connect to a source through its driver; the connection is registered. */
SourceConn *
source_connect(SourceConfig *cfg)
{
	SourceConn *conn = cfg->driver->connect(cfg);

	conn->driver = cfg->driver;
	conn->cfg = cfg;
	conn->opened_at = GetCurrentTimestamp();
	source_register(conn);
	return conn;
}

/* A replication connection for log capture (registered the same way). */
SourceConn *
source_log_connect(SourceConfig *cfg)
{
	SourceConn *conn;

	if (cfg->driver->log == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("source \"%s\" has no log capture", cfg->server_name),
				 errhint("Use capture 'cursor' for MySQL-family sources.")));
	conn = cfg->driver->log->connect(cfg);
	conn->driver = cfg->driver;
	conn->cfg = cfg;
	conn->opened_at = GetCurrentTimestamp();
	source_register(conn);
	return conn;
}

/* Close a healthy connection. */
void
source_close(SourceConn *conn)
{
	if (conn == NULL)
		return;
	source_forget(conn);
	conn->driver->close(conn, conn->busy);
}

/* Drop a connection whose state is unknown: cancel what runs, then close. */
void
source_discard(SourceConn *conn)
{
	if (conn == NULL)
		return;
	source_forget(conn);
	conn->driver->close(conn, true);
}

/* The detached process never dies by a signal (see source_detach). */
static void
detached_quit(SIGNAL_ARGS)
{
	_exit(0);
}

/*
 * Run fn(arg) in a detached process and return at once: how a remote
 * cancel (PQcancel, KILL QUERY) is sent while an interrupted statement
 * ends, without making the user wait for a source that may be frozen.
 * A child forks the worker and exits; the worker gives up after budget_s
 * seconds whatever fn does.  It may end up a child of the postmaster (when
 * that is PID 1, as in containers), which takes any death by a signal or
 * exit code above 1 for a crash: so every way out is _exit(0).  It detaches
 * from shared memory and keeps no file of the backend's open except
 * keep_fd (-1: none), so it holds nothing the server or its client needs.
 */
void
source_detach(void (*fn) (void *arg), void *arg, int budget_s, int keep_fd)
{
	pid_t		child = fork();

	if (child == 0)
	{
		pid_t		worker = fork();

		if (worker == 0)
		{
			sigset_t	all;
			sigjmp_buf	on_error;

			pqsignal(SIGALRM, detached_quit);
			pqsignal(SIGTERM, detached_quit);
			pqsignal(SIGQUIT, detached_quit);
			pqsignal(SIGINT, detached_quit);
			pqsignal(SIGHUP, SIG_IGN);
			pqsignal(SIGUSR1, SIG_IGN);
			pqsignal(SIGUSR2, SIG_IGN);
			pqsignal(SIGPIPE, SIG_IGN);
			sigemptyset(&all);
			sigprocmask(SIG_SETMASK, &all, NULL);
			/* no exit callback of the backend's runs here, ever */
			on_exit_reset();
			PGSharedMemoryDetach();
			if (keep_fd > 3)
				close_range(3, keep_fd - 1, 0);
			closefrom(keep_fd >= 3 ? keep_fd + 1 : 3);
			alarm(budget_s);
			/* an ERROR ends this process, never goes on as the backend */
			if (sigsetjmp(on_error, 0) == 0)
			{
				PG_exception_stack = &on_error;
				fn(arg);
			}
		}
		_exit(0);
	}
	if (child > 0)
	{
		int			status;

		while (waitpid(child, &status, 0) < 0 && errno == EINTR)
			;
	}
}

/*
 * Wait until sock is readable (or writable), the latch is set, or timeout_ms
 * passes (-1 = no timeout); process interrupts.  Returns false when the time
 * ran out with the socket not ready.
 */
bool
source_wait_socket(int sock, bool want_write, long timeout_ms, uint32 wait_event)
{
	int			events = WL_LATCH_SET | WL_EXIT_ON_PM_DEATH |
		(want_write ? WL_SOCKET_WRITEABLE : WL_SOCKET_READABLE);
	int			rc;

	if (timeout_ms >= 0)
		events |= WL_TIMEOUT;
	rc = WaitLatchOrSocket(MyLatch, events, sock, timeout_ms, wait_event);
	if (rc & WL_LATCH_SET)
	{
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	return !((rc & WL_TIMEOUT) && !(rc & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE)));
}

/*
 * source_wait_socket(), where a timeout is an ERROR: the caller asked for
 * a bounded wait (read_timeout, connect_timeout).
 */
void
source_check_interrupts_wait(int sock, bool want_write, long timeout_ms,
							 uint32 wait_event)
{
	if (!source_wait_socket(sock, want_write, timeout_ms, wait_event))
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("timed out waiting for the source after %ld ms", timeout_ms),
				 errhint("Check that the source is reachable and responsive, or raise the server's \"connect_timeout\" or \"read_timeout\" option.")));
}

/* Append s[0..len) to buf escaped for COPY text format. */
void
copy_append_escaped(StringInfo buf, const char *s, size_t len)
{
	const char *end = s + len;
	const char *start = s;

	enlargeStringInfo(buf, (int) len + 2);
	for (; s < end; s++)
	{
		char		c = *s;
		const char *rep = NULL;

		switch (c)
		{
			case '\\':
				rep = "\\\\";
				break;
			case '\t':
				rep = "\\t";
				break;
			case '\n':
				rep = "\\n";
				break;
			case '\r':
				rep = "\\r";
				break;
			default:
				continue;
		}
		if (s > start)
			appendBinaryStringInfo(buf, start, s - start);
		appendStringInfoString(buf, rep);
		start = s + 1;
	}
	if (end > start)
		appendBinaryStringInfo(buf, start, end - start);
}

/*
 * Read a driver's clock query, which returns "now|offset" in one value (one
 * round trip), then its oldest-transaction query (see read_clock; NULL:
 * the source's transactions cannot be seen).
 */
void
source_read_clock(SourceConn *conn, const char *clock_sql,
				  const char *oldest_sql, char **now, char **offset,
				  char **oldest)
{
	char	   *v = conn->driver->query_value(conn, clock_sql);
	char	   *bar = v ? strchr(v, '|') : NULL;

	*now = v;
	*offset = NULL;
	if (bar)
	{
		*bar = '\0';
		*offset = bar + 1;
	}
	*oldest = oldest_sql ? conn->driver->query_value(conn, oldest_sql) : NULL;
}
