/*-------------------------------------------------------------------------
 * options.c
 *	  The FDW validator, and server + user-mapping options -> SourceConfig.
 *
 * Every option is checked when CREATE/ALTER SERVER or USER MAPPING runs, so
 * a malformed value is caught there and not in the middle of a sync.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/reloptions.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_user_mapping.h"
#include "commands/defrem.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

#include "dbsync.h"
#include "source.h"

PG_FUNCTION_INFO_V1(dbsync_validator);

typedef enum OptKind
{
	OPT_TEXT,
	OPT_PORT,
	OPT_INT,					/* >= 0 */
	OPT_POSINT,					/* > 0 */
	OPT_INTERVAL,
	OPT_ENUM,
	OPT_LIST,
	OPT_VECTOR_LIST,
	OPT_SLOT					/* a replication slot name */
} OptKind;

typedef struct OptionDef
{
	const char *name;
	Oid			context;		/* ForeignServerRelationId / UserMappingRelationId */
	OptKind		kind;
	const char *values;			/* OPT_ENUM: comma-separated valid values */
	const char *family;			/* NULL, "pg" or "mysql": only for that family */
} OptionDef;

static const OptionDef option_defs[] = {
	{"source_type", ForeignServerRelationId, OPT_ENUM, "yugabytedb,tidb,postgresql,mysql", NULL},
	{"host", ForeignServerRelationId, OPT_TEXT, NULL, NULL},
	{"port", ForeignServerRelationId, OPT_PORT, NULL, NULL},
	{"dbname", ForeignServerRelationId, OPT_TEXT, NULL, NULL},
	{"schema", ForeignServerRelationId, OPT_TEXT, NULL, NULL},
	{"target_schema", ForeignServerRelationId, OPT_TEXT, NULL, NULL},
	{"tables", ForeignServerRelationId, OPT_LIST, NULL, NULL},
	{"exclude_tables", ForeignServerRelationId, OPT_LIST, NULL, NULL},
	{"cursor_columns", ForeignServerRelationId, OPT_LIST, NULL, NULL},
	{"lookback", ForeignServerRelationId, OPT_INTERVAL, NULL, NULL},
	{"deletes", ForeignServerRelationId, OPT_ENUM, "hard,soft,ignore", NULL},
	{"delete_check_interval", ForeignServerRelationId, OPT_INTERVAL, NULL, NULL},
	{"on_row_error", ForeignServerRelationId, OPT_ENUM, "fail,skip", NULL},
	{"batch_size", ForeignServerRelationId, OPT_POSINT, NULL, NULL},
	{"sync_interval", ForeignServerRelationId, OPT_INTERVAL, NULL, NULL},
	{"connect_timeout", ForeignServerRelationId, OPT_INT, NULL, NULL},
	{"read_timeout", ForeignServerRelationId, OPT_INT, NULL, NULL},
	{"sslmode", ForeignServerRelationId, OPT_ENUM, "disable,allow,prefer,require,verify-ca,verify-full", "pg"},
	{"sslrootcert", ForeignServerRelationId, OPT_TEXT, NULL, "pg"},
	{"ssl_mode", ForeignServerRelationId, OPT_ENUM, "disabled,preferred,required,verify_ca,verify_identity", "mysql"},
	{"ssl_ca", ForeignServerRelationId, OPT_TEXT, NULL, "mysql"},
	{"vector_columns", ForeignServerRelationId, OPT_VECTOR_LIST, NULL, NULL},
	{"distributed_tables", ForeignServerRelationId, OPT_LIST, NULL, NULL},
	{"reference_tables", ForeignServerRelationId, OPT_LIST, NULL, NULL},
	{"distribution_columns", ForeignServerRelationId, OPT_VECTOR_LIST, NULL, NULL},
	{"colocate_with", ForeignServerRelationId, OPT_VECTOR_LIST, NULL, NULL},
	{"capture", ForeignServerRelationId, OPT_ENUM, "cursor,log", NULL},
	{"slot_name", ForeignServerRelationId, OPT_SLOT, NULL, "pg"},
	{"publication", ForeignServerRelationId, OPT_TEXT, NULL, "pg"},
	{"user", UserMappingRelationId, OPT_TEXT, NULL, NULL},
	{"password", UserMappingRelationId, OPT_TEXT, NULL, NULL},
	{NULL, InvalidOid, OPT_TEXT, NULL, NULL}
};

static const char *
context_name(Oid context)
{
	return context == UserMappingRelationId ? "user mapping" : "server";
}

