/*-------------------------------------------------------------------------
 * apply.c
 *	  Local side of a sync: the target table (create, adopt, follow the
 *	  source's columns and key, check the owner may write it) and small
 *	  query helpers.  Staging and COPY are in stage.c, the statements that
 *	  apply a batch in merge.c.
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
#include "access/xact.h"
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


void
spi_exec(const char *sql, int expect)
{
	int			rc;

	guard_repin();
	rc = SPI_execute(sql, false, 0);

	if (rc != expect)
		elog(ERROR, "dbsync statement failed (%s): %s",
			 SPI_result_code_string(rc), sql);
}

/*
 * Run sql with text parameters $1..$n (a NULL pointer is SQL NULL), at most
 * limit rows (0: all); returns SPI's result code.
 */
static int
spi_run_args(const char *sql, int nargs, const char **args, long limit)
{
	Oid			types[FUNC_MAX_ARGS];
	Datum		values[FUNC_MAX_ARGS];
	char		nulls[FUNC_MAX_ARGS] = {0};
	int			i;

	Assert(nargs <= FUNC_MAX_ARGS);
	guard_repin();
	for (i = 0; i < nargs; i++)
	{
		types[i] = TEXTOID;
		values[i] = args[i] ? CStringGetTextDatum(args[i]) : (Datum) 0;
		nulls[i] = args[i] ? ' ' : 'n';
	}
	return SPI_execute_with_args(sql, nargs, types, values, nulls, false, limit);
}

/* Run a statement with text parameters $1..$n. */
void
spi_exec_args(const char *sql, int nargs, const char **args)
{
	int			rc = spi_run_args(sql, nargs, args, 0);

	if (rc < 0)
		elog(ERROR, "dbsync statement failed (%s): %s", SPI_result_code_string(rc), sql);
}

/* "a, b" of names, quoted where needed, for messages. */
char *
apply_name_list_text(List *names)
{
	StringInfoData buf;

	initStringInfo(&buf);
	append_name_list(&buf, names, "");
	return buf.data;
}

char *
target_name(SourceConfig *cfg, const char *table)
{
	return psprintf("%s.%s", quote_identifier(cfg->target_schema),
					quote_identifier(table));
}

static List *
local_columns(Oid relid)
{
	List	   *result = NIL;
	Relation	rel = table_open(relid, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped)
			result = lappend(result, pstrdup(NameStr(att->attname)));
	}
	table_close(rel, AccessShareLock);
	return result;
}

bool
name_in_list(List *list, const char *name)
{
	ListCell   *lc;

	foreach(lc, list)
	{
		if (strcmp(lfirst(lc), name) == 0)
			return true;
	}
	return false;
}

void
append_name_list(StringInfo buf, List *names, const char *prefix)
{
	ListCell   *lc;
	bool		first = true;

	foreach(lc, names)
	{
		appendStringInfo(buf, "%s%s%s", first ? "" : ", ", prefix,
						 quote_identifier(lfirst(lc)));
		first = false;
	}
}

/* Local (type, typmod) of an attribute, or InvalidOid. */
static Oid
local_column_type(Relation rel, const char *name, int32 *typmod)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
		{
			*typmod = att->atttypmod;
			return att->atttypid;
		}
	}
	return InvalidOid;
}

/*
 * Is old -> new a widening that keeps every value: the same type with a
 * larger or no length / precision limit, or an implicit cast (int -> bigint,
 * real -> double precision, varchar -> text ...)?
 */
static bool
is_widening(Oid oldtype, int32 oldmod, Oid newtype, int32 newmod)
{
	Oid			funcid;

	if (oldtype == newtype)
	{
		if (newmod == -1)
			return true;
		if (oldmod == -1)
			return false;
		if (oldtype == NUMERICOID)
		{
			int			op = ((oldmod - VARHDRSZ) >> 16) & 0xffff;
			int			os = (oldmod - VARHDRSZ) & 0xffff;
			int			np = ((newmod - VARHDRSZ) >> 16) & 0xffff;
			int			ns = (newmod - VARHDRSZ) & 0xffff;

			return ns >= os && np - ns >= op - os;
		}
		return newmod >= oldmod;
	}
	/* to a type with a limit: only the pairs known to keep every value */
	if (newmod != -1)
	{
		int			digits = oldtype == INT2OID ? 5 : oldtype == INT4OID ? 10 :
			oldtype == INT8OID ? 19 : 0;

		if (newtype == NUMERICOID && digits > 0)
			return (((newmod - VARHDRSZ) >> 16) & 0xffff) -
				((newmod - VARHDRSZ) & 0xffff) >= digits;
		if (newtype == VARCHAROID && oldtype == BPCHAROID && oldmod != -1)
			return newmod >= oldmod;
		return false;			/* text -> varchar(5) casts implicitly, but narrows */
	}
	return find_coercion_pathway(newtype, oldtype, COERCION_IMPLICIT, &funcid) != COERCION_PATH_NONE;
}

