/*-------------------------------------------------------------------------
 * source.h
 *	  The driver interface: everything that speaks a remote wire protocol.
 *
 * A driver connects to a source, discovers its tables, runs read-only
 * queries inside one consistent snapshot, and streams the rows of a SELECT
 * as PostgreSQL COPY text (tab-separated, \N for NULL, backslash escapes,
 * one row per line) in the column order it was asked for.  It never touches
 * local tables; the engine never sees a PGconn or a MYSQL handle.
 *
 * Every driver function may throw (ereport ERROR).  Waits on the network
 * are interruptible: drivers wait with WaitLatchOrSocket() and call
 * CHECK_FOR_INTERRUPTS(); when an error escapes while a query runs, the
 * engine calls source_discard(), which cancels the remote query and closes
 * the connection.
 *-------------------------------------------------------------------------
 */
#ifndef DBSYNC_SOURCE_H
#define DBSYNC_SOURCE_H

#include "dbsync.h"
#include "lib/stringinfo.h"
#include "pgoutput.h"

/* Common head of every driver's connection struct. */
typedef struct SourceConn
{
	const struct SourceDriver *driver;
	SourceConfig *cfg;
	char	   *flavor;			/* e.g. "YugabyteDB 2.25", "TiDB v7.5.1" */
	bool		busy;			/* a query or stream is in progress */
	bool		in_snapshot;	/* a remote read transaction is open */
	bool		reused;			/* handed out again by the connection cache */
	uint64		cache_gen;		/* the cache entry's generation it belongs to */
	TimestampTz opened_at;
	char	   *snapshot;		/* begin_snapshot() reads in this exported
								 * snapshot or read time (log capture) */
	struct SourceConn *next;	/* registry of open connections */
} SourceConn;

/* What a log stream's next() found. */
typedef enum LogEventKind
{
	LOG_NOTHING,				/* nothing within the wait */
	LOG_MESSAGE,				/* a decoded message (row changes in COPY text) */
	LOG_KEEPALIVE,				/* the source's end of WAL; maybe wants a reply */
	LOG_END						/* the source ended the stream */
} LogEventKind;

/*
 * Log capture (PostgreSQL family): the logical replication protocol with
 * pgoutput, decoded into PgoMessage (pgoutput.h).  The engine drives it;
 * only the driver speaks it.
 */
typedef struct LogDriver
{
	/* a replication connection (the owner's mapping, as connect()) */
	SourceConn *(*connect) (SourceConfig *cfg);
	/* does the slot exist, is a process streaming it, has it lost WAL, and
	 * what was the source told (confirmed_flush_lsn)? */
	bool		(*slot_exists) (SourceConn *conn, const char *slot, bool *active,
								bool *lost, XLogRecPtr *confirmed);
	/* make it: its consistent point and the snapshot (or read time) there */
	void		(*create_slot) (SourceConn *conn, const char *slot,
								XLogRecPtr *consistent, char **snapshot);
	void		(*drop_slot) (SourceConn *conn, const char *slot);
	/*
	 * the source's end of WAL now (commits acknowledged with
	 * synchronous_commit off included), or InvalidXLogRecPtr (YugabyteDB)
	 */
	XLogRecPtr	(*current_position) (SourceConn *conn);
	void		(*start) (SourceConn *conn, const char *slot, XLogRecPtr from,
						  const char *publication);
	LogEventKind (*next) (SourceConn *conn, long timeout_ms, PgoMessage *msg,
						  XLogRecPtr *wal_end, bool *reply_wanted);
	/* a status update: flushed up to there (reply: ask for a keepalive) */
	void		(*ack) (SourceConn *conn, XLogRecPtr flushed, bool reply);
	void		(*stop) (SourceConn *conn);

	/*
	 * On an ordinary connection: the tables of a publication (schema-local
	 * names; *exists false when there is none; its comment; *problem when it
	 * does not publish every change whole), make it hold exactly these
	 * tables (created, with the comment, when create), drop it.
	 */
	List	   *(*publication_tables) (SourceConn *conn, const char *pub,
									   const char *schema, bool *exists,
									   char **comment, char **problem);
	void		(*publication_set) (SourceConn *conn, const char *pub, bool create,
									const char *schema, List *tables,
									const char *comment);
	void		(*publication_drop) (SourceConn *conn, const char *pub);
	/* the columns of a table's replica identity ("*": whole rows) */
	List	   *(*replica_identity) (SourceConn *conn, const char *schema,
									 const char *table);
} LogDriver;

