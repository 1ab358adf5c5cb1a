/*-------------------------------------------------------------------------
 * pgoutput.c
 *	  Decoder of the pgoutput logical replication protocol, version 1
 *	  (PostgreSQL's src/backend/replication/logical/proto.c writes it; the
 *	  same bytes come from YugabyteDB 2024.1.1+).  Each message is parsed
 *	  with bounds checks: a short or unknown message is an error naming
 *	  what was wrong, never a read past the buffer.
 *
 * The decoder keeps the relations Relation messages describe, in its own
 * memory context; the rows of a change live in the caller's context.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "pgoutput.h"
#include "source.h"

/* The decoder's relations: a description is replaced, never changed. */
typedef struct PgoRelEntry
{
	uint32		relid;
	PgoRelation *rel;
} PgoRelEntry;

/* A read position in one message. */
typedef struct PgoReader
{
	const char *buf;
	int			len;
	int			pos;
} PgoReader;

static void pgo_short(PgoReader *r, const char *what) pg_attribute_noreturn();

static void
pgo_short(PgoReader *r, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_PROTOCOL_VIOLATION),
			 errmsg("logical replication message 0x%02x is cut short at %s (byte %d of %d)",
					r->len > 0 ? (uint8) r->buf[0] : 0, what, r->pos, r->len),
			 errhint("The source sent a message dbsync cannot read: check that it speaks pgoutput proto_version 1, then run dbsync_resync() on the server.")));
}

static void
need(PgoReader *r, int n, const char *what)
{
	if (n < 0 || r->len - r->pos < n)
		pgo_short(r, what);
}

static uint8
get8(PgoReader *r, const char *what)
{
	need(r, 1, what);
	return (uint8) r->buf[r->pos++];
}

static uint16
get16(PgoReader *r, const char *what)
{
	uint16		v;

	need(r, 2, what);
	v = ((uint16) (uint8) r->buf[r->pos] << 8) | (uint8) r->buf[r->pos + 1];
	r->pos += 2;
	return v;
}

static uint32
get32(PgoReader *r, const char *what)
{
	uint32		v = 0;
	int			i;

	need(r, 4, what);
	for (i = 0; i < 4; i++)
		v = (v << 8) | (uint8) r->buf[r->pos++];
	return v;
}

static uint64
get64(PgoReader *r, const char *what)
{
	uint64		hi = get32(r, what);

	return (hi << 32) | get32(r, what);
}

/* A NUL-terminated string of the message, copied. */
static char *
getstr(PgoReader *r, const char *what)
{
	const char *start = r->buf + r->pos;
	const char *nul = memchr(start, '\0', r->len - r->pos);

	if (nul == NULL)
		pgo_short(r, what);		/* does not return */
	else
		r->pos += (int) (nul - start) + 1;
	return pstrdup(start);
}

void
pgo_decoder_init(PgoDecoder *dec, MemoryContext parent)
{
	HASHCTL		ctl;

	dec->cxt = AllocSetContextCreate(parent, "dbsync pgoutput relations",
									 ALLOCSET_SMALL_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint32);
	ctl.entrysize = sizeof(PgoRelEntry);
	ctl.hcxt = dec->cxt;
	dec->relations = hash_create("dbsync pgoutput relations", 64, &ctl,
								 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

void
pgo_decoder_free(PgoDecoder *dec)
{
	MemoryContextDelete(dec->cxt);
	dec->cxt = NULL;
	dec->relations = NULL;
}

/* The relation a change names: described by an earlier Relation message. */
static PgoRelation *
known_relation(PgoDecoder *dec, uint32 relid)
{
	PgoRelEntry *e = hash_search(dec->relations, &relid, HASH_FIND, NULL);
	PgoRelation *rel = e ? e->rel : NULL;

	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("logical replication change for relation %u before its Relation message", relid),
				 errhint("The stream must be read from its start (the slot's position); run dbsync_resync() on the server.")));
	return rel;
}

/*
 * R: relid, namespace, name, replica identity, columns (flags, name, type,
 * typmod).  Parsed into a new description, which replaces the old one only
 * when whole (changes decoded before keep pointing to the old one, which
 * stays in the decoder's context: Relation messages are few).
 */
