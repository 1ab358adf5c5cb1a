/*-------------------------------------------------------------------------
 * deletes.c
 *	  Find the rows deleted at the source: exactly, and cheaply when there
 *	  are none.
 *
 * Each side computes over the keys of its (live) rows a count and an
 * order-independent digest: the sum of a 64-bit hash of each key's text
 * (PostgreSQL-family sources: hashtextextended; MySQL family: the first 60
 * bits of md5, which both dialects have).  Equal counts cannot hide a delete: a deleted key and an extra one
 * (a row skipped as unconvertible, an insert older than lookback) change
 * the digest.  When both agree, nothing was deleted: one aggregate on each
 * side.  When not, the same is computed per bucket (the first two hex digits
 * of that hash, 256 buckets), and only the keys of the buckets that differ
 * are read from the source and reconciled.
 *
 * The key's text must be the same on both sides: locally it is
 * key_text_local() of the local type, at the source the driver's key_text
 * (PostgreSQL-family sources use the same expressions).  A key column the
 * driver cannot render that way (key_text NULL) makes the table read all of
 * its keys instead, every time.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"

#include "apply.h"
#include "source.h"

/* The key's text expressions at the source, or NIL if one has none. */
static List *
remote_key_texts(const SourceDriver *drv, RemoteTable *rt, List *pk)
{
	List	   *texts = NIL;
	ListCell   *lc;

	foreach(lc, pk)
	{
		char	   *t = drv->key_text(find_column(rt, lfirst(lc)));

		if (t == NULL)
			return NIL;
		texts = lappend(texts, t);
	}
	return texts;
}

/* The same, locally, for alias t. */
static char *
local_key_text(RemoteTable *rt, List *pk)
{
	List	   *texts = NIL;
	ListCell   *lc;

	foreach(lc, pk)
	{
		RemoteColumn *col = find_column(rt, lfirst(lc));

		texts = lappend(texts, key_text_local(col->local_type,
											  psprintf("t.%s", quote_identifier(col->name))));
	}
	return pg_key_concat(texts);
}

/*
 * Stream the source's digest (per bucket, or of all keys: bucket '*') into
 * a stage (b text, n bigint, s numeric).
 */
static char *
remote_digests(SourceConn *conn, const char *schema, RemoteTable *rt,
			   const char *keytext, bool per_bucket)
{
	const SourceDriver *drv = conn->driver;
	List	   *cols = list_make3(stage_column("b", "text"),
								  stage_column("n", "bigint"),
								  stage_column("s", "numeric"));
	char	   *stage = apply_create_stage(cols);
	char	   *digest = drv->key_digest(keytext);
	char	   *sql;

	sql = psprintf("SELECT %s, count(*), COALESCE(SUM(%s), 0) FROM %s.%s%s",
				   per_bucket ? drv->key_bucket(keytext) : "'*'", digest,
				   drv->quote_ident(schema), drv->quote_ident(rt->name),
				   per_bucket ? " GROUP BY 1" : "");
	apply_copy(conn, sql, cols, stage, NULL);
	return stage;
}

/*
 * The buckets (or '*' for all keys) whose count or digest differ between
 * the remote stage and the target's live rows; NIL when none do.
 */
static List *
differing_buckets(const SourceDriver *drv, const char *target, const char *stage,
				  const char *keytext, bool per_bucket, bool soft)
{
	char	   *digest = drv->local_key_digest(keytext);
	char	   *sql;
	char	   *list;

	sql = psprintf("SELECT pg_catalog.string_agg(COALESCE(r.b, l.b), ',') "
				   "FROM %s r FULL JOIN (SELECT %s AS b, pg_catalog.count(*) AS n, "
				   "COALESCE(pg_catalog.sum(%s), 0) AS s FROM %s t%s%s) l "
				   "ON r.b OPERATOR(pg_catalog.=) l.b "
				   "WHERE r.n IS DISTINCT FROM l.n OR r.s IS DISTINCT FROM l.s",
				   stage, per_bucket ? drv->local_key_bucket(keytext) : "'*'::pg_catalog.text",
				   digest, target, soft ? " WHERE NOT t._dbsync_deleted" : "",
				   per_bucket ? " GROUP BY 1" : "");
	list = apply_query_value(sql);
	return list ? split_list_option(list) : NIL;
}

