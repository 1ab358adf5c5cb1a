/*-------------------------------------------------------------------------
 * citus.c
 *	  Targets on a Citus coordinator: which targets Citus manages, the
 *	  layout the server's options ask for (distributed, reference), and the
 *	  apply statements in forms Citus can plan.
 *
 * Citus reads a distributed or reference table from its shards, never from
 * the coordinator's own ("shell") relation: rows COPYed into that relation
 * directly would not be seen.  So a Citus target is always written by SQL
 * through the planner: the batch is staged in a local temporary table as
 * everywhere, and applied with INSERT .. SELECT .. ON CONFLICT (Citus
 * repartitions the staged rows to the shards and runs the upsert on each,
 * in parallel) and deletes whose local side is a materialized CTE (Citus
 * sends its result to the workers).  Correlated subqueries between a local
 * stage and a distributed table, and ctid arithmetic, are avoided: Citus
 * cannot plan the first, and a ctid means nothing across shards.
 *
 * Runs as the server owner, with SPI connected by the caller.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "nodes/makefuncs.h"
#include "parser/parse_relation.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/regproc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "apply.h"

/*
 * Citus's partition method of a table ('h' hash-distributed, 'n' reference
 * or Citus-local, 'a'/'r' append/range), or 0 when Citus does not manage it
 * (or is not installed).  Its metadata is pg_catalog.pg_dist_partition
 * (logicalrelid, partmethod, ...): read directly, no SPI (callers may hold
 * SPI results).
 */
char
citus_partmethod(Oid relid)
{
	Oid			meta;
	Oid			index;
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;
	char		method = 0;

	/* a stage (temporary) is never Citus's: no lookup per COPY chunk */
	if (get_rel_relkind(relid) == '\0' ||
		get_rel_persistence(relid) == RELPERSISTENCE_TEMP ||
		!OidIsValid(get_extension_oid("citus", true)))
		return 0;
	meta = get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE);
	if (!OidIsValid(meta))
		return 0;
	/* by Citus's index on logicalrelid when it is there (large clusters) */
	index = get_relname_relid("pg_dist_partition_logical_relid_index", PG_CATALOG_NAMESPACE);
	rel = table_open(meta, AccessShareLock);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, index, OidIsValid(index), NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, 2, RelationGetDescr(rel), &isnull);

		method = isnull ? '?' : DatumGetChar(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return method;
}

/* Is the target (a quoted, qualified name) a table Citus manages? */
bool
citus_target(const char *target)
{
	Oid			relid = RangeVarGetRelid(makeRangeVarFromNameList(stringToQualifiedNameList(target)),
										 NoLock, true);

	return OidIsValid(relid) && citus_partmethod(relid) != 0;
}

/* The distribution column of a hash-distributed table, else NULL. */
static char *
distribution_column(Oid relid)
{
	const char *arg = psprintf("%u", relid);

	return apply_query_value_args("SELECT pg_catalog.column_to_column_name(logicalrelid, partkey) "
								  "FROM pg_catalog.pg_dist_partition "
								  "WHERE logicalrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid "
								  "AND partmethod OPERATOR(pg_catalog.=) 'h'",
								  1, &arg);
}

/*
 * The value of a "table.value" list option for this table (the part after
 * "table."), or NULL.
 */
static char *
dotted_option(List *items, const char *table)
{
	ListCell   *lc;
	size_t		len = strlen(table);

	foreach(lc, items)
	{
		const char *item = lfirst(lc);

		if (strncmp(item, table, len) == 0 && item[len] == '.' && item[len + 1])
			return pstrdup(item + len + 1);
	}
	return NULL;
}

/* 'h' (distributed), 'n' (reference) or 0: the layout asked for table. */
static char
wanted_layout(SourceConfig *cfg, const char *table)
{
	bool		dist = name_matches_any(cfg->distributed_tables, table);
	bool		ref = name_matches_any(cfg->reference_tables, table);

	if (dist && ref)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("table \"%s\" of server \"%s\" matches both distributed_tables and reference_tables",
						table, cfg->server_name),
				 errhint("ALTER SERVER %s OPTIONS (SET distributed_tables '...') so that each table has one layout.",
						 quote_identifier(cfg->server_name))));
	return dist ? 'h' : ref ? 'n' : 0;
}