/* "a, b, c" of the options valid in this context, for hints. */
static char *
valid_option_names(Oid context)
{
	StringInfoData buf;
	const OptionDef *d;

	initStringInfo(&buf);
	for (d = option_defs; d->name; d++)
	{
		if (d->context != context)
			continue;
		appendStringInfo(&buf, "%s%s", buf.len ? ", " : "", d->name);
	}
	return buf.data;
}

/* Split "a, b,c" into a List of trimmed, non-empty char *. */
List *
split_list_option(const char *value)
{
	List	   *result = NIL;
	const char *p = value;

	if (value == NULL)
		return NIL;
	while (*p)
	{
		const char *start;
		const char *end;

		while (*p == ' ' || *p == '\t' || *p == '\n')
			p++;
		start = p;
		while (*p && *p != ',')
			p++;
		end = p;
		while (end > start && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n'))
			end--;
		if (end > start)
			result = lappend(result, pnstrdup(start, end - start));
		if (*p == ',')
			p++;
	}
	return result;
}

/*
 * Does value parse as an interval from zero to 100 years?  Uses the decoder
 * without throwing (the launcher must be able to read every server's).
 */
static bool
interval_is_valid(const char *value)
{
	char		workbuf[256];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf;
	int			dtype;
	struct pg_itm_in itm;
	Interval	iv;
	bool		parsed;

	if (strlen(value) >= sizeof(workbuf))
		return false;
	if (ParseDateTime(value, workbuf, sizeof(workbuf), field, ftype,
					  MAXDATEFIELDS, &nf) == 0 &&
		DecodeInterval(field, ftype, nf, INTERVAL_FULL_RANGE, &dtype, &itm) == 0)
		parsed = dtype == DTK_DELTA;
	else
		parsed = DecodeISO8601Interval(unconstify(char *, value), &dtype, &itm) == 0;
	if (!parsed || itmin2interval(&itm, &iv) != 0)
		return false;
	return iv.month >= 0 && iv.day >= 0 && iv.time >= 0 &&
		iv.month <= 1200 && iv.day <= 36600 &&
		iv.time <= INT64CONST(100) * 366 * USECS_PER_DAY;
}

static bool
parse_int(const char *value, long min, long max, long *out)
{
	char	   *end;
	long		v;

	errno = 0;
	v = strtol(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

static bool
enum_contains(const char *values, const char *value)
{
	List	   *l = split_list_option(values);
	ListCell   *lc;

	foreach(lc, l)
	{
		if (strcmp(lfirst(lc), value) == 0)
			return true;
	}
	return false;
}

static const char *
family_of(const char *source_type)
{
	if (source_type == NULL)
		return NULL;
	if (strcmp(source_type, "tidb") == 0 || strcmp(source_type, "mysql") == 0)
		return "mysql";
	return "pg";
}

/* A slot name the replication protocol takes unquoted. */
bool
slot_name_valid(const char *slot)
{
	const char *p;

	for (p = slot; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
			return false;
	return p > slot && p - slot < NAMEDATALEN;
}

/*
 * dbsync_<server> as a slot or publication name: lower case, other than
 * [a-z0-9_] made '_', at most NAMEDATALEN - 1 bytes.
 */
char *
capture_default_name(const char *server)
{
	char	   *name = psprintf("dbsync_%s", server);
	char	   *p;

	for (p = name; *p; p++)
	{
		if (*p >= 'A' && *p <= 'Z')
			*p = *p - 'A' + 'a';
		else if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
			*p = '_';
	}
	if (strlen(name) >= NAMEDATALEN)
		name[NAMEDATALEN - 1] = '\0';
	return name;
}

static void
check_option_value(const OptionDef *d, const char *value)
{
	long		n;
	const char *problem = NULL;
	const char *hint = NULL;

	switch (d->kind)
	{
		case OPT_TEXT:
			break;
		case OPT_PORT:
			if (!parse_int(value, 1, 65535, &n))
			{
				problem = "port";
				hint = "Give a TCP port number between 1 and 65535.";
			}
			break;
		case OPT_INT:
			if (!parse_int(value, 0, INT_MAX / 1000, &n))
			{
				problem = "number";
				hint = "Give a whole number of seconds, 0 or more.";
			}
			break;
		case OPT_POSINT:
			if (!parse_int(value, 1, INT_MAX, &n))
			{
				problem = "number";
				hint = "Give a whole number greater than zero.";
			}
			break;
		case OPT_INTERVAL:
			if (!interval_is_valid(value))
			{
				problem = "interval";
				hint = "Give a PostgreSQL interval such as '1 minute' or '00:05:00'.";
			}
			break;
		case OPT_ENUM:
			if (!enum_contains(d->values, value))
			{
				problem = "value";
				hint = psprintf("Valid values are: %s.", d->values);
			}
			break;
		case OPT_LIST:
			if (split_list_option(value) == NIL)
			{
				problem = "list";
				hint = "Give a comma-separated list of names; % is a wildcard.";
			}
			break;
		case OPT_SLOT:
			if (!slot_name_valid(value))
			{
				problem = "replication slot name";
				hint = psprintf("Use lower-case letters, digits and underscores, at most %d of them.",
								NAMEDATALEN - 1);
			}
			break;
		case OPT_VECTOR_LIST:
			{
				ListCell   *lc;
				List	   *items = split_list_option(value);

				if (items == NIL)
					problem = "list";
				foreach(lc, items)
				{
					const char *dot = strchr(lfirst(lc), '.');

					if (dot == NULL || dot == lfirst(lc) || dot[1] == '\0')
						problem = "list";
				}
				if (problem)
					hint = strcmp(d->name, "colocate_with") == 0 ?
						"Give a comma-separated list of table.other_table (or table.none) pairs." :
						"Give a comma-separated list of table.column names.";
			}
			break;
	}
	if (problem)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("invalid %s for option \"%s\": \"%s\"",
						problem, d->name, value),
				 errhint("%s", hint)));
}

/*
 * Validate the options of the dbsync wrapper, a dbsync server or a user
 * mapping for one.
 */
Datum
dbsync_validator(PG_FUNCTION_ARGS)
{
	List	   *options = untransformRelOptions(PG_GETARG_DATUM(0));
	Oid			context = PG_GETARG_OID(1);
	const char *source_type = NULL;
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = lfirst(lc);

		if (strcmp(def->defname, "source_type") == 0)
			source_type = defGetString(def);
	}

	foreach(lc, options)
	{
		DefElem    *def = lfirst(lc);
		const OptionDef *d;

		for (d = option_defs; d->name; d++)
		{
			if (d->context == context && strcmp(d->name, def->defname) == 0)
				break;
		}
		if (d->name == NULL)
		{
			if (context != ForeignServerRelationId && context != UserMappingRelationId)
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
						 errmsg("invalid option \"%s\"", def->defname),
						 errhint("The dbsync wrapper takes no options: put them on its servers and user mappings.")));
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("invalid option \"%s\" for a dbsync %s",
							def->defname, context_name(context)),
					 errhint("Valid options here are: %s.", valid_option_names(context))));
		}
		check_option_value(d, defGetString(def));
		if (d->family && source_type &&
			strcmp(d->family, family_of(source_type)) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("option \"%s\" does not apply to source_type \"%s\"",
							d->name, source_type),
					 errhint("%s", d->kind == OPT_SLOT || strcmp(d->name, "publication") == 0 ?
							 "Log capture (and its slot and publication) is for PostgreSQL-family sources only." :
							 strcmp(d->family, "pg") == 0 ?
							 "MySQL-family sources take \"ssl_mode\" and \"ssl_ca\"." :
							 "PostgreSQL-family sources take \"sslmode\" and \"sslrootcert\".")));
	}

	foreach(lc, options)
	{
		DefElem    *def = lfirst(lc);

		if (context == ForeignServerRelationId && strcmp(def->defname, "capture") == 0 &&
			strcmp(defGetString(def), "log") == 0 && source_type &&
			strcmp(family_of(source_type), "mysql") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
					 errmsg("capture 'log' is not available for source_type \"%s\"", source_type),
					 errdetail("Log capture speaks PostgreSQL's logical replication protocol; TiDB has no binlog protocol for a MySQL client."),
					 errhint("Use capture 'cursor' (the default) for TiDB and MySQL sources.")));
	}

	if (context == ForeignServerRelationId && source_type == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("a dbsync server needs the option \"source_type\""),
				 errhint("Add OPTIONS (source_type 'yugabytedb') or one of: tidb, postgresql, mysql.")));

	PG_RETURN_VOID();
}

