/*-------------------------------------------------------------------------
 * merge.c
 *	  The set-based statements that apply a staged batch to its target:
 *	  upsert of what changed (rows identical to the target's are not
 *	  written, so an unchanged re-sync is a compare), delete of what is gone,
 *	  and the mirror of a table without a key.
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
#include "executor/executor.h"
#include "executor/spi.h"
#include "nodes/execnodes.h"
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

/*
 * How a multiset mirror compares a column: as text, which tells apart
 * values "=" calls equal (1.10 and 1.100, '1 day' and '24:00:00', 0 and -0)
 * and works for types without "=".
 */
char *
cmp_expr(const char *alias, RemoteColumn *col)
{
	return psprintf("%s.%s::pg_catalog.text", alias, quote_identifier(col->name));
}

/* ROW(alias.c1, ...)::record, compared with *= (binary image equality). */
static void
append_row_image(StringInfo buf, List *columns, const char *alias,
				 const char *extra)
{
	ListCell   *lc;
	bool		first = true;

	appendStringInfoString(buf, "ROW(");
	foreach(lc, columns)
	{
		appendStringInfo(buf, "%s%s.%s", first ? "" : ", ", alias,
						 quote_identifier(((RemoteColumn *) lfirst(lc))->name));
		first = false;
	}
	if (extra)
		appendStringInfo(buf, ", %s", extra);
	appendStringInfoString(buf, ")::record");
}

void
append_key_match(StringInfo buf, List *pk, const char *a, const char *b)
{
	ListCell   *lc;
	bool		first = true;

	foreach(lc, pk)
	{
		const char *k = quote_identifier(lfirst(lc));

		appendStringInfo(buf, "%s%s.%s OPERATOR(pg_catalog.=) %s.%s", first ? "" : " AND ", a, k, b, k);
		first = false;
	}
}

void
append_cmp_list(StringInfo buf, List *columns, const char *alias)
{
	ListCell   *lc;
	bool		first = true;

	foreach(lc, columns)
	{
		appendStringInfo(buf, "%s%s", first ? "" : ", ",
						 cmp_expr(alias, lfirst(lc)));
		first = false;
	}
}

/*
 * The end of an upsert's SELECT from stage "s" and the head of its ON
 * CONFLICT clause: with dedupe, the last staged row of a key first (for
 * DISTINCT ON).
 */
void
append_conflict_head(StringInfo buf, List *pk, bool dedupe)
{
	if (dedupe)
	{
		appendStringInfoString(buf, " ORDER BY ");
		append_name_list(buf, pk, "s.");
		appendStringInfoString(buf, ", s.ctid DESC");
	}
	appendStringInfoString(buf, " ON CONFLICT (");
	append_name_list(buf, pk, "");
	appendStringInfoString(buf, ") DO UPDATE SET ");
}

/*
 * Upsert the staged rows into the target, keyed by pk.  Rows identical to
 * the target's (binary image equality, so 1.10 -> 1.100 is a change) are
 * not written.  With dedupe, the last staged row of a key
 * wins.  Returns the number of rows inserted or updated.
 */
