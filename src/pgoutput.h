/*-------------------------------------------------------------------------
 * pgoutput.h
 *	  Decoder of PostgreSQL's logical replication protocol (pgoutput,
 *	  proto_version 1), as YugabyteDB and PostgreSQL send it: messages in,
 *	  row changes out, values as the source's text.  Pure parsing: no
 *	  connection, no local table (log capture, issue 13, builds on it).
 *-------------------------------------------------------------------------
 */
#ifndef DBSYNC_PGOUTPUT_H
#define DBSYNC_PGOUTPUT_H

#include "access/xlogdefs.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

/* A source table as the last Relation message described it. */
typedef struct PgoRelation
{
	uint32		relid;			/* the source's OID (hash key) */
	char	   *nspname;
	char	   *relname;
	char		replident;		/* d(efault), f(ull), n(othing), i(ndex) */
	int			natts;
	char	  **attnames;
	Oid		   *atttypes;		/* the source's type OIDs */
	int32	   *atttypmods;
	bool	   *attkey;			/* part of the replica identity */
} PgoRelation;

/* One tuple: per column a kind ('n' NULL, 'u' unchanged TOAST, 't' text). */
typedef struct PgoTuple
{
	int			ncols;
	char	   *kinds;
	char	  **values;			/* NUL-terminated text; NULL unless 't' */
} PgoTuple;

typedef enum PgoKind
{
	PGO_BEGIN,
	PGO_COMMIT,
	PGO_RELATION,
	PGO_INSERT,
	PGO_UPDATE,
	PGO_DELETE,
	PGO_TRUNCATE,
	PGO_OTHER					/* origin, type, logical message: nothing to do */
} PgoKind;

typedef struct PgoMessage
{
	PgoKind		kind;
	XLogRecPtr	lsn;			/* Begin: final LSN; Commit: commit LSN */
	XLogRecPtr	end_lsn;		/* Commit: end of the transaction */
	TimestampTz commit_time;	/* Begin, Commit */
	uint32		xid;			/* Begin */
	PgoRelation *rel;			/* Relation, Insert, Update, Delete */
	char		oldkind;		/* Update, Delete: 'K' key, 'O' old row, 0 none */
	PgoTuple	old;
	PgoTuple	new;			/* Insert, Update */
	int			ntruncate;		/* Truncate: relations and options */
	PgoRelation **truncated;
	int			truncate_options;	/* 1 CASCADE, 2 RESTART IDENTITY */
} PgoMessage;

/* The relations one stream described so far (Relation messages). */
typedef struct PgoDecoder
{
	HTAB	   *relations;		/* uint32 relid -> PgoRelation */
	MemoryContext cxt;			/* the relations live here */
} PgoDecoder;

extern void pgo_decoder_init(PgoDecoder *dec, MemoryContext parent);
extern void pgo_decoder_free(PgoDecoder *dec);
extern void pgo_decode(PgoDecoder *dec, const char *buf, int len, PgoMessage *msg);
extern void pgo_tuple_copy_text(StringInfo buf, const PgoTuple *t, bool key_only,
								const PgoRelation *rel);
extern char *pgo_tuple_text(const PgoTuple *t, bool key_only, const PgoRelation *rel);

#endif							/* DBSYNC_PGOUTPUT_H */