/*
 * Would the source's values, read as text into the kept local type, mean
 * something else there?  timestamp <-> timestamptz: a wall clock read as
 * an instant in UTC, or the other way round.
 */
static bool
reinterprets_values(Oid oldtype, Oid newtype)
{
	return (oldtype == TIMESTAMPOID && newtype == TIMESTAMPTZOID) ||
		(oldtype == TIMESTAMPTZOID && newtype == TIMESTAMPOID);
}

/* Primary key column names of a local table, in key order (NIL: none). */
static List *
local_primary_key(Relation rel)
{
	Oid			indexoid = RelationGetPrimaryKeyIndex(rel);
	List	   *result = NIL;
	Relation	idx;
	int			i;

	if (!OidIsValid(indexoid))
		return NIL;
	idx = index_open(indexoid, AccessShareLock);
	for (i = 0; i < idx->rd_index->indnkeyatts; i++)
	{
		AttrNumber	attno = idx->rd_index->indkey.values[i];

		result = lappend(result,
						 pstrdup(NameStr(TupleDescAttr(RelationGetDescr(rel), attno - 1)->attname)));
	}
	index_close(idx, AccessShareLock);
	return result;
}

bool
same_names(List *a, List *b)
{
	ListCell   *la;
	ListCell   *lb;

	if (list_length(a) != list_length(b))
		return false;
	forboth(la, a, lb, b)
	{
		if (strcmp(lfirst(la), lfirst(lb)) != 0)
			return false;
	}
	return true;
}

/* Delete the rows that hold NULLs or duplicates in the new key pk. */
static void
delete_key_conflicts(const char *target, List *pk)
{
	StringInfoData sql;
	ListCell   *lc;

	initStringInfo(&sql);
	appendStringInfo(&sql, "DELETE FROM %s WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT d.ctid FROM "
					 "(SELECT t.ctid, pg_catalog.count(*) OVER (PARTITION BY ", target);
	append_name_list(&sql, pk, "t.");
	appendStringInfo(&sql, ") AS n FROM %s t) d WHERE d.n OPERATOR(pg_catalog.>) 1))", target);
	foreach(lc, pk)
		appendStringInfo(&sql, " OR %s IS NULL", quote_identifier(lfirst(lc)));
	spi_exec(sql.data, SPI_OK_DELETE);
}

/*
 * Give the target the primary key now in force at the source.  Rows
 * mirrored under the old key may hold NULLs or duplicates in the new one:
 * those rows (only those) are removed first, and the caller re-reads the
 * whole table in this transaction, so every row the source still has is
 * back when it commits.
 */
static void
rekey_target(Oid relid, const char *target, const char *pkname, List *pk)
{
	StringInfoData sql;

	citus_check_new_key(relid, target, pk);
	if (pkname)
		spi_exec(psprintf("ALTER TABLE %s DROP CONSTRAINT %s", target,
						  quote_identifier(pkname)), SPI_OK_UTILITY);
	if (pk == NIL)
		return;
	/* a ctid names no row across Citus shards */
	if (citus_partmethod(relid) != 0)
		citus_delete_key_conflicts(target, pk);
	else
		delete_key_conflicts(target, pk);
	initStringInfo(&sql);
	appendStringInfo(&sql, "ALTER TABLE %s ADD PRIMARY KEY (", target);
	append_name_list(&sql, pk, "");
	appendStringInfoChar(&sql, ')');
	spi_exec(sql.data, SPI_OK_UTILITY);
}

/*
 * Bring an existing target in line with the source: widen column types that
 * were widened there, and use the primary key now in force.  Sets
 * *reshaped when a column type or the key changed (the values or the key
 * the state was made with no longer hold: the caller re-reads the table).
 * Returns a note on what could not be done (NULL when all is in line).
 */
bool
apply_is_empty(const char *target)
{
	char	   *v = apply_query_value(psprintf("SELECT NOT EXISTS (SELECT 1 FROM %s)", target));

	return v && strcmp(v, "t") == 0;
}