static void
read_relation(PgoDecoder *dec, PgoReader *r, PgoMessage *msg)
{
	uint32		relid = get32(r, "relation id");
	MemoryContext old = MemoryContextSwitchTo(dec->cxt);
	PgoRelation *rel = palloc0(sizeof(PgoRelation));
	PgoRelEntry *e;
	int			i;

	rel->relid = relid;
	rel->nspname = getstr(r, "namespace");
	rel->relname = getstr(r, "relation name");
	rel->replident = (char) get8(r, "replica identity");
	rel->natts = get16(r, "column count");
	/* each column takes at least 10 bytes: no allocation beyond the message */
	need(r, rel->natts * 10, "columns");
	rel->attnames = palloc0(sizeof(char *) * Max(rel->natts, 1));
	rel->atttypes = palloc0(sizeof(Oid) * Max(rel->natts, 1));
	rel->atttypmods = palloc0(sizeof(int32) * Max(rel->natts, 1));
	rel->attkey = palloc0(sizeof(bool) * Max(rel->natts, 1));
	for (i = 0; i < rel->natts; i++)
	{
		rel->attkey[i] = (get8(r, "column flags") & 1) != 0;
		rel->attnames[i] = getstr(r, "column name");
		rel->atttypes[i] = get32(r, "column type");
		rel->atttypmods[i] = (int32) get32(r, "column type modifier");
	}
	/* an empty namespace is pg_catalog (proto.c) */
	if (rel->nspname[0] == '\0')
		rel->nspname = pstrdup("pg_catalog");
	MemoryContextSwitchTo(old);
	e = hash_search(dec->relations, &relid, HASH_ENTER, NULL);
	e->rel = rel;
	msg->rel = rel;
}

/* TupleData: column count, then per column 'n', 'u' or 't' + length + text */
static void
read_tuple(PgoReader *r, PgoTuple *t, const PgoRelation *rel)
{
	int			i;

	t->ncols = get16(r, "tuple column count");
	if (t->ncols != rel->natts)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("logical replication tuple of relation \"%s.%s\" has %d columns, its Relation message %d",
						rel->nspname, rel->relname, t->ncols, rel->natts),
				 errhint("Run dbsync_resync() on the server.")));
	t->kinds = palloc(Max(t->ncols, 1));
	t->values = palloc0(sizeof(char *) * Max(t->ncols, 1));
	for (i = 0; i < t->ncols; i++)
	{
		char		kind = (char) get8(r, "column kind");
		uint32		len;

		t->kinds[i] = kind;
		if (kind == 'n' || kind == 'u')
			continue;
		if (kind != 't')
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("logical replication column of kind 0x%02x in relation \"%s.%s\"",
							(uint8) kind, rel->nspname, rel->relname),
					 errhint("dbsync reads text values (pgoutput without the binary option).")));
		len = get32(r, "column length");
		need(r, (int) len, "column value");
		t->values[i] = palloc(len + 1);
		memcpy(t->values[i], r->buf + r->pos, len);
		t->values[i][len] = '\0';
		r->pos += (int) len;
	}
}

/* U: relid, optional 'K'/'O' + old tuple, 'N' + new tuple */
static void
read_update(PgoDecoder *dec, PgoReader *r, PgoMessage *msg)
{
	char		c;

	msg->rel = known_relation(dec, get32(r, "relation id"));
	c = (char) get8(r, "tuple tag");
	if (c == 'K' || c == 'O')
	{
		msg->oldkind = c;
		read_tuple(r, &msg->old, msg->rel);
		c = (char) get8(r, "tuple tag");
	}
	if (c != 'N')
		pgo_short(r, "new tuple tag");
	read_tuple(r, &msg->new, msg->rel);
}

/* T: relation count, options, relids */
static void
read_truncate(PgoDecoder *dec, PgoReader *r, PgoMessage *msg)
{
	int			i;

	uint32		n = get32(r, "relation count");

	msg->truncate_options = get8(r, "truncate options");
	if (n > (uint32) (r->len - r->pos) / 4)
		pgo_short(r, "truncated relations");
	msg->ntruncate = (int) n;
	msg->truncated = palloc(sizeof(PgoRelation *) * Max(msg->ntruncate, 1));
	for (i = 0; i < msg->ntruncate; i++)
		msg->truncated[i] = known_relation(dec, get32(r, "relation id"));
}

/*
 * Decode one pgoutput message (the payload of an XLogData message) into
 * *msg.  Relation messages update the decoder's relations.
 */
void
pgo_decode(PgoDecoder *dec, const char *buf, int len, PgoMessage *msg)
{
	PgoReader	r = {buf, len, 0};
	char		type = (char) get8(&r, "message type");

	memset(msg, 0, sizeof(*msg));
	switch (type)
	{
		case 'B':
			msg->kind = PGO_BEGIN;
			msg->lsn = get64(&r, "final LSN");
			msg->commit_time = (TimestampTz) get64(&r, "commit time");
			msg->xid = get32(&r, "transaction id");
			break;
		case 'C':
			msg->kind = PGO_COMMIT;
			(void) get8(&r, "commit flags");
			msg->lsn = get64(&r, "commit LSN");
			msg->end_lsn = get64(&r, "end LSN");
			msg->commit_time = (TimestampTz) get64(&r, "commit time");
			break;
		case 'R':
			msg->kind = PGO_RELATION;
			read_relation(dec, &r, msg);
			break;
		case 'I':
			msg->kind = PGO_INSERT;
			msg->rel = known_relation(dec, get32(&r, "relation id"));
			if ((char) get8(&r, "tuple tag") != 'N')
				pgo_short(&r, "new tuple tag");
			read_tuple(&r, &msg->new, msg->rel);
			break;
		case 'U':
			msg->kind = PGO_UPDATE;
			read_update(dec, &r, msg);
			break;
		case 'D':
			msg->kind = PGO_DELETE;
			msg->rel = known_relation(dec, get32(&r, "relation id"));
			msg->oldkind = (char) get8(&r, "tuple tag");
			if (msg->oldkind != 'K' && msg->oldkind != 'O')
				pgo_short(&r, "old tuple tag");
			read_tuple(&r, &msg->old, msg->rel);
			break;
		case 'T':
			msg->kind = PGO_TRUNCATE;
			read_truncate(dec, &r, msg);
			break;
		case 'O':				/* origin */
		case 'Y':				/* type */
		case 'M':				/* logical decoding message */
			msg->kind = PGO_OTHER;
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("unknown logical replication message type 0x%02x", (uint8) type),
					 errhint("dbsync reads pgoutput proto_version 1 without streaming of in-progress transactions.")));
	}
}