Oid
dbsync_fdw_oid(void)
{
	ForeignDataWrapper *fdw = GetForeignDataWrapperByName("dbsync", false);

	return fdw->fdwid;
}

/* Find the options of the owner's (or PUBLIC's) user mapping, or error. */
static List *
owner_mapping_options(ForeignServer *server, Oid *umid)
{
	HeapTuple	tp;
	Datum		datum;
	bool		isnull;
	List	   *options = NIL;

	tp = SearchSysCache2(USERMAPPINGUSERSERVER,
						 ObjectIdGetDatum(server->owner),
						 ObjectIdGetDatum(server->serverid));
	if (!HeapTupleIsValid(tp))
		tp = SearchSysCache2(USERMAPPINGUSERSERVER,
							 ObjectIdGetDatum(InvalidOid),
							 ObjectIdGetDatum(server->serverid));
	if (!HeapTupleIsValid(tp))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("no user mapping for the owner of server \"%s\"",
						server->servername),
				 errdetail("Syncs run as the server's owner, \"%s\".",
						   GetUserNameFromId(server->owner, false)),
				 errhint("Create one: CREATE USER MAPPING FOR %s SERVER %s OPTIONS (user '...', password '...').",
						 quote_identifier(GetUserNameFromId(server->owner, false)),
						 quote_identifier(server->servername))));
	*umid = ((Form_pg_user_mapping) GETSTRUCT(tp))->oid;
	datum = SysCacheGetAttr(USERMAPPINGUSERSERVER, tp,
							Anum_pg_user_mapping_umoptions, &isnull);
	if (!isnull)
		options = untransformRelOptions(datum);
	ReleaseSysCache(tp);
	return options;
}