static char *
align_existing_target(const char *target, Oid relid, RemoteTable *rt, List *pk,
					  DeletesMode deletes, bool *reshaped)
{
	Relation	rel = table_open(relid, AccessShareLock);
	List	   *alters = NIL;
	List	   *localpk = local_primary_key(rel);
	char	   *pkname = NULL;
	StringInfoData note;
	ListCell   *lc;

	initStringInfo(&note);
	foreach(lc, rt->columns)
	{
		RemoteColumn *col = lfirst(lc);
		int32		oldmod;
		int32		newmod;
		Oid			oldtype = local_column_type(rel, col->name, &oldmod);
		Oid			newtype;

		if (!OidIsValid(oldtype))
			continue;
		parseTypeString(col->local_type, &newtype, &newmod, false);
		if (oldtype == newtype && oldmod == newmod)
			continue;
		if (is_widening(oldtype, oldmod, newtype, newmod))
		{
			citus_check_type_change(relid, target, col->name);
			alters = lappend(alters, psprintf("ALTER TABLE %s ALTER COLUMN %s TYPE %s",
											  target, quote_identifier(col->name),
											  col->local_type));
		}
		else if (reinterprets_values(oldtype, newtype) ||
				 (name_in_list(pk, col->name) && !is_widening(newtype, newmod, oldtype, oldmod)))
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("column \"%s\" of table %s is %s at the source but %s locally",
							col->name, target, col->local_type,
							format_type_with_typemod(oldtype, oldmod)),
					 errdetail("%s", name_in_list(pk, col->name) ?
							   "It is a key column, and the local type cannot hold every source value exactly: keys would no longer match the rows they stand for." :
							   "The source's values, read into the local type, would mean other instants."),
					 errhint("Change the local column to the source's type (ALTER TABLE %s ALTER COLUMN %s TYPE %s USING ...) and run dbsync_resync(), or drop the local table to have it loaded again.",
							 target, quote_identifier(col->name), col->local_type)));
		else
			appendStringInfo(&note, "%scolumn \"%s\" is %s at the source but %s locally; local type kept",
							 note.len ? "; " : "", col->name, col->local_type,
							 format_type_with_typemod(oldtype, oldmod));
	}
	if (localpk != NIL && !same_names(localpk, pk))
		pkname = get_rel_name(RelationGetPrimaryKeyIndex(rel));
	table_close(rel, AccessShareLock);

	foreach(lc, alters)
		spi_exec(lfirst(lc), SPI_OK_UTILITY);
	if (alters != NIL)
		*reshaped = true;
	if (!same_names(localpk, pk))
	{
		if (deletes != DELETES_HARD && localpk != NIL && pk != NIL &&
			!apply_is_empty(target))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("primary key of table %s changed at the source", target),
					 errdetail("With the deletes option set to %s, the table keeps rows the source no longer has; they cannot be given the new key, and re-keying would lose them.",
							   deletes == DELETES_SOFT ? "soft" : "ignore"),
					 errhint("Keep syncing with the old key: SELECT dbsync_set_table(server, table, primary_key => '{...}'); or save those rows elsewhere and set deletes 'hard' for one run.")));
		rekey_target(relid, target, pkname, pk);
		*reshaped = true;
	}
	CommandCounterIncrement();
	return note.len ? note.data : NULL;
}

/* CREATE TABLE for a new target; returns its OID. */
static Oid
create_target(SourceConfig *cfg, RemoteTable *rt, List *pk, bool soft)
{
	StringInfoData sql;
	ListCell   *lc;

	initStringInfo(&sql);
	appendStringInfo(&sql, "CREATE TABLE %s (", target_name(cfg, rt->name));
	foreach(lc, rt->columns)
	{
		RemoteColumn *col = lfirst(lc);

		appendStringInfo(&sql, "%s %s%s, ", quote_identifier(col->name),
						 col->local_type,
						 name_in_list(pk, col->name) ? " NOT NULL" : "");
	}
	appendStringInfoString(&sql, "_dbsync_synced_at pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now()");
	if (soft)
		appendStringInfoString(&sql, ", _dbsync_deleted pg_catalog.bool NOT NULL DEFAULT false");
	if (pk != NIL)
	{
		appendStringInfoString(&sql, ", PRIMARY KEY (");
		append_name_list(&sql, pk, "");
		appendStringInfoChar(&sql, ')');
	}
	appendStringInfoChar(&sql, ')');
	spi_exec(sql.data, SPI_OK_UTILITY);
	CommandCounterIncrement();
	return RangeVarGetRelid(makeRangeVar(cfg->target_schema, rt->name, -1),
							NoLock, false);
}