/*
 * The colocate_with argument of create_distributed_table() for table:
 * 'default', 'none', or the target of the table named in the server option
 * colocate_with, which must be a distributed table already.
 */
static const char *
colocation_of(SourceConfig *cfg, const char *table, const char *name)
{
	char	   *with = dotted_option(cfg->colocate_with, table);
	char	   *withname;
	Oid			relid;

	if (with == NULL)
		return "default";
	if (strcmp(with, "none") == 0)
		return with;
	withname = quote_qualified_identifier(cfg->target_schema, with);
	relid = RangeVarGetRelid(makeRangeVar(cfg->target_schema, with, -1), NoLock, true);
	if (!OidIsValid(relid) || citus_partmethod(relid) != 'h')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table %s to co-locate %s with is not a distributed table", withname, name),
				 errhint("Put \"%s\" in the server option distributed_tables and sync it first (a run of the whole server syncs it before \"%s\"), or correct the server option colocate_with.",
						 with, table)));
	return withname;
}

/* create_distributed_table() for a target, by the column the options say */
static void
distribute_target(SourceConfig *cfg, const char *table, const char *name, List *pk)
{
	const char *args[3];

	args[0] = name;
	args[1] = dotted_option(cfg->distribution_columns, table);
	if (args[1] == NULL && pk == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("table %s has no primary key to distribute it by", name),
				 errhint("Name its distribution column: ALTER SERVER %s OPTIONS (ADD distribution_columns '%s.column'), or make it a reference table.",
						 quote_identifier(cfg->server_name), table)));
	if (args[1] == NULL)
		args[1] = linitial(pk);
	if (pk != NIL && !name_in_list(pk, args[1]))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("distribution column \"%s\" of table %s is not in its primary key", args[1], name),
				 errdetail("Citus enforces a primary key only when it includes the distribution column."),
				 errhint("Name a column of the primary key (%s) in the server option distribution_columns.",
						 apply_name_list_text(pk))));
	args[2] = colocation_of(cfg, table, name);
	spi_exec_args("SELECT pg_catalog.create_distributed_table($1::pg_catalog.regclass, $2, "
				  "colocate_with => $3)", 3, args);
}

/*
 * Give the target the layout the server's options ask for: a plain table
 * (new, or one dbsync filled before) becomes a distributed or reference
 * table.  A table Citus already manages keeps its layout (changing it is
 * Citus's alter_distributed_table / undistribute_table).  Returns a note
 * for the run's message, or NULL.
 */
char *
citus_apply_layout(SourceConfig *cfg, const char *table, Oid relid, List *pk)
{
	char		want = wanted_layout(cfg, table);
	char	   *name = quote_qualified_identifier(cfg->target_schema, table);
	bool		filled;
	int			nest;

	if (want == 0 || citus_partmethod(relid) != 0)
		return NULL;
	if (!OidIsValid(get_extension_oid("citus", true)))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("server \"%s\" asks for a Citus %s table, but Citus is not installed in this database",
						cfg->server_name, want == 'h' ? "distributed" : "reference"),
				 errhint("CREATE EXTENSION citus on the coordinator, or drop the server options distributed_tables and reference_tables.")));
	filled = !apply_is_empty(name);
	/* Citus's notices ("To remove the local data, run ...") are done here */
	nest = NewGUCNestLevel();
	(void) set_config_option("client_min_messages", "warning", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	if (want == 'n')
		spi_exec_args("SELECT pg_catalog.create_reference_table($1::pg_catalog.regclass)", 1,
					  (const char **) &name);
	else
		distribute_target(cfg, table, name, pk);
	/* Citus copied the rows to the shards; the shell keeps a stale copy */
	if (filled)
		spi_exec_args("SELECT pg_catalog.truncate_local_data_after_distributing_table($1::pg_catalog.regclass)",
					  1, (const char **) &name);
	AtEOXact_GUC(false, nest);
	CommandCounterIncrement();
	return psprintf("target made a Citus %s table", want == 'h' ? "distributed" : "reference");
}

