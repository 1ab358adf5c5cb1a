/*-------------------------------------------------------------------------
 * typemap.c
 *	  Resolve the local type of each remote column.
 *
 * A driver proposes a candidate local type for every column (for
 * PostgreSQL-family sources the remote format_type() itself, for
 * MySQL-family ones the mapping of typemap_mysql.c) and a fallback.  Here
 * the candidate is parsed locally: when the type does not exist in this
 * database (a remote enum, domain or composite, pgvector or PostGIS not
 * installed) the fallback is used.  The type text that reaches local DDL is
 * always re-rendered from the parsed type, never the remote's own spelling.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "parser/parse_type.h"
#include "utils/builtins.h"
#include "utils/catcache.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "dbsync.h"
#include "source.h"

/*
 * Parse a type name; InvalidOid when it does not exist locally.  An
 * unqualified name that is not on the search path (a sync pins it to
 * pg_catalog) is looked up in every schema: pgvector's vector or PostGIS's
 * geometry installed in "public" are found when exactly one schema has them.
 */
static Oid
lookup_type(const char *name, int32 *typmod)
{
	Oid			typid = InvalidOid;
	char	   *base;
	const char *mods;
	CatCList   *list;

	*typmod = -1;
	if (name == NULL)
		return InvalidOid;
	parseTypeString(name, &typid, typmod, true);
	if (OidIsValid(typid) || strchr(name, '.') || strchr(name, '"'))
		return typid;

	mods = strpbrk(name, "([ ");
	base = mods ? pnstrdup(name, mods - name) : pstrdup(name);
	list = SearchSysCacheList1(TYPENAMENSP, CStringGetDatum(base));
	if (list->n_members == 1)
	{
		Form_pg_type t = (Form_pg_type) GETSTRUCT(&list->members[0]->tuple);
		char	   *qualified = psprintf("%s%s",
										 quote_qualified_identifier(get_namespace_name(t->typnamespace),
																	NameStr(t->typname)),
										 mods ? mods : "");

		parseTypeString(qualified, &typid, typmod, true);
	}
	ReleaseSysCacheList(list);
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
