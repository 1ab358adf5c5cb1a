/*-------------------------------------------------------------------------
 * capture.h
 *	  Log capture (capture 'log'), as its files share it: the pass over a
 *	  server's stream (capture.c), the stream and the captured tables
 *	  (capture_stream.c), the state in the warehouse (capture_state.c) and
 *	  the set-based apply of row changes (capture_apply.c).
 *-------------------------------------------------------------------------
 */
#ifndef DBSYNC_CAPTURE_H
#define DBSYNC_CAPTURE_H

#include "foreign/foreign.h"
#include "utils/hsearch.h"

#include "dbsync.h"
#include "pgoutput.h"
#include "source.h"

/* A captured table: its target and the changes not applied yet. */
typedef struct CapTable
{
	char	   *name;			/* the source table */
	uint32		relid;			/* the source's OID, once described */
	RemoteTable *rt;			/* columns with local types, key marked */
	List	   *pk;				/* char *: key columns */
	char	   *target;			/* quoted schema.table */
	bool		soft;			/* deletes 'soft' */
	bool		keep_deleted;	/* deletes 'ignore': deletes not applied */
	Oid		   *atttypes;		/* the last Relation message's types */
	int32	   *atttypmods;
	int			natts;
	int		   *col_att;		/* per target column: its source column, -1 */
	int		   *key_att;		/* per key column: its source column */
	MemoryContext cxt;			/* the set lives here */
	HTAB	   *changes;		/* key text -> its last change */
	int64		nchanges;
	int64		bytes;
	int64		rows_total;		/* live rows (the small-set heuristic) */
	int64		upserted;		/* changes of this pass */
	int64		deleted;
	int64		inserted;		/* rows applied (rows_total) */
	int64		removed;
	bool		applied;		/* changes applied since its status was saved */
	char	   *note;			/* schema drift followed */
	bool		note_saved;		/* in dbsync.tables already */
	bool		failed;			/* left out for the rest of the pass */
} CapTable;

/* A worker's pass ends after this long (the next one rediscovers). */
#define CAPTURE_PASS_MAX (10 * 60 * USECS_PER_SEC)
/* A group of source transactions commits after this long or many rows. */
#define CAPTURE_GROUP_USECS (500 * 1000)
#define CAPTURE_GROUP_ROWS 20000
/* A call stops when the source has sent nothing new this long. */
#define CAPTURE_QUIET_USECS (5 * USECS_PER_SEC)
/* a call with nothing pending asks the source where it is this often */
#define CAPTURE_ASK_MS 100
/* The sets of all tables are flushed beyond this (one table's: 50,000 keys). */
#define CAPTURE_SET_BYTES (64 * 1024 * 1024)


/* The server's row of dbsync.captures. */
typedef struct CaptureState
{
	bool		exists;
	char	   *slot;
	char	   *publication;
	bool		publication_ours;
	XLogRecPtr	applied;
	bool		uncommitted;	/* this transaction wrote it (dbsync_run twice) */
	char	   *resync_slot;	/* after dbsync_resync: the slot it had */
} CaptureState;

/* One pass. */
typedef struct CapturePass
{
	struct RunOutput *out;
	ForeignServer *server;
	SourceConfig *cfg;
	SourceConn **conn;			/* the run's ordinary connection */
	SourceConn *repl;			/* the replication connection */
	List	   *all_tables;		/* discovery */
	List	   *captured;		/* CapTable * */
	Oid			run_as;
	int			sec;
	bool		follow;			/* the worker: stream on */
	TimestampTz started;
	XLogRecPtr	applied;		/* committed (or, in one transaction, applied) */
	XLogRecPtr	committed;		/* committed here (and flushed) */
	XLogRecPtr	acked;			/* acknowledged to the source */
	XLogRecPtr	target;			/* dbsync_run: stop here (Invalid: when quiet) */
	XLogRecPtr	source_lsn;		/* the source's end of WAL, last reported */
	XLogRecPtr	keepalive_end;	/* the last keepalive's (the same again: no progress) */
	TimestampTz commit_time;	/* of the last transaction applied */
	bool		in_txn;
	bool		skip_txn;		/* applied before: resent after a restart */
	bool		stop;
	bool		caught_up;
	TimestampTz fresh_at;		/* freshness_at last written */
	int64		groups;			/* applied so far in this pass */
	bool		start_uncommitted;	/* the stored position is not committed */
	char	   *resync_slot;	/* a slot dbsync_resync() left to replace */
	bool		publication_marked; /* the publication is this server's */
	bool		again;			/* a table must be loaded again: one more pass */
	bool		streamed;		/* the pass ended well */
	uint64		changes_seen;	/* row changes taken (the byte budget's tick) */
	List	   *republished;	/* tables dbsync put in its publication again */
	MemoryContext msgcxt;		/* one message's decoding */
	MemoryContext groupcxt;		/* one group's statements */
} CapturePass;

/* capture.c */
extern bool capture_server_changed;
extern void pass_failed(CapturePass *p, Subxact *sx);

/* capture_state.c */
extern void state_load(SourceConfig *cfg, CaptureState *cs);
extern void state_save_new(SourceConfig *cfg, XLogRecPtr consistent);
extern void state_save_position(CapturePass *p);
extern void state_delete(SourceConfig *cfg);
extern void table_set_captured(SourceConfig *cfg, const char *table, XLogRecPtr lsn);
extern void tables_uncapture_others(SourceConfig *cfg, List *names);
extern bool table_is_captured(SourceConfig *cfg, const char *table);
extern void table_save_applied(CapturePass *p, CapTable *t);
extern void tables_clear_errors(CapturePass *p);

/* capture_stream.c */
extern CapTable *captable_new(CapturePass *p, RemoteTable *orig);
extern bool prepare_target(CapturePass *p, CapTable *t);
extern void capture_stream(CapturePass *p);
extern void commit_group(CapturePass *p);

/* capture_apply.c */
extern char *capture_add_change(CapTable *t, const PgoMessage *msg);
extern bool capture_table_full(CapTable *t);
extern void capture_flush_table(CapTable *t, int64 rows_total);
extern void capture_flush_deletes(CapTable *t, StringInfo dels);
extern void capture_table_reset(CapTable *t);

#endif							/* DBSYNC_CAPTURE_H */