int64
apply_upsert(const char *target, const char *stage, List *columns, List *pk,
			 bool soft, bool dedupe, CompareMode how, int64 *inserted)
{
	StringInfoData sql;
	ListCell   *lc;
	bool		first = true;

	progress_phase("applying");
	if (citus_target(target))
		return citus_upsert(target, stage, columns, pk, soft, dedupe, inserted);
	initStringInfo(&sql);
	if (inserted)
		appendStringInfoString(&sql, "WITH up AS (");
	appendStringInfo(&sql, "INSERT INTO %s AS t (", target);
	foreach(lc, columns)
		appendStringInfo(&sql, "%s, ", quote_identifier(((RemoteColumn *) lfirst(lc))->name));
	appendStringInfoString(&sql, "_dbsync_synced_at");
	if (soft)
		appendStringInfoString(&sql, ", _dbsync_deleted");
	appendStringInfoString(&sql, ") SELECT ");
	if (dedupe)
	{
		appendStringInfoString(&sql, "DISTINCT ON (");
		append_name_list(&sql, pk, "s.");
		appendStringInfoString(&sql, ") ");
	}
	foreach(lc, columns)
		appendStringInfo(&sql, "s.%s, ", quote_identifier(((RemoteColumn *) lfirst(lc))->name));
	appendStringInfoString(&sql, "pg_catalog.now()");
	if (soft)
		appendStringInfoString(&sql, ", false");
	appendStringInfo(&sql, " FROM %s s WHERE NOT EXISTS (SELECT 1 FROM %s x WHERE ",
					 stage, target);
	append_key_match(&sql, pk, "x", "s");
	/*
	 * A batch of an initial load is a contiguous key range: compare with
	 * only that range of the target (an index range, not the whole table).
	 */
	if (how == COMPARE_KEY_RANGE)
	{
		appendStringInfoString(&sql, " AND (");
		append_name_list(&sql, pk, "x.");
		appendStringInfoString(&sql, ") OPERATOR(pg_catalog.>=) (SELECT ");
		append_name_list(&sql, pk, "s1.");
		appendStringInfo(&sql, " FROM %s s1 ORDER BY ", stage);
		append_name_list(&sql, pk, "s1.");
		appendStringInfoString(&sql, " LIMIT 1) AND (");
		append_name_list(&sql, pk, "x.");
		appendStringInfoString(&sql, ") OPERATOR(pg_catalog.<=) (SELECT ");
		append_name_list(&sql, pk, "s2.");
		appendStringInfo(&sql, " FROM %s s2 ORDER BY ", stage);
		{
			ListCell   *lc2;
			bool		f2 = true;

			foreach(lc2, pk)
			{
				appendStringInfo(&sql, "%ss2.%s DESC", f2 ? "" : ", ",
								 quote_identifier(lfirst(lc2)));
				f2 = false;
			}
		}
		appendStringInfoString(&sql, " LIMIT 1)");
	}
	appendStringInfoString(&sql, " AND ");
	append_row_image(&sql, columns, "x", soft ? "x._dbsync_deleted" : NULL);
	appendStringInfoString(&sql, " OPERATOR(pg_catalog.*=) ");
	append_row_image(&sql, columns, "s", soft ? "false" : NULL);
	/* OFFSET 0 keeps the lookup a per-row index probe, not a join */
	if (how == COMPARE_PROBE)
		appendStringInfoString(&sql, " OFFSET 0");
	appendStringInfoChar(&sql, ')');
	append_conflict_head(&sql, pk, dedupe);
	foreach(lc, columns)
	{
		const char *c = quote_identifier(((RemoteColumn *) lfirst(lc))->name);

		appendStringInfo(&sql, "%s%s = EXCLUDED.%s", first ? "" : ", ", c, c);
		first = false;
	}
	appendStringInfoString(&sql, ", _dbsync_synced_at = EXCLUDED._dbsync_synced_at");
	if (soft)
		appendStringInfoString(&sql, ", _dbsync_deleted = false");
	if (inserted == NULL)
	{
		spi_exec(sql.data, SPI_OK_INSERT);
		return (int64) SPI_processed;
	}

	/*
	 * Count the inserts among the upserts: a row version written by ON
	 * CONFLICT DO UPDATE carries the conflict lock in xmax, a new row not.
	 */
	appendStringInfoString(&sql, " RETURNING (t.xmax OPERATOR(pg_catalog.=) 0) AS ins) "
						   "SELECT pg_catalog.count(*), "
						   "pg_catalog.count(*) FILTER (WHERE ins) FROM up");
	spi_exec(sql.data, SPI_OK_SELECT);
	{
		bool		isnull;
		int64		all = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc, 1, &isnull));

		*inserted = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												SPI_tuptable->tupdesc, 2, &isnull));
		return all;
	}
}

/*
 * Delete (or flag, when soft) target rows whose key is not in keystage,
 * among the target rows (alias t) that match filter, when not NULL.
 * Returns the number of rows deleted or flagged.
 */
int64
apply_delete_missing(const char *target, const char *keystage, List *pk,
					 bool soft, const char *filter)
{
	StringInfoData sql;

	if (citus_target(target))
		return citus_delete_missing(target, keystage, pk, soft, filter);
	initStringInfo(&sql);
	if (soft)
		appendStringInfo(&sql, "UPDATE %s t SET _dbsync_deleted = true, "
						 "_dbsync_synced_at = pg_catalog.now() "
						 "WHERE NOT t._dbsync_deleted AND ", target);
	else
		appendStringInfo(&sql, "DELETE FROM %s t WHERE ", target);
	if (filter)
		appendStringInfo(&sql, "%s AND ", filter);
	appendStringInfo(&sql, "NOT EXISTS (SELECT 1 FROM %s s WHERE ", keystage);
	append_key_match(&sql, pk, "s", "t");
	appendStringInfoChar(&sql, ')');
	spi_exec(sql.data, soft ? SPI_OK_UPDATE : SPI_OK_DELETE);
	return (int64) SPI_processed;
}

/*
 * Delete (soft: flag) the target rows whose keys are in keystage (log
 * capture's deletes).  Returns the number of rows.
 */
