/*-------------------------------------------------------------------------
 * remote_sql.c
 *	  Build the remote SELECTs of a sync in the source's dialect.
 *
 * The statement shapes are common to both SQL dialects; what differs
 * (identifier and literal quoting, how a column is read losslessly) comes
 * from the driver, so every identifier and value that goes into remote SQL
 * passes through the driver's quote functions here and nowhere else.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "source.h"

RemoteColumn *
find_column(RemoteTable *rt, const char *name)
{
	ListCell   *lc;

	foreach(lc, rt->columns)
	{
		RemoteColumn *col = lfirst(lc);

		if (strcmp(col->name, name) == 0)
			return col;
	}
	return NULL;
}

static void
append_table(StringInfo sql, const SourceDriver *drv, const char *schema,
			 const char *table)
{
	appendStringInfo(sql, "%s.%s", drv->quote_ident(schema),
					 drv->quote_ident(table));
}

/* A key column as the source orders and compares it. */
static char *
key_expr(const SourceDriver *drv, RemoteTable *rt, const char *name)
{
	RemoteColumn *col = find_column(rt, name);

	if (drv->key_expr && col)
		return drv->key_expr(col);
	return drv->quote_ident(name);
}

/* (k1, k2) > (v1, v2): rows after the resume key, in key order. */
static void
append_after_key(StringInfo sql, const SourceDriver *drv, RemoteTable *rt,
				 List *pk, List *values)
{
	ListCell   *lc;
	ListCell   *lv;
	bool		first = true;

	appendStringInfoChar(sql, '(');
	foreach(lc, pk)
	{
		appendStringInfo(sql, "%s%s", first ? "" : ", ", key_expr(drv, rt, lfirst(lc)));
		first = false;
	}
	appendStringInfoString(sql, ") > (");
	first = true;
	forboth(lc, pk, lv, values)
	{
		RemoteColumn *col = find_column(rt, lfirst(lc));

		appendStringInfo(sql, "%s%s", first ? "" : ", ",
						 drv->key_literal && col ? drv->key_literal(col, lfirst(lv)) :
						 drv->quote_literal(lfirst(lv)));
		first = false;
	}
	appendStringInfoChar(sql, ')');
}

char *
remote_select_sql(const SourceDriver *drv, RemoteQuery *q)
{
	StringInfoData sql;
	ListCell   *lc;
	bool		first = true;
	const char *conj = " WHERE ";

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	foreach(lc, q->columns)
	{
		appendStringInfo(&sql, "%s%s", first ? "" : ", ",
						 drv->column_expr(lfirst(lc)));
		first = false;
	}
	appendStringInfoString(&sql, " FROM ");
	append_table(&sql, drv, q->schema, q->table->name);

	if (q->cursor_column && q->cursor_is_null)
	{
		appendStringInfo(&sql, "%s%s IS NULL", conj,
						 drv->quote_ident(q->cursor_column));
		conj = " AND ";
	}
	if (q->cursor_column && q->cursor_lower)
	{
		appendStringInfo(&sql, "%s%s >= %s", conj,
						 drv->quote_ident(q->cursor_column),
						 drv->quote_literal(q->cursor_lower));
		conj = " AND ";
	}
	if (q->cursor_column && q->cursor_upper)
	{
		appendStringInfo(&sql, "%s%s < %s", conj,
						 drv->quote_ident(q->cursor_column),
						 drv->quote_literal(q->cursor_upper));
		conj = " AND ";
	}
	if (q->filter)
	{
		appendStringInfo(&sql, "%s%s", conj, q->filter);
		conj = " AND ";
	}
	if (q->after_key != NIL)
	{
		appendStringInfoString(&sql, conj);
		append_after_key(&sql, drv, q->table, q->pk, q->after_key);
	}
	if (q->pk != NIL)
	{
		first = true;
		appendStringInfoString(&sql, " ORDER BY ");
		foreach(lc, q->pk)
		{
			appendStringInfo(&sql, "%s%s", first ? "" : ", ",
							 key_expr(drv, q->table, lfirst(lc)));
			first = false;
		}
	}
	if (q->limit > 0)
		appendStringInfo(&sql, " LIMIT " INT64_FORMAT, q->limit);
	return sql.data;
}

char *
remote_max_sql(const SourceDriver *drv, const char *schema, const char *table,
			   const char *column)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT max(%s) FROM ", drv->quote_ident(column));
	append_table(&sql, drv, schema, table);
	return sql.data;
}

/*
 * The source's own estimate of a table's rows, from its statistics (no
 * scan): PostgreSQL family pg_class.reltuples (a partitioned table: the sum
 * of its partitions'; -1 before the first ANALYZE), MySQL family
 * information_schema.TABLES.TABLE_ROWS.
 */