typedef struct SourceDriver
{
	const char *name;			/* "postgresql" or "mysql" */

	/*
	 * The driver can raise an error for a row while streaming (a value it
	 * cannot convert): the engine then hands COPY each chunk as it comes,
	 * so COPY's line number in the error context is exact.  Otherwise it
	 * fills COPY's whole buffer per call, which is faster.
	 */
	bool		row_errors;

	/* Connect with cfg's options and pin the session (UTC, encoding...). */
	SourceConn *(*connect) (SourceConfig *cfg);

	/* Cancel whatever runs (best effort, bounded) and free the connection. */
	void		(*close) (SourceConn *conn, bool cancel_running);

	/*
	 * Discover the tables of cfg->schema: columns in ordinal order, with
	 * remote type, candidate local type and primary key position.  Views and
	 * partitions are left out.  Returns a List of RemoteTable *, sorted by
	 * name.
	 */
	List	   *(*discover) (SourceConn *conn);

	/* Open / close a consistent read-only snapshot. */
	void		(*begin_snapshot) (SourceConn *conn);
	void		(*end_snapshot) (SourceConn *conn);

	/* Dialect: quote an identifier / a string literal (palloc'd). */
	char	   *(*quote_ident) (const char *ident);
	char	   *(*quote_literal) (const char *value);

	/* Expression that reads a column so that its text form is lossless. */
	char	   *(*column_expr) (RemoteColumn *col);

	/* Run a query returning one value (first column of first row) or NULL. */
	char	   *(*query_value) (SourceConn *conn, const char *sql);

	/*
	 * Start streaming the rows of a SELECT whose select list is exactly
	 * "columns" (RemoteColumn *), then pull COPY text chunks until it
	 * returns false.  A chunk holds whole rows; it stays valid until the
	 * next call.  End of data is checked for errors: a stream cut short is
	 * an ERROR, never a short read.
	 */
	void		(*stream_start) (SourceConn *conn, const char *select_sql,
								 List *columns);
	bool		(*stream_next) (SourceConn *conn, const char **data, int *len);

	/*
	 * Optional, for keyset pagination in the source's own terms (resumable
	 * initial loads): the expression a key column is ordered and compared
	 * by, the literal of a key value as last_key() gave it, and the key of
	 * the last row streamed (columns with key_index > 0, in key order), as
	 * the source holds it rather than as converted for PostgreSQL (bytes,
	 * bits, booleans held as numbers, ENUMs ...).  Without them the engine
	 * takes the key from the COPY text and quotes it with quote_literal().
	 */
	char	   *(*key_expr) (RemoteColumn *col);
	char	   *(*key_literal) (RemoteColumn *col, const char *value);
	List	   *(*last_key) (SourceConn *conn);

	/*
	 * Exact delete detection (deletes.c): a key column's text as the engine
	 * renders the local value (key_text_local()), or NULL when the source
	 * cannot render it the same way; key texts joined; the 60-bit md5
	 * digest of a key text as an integer; its bucket (two hex digits).
	 */
	char	   *(*key_text) (RemoteColumn *col);
	char	   *(*key_concat) (List *texts);
	char	   *(*key_digest) (const char *text);
	char	   *(*key_bucket) (const char *text);
	/* the same digest and bucket computed locally (PostgreSQL) */
	char	   *(*local_key_digest) (const char *text);
	char	   *(*local_key_bucket) (const char *text);

	/*
	 * Read, before begin_snapshot(), the source's clock (*now, timestamptz
	 * text in UTC; *offset, the interval its default time zone is ahead of
	 * UTC now, for cursors without a zone) and then the start of its
	 * oldest open transaction other than ours (*oldest, NULL when none, or
	 * when the driver cannot see them).  No row the snapshot misses carries
	 * a cursor value below either: rows of transactions still open commit
	 * later with values from about their start, and transactions that
	 * start later stamp later values.  The stored cursor never passes them.
	 */
	void		(*read_clock) (SourceConn *conn, char **now, char **offset,
							   char **oldest);

	/*
	 * Connection cache (conncache.c): can this idle connection be used
	 * again (open, no transaction or result pending, nothing arrived on its
	 * socket, such as the server's goodbye)?  Never throws.
	 */
	bool		(*idle_ok) (SourceConn *conn);

	/*
	 * Optional: a cheap value that changes whenever the source's catalog
	 * may have changed (YugabyteDB's catalog version, TiDB's schema
	 * version, a digest of PostgreSQL's catalog rows), or NULL when the
	 * source cannot tell.  While it stays the same, the last discovery of
	 * the connection's server is used again.
	 */
	char	   *(*catalog_version) (SourceConn *conn);

	/* Log capture, or NULL when the source has none (MySQL family). */
	const LogDriver *log;
} SourceDriver;

