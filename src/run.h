/*-------------------------------------------------------------------------
 * run.h
 *	  A run of dbsync_run(), dbsync_sync() or a worker, as run.c and the
 *	  log capture pass (capture.c) share it.
 *-------------------------------------------------------------------------
 */
#ifndef DBSYNC_RUN_H
#define DBSYNC_RUN_H

#include "foreign/foreign.h"

#include "dbsync.h"
#include "source.h"

typedef struct RunOutput
{
	ReturnSetInfo *rsinfo;		/* NULL: report with NOTICEs (procedure) */
	const char *server;
	bool		commit_batches; /* commit after every checkpoint */
	bool		own_snapshot;	/* we pushed the outer snapshot (worker) */
	int			guard_nest;		/* guard_begin() level, renewed per commit */
	const char *trigger;		/* sql | call | worker (dbsync.runs) */
	bool		scheduled;		/* the auto-sync: due tables only, quietly */
	int64		run_id;			/* 0 until the first table needs one */
	int			interval_secs;	/* the server's sync_interval, 0: none */
	MemoryContext cxt;			/* lives as long as the call (commits too) */
	StringInfo	failed;			/* "server.table" of the tables that failed */
	int			nfailed;
	int			first_errcode;	/* SQLSTATE of the first failure */
	bool		capture_again;	/* out: a log capture pass ended well: go on */
} RunOutput;

extern void emit(RunOutput *out, const char *table, const char *mode, int64 upserted,
				 int64 deleted, TimestampTz started, const char *status,
				 const char *message);
extern char *error_text(ErrorData *edata);
extern void run_record_init(RunOutput *out, Oid serverid, const char *server,
							const char *table, RunRecord *rec);
extern bool run_table_step(RunOutput *out, SourceConfig *cfg, SourceConn **conn,
						   RemoteTable *rt, SyncResult *total, RunRecord *rec);
extern void run_table_begin(RunOutput *out, SourceConfig *cfg, RunRecord *rec);
extern bool table_may_run(RunOutput *out, SourceConfig *cfg, const char *table,
						  RunRecord *rec);
extern void run_commit(RunOutput *out, Oid run_as, int sec);
extern void record_server_error(RunOutput *out, SourceConfig *cfg, ForeignServer *server,
								const char *only_table, ErrorData *edata,
								TimestampTz started);
extern ErrorData *run_step_failed(Subxact *sx, SourceConn **conn);
extern bool try_lock_table(const char *server, const char *table, bool session);
extern void unlock_table_session(const char *server, const char *table);
extern RemoteTable *find_remote_table(List *tables, const char *name);

/* capture.c */
extern void capture_server(RunOutput *out, ForeignServer *server, SourceConfig *cfg,
						   SourceConn **conn, List *tables, List *names,
						   Oid run_as, int sec);
extern void capture_forget(RunOutput *out, ForeignServer *server, SourceConfig *cfg,
						   SourceConn **conn);

#endif							/* DBSYNC_RUN_H */
