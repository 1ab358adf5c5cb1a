/*-------------------------------------------------------------------------
 * guard.c
 *	  The session settings every dbsync entry point runs under, and the
 *	  user switches it makes.
 *
 * Every SQL function, the procedure, the launcher and the workers call
 * guard_begin() first: it opens a GUC nest level that pins search_path to
 * "pg_catalog, pg_temp" and the text formats the engine parses and
 * produces (ISO dates, UTC, full float precision).  guard_end() undoes the
 * level, so the caller gets its own settings back; an error undoes it with
 * the (sub)transaction.  Settings of the caller, of its role or of its
 * database therefore never decide what a name in dbsync's SQL means.
 *
 * Work done as the server owner runs as a security-restricted operation
 * (the way VACUUM and REFRESH MATERIALIZED VIEW run a table owner's code):
 * code of the owner's that fires during a sync (a trigger, a default) can
 * neither change role nor leave temporary objects behind for the caller.
 * guard_repin() puts the pinned path back before each generated
 * statement, in case such code changed it.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "dbsync.h"

#define GUARD_SEARCH_PATH "pg_catalog, pg_temp"

/* dbsync.active: a dbsync entry point is running in this session */
static bool guard_active = false;

void
guard_define(void)
{
	DefineCustomBoolVariable("dbsync.active",
							 "Shows whether a dbsync function is running in this session.",
							 NULL, &guard_active, false, PGC_INTERNAL,
							 GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_FILE,
							 NULL, NULL, NULL);
}

/*
 * Refuse to start a dbsync function from code that fires during one (a
 * trigger or default of a target table): the sync in progress shares this
 * session's COPY and catalog state.
 */
void
guard_check_not_active(void)
{
	if (guard_active)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("dbsync functions cannot be called while a dbsync function runs"),
				 errhint("Do not call dbsync functions from triggers, defaults or functions that a sync runs.")));
}

static void
guard_set(const char *name, const char *value)
{
	(void) set_config_option(name, value, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

/* Open a GUC level with dbsync's settings; returns it for guard_end(). */
int
guard_begin(void)
{
	int			nest = NewGUCNestLevel();

	guard_set("search_path", GUARD_SEARCH_PATH);
	guard_set("datestyle", "ISO, YMD");
	guard_set("timezone", "UTC");
	guard_set("intervalstyle", "postgres");
	guard_set("extra_float_digits", "3");
	/* how generated SQL and COPY text are read and written */
	guard_set("array_nulls", "on");
	guard_set("standard_conforming_strings", "on");
	guard_set("bytea_output", "hex");
	guard_set("transform_null_equals", "off");
	guard_set("xmloption", "content");
	/* one-shot statements: compiling them costs more than it saves */
	guard_set("jit", "off");
	(void) set_config_option("dbsync.active", "on", PGC_INTERNAL, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nest;
}

/*
 * Open a GUC level in which joins are nested loops (one index probe per
 * outer row): for statements that join a few staged rows with a large
 * table, whatever the planner guesses for a staging table it has no
 * statistics of.  Close it with guard_end().
 */
int
guard_plan_probes(void)
{
	int			nest = NewGUCNestLevel();

	guard_set("enable_hashjoin", "off");
	guard_set("enable_mergejoin", "off");
	return nest;
}

/* Undo a guard_begin() level (and whatever was SET inside it). */
void
guard_end(int nest)
{
	const char *mode = GetConfigOption("citus.multi_shard_modify_mode", true, false);
	bool		sequential = mode && strcmp(mode, "sequential") == 0;

	AtEOXact_GUC(false, nest);

	/*
	 * Citus switches a transaction to sequential mode (SET LOCAL) when it
	 * creates objects on the workers over one connection each (a new
	 * schema, say), so that later statements of the transaction see them:
	 * keep that switch beyond our level, to the end of the transaction.
	 */
	if (sequential)
	{
		mode = GetConfigOption("citus.multi_shard_modify_mode", true, false);
		if (mode && strcmp(mode, "sequential") != 0)
			(void) set_config_option("citus.multi_shard_modify_mode", "sequential",
									 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
									 true, 0, false);
	}
}

/*
 * Put the pinned search_path back if code that ran since (a trigger of the
 * owner's, say) changed it.  Cheap: a string compare when nothing changed.
 */
void
guard_repin(void)
{
	if (namespace_search_path == NULL ||
		strcmp(namespace_search_path, GUARD_SEARCH_PATH) != 0)
		guard_set("search_path", GUARD_SEARCH_PATH);
}

/* Become the server owner, restricted; guard_leave() switches back. */
void
guard_enter_owner(Oid owner, GuardUser *saved)
{
	GetUserIdAndSecContext(&saved->userid, &saved->sec);
	SetUserIdAndSecContext(owner, saved->sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

void
guard_leave(GuardUser *saved)
{
	SetUserIdAndSecContext(saved->userid, saved->sec);
}

/*
 * Leave the security-restricted state for a moment, to create a staging
 * table of our own (a temporary table cannot be created inside one, as in
 * REFRESH MATERIALIZED VIEW CONCURRENTLY).  No user code runs meanwhile.
 */
void
guard_unrestrict(GuardUser *saved)
{
	GetUserIdAndSecContext(&saved->userid, &saved->sec);
	SetUserIdAndSecContext(saved->userid,
						   saved->sec & ~SECURITY_RESTRICTED_OPERATION);
}
