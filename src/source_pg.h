/*-------------------------------------------------------------------------
 * source_pg.h
 *	  Inside the PostgreSQL-family driver: the connection and the calls that
 *	  source_pg.c (queries, COPY) and source_pg_repl.c (the logical
 *	  replication protocol) share.  Not for the engine, which sees source.h.
 *-------------------------------------------------------------------------
 */
#ifndef DBSYNC_SOURCE_PG_H
#define DBSYNC_SOURCE_PG_H

#include "access/xlogdefs.h"
#include "libpq-fe.h"

#include "source.h"

typedef struct PgConn
{
	SourceConn	base;
	PGconn	   *conn;
	char	   *copy_row;		/* last row handed out, PQfreemem'd next */
	const char *sql;			/* statement in progress, for errors */
	char	   *zone;			/* the session's default time zone, quoted */
	struct PgoDecoder *dec;		/* a replication stream's relations */
} PgConn;

extern PgConn *pg_open(SourceConfig *cfg, bool replication);
extern void pg_close(SourceConn *sconn, bool cancel_running);
extern PGresult *pg_exec(PgConn *pc, const char *sql, const char *what);
extern PGresult *pg_exec_or_null(PgConn *pc, const char *sql, const char *what);
extern void pg_report(PgConn *pc, PGresult *res, const char *what,
					  const char *sql) pg_attribute_noreturn();
extern void pg_wait(PgConn *pc, bool want_write);

/* source_pg_repl.c: the logical replication protocol */
extern PgConn *pgrepl_connect(SourceConfig *cfg);
extern void pgrepl_create_slot(PgConn *pc, const char *slot, XLogRecPtr *consistent,
							   char **snapshot);
extern void pgrepl_drop_slot(PgConn *pc, const char *slot);
extern void pgrepl_start(PgConn *pc, const char *slot, XLogRecPtr from,
						 const char *publication);
extern void pgrepl_stop(PgConn *pc);
extern void pgrepl_ack(PgConn *pc, XLogRecPtr flushed, bool reply);
extern int	pgrepl_next(PgConn *pc, long timeout_ms, char **chunk, const char **data,
						XLogRecPtr *lsn, bool *reply_wanted);
extern void pgrepl_close_decoder(PgConn *pc);

#endif							/* DBSYNC_SOURCE_PG_H */
