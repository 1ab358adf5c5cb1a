/*-------------------------------------------------------------------------
 * typemap_mysql.c
 *	  MySQL-family (TiDB, MySQL, MariaDB) column types -> PostgreSQL types.
 *
 * The table is the product contract's ("Type mapping (MySQL-family ->
 * PostgreSQL)" in the design notes).  For each column this decides the
 * candidate local type, a fallback used when the candidate does not exist
 * locally (pgvector's vector, PostGIS's geometry), and the ValueKind that
 * tells the driver how to turn the remote text into COPY text.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <limits.h>

#include "typemap_mysql.h"

/* Lower-cased, palloc'd copy (information_schema spellings vary by flavor). */
static char *
lower_copy(const char *s)
{
	char	   *r = pstrdup(s ? s : "");
	char	   *p;

	for (p = r; *p; p++)
		*p = (char) tolower((unsigned char) *p);
	return r;
}

/* "name(12...)" -> 12; -1 when there is no parenthesised number. */
static int
paren_number(const char *column_type)
{
	const char *p = strchr(column_type, '(');
	long		n;
	char	   *end;

	if (p == NULL)
		return -1;
	n = strtol(p + 1, &end, 10);
	if (end == p + 1 || n < 0 || n > INT_MAX)
		return -1;
	return (int) n;
}

static bool
is_one_of(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(s, *list) == 0)
			return true;
	return false;
}

static void
set_map(RemoteColumn *col, const char *local_type, const char *fallback,
		ValueKind kind)
{
	col->local_type = pstrdup(local_type);
	col->fallback_type = fallback ? pstrdup(fallback) : NULL;
	col->kind = kind;
}