/* in source.c */
extern const SourceDriver *source_driver_for(const char *source_type);
extern SourceConn *source_connect(SourceConfig *cfg);
extern SourceConn *source_log_connect(SourceConfig *cfg);
extern void source_close(SourceConn *conn);
extern void source_discard(SourceConn *conn);
extern void source_register(SourceConn *conn);
extern void source_forget(SourceConn *conn);
extern void source_init(void);
extern void source_detach(void (*fn) (void *arg), void *arg, int budget_s,
						  int keep_fd);
extern bool source_wait_socket(int sock, bool want_write, long timeout_ms,
							   uint32 wait_event);
extern void source_check_interrupts_wait(int sock, bool want_write,
										 long timeout_ms, uint32 wait_event);
extern void copy_append_escaped(StringInfo buf, const char *s, size_t len);
extern void source_read_clock(SourceConn *conn, const char *clock_sql,
							  const char *oldest_sql, char **now,
							  char **offset, char **oldest);

/* in conncache.c: connections and discoveries kept for the next run */
extern SourceConn *source_acquire(SourceConfig *cfg);
extern void source_release(SourceConn *conn);
extern List *source_discover(SourceConn *conn);
extern bool source_socket_quiet(int sock);
extern void conncache_at_xact_end(void);

/* in source_pg.c */
extern const SourceDriver pg_driver;
extern char *pg_catalog_version_sql(bool yugabyte, const char *schema);
extern char *pg_snapshot_sql(bool yugabyte, const char *snapshot);
extern char *pgrepl_slot_sql(bool yugabyte, const char *slot);
extern char *pgrepl_start_sql(const char *slot, XLogRecPtr from, const char *publication);
extern const LogDriver pg_log_driver;

/* in source_mysql.c */
extern const SourceDriver mysql_driver;
extern char *my_catalog_version_sql(bool tidb, unsigned int *field);

/* in remote_sql.c: SELECT text built with the driver's dialect */
typedef struct RemoteQuery
{
	const char *schema;
	RemoteTable *table;
	List	   *columns;		/* RemoteColumn * to read, in order */
	const char *cursor_column;	/* NULL: no cursor filter */
	const char *cursor_lower;	/* cursor >= this literal value */
	const char *cursor_upper;	/* cursor < this literal value, or NULL */
	bool		cursor_is_null; /* only rows whose cursor IS NULL */
	List	   *pk;				/* char *: order by these */
	List	   *after_key;		/* char *: values; rows with pk > these */
	const char *filter;			/* a predicate in the source's dialect, built
								 * from the driver's own expressions, or NULL */
	int64		limit;			/* 0 = no limit */
} RemoteQuery;

extern char *remote_select_sql(const SourceDriver *drv, RemoteQuery *q);
extern char *remote_max_sql(const SourceDriver *drv, const char *schema,
							const char *table, const char *column);
extern char *remote_estimate_sql(const SourceDriver *drv, const char *schema,
								 const char *table);
extern RemoteColumn *find_column(RemoteTable *rt, const char *name);
extern RemoteTable *remote_table_copy(RemoteTable *rt);

/* in remote_sql.c: key texts and digests in PostgreSQL's dialect (local, and
 * at PostgreSQL-family sources) */
extern char *key_text_local(const char *local_type, const char *expr);
extern char *pg_key_concat(List *texts);
extern char *pg_key_digest(const char *text);
extern char *pg_key_bucket(const char *text);
extern char *pg_key_digest_fast(const char *text);
extern char *pg_key_bucket_fast(const char *text);

/* in deletes.c */
extern int64 deletes_reconcile(SourceConn *conn, SourceConfig *cfg,
							   RemoteTable *rt, List *pk, const char *target,
							   int64 *remote_rows);

#endif							/* DBSYNC_SOURCE_H */