/* "'ab', 'cd'" for a list of buckets (two hex digits each, ours). */
static char *
bucket_list(const SourceDriver *drv, List *buckets)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, buckets)
		appendStringInfo(&buf, "%s%s", buf.len ? ", " : "", drv->quote_literal(lfirst(lc)));
	return buf.data;
}

/*
 * Read the source's keys (of the given buckets only, when buckets is not
 * NIL) and delete or flag the target's rows (of those buckets) that are
 * not among them.  Returns the number of rows deleted or flagged.
 */
static int64
delete_missing_keys(SourceConn *conn, const char *schema, RemoteTable *rt,
					List *pk, const char *target, bool soft,
					const char *remote_text, const char *local_text,
					List *buckets, int64 *keys_read)
{
	const SourceDriver *drv = conn->driver;
	List	   *kcols = NIL;
	ListCell   *lc;
	RemoteQuery q = {0};
	char	   *keystage;
	int64		n;

	foreach(lc, pk)
		kcols = lappend(kcols, find_column(rt, lfirst(lc)));
	keystage = apply_create_stage(kcols);
	q.schema = schema;
	q.table = rt;
	q.columns = kcols;
	if (buckets != NIL)
		q.filter = psprintf("%s IN (%s)", drv->key_bucket(remote_text),
							bucket_list(drv, buckets));
	*keys_read = (int64) apply_copy(conn, remote_select_sql(drv, &q), kcols, keystage, NULL);
	n = apply_delete_missing(target, keystage, pk, soft,
							 buckets == NIL ? NULL :
							 psprintf("%s IN (%s)", drv->local_key_bucket(local_text),
									  bucket_list(drv, buckets)));
	apply_drop_stage(keystage);
	return n;
}

/*
 * Delete (per deletes: hard or soft) the target's rows whose key is gone at
 * the source; the caller has the source's snapshot open.  Returns the
 * number of rows deleted or flagged, and in *remote_rows the source's.
 */
int64
deletes_reconcile(SourceConn *conn, SourceConfig *cfg, RemoteTable *rt,
				  List *pk, const char *target, int64 *remote_rows)
{
	const SourceDriver *drv = conn->driver;
	bool		soft = cfg->deletes == DELETES_SOFT;
	List	   *texts = remote_key_texts(drv, rt, pk);
	char	   *remote_text;
	char	   *local_text;
	char	   *stage;
	List	   *buckets;
	int64		keys_read;
	char	   *n;

	progress_phase("deleting");
	local_text = local_key_text(rt, pk);
	if (texts == NIL)
		return delete_missing_keys(conn, cfg->schema, rt, pk, target, soft,
								   NULL, local_text, NIL, remote_rows);
	remote_text = drv->key_concat(texts);

	stage = remote_digests(conn, cfg->schema, rt, remote_text, false);
	n = apply_query_value(psprintf("SELECT n FROM %s", stage));
	*remote_rows = n ? strtoll(n, NULL, 10) : 0;
	buckets = differing_buckets(drv, target, stage, local_text, false, soft);
	apply_drop_stage(stage);
	if (buckets == NIL)
		return 0;

	stage = remote_digests(conn, cfg->schema, rt, remote_text, true);
	buckets = differing_buckets(drv, target, stage, local_text, true, soft);
	apply_drop_stage(stage);
	if (buckets == NIL)
		return 0;
	return delete_missing_keys(conn, cfg->schema, rt, pk, target, soft,
							   remote_text, local_text, buckets, &keys_read);
}