int64
apply_delete_keys(const char *target, const char *keystage, List *pk, bool soft)
{
	StringInfoData sql;

	initStringInfo(&sql);
	if (soft)
		appendStringInfo(&sql, "UPDATE %s t SET _dbsync_deleted = true, "
						 "_dbsync_synced_at = pg_catalog.now() FROM %s s "
						 "WHERE NOT t._dbsync_deleted AND ", target, keystage);
	else
		appendStringInfo(&sql, "DELETE FROM %s t USING %s s WHERE ", target, keystage);
	append_key_match(&sql, pk, "s", "t");
	spi_exec(sql.data, soft ? SPI_OK_UPDATE : SPI_OK_DELETE);
	return (int64) SPI_processed;
}

/* "c1, c2, ..., cn" */
void
append_numbered(StringInfo buf, int n)
{
	int			i;

	for (i = 1; i <= n; i++)
		appendStringInfo(buf, "%sc%d", i > 1 ? ", " : "", i);
}

/*
 * The target's surplus copies of rows, per distinct row the copies beyond
 * the staged count (live rows only), deleted or, with soft deletes, flagged.
 */
static int64
multiset_remove_surplus(const char *target, const char *stage, List *columns,
						bool soft)
{
	StringInfoData sql;
	ListCell   *lc;
	int			i;
	int			n = list_length(columns);
	const char *live = soft ? " WHERE NOT t._dbsync_deleted" : "";

	initStringInfo(&sql);
	appendStringInfoString(&sql, "WITH surplus AS (SELECT d.*, pg_catalog.count(*) AS n FROM (SELECT ");
	append_cmp_list(&sql, columns, "t");
	appendStringInfo(&sql, " FROM %s t%s EXCEPT ALL SELECT ", target, live);
	append_cmp_list(&sql, columns, "s");
	appendStringInfo(&sql, " FROM %s s) d(", stage);
	append_numbered(&sql, n);
	appendStringInfoString(&sql, ") GROUP BY ");
	append_numbered(&sql, n);
	appendStringInfoString(&sql, "), numbered AS (SELECT t.ctid AS tid, ");
	i = 0;
	foreach(lc, columns)
		appendStringInfo(&sql, "%s AS c%d, ", cmp_expr("t", lfirst(lc)), ++i);
	appendStringInfoString(&sql, "pg_catalog.row_number() OVER (PARTITION BY ");
	append_cmp_list(&sql, columns, "t");
	appendStringInfo(&sql, " ORDER BY t.ctid) AS rn FROM %s t%s) ", target, live);
	if (soft)
		appendStringInfo(&sql, "UPDATE %s SET _dbsync_deleted = true, "
						 "_dbsync_synced_at = pg_catalog.now()", target);
	else
		appendStringInfo(&sql, "DELETE FROM %s", target);
	appendStringInfoString(&sql, " WHERE ctid IN (SELECT nb.tid FROM numbered nb JOIN surplus su ON ");
	for (i = 1; i <= n; i++)
		appendStringInfo(&sql, "%snb.c%d IS NOT DISTINCT FROM su.c%d",
						 i > 1 ? " AND " : "", i, i);
	appendStringInfoString(&sql, " WHERE nb.rn OPERATOR(pg_catalog.<=) su.n)");
	spi_exec(sql.data, soft ? SPI_OK_UPDATE : SPI_OK_DELETE);
	CommandCounterIncrement();
	return (int64) SPI_processed;
}

/*
 * Make a table without primary key hold the staged multiset of rows
 * (duplicates kept): insert the missing copies and, per deletes, delete or
 * flag the surplus ones (with 'ignore' they stay).  Nothing is written
 * when both already agree.
 */