/*
 * The order a run syncs the server's tables in: a table co-located with
 * another (colocate_with) after that one, which must be distributed first.
 */
List *
citus_order_tables(SourceConfig *cfg, List *names)
{
	List	   *ordered = NIL;
	int			depth;
	int			n = list_length(names);

	if (cfg->colocate_with == NIL)
		return names;
	/* by the length of each table's chain of partners among names */
	for (depth = 0; depth <= n; depth++)
	{
		ListCell   *lc;

		foreach(lc, names)
		{
			const char *t = lfirst(lc);
			int			d = 0;

			while (d <= n)
			{
				char	   *with = dotted_option(cfg->colocate_with, t);

				if (with == NULL || !name_in_list(names, with) || strcmp(with, t) == 0)
					break;
				t = with;
				d++;
			}
			if (d == depth || (depth == n && d > n))
				ordered = lappend(ordered, lfirst(lc));
		}
	}
	return ordered;
}

/*
 * Delete the target rows with NULLs or duplicates in the new key pk (as
 * delete_key_conflicts does by ctid on a plain table): the duplicated keys
 * are collected on the coordinator, then deleted by value.
 */
void
citus_delete_key_conflicts(const char *target, List *pk)
{
	StringInfoData sql;
	ListCell   *lc;

	initStringInfo(&sql);
	appendStringInfo(&sql, "DELETE FROM %s t WHERE (", target);
	append_name_list(&sql, pk, "t.");
	appendStringInfoString(&sql, ") OPERATOR(pg_catalog.=) ANY (SELECT ");
	append_name_list(&sql, pk, "x.");
	appendStringInfo(&sql, " FROM %s x GROUP BY ", target);
	append_name_list(&sql, pk, "x.");
	appendStringInfoString(&sql, " HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 1)");
	foreach(lc, pk)
		appendStringInfo(&sql, " OR t.%s IS NULL", quote_identifier(lfirst(lc)));
	spi_exec(sql.data, SPI_OK_DELETE);
}

/*
 * Citus does not change the type of a distribution column: say so, with
 * the way out, before ALTER TABLE fails with Citus's own words.
 */
void
citus_check_type_change(Oid relid, const char *target, const char *column)
{
	char	   *col;

	if (citus_partmethod(relid) != 'h')
		return;
	col = distribution_column(relid);
	if (col && strcmp(col, column) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("type of distribution column \"%s\" of table %s changed at the source", column, target),
				 errdetail("Citus cannot change the type of a distribution column in place."),
				 errhint("SELECT undistribute_table(%s); then ALTER TABLE ... ALTER COLUMN %s TYPE ..., SELECT dbsync_adopt_table(server, table), and the next run distributes it again.",
						 quote_literal_cstr(target), quote_identifier(column))));
}

/*
 * A distributed target can take a new primary key only when it still holds
 * the distribution column (Citus enforces unique constraints per shard).
 */
void
citus_check_new_key(Oid relid, const char *target, List *pk)
{
	char	   *col;

	if (pk == NIL || citus_partmethod(relid) != 'h')
		return;
	col = distribution_column(relid);
	if (col && !name_in_list(pk, col))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("new primary key (%s) of table %s lacks its distribution column \"%s\"",
						apply_name_list_text(pk), target, col),
				 errdetail("Citus enforces a primary key only when it includes the distribution column."),
				 errhint("Redistribute the table by a key column first: SELECT alter_distributed_table(%s, distribution_column := '...'), then SELECT dbsync_adopt_table(server, table); or keep the old key with dbsync_set_table(server, table, primary_key => '{...}').",
						 quote_literal_cstr(target))));
}

