/*-------------------------------------------------------------------------
 * capture.h
 *	  Log capture (capture 'log'): the pass over a server's stream
 *	  (capture.c) and the set-based apply of its row changes
 *	  (capture_apply.c).
 *-------------------------------------------------------------------------
 */
#ifndef DBSYNC_CAPTURE_H
#define DBSYNC_CAPTURE_H

#include "dbsync.h"
#include "pgoutput.h"
#include "utils/hsearch.h"

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
	char	   *note;			/* schema drift followed */
	bool		note_saved;		/* in dbsync.tables already */
	bool		failed;			/* left out for the rest of the pass */
} CapTable;

extern char *capture_add_change(CapTable *t, const PgoMessage *msg);
extern bool capture_table_full(CapTable *t);
extern void capture_flush_table(CapTable *t, int64 rows_total);
extern void capture_flush_deletes(CapTable *t, StringInfo dels);
extern void capture_table_reset(CapTable *t);

#endif							/* DBSYNC_CAPTURE_H */
