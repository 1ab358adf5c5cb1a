/*-------------------------------------------------------------------------
 * stage.c
 *	  Staging tables and the COPY of a remote row stream into a local table.
 *
 * Rows arrive as COPY text from a driver and go through PostgreSQL's own
 * COPY FROM machinery (BeginCopyFrom with a data-source callback, as
 * logical replication's table sync does): no per-row SPI.  A batch lands
 * in a temporary staging table (or straight in an empty target); merge.c
 * applies it.  In careful mode (on_row_error 'skip') rows are converted
 * one by one so that bad ones are skipped, the first kept as a sample.
 *
 * Runs as the server owner, with SPI connected by the caller.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/copy.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "catalog/pg_type.h"
#include "parser/parse_coerce.h"
#include "parser/parse_type.h"
#include "utils/relcache.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/regproc.h"
#include "utils/acl.h"
#include "utils/rls.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "storage/lmgr.h"
#include "storage/lock.h"

#include "apply.h"
#include "source.h"

/* State of the COPY data-source callback (it takes no argument). */
static SourceConn *copy_conn = NULL;
static const char *copy_pending = NULL;
static int	copy_pending_len = 0;
static bool copy_eof = false;
static StringInfo copy_last_row = NULL;	/* last row streamed, COPY text */
static int64 copy_fed = 0;		/* bytes handed to the COPY in progress */
static int64 copy_limit = 0;	/* stop it there (at a row end), 0: never */
static int	stage_counter = 0;

/* A column for a stage of our own (plain text values in COPY). */
RemoteColumn *
stage_column(const char *name, const char *type)
{
	RemoteColumn *col = palloc0(sizeof(RemoteColumn));

	col->name = pstrdup(name);
	col->remote_type = pstrdup(type);
	col->local_type = pstrdup(type);
	col->kind = VK_PLAIN;
	return col;
}

/* A temporary staging table with these columns; returns its name. */
char *
apply_create_stage(List *columns)
{
	StringInfoData sql;
	ListCell   *lc;
	bool		first = true;
	char	   *name = psprintf("pg_temp.dbsync_stage_%d", ++stage_counter);
	GuardUser	saved;

	initStringInfo(&sql);
	appendStringInfo(&sql, "CREATE TEMP TABLE %s (", name + strlen("pg_temp."));
	foreach(lc, columns)
	{
		RemoteColumn *col = lfirst(lc);

		appendStringInfo(&sql, "%s%s %s", first ? "" : ", ",
						 quote_identifier(col->name), col->local_type);
		first = false;
	}
	appendStringInfoChar(&sql, ')');
	guard_unrestrict(&saved);
	spi_exec(sql.data, SPI_OK_UTILITY);
	guard_leave(&saved);
	CommandCounterIncrement();
	return name;
}

/* The index of a TOAST table (its only one). */
static Oid
toast_index_of(Oid toastrelid)
{
	Relation	toast = relation_open(toastrelid, NoLock);
	List	   *indexes = RelationGetIndexList(toast);
	Oid			idx = indexes != NIL ? linitial_oid(indexes) : InvalidOid;

	relation_close(toast, NoLock);
	return idx;
}

/* Give up every lock this backend holds on an object (see below). */
static void
release_object_locks(Oid classid, Oid objid)
{
	LOCKTAG		tag;
	LOCKMODE	mode;

	if (!OidIsValid(objid))
		return;
	if (classid == RelationRelationId)
		SET_LOCKTAG_RELATION(tag, MyDatabaseId, objid);
	else
		SET_LOCKTAG_OBJECT(tag, MyDatabaseId, classid, objid, 0);
	for (mode = AccessShareLock; mode <= AccessExclusiveLock; mode++)
	{
		while (LockHeldByMe(&tag, mode))
		{
			if (!LockRelease(&tag, mode, false))
				break;
		}
	}
}

/*
 * Drop a staging table, and give up the locks its life took (the table, its
 * TOAST table and index, its row and array types).  A temporary table of
 * this backend is never seen by another one, so holding them to the end of
 * the transaction protects nothing, while a run over thousands of tables
 * would pile them up until the lock table is full.  Locks taken in an outer
 * (sub)transaction are left alone (LockRelease refuses them).
 */
