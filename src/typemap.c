/*-------------------------------------------------------------------------
 * typemap.c
 *	  Resolve the local type of each remote column.
 *
 * A driver proposes a candidate local type for every column (for
 * PostgreSQL-family sources the remote format_type() itself, for
 * MySQL-family ones the mapping of typemap_mysql.c) and a fallback.  Here
 * the candidate is parsed locally and looked up in pg_catalog or in the
 * schema of the extension that provides it, nowhere else: when the type is
 * not there (a remote enum, domain or composite, pgvector or PostGIS not
 * installed) the fallback is used.  The type text that reaches local DDL is
 * always re-rendered from the parsed type, never the remote's own spelling.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_extension.h"
#include "miscadmin.h"
#include "utils/fmgroids.h"
#include "catalog/dependency.h"
#include "catalog/pg_namespace.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "nodes/makefuncs.h"
#include "parser/parse_type.h"
#include "utils/builtins.h"
#include "utils/catcache.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "dbsync.h"
#include "source.h"

/* The owner of an extension (InvalidOid when it is gone). */
static Oid
extension_owner(Oid extid)
{
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			owner = InvalidOid;

	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(extid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return owner;
}

/*
 * May a type of an extension be used for a synced column?  Only when a
 * superuser installed the extension and owns the type: a role may install a
 * trusted extension itself and add a domain of its own to it (ALTER
 * EXTENSION ... ADD), whose check would then run as the server's owner, and
 * it could drop the extension, with the columns, at will.
 */
static bool
trusted_extension_type(Form_pg_type t)
{
	Oid			ext = getExtensionOfObject(TypeRelationId, t->oid);

	return OidIsValid(ext) && superuser_arg(t->typowner) &&
		superuser_arg(extension_owner(ext));
}

/*
 * The schema a type of this name may be taken from: pg_catalog, else the
 * schema of the one superuser-installed extension that provides a type of
 * that name (pgvector's vector, PostGIS's geometry, wherever they are
 * installed).  InvalidOid when neither has it.
 */
static Oid
trusted_type_namespace(const char *typname)
{
	CatCList   *list;
	Oid			nsp = InvalidOid;
	int			found = 0;
	int			i;

	if (OidIsValid(GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
								   CStringGetDatum(typname),
								   ObjectIdGetDatum(PG_CATALOG_NAMESPACE))))
		return PG_CATALOG_NAMESPACE;
	list = SearchSysCacheList1(TYPENAMENSP, CStringGetDatum(typname));
	for (i = 0; i < list->n_members; i++)
	{
		Form_pg_type t = (Form_pg_type) GETSTRUCT(&list->members[i]->tuple);

		if (trusted_extension_type(t))
		{
			nsp = t->typnamespace;
			found++;
		}
	}
	ReleaseSysCacheList(list);
	return found == 1 ? nsp : InvalidOid;
}

/*
 * Parse a type name and find it in a trusted schema only; InvalidOid when
 * it is not there.  The search_path is never consulted and a schema in the
 * name (a remote "public.geometry(Point,4326)") is dropped: a same-named
 * type or domain in a role's own schema would run that role's code as the
 * server owner on every row.
 */
static Oid
lookup_type(const char *name, int32 *typmod)
{
	TypeName   *tn;
	const char *base;
	Oid			nsp;
	Type		typ;
	Oid			typid;

	*typmod = -1;
	if (name == NULL)
		return InvalidOid;
	tn = typeStringToTypeName(name);
	base = strVal(llast(tn->names));
	nsp = trusted_type_namespace(base);
	if (!OidIsValid(nsp))
		return InvalidOid;
	tn->names = list_make2(makeString(get_namespace_name(nsp)), makeString(pstrdup(base)));
	typ = LookupTypeName(NULL, tn, typmod, true);
	if (typ == NULL)
		return InvalidOid;
	typid = typeTypeId(typ);
	ReleaseSysCache(typ);
	return typid;
}

static char *
get_typ_name(Oid typid)
{
	HeapTuple	tp = SearchSysCache1(TYPEOID, ObjectIdGetDatum(typid));
	char	   *name;

	if (!HeapTupleIsValid(tp))
		return "";
	name = pstrdup(NameStr(((Form_pg_type) GETSTRUCT(tp))->typname));
	ReleaseSysCache(tp);
	return name;
}

void
typemap_resolve(RemoteTable *table)
{
	ListCell   *lc;

	foreach(lc, table->columns)
	{
		RemoteColumn *col = lfirst(lc);
		int32		typmod;
		Oid			typid = lookup_type(col->local_type, &typmod);

		if (!OidIsValid(typid))
			typid = lookup_type(col->fallback_type ? col->fallback_type : "text",
								&typmod);
		if (!OidIsValid(typid))
		{
			typid = TEXTOID;
			typmod = -1;
		}
		col->local_type = format_type_with_typemod(typid, typmod);
		col->local_is_vector = strcmp(get_typ_name(typid), "vector") == 0;
	}
}