/*
 * dbsync writes only into the table it created (or the owner adopted) for
 * this server and table: not into a user's table or another server's that
 * happens to carry the target's name.
 */
static void
check_target_is_ours(SourceConfig *cfg, RemoteTable *rt, Oid relid,
					 Oid recorded)
{
	char	   *holder;

	if (relid == recorded)
		return;
	holder = catalog_target_user(relid);
	ereport(ERROR,
			(errcode(ERRCODE_DUPLICATE_TABLE),
			 errmsg("table %s was not created by dbsync for table \"%s\" of server \"%s\"",
					target_name(cfg, rt->name), rt->name, cfg->server_name),
			 holder ?
			 errdetail("It is the target of table %s; dbsync writes only into the table it created for a server's table.", holder) :
			 errdetail("dbsync writes only into the table it created for a server's table, never into one it finds under that name."),
			 errhint("Drop or rename that table, or set the server's target_schema to another schema; if the server's owner owns it and it should receive these rows, run SELECT dbsync_adopt_table(%s, %s).",
					 quote_literal_cstr(cfg->server_name), quote_literal_cstr(rt->name))));
}

/*
 * The owner may write the target exactly as dbsync does: owns it (drift
 * DDL), has INSERT, UPDATE, DELETE and SELECT on it, and no row-level
 * security policy applies to it (dbsync never writes through or around one).
 */
/*
 * The relation under a target's name, locked (so that it cannot be dropped
 * or renamed while it is checked and written), or InvalidOid.
 */
Oid
apply_lock_target(const char *schema, const char *table)
{
	return RangeVarGetRelidExtended(makeRangeVar(pstrdup(schema), pstrdup(table), -1),
									AccessShareLock, RVR_MISSING_OK, NULL, NULL);
}

void
apply_check_writable(Oid relid)
{
	AclMode		need = ACL_SELECT | ACL_INSERT | ACL_UPDATE | ACL_DELETE;
	char		citus;
	char	   *relname = get_rel_name(relid);
	char	   *nspname = get_namespace_name(get_rel_namespace(relid));
	char	   *name;

	if (relname == NULL || nspname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("target table %u no longer exists", relid),
				 errhint("It was dropped while the run checked it; run the sync again.")));
	name = quote_qualified_identifier(nspname, relname);
	if (get_rel_relkind(relid) != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("target %s is not a plain table", name),
				 errhint("Drop it, or set the server's target_schema to another schema.")));
	if (has_subclass(relid))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("target table %s has inheritance children", name),
				 errdetail("dbsync mirrors one table; it does not write its children's rows."),
				 errhint("ALTER TABLE child NO INHERIT %s, or set the server's target_schema to another schema.",
						 name)));
	if (!pg_class_ownercheck(relid, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("target table %s is not owned by the server's owner \"%s\"",
						name, GetUserNameFromId(GetUserId(), false)),
				 errhint("Syncs run as the server's owner, who must own its target tables: ALTER TABLE %s OWNER TO %s.",
						 name, quote_identifier(GetUserNameFromId(GetUserId(), false)))));
	if (pg_class_aclmask(relid, GetUserId(), need, ACLMASK_ALL) != need)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", name),
				 errdetail("Syncs run as the server's owner \"%s\", who needs SELECT, INSERT, UPDATE and DELETE on it.",
						   GetUserNameFromId(GetUserId(), false)),
				 errhint("GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %s.",
						 name, quote_identifier(GetUserNameFromId(GetUserId(), false)))));
	citus = citus_partmethod(relid);
	if (citus == 'a' || citus == 'r')
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("target table %s is a Citus append- or range-distributed table", name),
				 errdetail("dbsync writes Citus hash-distributed, reference and local tables, not tables whose shards the user fills one by one."),
				 errhint("Make it hash-distributed (SELECT alter_distributed_table(%s, distribution_column := '...'), then SELECT dbsync_adopt_table(server, table)), or exclude the table from the server's tables.",
						 quote_literal_cstr(name))));
	if (check_enable_rls(relid, InvalidOid, true) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("target table %s has row-level security enforced for the server's owner", name),
				 errdetail("dbsync mirrors whole tables; it neither writes through nor bypasses row-level security policies."),
				 errhint("ALTER TABLE %s NO FORCE ROW LEVEL SECURITY (or DISABLE ROW LEVEL SECURITY), or exclude the table from the server's tables.",
						 name)));
}