/* "s.c1, s.c2, ..." of the columns but the one named skip (NULL: none) */
static void
append_columns_but(StringInfo buf, List *columns, const char *prefix, const char *skip)
{
	ListCell   *lc;
	bool		first = true;

	foreach(lc, columns)
	{
		const char *name = ((RemoteColumn *) lfirst(lc))->name;

		if (skip && strcmp(name, skip) == 0)
			continue;
		appendStringInfo(buf, "%s%s%s", first ? "" : ", ", prefix, quote_identifier(name));
		first = false;
	}
}

/* "s.c1, s.c2, ..." of the columns */
static void
append_columns(StringInfo buf, List *columns, const char *prefix)
{
	append_columns_but(buf, columns, prefix, NULL);
}

/*
 * The upsert of apply_upsert for a Citus target: INSERT .. SELECT from the
 * stage, ON CONFLICT DO UPDATE only where the row image differs (an
 * identical row is neither written nor locked).  record_image_eq() rather
 * than *=: Citus deparses the statement for its shards, and a
 * ROW()::record *= ROW()::record comes out there as a comparison column by
 * column.  (The compared rows start with a constant so that they are never
 * empty: a table of its distribution column only.)
 */
int64
citus_upsert(const char *target, const char *stage, List *columns, List *pk,
			 bool soft, bool dedupe, int64 *inserted)
{
	StringInfoData sql;
	ListCell   *lc;

	/*
	 * Citus does not update a distribution column: neither set nor compared
	 * (equal on conflict; only a binary-different spelling, numeric 1.10
	 * for 1.100, could differ, and it would be rewritten for ever).  Other
	 * key columns are set, so that such spellings converge.
	 */
	char	   *distcol = distribution_column(RangeVarGetRelid(makeRangeVarFromNameList(stringToQualifiedNameList(target)),
															   NoLock, false));

	initStringInfo(&sql);
	appendStringInfo(&sql, "WITH up AS (INSERT INTO %s AS t (", target);
	append_columns(&sql, columns, "");
	appendStringInfo(&sql, ", _dbsync_synced_at%s) SELECT ", soft ? ", _dbsync_deleted" : "");
	if (dedupe)
	{
		appendStringInfoString(&sql, "DISTINCT ON (");
		append_name_list(&sql, pk, "s.");
		appendStringInfoString(&sql, ") ");
	}
	append_columns(&sql, columns, "s.");
	appendStringInfo(&sql, ", pg_catalog.now()%s FROM %s s", soft ? ", false" : "", stage);
	append_conflict_head(&sql, pk, dedupe);
	foreach(lc, columns)
	{
		const char *c = quote_identifier(((RemoteColumn *) lfirst(lc))->name);

		if (distcol && strcmp(((RemoteColumn *) lfirst(lc))->name, distcol) == 0)
			continue;
		appendStringInfo(&sql, "%s = EXCLUDED.%s, ", c, c);
	}
	appendStringInfoString(&sql, "_dbsync_synced_at = EXCLUDED._dbsync_synced_at");
	if (soft)
		appendStringInfoString(&sql, ", _dbsync_deleted = false");
	appendStringInfoString(&sql, " WHERE NOT pg_catalog.record_image_eq(ROW(t._dbsync_synced_at IS NULL, ");
	append_columns_but(&sql, columns, "t.", distcol);
	if (soft)
		appendStringInfoString(&sql, ", t._dbsync_deleted");
	appendStringInfoString(&sql, "), ROW(false, ");
	append_columns_but(&sql, columns, "EXCLUDED.", distcol);
	if (soft)
		appendStringInfoString(&sql, ", false");
	appendStringInfoString(&sql, ")) RETURNING (t.xmax OPERATOR(pg_catalog.=) 0) AS ins) "
						   "SELECT pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE ins) FROM up");
	spi_exec(sql.data, SPI_OK_SELECT);
	{
		bool		isnull;
		int64		all = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc, 1, &isnull));
		int64		ins = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc, 2, &isnull));

		if (inserted)
			*inserted = ins;
		return all;
	}
}