void
apply_drop_stage(const char *stage)
{
	Oid			relid = RangeVarGetRelid(makeRangeVarFromNameList(stringToQualifiedNameList(stage)),
										 NoLock, true);
	Oid			objs[5][2] = {{0}};

	if (OidIsValid(relid) && get_rel_persistence(relid) == RELPERSISTENCE_TEMP)
	{
		Relation	rel = relation_open(relid, NoLock);
		Oid			toast = rel->rd_rel->reltoastrelid;

		objs[0][0] = RelationRelationId;
		objs[0][1] = relid;
		objs[1][0] = RelationRelationId;
		objs[1][1] = toast;
		objs[2][0] = RelationRelationId;
		objs[2][1] = OidIsValid(toast) ? toast_index_of(toast) : InvalidOid;
		objs[3][0] = TypeRelationId;
		objs[3][1] = rel->rd_rel->reltype;
		objs[4][0] = TypeRelationId;
		objs[4][1] = get_array_type(rel->rd_rel->reltype);
		relation_close(rel, NoLock);
	}
	spi_exec(psprintf("DROP TABLE IF EXISTS %s", stage), SPI_OK_UTILITY);
	for (int i = 0; i < 5; i++)
		release_object_locks(objs[i][0], objs[i][1]);
}

/* Keep the last row of a chunk (chunks hold whole rows). */
static void
remember_last_row(const char *chunk, int len)
{
	int			end = len;
	int			start;

	if (copy_last_row == NULL || len == 0)
		return;
	if (chunk[end - 1] == '\n')
		end--;
	for (start = end; start > 0 && chunk[start - 1] != '\n'; start--)
		;
	resetStringInfo(copy_last_row);
	appendBinaryStringInfo(copy_last_row, chunk + start, end - start);
}

static int
copy_read_cb(void *outbuf, int minread, int maxread)
{
	int			got = 0;

	while (got < maxread)
	{
		int			n;

		/* hand over what we have: COPY's line numbers then stay exact */
		if (got >= minread && copy_pending_len == 0 && copy_conn &&
			copy_conn->driver->row_errors)
			break;
		if (copy_pending_len == 0)
		{
			/* a chunk of the stream is in: this COPY ends, the stream goes on */
			if (copy_limit > 0 && copy_fed >= copy_limit)
				break;
			/* (no connection: apply_copy_buffer's rows, all handed over) */
			if (copy_eof || copy_conn == NULL ||
				!copy_conn->driver->stream_next(copy_conn, &copy_pending,
												&copy_pending_len))
			{
				copy_eof = true;
				break;
			}
			remember_last_row(copy_pending, copy_pending_len);
			progress_row(copy_pending_len);
			continue;
		}
		n = Min(copy_pending_len, maxread - got);
		memcpy((char *) outbuf + got, copy_pending, n);
		copy_pending += n;
		copy_pending_len -= n;
		got += n;
		copy_fed += n;
	}
	return got;
}

/* Start streaming the rows of select_sql for apply_copy_next(). */
void
apply_copy_start(SourceConn *conn, const char *select_sql, List *columns,
				 StringInfo last_row)
{
	conn->driver->stream_start(conn, select_sql, columns);
	copy_conn = conn;
	copy_pending = NULL;
	copy_pending_len = 0;
	copy_eof = false;
	copy_last_row = last_row;
	if (last_row)
		resetStringInfo(last_row);
}

/*
 * COPY the next rows of the stream into relation "relname" (columns in
 * the stream's order): all of them, or, with limit_bytes > 0, about that
 * many bytes of whole rows.  Returns the number of rows; *more says whether
 * the stream has rows left (then call again, or apply_copy_end()).
 */
uint64
apply_copy_next(List *columns, const char *relname, int64 limit_bytes,
				bool *more)
{
	RangeVar   *rv = makeRangeVarFromNameList(stringToQualifiedNameList(relname));
	Relation	rel;
	ParseState *pstate;
	CopyFromState cstate;
	List	   *attnames = NIL;
	List	   *options;
	ListCell   *lc;
	uint64		rows;

	foreach(lc, columns)
		attnames = lappend(attnames, makeString(((RemoteColumn *) lfirst(lc))->name));
	options = list_make1(makeDefElem("encoding",
									 (Node *) makeString(unconstify(char *, GetDatabaseEncodingName())), -1));

	progress_phase_copy();
	rel = table_openrv(rv, RowExclusiveLock);
	/* BeginCopyFrom checks nothing: check what COPY FROM would (DoCopy) */
	apply_check_writable(RelationGetRelid(rel));
	/* Citus reads such a table from its shards, never from this relation */
	if (citus_partmethod(RelationGetRelid(rel)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("dbsync would COPY into Citus table %s directly", relname),
				 errhint("Report this as a dbsync bug; run dbsync_resync() on the table to load it again.")));
	pstate = make_parsestate(NULL);
	pstate->p_sourcetext = relname;
	(void) addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock, NULL,
										 false, false);
	copy_fed = 0;
	copy_limit = limit_bytes;
	cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, copy_read_cb,
						   attnames, options);
	rows = CopyFrom(cstate);
	EndCopyFrom(cstate);
	copy_limit = 0;
	free_parsestate(pstate);
	table_close(rel, NoLock);
	CommandCounterIncrement();
	*more = !copy_eof;
	return rows;
}

