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

#include "catalog/pg_type.h"
#include "parser/parse_type.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "dbsync.h"
#include "source.h"

/* Parse a type name; InvalidOid when it does not exist locally. */
static Oid
lookup_type(const char *name, int32 *typmod)
{
	Oid			typid = InvalidOid;

	*typmod = -1;
	if (name == NULL)
		return InvalidOid;
	parseTypeString(name, &typid, typmod, true);
	return typid;
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
		col->local_is_vector = (strcmp(format_type_be(typid), "vector") == 0);
	}
}
