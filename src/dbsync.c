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
#include <limits.h>
#include "utils/guc.h"

#include "apply.h"
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
	DefineCustomIntVariable("dbsync.max_workers",
							"Tables the background auto-sync syncs at once, across all servers.",
							"Each takes one background worker (max_worker_processes).",
							&dbsync_max_workers, 2, 1, 64, PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("dbsync.retry_min",
							"First wait before the auto-sync retries a table that failed.",
							"Doubles with every failure in a row (transient errors; others start four times higher), up to dbsync.retry_max.",
							&dbsync_retry_min, 60, 1, 100 * 24 * 3600, PGC_SIGHUP,
							GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("dbsync.retry_max",
							"Longest wait before the auto-sync retries a failing table.",
							NULL, &dbsync_retry_max, 3600, 1, 100 * 24 * 3600, PGC_SIGHUP,
							GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("dbsync.pause_after_failures",
							"Failures in a row after which a table pauses (with dbsync.pause_after).",
							"A table pauses only when both the count and the duration are reached; dbsync_resume() resumes it.",
							&dbsync_pause_after_failures, 20, 1, INT_MAX, PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("dbsync.pause_after",
							"How long a table must have been failing before it pauses.",
							NULL, &dbsync_pause_after, 3 * 24 * 3600, 0, INT_MAX, PGC_SIGHUP,
							GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("dbsync.history_retention",
							"How long dbsync.runs keeps rows (each table's last runs and last failure are always kept).",
							NULL, &dbsync_history_retention, 14 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	guard_define();
	MarkGUCPrefixReserved("dbsync");
	source_init();
	history_init();
	capture_init();
	merge_init();
	if (process_shared_preload_libraries_in_progress)
	{
		progress_init();
		dbsync_register_launcher();
	}
}