/* The stream is over (read to its end, or given up by an error). */
void
apply_copy_end(void)
{
	copy_conn = NULL;
	copy_last_row = NULL;
	copy_limit = 0;
}

/*
 * COPY rows held in memory (COPY text, whole lines) into relation
 * "relname" (columns in the rows' order).  Returns the number of rows.
 */
uint64
apply_copy_buffer(List *columns, const char *relname, const char *data, int len)
{
	uint64		rows;
	bool		more;

	copy_conn = NULL;
	copy_pending = data;
	copy_pending_len = len;
	copy_eof = false;
	copy_last_row = NULL;
	rows = apply_copy_next(columns, relname, 0, &more);
	apply_copy_end();
	return rows;
}

/*
 * Stream the rows of select_sql from the source straight into relation
 * "relname" (columns in the same order).  Returns the number of rows.
 */
uint64
apply_copy(SourceConn *conn, const char *select_sql, List *columns,
		   const char *relname, StringInfo last_row)
{
	uint64		rows;
	bool		more;

	apply_copy_start(conn, select_sql, columns, last_row);
	rows = apply_copy_next(columns, relname, 0, &more);
	apply_copy_end();
	return rows;
}

/*
 * {"error": ..., "key": {...}} for a row that could not be converted: the
 * key columns only (none for a table without key), never the row.
 */
static char *
row_sample_json(ErrorData *edata, List *columns, List *pk, Datum *values,
				char *nulls)
{
	StringInfoData buf;
	ListCell   *lc;
	int			i = 0;
	bool		first = true;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"error\": ");
	escape_json(&buf, edata->message);
	appendStringInfoString(&buf, ", \"key\": {");
	foreach(lc, columns)
	{
		RemoteColumn *col = lfirst(lc);

		if (list_member(pk, makeString(col->name)))
		{
			appendStringInfo(&buf, "%s", first ? "" : ", ");
			escape_json(&buf, col->name);
			appendStringInfoString(&buf, ": ");
			if (nulls[i] == 'n')
				appendStringInfoString(&buf, "null");
			else
			{
				char	   *v = TextDatumGetCString(values[i]);

				if (strlen(v) > 200)
					v[200] = '\0';
				escape_json(&buf, v);
			}
			first = false;
		}
		i++;
	}
	appendStringInfoString(&buf, "}}");
	return buf.data;
}

/*
 * Insert one row through plan in a subtransaction.  Returns NULL, or the
 * error that made the row fail (cancel, shutdown and out of memory are
 * thrown).
 */
