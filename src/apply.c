/*-------------------------------------------------------------------------
 * apply.c
 *	  Local side of a sync: target DDL, staging tables, COPY of the remote
 *	  row stream, and the set-based statements that apply a staged batch.
 *
 * Rows arrive as COPY text from a driver and go through PostgreSQL's own
 * COPY FROM machinery (BeginCopyFrom with a data-source callback, as
 * logical replication's table sync does): no per-row SPI.  A batch lands in
 * a temporary staging table and is applied with one INSERT .. ON CONFLICT
 * that skips rows which did not change (so an unchanged re-sync is a
 * compare, not a write), and one DELETE for rows gone at the source.
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

/* State of the COPY data-source callback (it takes no argument). */
static SourceConn *copy_conn = NULL;
static const char *copy_pending = NULL;
static int	copy_pending_len = 0;
static bool copy_eof = false;
static StringInfo copy_last_row = NULL;	/* last row streamed, COPY text */
static int	stage_counter = 0;

static void
spi_exec(const char *sql, int expect)
{
	int			rc;

	guard_repin();
	rc = SPI_execute(sql, false, 0);

	if (rc != expect)
		elog(ERROR, "dbsync statement failed (%s): %s",
			 SPI_result_code_string(rc), sql);
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

static void
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

/*
 * Give the target the primary key now in force at the source.  Rows
 * mirrored under the old key may hold NULLs or duplicates in the new one:
 * those rows (only those) are removed first, and the caller re-reads the
 * whole table in this transaction, so every row the source still has is
 * back when it commits.
 */
static void
rekey_target(const char *target, const char *pkname, List *pk)
{
	StringInfoData sql;
	ListCell   *lc;

	initStringInfo(&sql);
	if (pkname)
		spi_exec(psprintf("ALTER TABLE %s DROP CONSTRAINT %s", target,
						  quote_identifier(pkname)), SPI_OK_UTILITY);
	if (pk == NIL)
		return;
	appendStringInfo(&sql, "DELETE FROM %s WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT d.ctid FROM "
					 "(SELECT t.ctid, pg_catalog.count(*) OVER (PARTITION BY ", target);
	append_name_list(&sql, pk, "t.");
	appendStringInfo(&sql, ") AS n FROM %s t) d WHERE d.n OPERATOR(pg_catalog.>) 1))", target);
	foreach(lc, pk)
		appendStringInfo(&sql, " OR %s IS NULL", quote_identifier(lfirst(lc)));
	spi_exec(sql.data, SPI_OK_DELETE);
	resetStringInfo(&sql);
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
			alters = lappend(alters, psprintf("ALTER TABLE %s ALTER COLUMN %s TYPE %s",
											  target, quote_identifier(col->name),
											  col->local_type));
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
		rekey_target(target, pkname, pk);
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
		if (got >= minread && copy_pending_len == 0 && copy_conn->driver->row_errors)
			break;
		if (copy_pending_len == 0)
		{
			if (copy_eof ||
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
	}
	return got;
}

/*
 * Stream the rows of select_sql from the source straight into relation
 * "relname" (columns in the same order).  Returns the number of rows.
 */
uint64
apply_copy(SourceConn *conn, const char *select_sql, List *columns,
		   const char *relname, StringInfo last_row)
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
	conn->driver->stream_start(conn, select_sql, columns);
	copy_conn = conn;
	copy_pending = NULL;
	copy_pending_len = 0;
	copy_eof = false;
	copy_last_row = last_row;
	if (last_row)
		resetStringInfo(last_row);

	rel = table_openrv(rv, RowExclusiveLock);
	/* BeginCopyFrom checks nothing: check what COPY FROM would (DoCopy) */
	apply_check_writable(RelationGetRelid(rel));
	pstate = make_parsestate(NULL);
	pstate->p_sourcetext = select_sql;
	(void) addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock, NULL,
										 false, false);
	cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, copy_read_cb,
						   attnames, options);
	rows = CopyFrom(cstate);
	EndCopyFrom(cstate);
	free_parsestate(pstate);
	table_close(rel, NoLock);
	copy_conn = NULL;
	copy_last_row = NULL;
	CommandCounterIncrement();
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
 * How a multiset mirror compares a column: as text, which tells apart
 * values "=" calls equal (1.10 and 1.100, '1 day' and '24:00:00', 0 and -0)
 * and works for types without "=".
 */
static char *
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

static void
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

static void
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
	if (dedupe)
	{
		appendStringInfoString(&sql, " ORDER BY ");
		append_name_list(&sql, pk, "s.");
		appendStringInfoString(&sql, ", s.ctid DESC");
	}
	appendStringInfoString(&sql, " ON CONFLICT (");
	append_name_list(&sql, pk, "");
	appendStringInfoString(&sql, ") DO UPDATE SET ");
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

/* "c1, c2, ..., cn" */
static void
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

/*
 * Run a one-value query with text parameters $1..$n (a NULL pointer is SQL
 * NULL); returns NULL for a NULL or no row.
 */
char *
apply_query_value_args(const char *sql, int nargs, const char **args)
{
	Oid			types[FUNC_MAX_ARGS];
	Datum		values[FUNC_MAX_ARGS];
	char		nulls[FUNC_MAX_ARGS] = {0};
	int			i;
	int			rc;

	Assert(nargs <= FUNC_MAX_ARGS);
	guard_repin();
	for (i = 0; i < nargs; i++)
	{
		types[i] = TEXTOID;
		values[i] = args[i] ? CStringGetTextDatum(args[i]) : (Datum) 0;
		nulls[i] = args[i] ? ' ' : 'n';
	}
	rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 1);
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