void
apply_mirror_multiset(const char *target, const char *stage, List *columns,
					  DeletesMode deletes, int64 *inserted, int64 *deleted)
{
	StringInfoData sql;
	ListCell   *lc;
	int			i = 0;

	bool		soft = deletes == DELETES_SOFT;

	progress_phase("applying");
	if (citus_target(target))
	{
		citus_mirror_multiset(target, stage, columns, deletes, inserted, deleted);
		return;
	}
	*deleted = 0;
	if (deletes != DELETES_IGNORE)
		*deleted = multiset_remove_surplus(target, stage, columns, soft);

	/* insert what the target's live rows lack */
	initStringInfo(&sql);
	appendStringInfo(&sql, "INSERT INTO %s (", target);
	foreach(lc, columns)
		appendStringInfo(&sql, "%s, ", quote_identifier(((RemoteColumn *) lfirst(lc))->name));
	appendStringInfoString(&sql, "_dbsync_synced_at) SELECT ");
	foreach(lc, columns)
		appendStringInfo(&sql, "m.c%d::%s, ", ++i, ((RemoteColumn *) lfirst(lc))->local_type);
	appendStringInfoString(&sql, "pg_catalog.now() FROM (SELECT ");
	append_cmp_list(&sql, columns, "s");
	appendStringInfo(&sql, " FROM %s s EXCEPT ALL SELECT ", stage);
	append_cmp_list(&sql, columns, "t");
	appendStringInfo(&sql, " FROM %s t%s) m(", target,
					 soft ? " WHERE NOT t._dbsync_deleted" : "");
	append_numbered(&sql, list_length(columns));
	appendStringInfoChar(&sql, ')');
	spi_exec(sql.data, SPI_OK_INSERT);
	*inserted = (int64) SPI_processed;
}

/* "c1 = s.c1, ..." for every column, and the bookkeeping columns. */
static void
append_set_list(StringInfo buf, List *columns, const char *from, bool soft)
{
	ListCell   *lc;

	foreach(lc, columns)
	{
		const char *c = quote_identifier(((RemoteColumn *) lfirst(lc))->name);

		appendStringInfo(buf, "%s = %s.%s, ", c, from, c);
	}
	appendStringInfoString(buf, "_dbsync_synced_at = pg_catalog.now()");
	if (soft)
		appendStringInfoString(buf, ", _dbsync_deleted = false");
}

/* Staged rows whose target row is flagged deleted (they come back). */
int64
apply_count_revived(const char *target, const char *stage, List *pk)
{
	StringInfoData sql;
	ListCell   *lc;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT pg_catalog.count(*) FROM %s s JOIN %s t ON ", stage, target);
	foreach(lc, pk)
	{
		const char *k = quote_identifier(lfirst(lc));

		appendStringInfo(&sql, "t.%s OPERATOR(pg_catalog.=) s.%s AND ", k, k);
	}
	appendStringInfoString(&sql, "t._dbsync_deleted");
	return strtoll(apply_query_value(sql.data), NULL, 10);
}

/*
 * How many rows a MERGE updated: its ModifyTable node counts them
 * (PostgreSQL 15 has no RETURNING for MERGE; its count of inserts also
 * counts rows a BEFORE trigger skipped, so inserts are the rows written
 * less the updates).  Read at ExecutorEnd while merge_counting is set; the
 * outermost statement ends last, so a MERGE a trigger runs inside ours
 * cannot leave its count.
 */
static ExecutorEnd_hook_type prev_executor_end = NULL;
static bool merge_counting = false;
static double merge_updated;

static void
merge_count_end(QueryDesc *queryDesc)
{
	if (merge_counting && queryDesc->planstate &&
		IsA(queryDesc->planstate, ModifyTableState) &&
		((ModifyTableState *) queryDesc->planstate)->operation == CMD_MERGE)
		merge_updated = ((ModifyTableState *) queryDesc->planstate)->mt_merge_updated;
	if (prev_executor_end)
		prev_executor_end(queryDesc);
	else
		standard_ExecutorEnd(queryDesc);
}

/* From _PG_init. */
void
merge_init(void)
{
	prev_executor_end = ExecutorEnd_hook;
	ExecutorEnd_hook = merge_count_end;
}

/* Has the target rewrite rules (MERGE refuses them in PostgreSQL 15)? */
static bool
target_has_rules(const char *target)
{
	Oid			relid = RangeVarGetRelid(makeRangeVarFromNameList(stringToQualifiedNameList(target)),
										 NoLock, true);
	Relation	rel;
	bool		rules;

	if (!OidIsValid(relid))
		return false;
	rel = relation_open(relid, AccessShareLock);
	rules = rel->rd_rel->relhasrules;
	relation_close(rel, AccessShareLock);
	return rules;
}

/* The column list of an INSERT into the target, and its VALUES from "s". */
static void
append_insert_lists(StringInfo buf, List *columns, bool soft, bool values)
{
	ListCell   *lc;

	appendStringInfoChar(buf, '(');
	foreach(lc, columns)
		appendStringInfo(buf, "%s%s, ", values ? "s." : "",
						 quote_identifier(((RemoteColumn *) lfirst(lc))->name));
	if (values)
		appendStringInfo(buf, "pg_catalog.now()%s)", soft ? ", false" : "");
	else
		appendStringInfo(buf, "_dbsync_synced_at%s)", soft ? ", _dbsync_deleted" : "");
}