static int
int_option(const char *value)
{
	return (int) strtol(value, NULL, 10);
}

/*
 * Resolve a dbsync server and its owner's user mapping into a SourceConfig,
 * with every default applied.  Allocated in CurrentMemoryContext.
 */
SourceConfig *
source_config_get(Oid serverid)
{
	ForeignServer *server = GetForeignServer(serverid);
	SourceConfig *cfg = palloc0(sizeof(SourceConfig));
	List	   *options;
	ListCell   *lc;
	bool		mysql_family;

	if (server->fdwid != dbsync_fdw_oid())
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("server \"%s\" is not a dbsync server", server->servername),
				 errhint("Create it with FOREIGN DATA WRAPPER dbsync.")));

	cfg->serverid = serverid;
	cfg->server_name = pstrdup(server->servername);
	cfg->owner = server->owner;
	cfg->connect_timeout = 10;
	cfg->read_timeout = 600;
	cfg->lookback = "1 minute";
	cfg->deletes = DELETES_HARD;
	cfg->on_row_error = ROW_ERROR_FAIL;
	cfg->batch_size = 100000;
	cfg->cursor_columns = list_make2("updated_at", "created_at");

	options = list_concat(list_copy(server->options), owner_mapping_options(server, &cfg->umid));
	foreach(lc, options)
	{
		DefElem    *def = lfirst(lc);
		const char *name = def->defname;
		char	   *value = defGetString(def);

		if (strcmp(name, "source_type") == 0)
			cfg->source_type = value;
		else if (strcmp(name, "host") == 0)
			cfg->host = value;
		else if (strcmp(name, "port") == 0)
			cfg->port = int_option(value);
		else if (strcmp(name, "dbname") == 0)
			cfg->dbname = value;
		else if (strcmp(name, "schema") == 0)
			cfg->schema = value;
		else if (strcmp(name, "target_schema") == 0)
			cfg->target_schema = value;
		else if (strcmp(name, "tables") == 0)
			cfg->tables = split_list_option(value);
		else if (strcmp(name, "exclude_tables") == 0)
			cfg->exclude_tables = split_list_option(value);
		else if (strcmp(name, "cursor_columns") == 0)
			cfg->cursor_columns = split_list_option(value);
		else if (strcmp(name, "lookback") == 0)
			cfg->lookback = value;
		else if (strcmp(name, "deletes") == 0)
			cfg->deletes = strcmp(value, "soft") == 0 ? DELETES_SOFT :
				strcmp(value, "ignore") == 0 ? DELETES_IGNORE : DELETES_HARD;
		else if (strcmp(name, "delete_check_interval") == 0)
			cfg->delete_check_interval = value;
		else if (strcmp(name, "on_row_error") == 0)
			cfg->on_row_error = strcmp(value, "skip") == 0 ? ROW_ERROR_SKIP : ROW_ERROR_FAIL;
		else if (strcmp(name, "batch_size") == 0)
			cfg->batch_size = int_option(value);
		else if (strcmp(name, "sync_interval") == 0)
			cfg->sync_interval = value;
		else if (strcmp(name, "connect_timeout") == 0)
			cfg->connect_timeout = int_option(value);
		else if (strcmp(name, "read_timeout") == 0)
			cfg->read_timeout = int_option(value);
		else if (strcmp(name, "sslmode") == 0)
			cfg->sslmode = value;
		else if (strcmp(name, "sslrootcert") == 0)
			cfg->sslrootcert = value;
		else if (strcmp(name, "ssl_mode") == 0)
			cfg->ssl_mode = value;
		else if (strcmp(name, "ssl_ca") == 0)
			cfg->ssl_ca = value;
		else if (strcmp(name, "vector_columns") == 0)
			cfg->vector_columns = split_list_option(value);
		else if (strcmp(name, "distributed_tables") == 0)
			cfg->distributed_tables = split_list_option(value);
		else if (strcmp(name, "reference_tables") == 0)
			cfg->reference_tables = split_list_option(value);
		else if (strcmp(name, "distribution_columns") == 0)
			cfg->distribution_columns = split_list_option(value);
		else if (strcmp(name, "colocate_with") == 0)
			cfg->colocate_with = split_list_option(value);
		else if (strcmp(name, "capture") == 0)
			cfg->capture_log = strcmp(value, "log") == 0;
		else if (strcmp(name, "slot_name") == 0)
			cfg->slot_name = value;
		else if (strcmp(name, "publication") == 0)
			cfg->publication = value;
		else if (strcmp(name, "user") == 0)
			cfg->user = value;
		else if (strcmp(name, "password") == 0)
			cfg->password = value;
	}

	if (cfg->source_type == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("server \"%s\" has no source_type", cfg->server_name),
				 errhint("ALTER SERVER %s OPTIONS (ADD source_type 'yugabytedb').",
						 quote_identifier(cfg->server_name))));
	cfg->driver = source_driver_for(cfg->source_type);
	mysql_family = strcmp(family_of(cfg->source_type), "mysql") == 0;

	if (cfg->port == 0)
	{
		if (strcmp(cfg->source_type, "yugabytedb") == 0)
			cfg->port = 5433;
		else if (strcmp(cfg->source_type, "tidb") == 0)
			cfg->port = 4000;
		else if (strcmp(cfg->source_type, "postgresql") == 0)
			cfg->port = 5432;
		else
			cfg->port = 3306;
	}
	if (cfg->host == NULL)
		cfg->host = "localhost";
	if (cfg->dbname == NULL)
		cfg->dbname = strcmp(cfg->source_type, "yugabytedb") == 0 ? "yugabyte" :
			mysql_family ? NULL : "postgres";
	if (mysql_family && cfg->dbname == NULL && cfg->schema == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("server \"%s\" names no database", cfg->server_name),
				 errhint("ALTER SERVER %s OPTIONS (ADD dbname '...').",
						 quote_identifier(cfg->server_name))));
	if (cfg->schema == NULL)
		cfg->schema = mysql_family ? cfg->dbname : "public";
	if (cfg->target_schema == NULL)
		cfg->target_schema = cfg->server_name;
	if (cfg->slot_name == NULL)
		cfg->slot_name = capture_default_name(cfg->server_name);
	cfg->publication_ours = cfg->publication == NULL;
	if (cfg->publication == NULL)
		cfg->publication = capture_default_name(cfg->server_name);
	if (cfg->user == NULL)
		cfg->user = GetUserNameFromId(cfg->owner, false);
	cfg->password_required = !superuser_arg(cfg->owner);
	if (cfg->password_required && (cfg->password == NULL || cfg->password[0] == '\0'))
		ereport(ERROR,
				(errcode(ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED),
				 errmsg("password is required for server \"%s\"", cfg->server_name),
				 errdetail("Non-superuser server owners must authenticate to the source with a password."),
				 errhint("Add a password to the user mapping: ALTER USER MAPPING FOR %s SERVER %s OPTIONS (ADD password '...').",
						 quote_identifier(GetUserNameFromId(cfg->owner, false)),
						 quote_identifier(cfg->server_name))));
	return cfg;
}

/* An interval's length in microseconds (a month counts 30 days). */
int64
interval_usecs(const char *text)
{
	Interval   *iv = DatumGetIntervalP(DirectFunctionCall3(interval_in,
														   CStringGetDatum(text),
														   ObjectIdGetDatum(InvalidOid),
														   Int32GetDatum(-1)));

	return iv->time + (int64) iv->day * USECS_PER_DAY +
		(int64) iv->month * DAYS_PER_MONTH * USECS_PER_DAY;
}