void
mysql_map_column(RemoteColumn *col, const char *data_type,
				 const char *column_type, int char_len, int num_prec,
				 int num_scale, int dt_prec, bool is_json_checked,
				 bool is_vector_option)
{
	static const char *const text_types[] =
	{"tinytext", "text", "mediumtext", "longtext", NULL};
	static const char *const binary_types[] =
	{"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob", NULL};
	static const char *const spatial_types[] =
	{"geometry", "point", "linestring", "polygon", "multipoint",
		"multilinestring", "multipolygon", "geometrycollection",
	"geomcollection", NULL};
	char	   *dt = lower_copy(data_type);
	char	   *ct = lower_copy(column_type ? column_type : data_type);
	bool		is_unsigned = strstr(ct, "unsigned") != NULL;

	col->dims = 0;
	col->local_is_vector = false;

	/* Embeddings: TiDB's VECTOR type, or a column the user listed. */
	if (is_vector_option || strcmp(dt, "vector") == 0 ||
		strncmp(ct, "vector", 6) == 0)
	{
		int			n = (strncmp(ct, "vector", 6) == 0) ? paren_number(ct) : -1;

		if (n > 0)
		{
			col->local_type = psprintf("vector(%d)", n);
			col->dims = n;
		}
		else
			col->local_type = pstrdup("vector");
		col->fallback_type = pstrdup("real[]");
		col->kind = VK_VECTOR;
	}
	else if (strcmp(dt, "tinyint") == 0)
	{
		/* tinyint(1) is MySQL's BOOL; display width 1 is kept by MySQL 8 too */
		if (strncmp(ct, "tinyint(1)", 10) == 0)
			set_map(col, "boolean", NULL, VK_BOOL);
		else
			set_map(col, "smallint", NULL, VK_PLAIN);
	}
	else if (strcmp(dt, "bool") == 0 || strcmp(dt, "boolean") == 0)
		set_map(col, "boolean", NULL, VK_BOOL);
	else if (strcmp(dt, "smallint") == 0)
		set_map(col, is_unsigned ? "integer" : "smallint", NULL, VK_PLAIN);
	else if (strcmp(dt, "mediumint") == 0)
		set_map(col, "integer", NULL, VK_PLAIN);
	else if (strcmp(dt, "int") == 0 || strcmp(dt, "integer") == 0)
		set_map(col, is_unsigned ? "bigint" : "integer", NULL, VK_PLAIN);
	else if (strcmp(dt, "bigint") == 0)
		set_map(col, is_unsigned ? "numeric(20)" : "bigint", NULL, VK_PLAIN);
	else if (strcmp(dt, "float") == 0)
		set_map(col, "real", NULL, VK_FLOAT);
	else if (strcmp(dt, "double") == 0 || strcmp(dt, "real") == 0 ||
			 strcmp(dt, "double precision") == 0)
		set_map(col, "double precision", NULL, VK_PLAIN);
	else if (strcmp(dt, "decimal") == 0 || strcmp(dt, "numeric") == 0 ||
			 strcmp(dt, "fixed") == 0 || strcmp(dt, "dec") == 0)
	{
		if (num_prec > 0 && num_prec <= 1000)
		{
			int			scale = (num_scale >= 0 && num_scale <= num_prec) ? num_scale : 0;

			col->local_type = psprintf("numeric(%d,%d)", num_prec, scale);
		}
		else
			col->local_type = pstrdup("numeric");
		col->fallback_type = NULL;
		col->kind = VK_PLAIN;
	}
	else if (strcmp(dt, "char") == 0 || strcmp(dt, "varchar") == 0)
	{
		if (char_len > 0 && char_len <= 10485760)
			col->local_type = psprintf("varchar(%d)", char_len);
		else
			col->local_type = pstrdup("text");
		col->fallback_type = NULL;
		col->kind = VK_PLAIN;
	}
	else if (is_one_of(dt, text_types))
	{
		/* MariaDB's JSON is LONGTEXT with a json_valid() check */
		if (is_json_checked)
			set_map(col, "jsonb", "text", VK_JSON);
		else
			set_map(col, "text", NULL, VK_PLAIN);
	}
	else if (strcmp(dt, "json") == 0)
		set_map(col, "jsonb", "text", VK_JSON);
	else if (is_one_of(dt, binary_types))
		set_map(col, "bytea", NULL, VK_BINARY);
	else if (strcmp(dt, "date") == 0)
		set_map(col, "date", NULL, VK_DATE);
	else if (strcmp(dt, "datetime") == 0 || strcmp(dt, "timestamp") == 0)
	{
		int			p = dt_prec >= 0 ? dt_prec : paren_number(ct);

		if (p < 0)
			p = 0;
		if (p > 6)
			p = 6;
		col->local_type = psprintf("%s(%d)",
								   strcmp(dt, "datetime") == 0 ? "timestamp" : "timestamptz",
								   p);
		col->fallback_type = NULL;
		col->kind = VK_DATETIME;
	}
	else if (strcmp(dt, "time") == 0)
		set_map(col, "interval", NULL, VK_TIME);
	else if (strcmp(dt, "year") == 0)
		set_map(col, "smallint", NULL, VK_PLAIN);
	else if (strcmp(dt, "enum") == 0)
		set_map(col, "text", NULL, VK_PLAIN);
	else if (strcmp(dt, "set") == 0)
		set_map(col, "text[]", NULL, VK_SET);
	else if (strcmp(dt, "bit") == 0)
	{
		int			n = num_prec > 0 ? num_prec : paren_number(ct);

		if (n <= 0)
			n = 1;				/* BIT means BIT(1) */
		if (n == 1)
			set_map(col, "boolean", NULL, VK_BIT1);
		else
		{
			col->local_type = psprintf("bit varying(%d)", n);
			col->fallback_type = NULL;
			col->kind = VK_BITS;
		}
		col->dims = n;			/* the driver needs the width */
	}
	else if (is_one_of(dt, spatial_types))
		set_map(col, "geometry", "bytea", VK_SPATIAL);
	else
		set_map(col, "text", NULL, VK_PLAIN);

	pfree(dt);
	pfree(ct);
}