static ErrorData *
stage_one_row(SPIPlanPtr plan, Datum *values, char *nulls)
{
	Subxact		sx;
	ErrorData  *volatile edata = NULL;

	subxact_begin(&sx);
	PG_TRY();
	{
		if (SPI_execute_plan(plan, values, nulls, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not stage a row");
		subxact_commit(&sx);
	}
	PG_CATCH();
	{
		/*
		 * Whatever fails for one row is that row's (a type's input function
		 * may raise any code: PostGIS raises XX000), unless it stops the
		 * statement.
		 */
		edata = subxact_abort(&sx);
		if (subxact_is_interrupt(edata) || edata->sqlerrcode == ERRCODE_OUT_OF_MEMORY)
			ReThrowError(edata);
	}
	PG_END_TRY();
	return edata;
}

/*
 * on_row_error 'skip': stream the rows as text into a raw stage (that COPY
 * cannot fail on a value), then convert them into the stage one row at a
 * time, each in a subtransaction; rows that fail are counted and the first
 * is kept as a sample (its key and the error, not the whole row).
 * Returns the number of rows read.
 */
uint64
apply_copy_careful(SourceConn *conn, const char *select_sql, List *columns,
				   const char *stage, StringInfo last_row, List *pk,
				   int64 *skipped, char **sample)
{
	List	   *textcols = NIL;
	List	   *pkstrings = NIL;
	ListCell   *lc;
	char	   *raw;
	uint64		n;
	int			ncols = list_length(columns);
	Oid		   *argtypes = palloc(sizeof(Oid) * ncols);
	StringInfoData sql;
	SPIPlanPtr	plan;
	Portal		portal;
	int			i = 0;
	uint64		seen = 0;

	initStringInfo(&sql);
	appendStringInfo(&sql, "INSERT INTO %s VALUES (", stage);
	foreach(lc, columns)
	{
		RemoteColumn *col = palloc(sizeof(RemoteColumn));

		*col = *(RemoteColumn *) lfirst(lc);
		appendStringInfo(&sql, "%s$%d::%s", i ? ", " : "", i + 1, col->local_type);
		col->cast_type = col->local_type;
		col->local_type = "text";
		textcols = lappend(textcols, col);
		argtypes[i++] = TEXTOID;
	}
	appendStringInfoChar(&sql, ')');
	foreach(lc, pk)
		pkstrings = lappend(pkstrings, makeString(lfirst(lc)));

	raw = apply_create_stage(textcols);
	n = apply_copy(conn, select_sql, textcols, raw, last_row);

	guard_repin();
	plan = SPI_prepare(sql.data, ncols, argtypes);
	if (plan == NULL)
		elog(ERROR, "could not prepare \"%s\": %s", sql.data,
			 SPI_result_code_string(SPI_result));
	portal = SPI_cursor_open_with_args(NULL, psprintf("SELECT * FROM %s", raw),
									   0, NULL, NULL, NULL, false, 0);
	for (;;)
	{
		SPITupleTable *tt;
		uint64		nrows;
		uint64		r;

		SPI_cursor_fetch(portal, true, 1000);
		tt = SPI_tuptable;
		nrows = SPI_processed;
		if (nrows == 0)
			break;
		for (r = 0; r < nrows; r++)
		{
			Datum	   *values = palloc(sizeof(Datum) * ncols);
			char	   *nulls = palloc(ncols);
			int			c;
			ErrorData  *edata;

			for (c = 0; c < ncols; c++)
			{
				bool		isnull;

				values[c] = SPI_getbinval(tt->vals[r], tt->tupdesc, c + 1, &isnull);
				nulls[c] = isnull ? 'n' : ' ';
			}
			edata = stage_one_row(plan, values, nulls);
			if (edata)
			{
				(*skipped)++;
				if (*sample == NULL)
					*sample = row_sample_json(edata, columns, pkstrings, values, nulls);
				FreeErrorData(edata);
			}
			pfree(values);
			pfree(nulls);
		}
		seen += nrows;
		SPI_freetuptable(tt);
	}
	SPI_cursor_close(portal);
	if (seen != n)
		elog(ERROR, "staged " UINT64_FORMAT " of " UINT64_FORMAT " rows read", seen, n);
	SPI_freeplan(plan);
	apply_drop_stage(raw);
	CommandCounterIncrement();
	return n;
}

/*
 * Field "index" (0-based) of a COPY text row, unescaped; NULL for \N.
 */
char *
copy_row_field(const char *row, int index)
{
	const char *p = row;
	StringInfoData buf;
	int			i;

	for (i = 0; i < index; i++)
	{
		p = strchr(p, '\t');
		if (p == NULL)
			elog(ERROR, "COPY row has fewer than %d fields", index + 1);
		p++;
	}
	if (p[0] == '\\' && p[1] == 'N' && (p[2] == '\t' || p[2] == '\0'))
		return NULL;
	initStringInfo(&buf);
	for (; *p && *p != '\t'; p++)
	{
		if (*p != '\\' || p[1] == '\0')
		{
			appendStringInfoChar(&buf, *p);
			continue;
		}
		p++;
		switch (*p)
		{
			case 't':
				appendStringInfoChar(&buf, '\t');
				break;
			case 'n':
				appendStringInfoChar(&buf, '\n');
				break;
			case 'r':
				appendStringInfoChar(&buf, '\r');
				break;
			case 'b':
				appendStringInfoChar(&buf, '\b');
				break;
			case 'f':
				appendStringInfoChar(&buf, '\f');
				break;
			case 'v':
				appendStringInfoChar(&buf, '\v');
				break;
			default:
				appendStringInfoChar(&buf, *p);
		}
	}
	return buf.data;
}
