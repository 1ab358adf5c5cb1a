/*-------------------------------------------------------------------------
 * dbsync.c
 *	  Module entry point: GUCs and one-time initialisation.
 *
 * Only the background auto-sync needs the library in
 * shared_preload_libraries; dbsync_run() works without preloading.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "dbsync.h"
#include "source.h"

PG_MODULE_MAGIC;

char	   *dbsync_database = NULL;

void		_PG_init(void);

void
_PG_init(void)
{
	DefineCustomStringVariable("dbsync.database",
							   "Database whose dbsync servers the background auto-sync serves.",
							   NULL,
							   &dbsync_database,
							   "postgres",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	guard_define();
	MarkGUCPrefixReserved("dbsync");
	source_init();
	if (process_shared_preload_libraries_in_progress)
		dbsync_register_launcher();
}