/*
 * The upsert of apply_upsert_small in one MERGE: one probe of the key
 * index per staged row, an update where the image differs, an insert where
 * the key is not there.
 */
static int64
merge_small(const char *target, const char *stage, List *columns,
			List *pk, bool soft, int64 *inserted)
{
	StringInfoData sql;
	bool		was = merge_counting;

	initStringInfo(&sql);
	appendStringInfo(&sql, "MERGE INTO %s AS t USING %s AS s ON ", target, stage);
	append_key_match(&sql, pk, "t", "s");
	appendStringInfoString(&sql, " WHEN MATCHED AND NOT ");
	append_row_image(&sql, columns, "t", soft ? "t._dbsync_deleted" : NULL);
	appendStringInfoString(&sql, " OPERATOR(pg_catalog.*=) ");
	append_row_image(&sql, columns, "s", soft ? "false" : NULL);
	appendStringInfoString(&sql, " THEN UPDATE SET ");
	append_set_list(&sql, columns, "s", soft);
	appendStringInfoString(&sql, " WHEN NOT MATCHED THEN INSERT ");
	append_insert_lists(&sql, columns, soft, false);
	appendStringInfoString(&sql, " VALUES ");
	append_insert_lists(&sql, columns, soft, true);

	merge_updated = -1;
	merge_counting = true;
	PG_TRY();
	{
		spi_exec(sql.data, SPI_OK_MERGE);
	}
	PG_FINALLY();
	{
		merge_counting = was;
	}
	PG_END_TRY();
	if (merge_updated < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("dbsync could not read what MERGE into %s did", target),
				 errhint("Report this to dbsync's developers, with the extensions loaded in this database.")));
	*inserted = (int64) SPI_processed - (int64) merge_updated;
	return (int64) SPI_processed;
}

/*
 * Apply a few staged rows (an incremental run's change set) to a large
 * target in one pass over the rows it touches: a MERGE that probes the
 * target's key once per staged row, updates the rows whose image differs
 * from the staged one (identical rows are neither written nor locked) and
 * inserts the rows whose key is not there.  A target with rewrite rules
 * (which MERGE refuses) gets an UPDATE, then an INSERT of the staged rows
 * whose key is not there.  The staged keys must be unique (the source's
 * primary key).  Returns the rows written; *inserted the new ones.
 */
int64
apply_upsert_small(const char *target, const char *stage, List *columns,
				   List *pk, bool soft, int64 *inserted)
{
	StringInfoData sql;
	int64		updated;
	int			nest;

	/*
	 * (An UPDATE would skip rows a row-level security policy hides, without
	 * a word: targets with policies in force for the owner are refused
	 * before any write, apply_check_writable.)
	 */
	progress_phase("applying");
	if (citus_target(target))
		return citus_upsert(target, stage, columns, pk, soft, false, inserted);
	nest = guard_plan_probes();
	if (!target_has_rules(target))
	{
		updated = merge_small(target, stage, columns, pk, soft, inserted);
		guard_end(nest);
		return updated;
	}
	initStringInfo(&sql);
	appendStringInfo(&sql, "UPDATE %s AS t SET ", target);
	append_set_list(&sql, columns, "s", soft);
	appendStringInfo(&sql, " FROM %s s WHERE ", stage);
	append_key_match(&sql, pk, "t", "s");
	appendStringInfoString(&sql, " AND NOT ");
	append_row_image(&sql, columns, "t", soft ? "t._dbsync_deleted" : NULL);
	appendStringInfoString(&sql, " OPERATOR(pg_catalog.*=) ");
	append_row_image(&sql, columns, "s", soft ? "false" : NULL);
	spi_exec(sql.data, SPI_OK_UPDATE);
	updated = (int64) SPI_processed;

	resetStringInfo(&sql);
	appendStringInfo(&sql, "INSERT INTO %s ", target);
	append_insert_lists(&sql, columns, soft, false);
	appendStringInfoString(&sql, " SELECT ");
	{
		ListCell   *lc;

		foreach(lc, columns)
			appendStringInfo(&sql, "s.%s, ", quote_identifier(((RemoteColumn *) lfirst(lc))->name));
	}
	appendStringInfo(&sql, "pg_catalog.now()%s FROM %s s WHERE NOT EXISTS "
					 "(SELECT FROM %s x WHERE ", soft ? ", false" : "", stage, target);
	append_key_match(&sql, pk, "x", "s");
	appendStringInfoChar(&sql, ')');
	spi_exec(sql.data, SPI_OK_INSERT);
	*inserted = (int64) SPI_processed;
	guard_end(nest);
	return updated + *inserted;
}