/*
 * Insert every staged row (an initial load into an empty target, whose
 * keys cannot be there): no ON CONFLICT and no RETURNING, so that Citus
 * streams the rows to the shards in one pass (COPY) instead of through
 * intermediate results.  A key that is there after all (a writer of its
 * own) fails the statement: nothing is lost.
 */
void
citus_insert(const char *target, const char *stage, List *columns, bool soft)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfo(&sql, "INSERT INTO %s (", target);
	append_columns(&sql, columns, "");
	appendStringInfo(&sql, ", _dbsync_synced_at%s) SELECT ", soft ? ", _dbsync_deleted" : "");
	append_columns(&sql, columns, "s.");
	appendStringInfo(&sql, ", pg_catalog.now()%s FROM %s s", soft ? ", false" : "", stage);
	spi_exec(sql.data, SPI_OK_INSERT);
}

/*
 * apply_delete_missing for a Citus target, in two statements Citus plans
 * for distributed and reference tables alike: the target's keys (among
 * those matching filter) that the stage lacks, into a local table; then a
 * delete (or flag) of the target rows whose key is IN that table (an
 * uncorrelated subquery: Citus sends its result to the shards).
 */
int64
citus_delete_missing(const char *target, const char *keystage, List *pk,
					 bool soft, const char *filter)
{
	List	   *keycols = NIL;
	char	   *gone;
	StringInfoData sql;
	ListCell   *lc;
	int64		n;
	Relation	rel;

	/* the keys in the target's own column types */
	rel = table_openrv(makeRangeVarFromNameList(stringToQualifiedNameList(target)), AccessShareLock);
	foreach(lc, pk)
	{
		AttrNumber	att = attnameAttNum(rel, lfirst(lc), false);
		Form_pg_attribute a;

		if (att <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("key column \"%s\" is missing from table %s", (char *) lfirst(lc), target),
					 errhint("Run dbsync_resync() on the table, or give it back the column.")));
		a = TupleDescAttr(RelationGetDescr(rel), att - 1);
		keycols = lappend(keycols, stage_column(lfirst(lc),
												format_type_with_typemod(a->atttypid, a->atttypmod)));
	}
	table_close(rel, AccessShareLock);
	gone = apply_create_stage(keycols);
	initStringInfo(&sql);
	appendStringInfo(&sql, "INSERT INTO %s SELECT ", gone);
	append_name_list(&sql, pk, "t.");
	appendStringInfo(&sql, " FROM %s t WHERE %s%s%s EXCEPT SELECT ", target,
					 soft ? "NOT t._dbsync_deleted" : "true",
					 filter ? " AND " : "", filter ? filter : "");
	append_name_list(&sql, pk, "s.");
	appendStringInfo(&sql, " FROM %s s", keystage);
	spi_exec(sql.data, SPI_OK_INSERT);
	if (SPI_processed == 0)
	{
		apply_drop_stage(gone);
		return 0;
	}
	resetStringInfo(&sql);
	if (soft)
		appendStringInfo(&sql, "UPDATE %s t SET _dbsync_deleted = true, "
						 "_dbsync_synced_at = pg_catalog.now() WHERE NOT t._dbsync_deleted AND (", target);
	else
		appendStringInfo(&sql, "DELETE FROM %s t WHERE (", target);
	append_name_list(&sql, pk, "t.");
	appendStringInfoString(&sql, ") OPERATOR(pg_catalog.=) ANY (SELECT ");
	append_name_list(&sql, pk, "g.");
	appendStringInfo(&sql, " FROM %s g)", gone);
	spi_exec(sql.data, soft ? SPI_OK_UPDATE : SPI_OK_DELETE);
	n = (int64) SPI_processed;
	apply_drop_stage(gone);
	return n;
}

/* "SELECT count(*) FROM (a EXCEPT ALL b)" of the text images of rows */
static int64
multiset_excess(const char *a, const char *a_where, const char *b,
				const char *b_where, List *columns)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT pg_catalog.count(*) FROM (SELECT ");
	append_cmp_list(&sql, columns, "x");
	appendStringInfo(&sql, " FROM %s x%s EXCEPT ALL SELECT ", a, a_where);
	append_cmp_list(&sql, columns, "x");
	appendStringInfo(&sql, " FROM %s x%s) d", b, b_where);
	return strtoll(apply_query_value(sql.data), NULL, 10);
}