char *
remote_estimate_sql(const SourceDriver *drv, const char *schema, const char *table)
{
	if (drv == &mysql_driver)
		return psprintf("SELECT TABLE_ROWS FROM information_schema.TABLES "
						"WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
						drv->quote_literal(schema), drv->quote_literal(table));
	return psprintf("SELECT CASE WHEN c.relkind OPERATOR(pg_catalog.=) 'p' THEN "
					"(SELECT pg_catalog.sum(GREATEST(k.reltuples, 0))::pg_catalog.int8 "
					"FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class k "
					"ON k.oid OPERATOR(pg_catalog.=) i.inhrelid "
					"WHERE i.inhparent OPERATOR(pg_catalog.=) c.oid) "
					"ELSE c.reltuples::pg_catalog.int8 END "
					"FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
					"ON n.oid OPERATOR(pg_catalog.=) c.relnamespace "
					"WHERE n.nspname OPERATOR(pg_catalog.=) %s AND c.relname OPERATOR(pg_catalog.=) %s",
					drv->quote_literal(schema), drv->quote_literal(table));
}

/* ------------------------------------------------------------------------
 * Key texts and digests, PostgreSQL dialect (deletes.c)
 * ------------------------------------------------------------------------
 */

/*
 * The text of a key value of a local type, one form per type that both
 * sides can produce: bytes as lower-case hex, booleans as 0/1, times to
 * the microsecond in UTC, everything else as its text output (sessions
 * are pinned: ISO dates, UTC, full float precision).
 */
char *
key_text_local(const char *local_type, const char *expr)
{
	if (strcmp(local_type, "bytea") == 0)
		return psprintf("pg_catalog.encode(%s, 'hex')", expr);
	if (strcmp(local_type, "boolean") == 0)
		return psprintf("(%s)::pg_catalog.int4::pg_catalog.text", expr);
	if (strncmp(local_type, "timestamp", 9) == 0)	/* to_char(infinity) is NULL */
		return psprintf("COALESCE(pg_catalog.to_char(%s, 'YYYY-MM-DD HH24:MI:SS.US'), (%s)::pg_catalog.text)",
						expr, expr);
	return psprintf("(%s)::pg_catalog.text", expr);
}

char *
pg_key_concat(List *texts)
{
	StringInfoData buf;
	ListCell   *lc;

	if (list_length(texts) == 1)
		return linitial(texts);
	initStringInfo(&buf);
	appendStringInfoString(&buf, "pg_catalog.concat_ws(pg_catalog.chr(1)");
	foreach(lc, texts)
		appendStringInfo(&buf, ", %s", (char *) lfirst(lc));
	appendStringInfoChar(&buf, ')');
	return buf.data;
}

/*
 * Digests that both PostgreSQL and MySQL compute: the first 60 bits of md5
 * as an integer, and its first two hex digits as the bucket.
 */
char *
pg_key_digest(const char *text)
{
	return psprintf("('x' OPERATOR(pg_catalog.||) pg_catalog.substr(pg_catalog.md5(%s), 1, 15))"
					"::pg_catalog.bit(60)::pg_catalog.int8", text);
}

char *
pg_key_bucket(const char *text)
{
	return psprintf("pg_catalog.substr(pg_catalog.md5(%s), 1, 2)", text);
}

/*
 * PostgreSQL on both sides: its own 64-bit hash of the key's bytes (stable
 * across versions since 11: hash partitioning relies on it), far cheaper
 * than md5.  The bucket is its low 8 bits, as text.
 */
char *
pg_key_digest_fast(const char *text)
{
	return psprintf("pg_catalog.hashtextextended((%s) COLLATE pg_catalog.\"C\", 0)", text);
}

char *
pg_key_bucket_fast(const char *text)
{
	return psprintf("(pg_catalog.hashtextextended((%s) COLLATE pg_catalog.\"C\", 0) "
					"OPERATOR(pg_catalog.&) 255)::pg_catalog.text", text);
}

/*
 * A copy of a table's description in CurrentMemoryContext, strings and
 * all: a sync changes its key and local types on its own copy; the
 * connection cache keeps one that outlives the run.
 */
RemoteTable *
remote_table_copy(RemoteTable *rt)
{
	RemoteTable *copy = palloc0(sizeof(RemoteTable));
	ListCell   *lc;

	copy->name = pstrdup(rt->name);
	foreach(lc, rt->columns)
	{
		RemoteColumn *col = palloc(sizeof(RemoteColumn));

		*col = *(RemoteColumn *) lfirst(lc);
		col->name = pstrdup(col->name);
		col->remote_type = pstrdup(col->remote_type);
		col->local_type = col->local_type ? pstrdup(col->local_type) : NULL;
		col->fallback_type = col->fallback_type ? pstrdup(col->fallback_type) : NULL;
		col->cast_type = col->cast_type ? pstrdup(col->cast_type) : NULL;
		copy->columns = lappend(copy->columns, col);
	}
	foreach(lc, rt->primary_key)
		copy->primary_key = lappend(copy->primary_key, pstrdup(lfirst(lc)));
	return copy;
}