/*
 * A tuple as one line of COPY text (tab-separated, \N for NULL), all its
 * columns or, with key_only, the replica identity's.  An unchanged TOAST
 * value ('u') is written as \N: the caller, who knows which columns were
 * unchanged (t->kinds), keeps the local value for them.
 */
void
pgo_tuple_copy_text(StringInfo buf, const PgoTuple *t, bool key_only,
					const PgoRelation *rel)
{
	bool		first = true;
	int			i;

	for (i = 0; i < t->ncols; i++)
	{
		if (key_only && !rel->attkey[i])
			continue;
		if (!first)
			appendStringInfoChar(buf, '\t');
		first = false;
		if (t->kinds[i] == 't')
			copy_append_escaped(buf, t->values[i], strlen(t->values[i]));
		else
			appendStringInfoString(buf, "\\N");
	}
	appendStringInfoChar(buf, '\n');
}

/* A tuple's COPY text line without its newline (for display and tests). */
char *
pgo_tuple_text(const PgoTuple *t, bool key_only, const PgoRelation *rel)
{
	StringInfoData s;

	initStringInfo(&s);
	pgo_tuple_copy_text(&s, t, key_only, rel);
	s.data[--s.len] = '\0';
	return s.data;
}

/*
 * dbsync.pgoutput_decode(messages bytea[]): the changes a run of pgoutput
 * messages (as pg_logical_slot_peek_binary_changes() returns them) stands
 * for, one row per message: kind, relation, the old tuple's kind ('K' key,
 * 'O' row) and COPY text, the new tuple's COPY text, and the columns sent
 * as unchanged TOAST values.  For tests of the decoder.  Superuser.
 */
PG_FUNCTION_INFO_V1(dbsync_pgoutput_decode);

Datum
dbsync_pgoutput_decode(PG_FUNCTION_ARGS)
{
	static const char *const kinds[] = {"begin", "commit", "relation", "insert",
	"update", "delete", "truncate", "other"};
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(0);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;
	PgoDecoder	dec;

	InitMaterializedSRF(fcinfo, 0);
	deconstruct_array(arr, BYTEAOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	pgo_decoder_init(&dec, CurrentMemoryContext);
	for (i = 0; i < n; i++)
	{
		PgoMessage	msg;
		Datum		values[6];
		bool		isnull[6] = {false, true, true, true, true, true};
		bytea	   *b;
		StringInfoData s;
		int			c;

		if (nulls[i])
			continue;
		b = DatumGetByteaPP(elems[i]);
		pgo_decode(&dec, VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b), &msg);
		values[0] = CStringGetTextDatum(kinds[msg.kind]);
		if (msg.rel)
		{
			values[1] = CStringGetTextDatum(quote_qualified_identifier(msg.rel->nspname,
																	   msg.rel->relname));
			isnull[1] = false;
		}
		else if (msg.kind == PGO_TRUNCATE)
		{
			initStringInfo(&s);
			for (c = 0; c < msg.ntruncate; c++)
				appendStringInfo(&s, "%s%s", c ? "," : "",
								 quote_qualified_identifier(msg.truncated[c]->nspname,
															msg.truncated[c]->relname));
			values[1] = CStringGetTextDatum(s.data);
			isnull[1] = false;
		}
		if (msg.oldkind)
		{
			values[2] = CStringGetTextDatum(psprintf("%c", msg.oldkind));
			values[3] = CStringGetTextDatum(pgo_tuple_text(&msg.old, msg.oldkind == 'K', msg.rel));
			isnull[2] = isnull[3] = false;
		}
		if (msg.kind == PGO_INSERT || msg.kind == PGO_UPDATE)
		{
			values[4] = CStringGetTextDatum(pgo_tuple_text(&msg.new, false, msg.rel));
			isnull[4] = false;
			initStringInfo(&s);
			for (c = 0; c < msg.new.ncols; c++)
				if (msg.new.kinds[c] == 'u')
					appendStringInfo(&s, "%s%s", s.len ? "," : "", msg.rel->attnames[c]);
			values[5] = CStringGetTextDatum(s.data);
			isnull[5] = false;
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, isnull);
	}
	pgo_decoder_free(&dec);
	return (Datum) 0;
}