/*
 * Create the target schema and table when missing; add columns that appeared
 * at the source.  Columns gone at the source stay (their data is kept).
 * A table found under the target's name must be the one recorded for this
 * server and table (st->target_relid).  Returns the target's OID and the
 * names of added columns; *created when the table is new (state about an
 * earlier target no longer holds), *reshaped when its key or a column type
 * was changed to follow the source.
 */
Oid
apply_prepare_target(SourceConfig *cfg, RemoteTable *rt, List *pk, bool soft,
					 Oid recorded, List **added, char **note, bool *created,
					 bool *reshaped)
{
	char	   *target = target_name(cfg, rt->name);
	Oid			nsp = get_namespace_oid(cfg->target_schema, true);
	Oid			relid = InvalidOid;
	ListCell   *lc;
	char	   *layout;

	*added = NIL;
	*note = NULL;
	*created = false;
	*reshaped = false;
	if (!OidIsValid(nsp))
		spi_exec(psprintf("CREATE SCHEMA IF NOT EXISTS %s",
						  quote_identifier(cfg->target_schema)), SPI_OK_UTILITY);
	else
		relid = apply_lock_target(cfg->target_schema, rt->name);

	if (!OidIsValid(relid))
	{
		relid = create_target(cfg, rt, pk, soft);
		catalog_save_target(cfg->server_name, rt->name, relid);
		*note = citus_apply_layout(cfg, rt->name, relid, pk);
		*created = true;
		return relid;
	}
	check_target_is_ours(cfg, rt, relid, recorded);
	apply_check_writable(relid);

	/* schema drift: add what is new at the source */
	{
		List	   *have = local_columns(relid);

		foreach(lc, rt->columns)
		{
			RemoteColumn *col = lfirst(lc);

			if (name_in_list(have, col->name))
				continue;
			spi_exec(psprintf("ALTER TABLE %s ADD COLUMN %s %s", target,
							  quote_identifier(col->name), col->local_type),
					 SPI_OK_UTILITY);
			*added = lappend(*added, col->name);
		}
		/* an adopted table may lack dbsync's own column */
		if (!name_in_list(have, "_dbsync_synced_at"))
			spi_exec(psprintf("ALTER TABLE %s ADD COLUMN _dbsync_synced_at pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now()",
							  target), SPI_OK_UTILITY);
		if (soft && !name_in_list(have, "_dbsync_deleted"))
			spi_exec(psprintf("ALTER TABLE %s ADD COLUMN _dbsync_deleted pg_catalog.bool NOT NULL DEFAULT false",
							  target), SPI_OK_UTILITY);
		CommandCounterIncrement();
		*note = align_existing_target(target, relid, rt, pk, cfg->deletes, reshaped);
		layout = citus_apply_layout(cfg, rt->name, relid, pk);
		if (layout)
			*note = *note ? psprintf("%s; %s", *note, layout) : layout;
	}

	/*
	 * Rows are staged and compared in the target's own column types (a type
	 * kept locally after a change at the source wins).
	 */
	{
		Relation	rel = table_open(relid, AccessShareLock);

		foreach(lc, rt->columns)
		{
			RemoteColumn *col = lfirst(lc);
			int32		typmod;
			Oid			typid = local_column_type(rel, col->name, &typmod);

			if (OidIsValid(typid))
				col->local_type = format_type_with_typemod(typid, typmod);
		}
		table_close(rel, AccessShareLock);
	}
	return relid;
}

/*
 * Run a one-value query with text parameters $1..$n (a NULL pointer is SQL
 * NULL); returns NULL for a NULL or no row.
 */
char *
apply_query_value_args(const char *sql, int nargs, const char **args)
{
	int			rc = spi_run_args(sql, nargs, args, 1);

	if (rc != SPI_OK_SELECT)
		elog(ERROR, "dbsync query failed (%s): %s", SPI_result_code_string(rc), sql);
	if (SPI_processed == 0)
		return NULL;
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/* Run a one-value query; returns NULL for a NULL or no row. */
char *
apply_query_value(const char *sql)
{
	int			rc;

	guard_repin();
	rc = SPI_execute(sql, false, 1);

	if (rc != SPI_OK_SELECT)
		elog(ERROR, "dbsync query failed (%s): %s", SPI_result_code_string(rc), sql);
	if (SPI_processed == 0)
		return NULL;
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}