/*
 * apply_mirror_multiset for a Citus target (no key: a ctid names no row
 * across shards or replicas, and Citus cannot join a local stage in an
 * UPDATE or DELETE of a reference table).  The copies the target has too
 * many of and those it lacks are counted on the coordinator (rows compared
 * as text, as the local mirror does).  When the target only lacks copies
 * (or deletes are ignored), the lacking copies are inserted; when it has
 * copies the source no longer has, its live rows are deleted (or flagged)
 * and the staged rows inserted: Citus plans neither a ctid nor a join with
 * a local table in the UPDATE or DELETE of a reference table, nor a text
 * image (a STABLE cast) in a distributed one.  *inserted and *deleted are
 * the rows written.
 */
void
citus_mirror_multiset(const char *target, const char *stage, List *columns,
					  DeletesMode deletes, int64 *inserted, int64 *deleted)
{
	bool		soft = deletes == DELETES_SOFT;
	char	   *here = apply_create_stage(columns);
	StringInfoData sql;
	ListCell   *lc;
	int			i = 0;

	/*
	 * The target's live rows, copied here first: a row's text made on a
	 * worker would follow that worker's TimeZone, DateStyle ..., not the
	 * pinned settings of this session that made the stage's.
	 */
	initStringInfo(&sql);
	appendStringInfo(&sql, "INSERT INTO %s SELECT ", here);
	append_columns(&sql, columns, "x.");
	appendStringInfo(&sql, " FROM %s x%s", target, soft ? " WHERE NOT x._dbsync_deleted" : "");
	spi_exec(sql.data, SPI_OK_INSERT);
	*inserted = multiset_excess(stage, "", here, "", columns);
	*deleted = deletes == DELETES_IGNORE ? 0 :
		multiset_excess(here, "", stage, "", columns);
	if (*inserted == 0 && *deleted == 0)
	{
		apply_drop_stage(here);
		return;
	}

	resetStringInfo(&sql);
	appendStringInfo(&sql, "INSERT INTO %s (", target);
	append_columns(&sql, columns, "");
	appendStringInfoString(&sql, ", _dbsync_synced_at) SELECT ");
	if (*deleted == 0)
	{
		/* copies only added (or deletes ignored): insert what is lacking */
		foreach(lc, columns)
			appendStringInfo(&sql, "m.c%d::%s, ", ++i, ((RemoteColumn *) lfirst(lc))->local_type);
		appendStringInfoString(&sql, "pg_catalog.now() FROM (SELECT ");
		append_cmp_list(&sql, columns, "s");
		appendStringInfo(&sql, " FROM %s s EXCEPT ALL SELECT ", stage);
		append_cmp_list(&sql, columns, "x");
		appendStringInfo(&sql, " FROM %s x) m(", here);
		append_numbered(&sql, list_length(columns));
		appendStringInfoChar(&sql, ')');
		spi_exec(sql.data, SPI_OK_INSERT);
		*inserted = (int64) SPI_processed;
		apply_drop_stage(here);
		return;
	}
	/* copies gone at the source: the live rows replaced by the staged ones */
	append_columns(&sql, columns, "s.");
	appendStringInfo(&sql, ", pg_catalog.now() FROM %s s", stage);
	if (soft)
		spi_exec(psprintf("UPDATE %s SET _dbsync_deleted = true, _dbsync_synced_at = pg_catalog.now() "
						  "WHERE NOT _dbsync_deleted", target), SPI_OK_UPDATE);
	else
		spi_exec(psprintf("DELETE FROM %s", target), SPI_OK_DELETE);
	*deleted = (int64) SPI_processed;
	spi_exec(sql.data, SPI_OK_INSERT);
	*inserted = (int64) SPI_processed;
	apply_drop_stage(here);
}
