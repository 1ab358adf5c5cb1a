/*-------------------------------------------------------------------------
 * dbsync.h
 *	  Types shared by the engine, and where each engine function lives.
 *
 * Vocabulary:
 *	 source   a foreign server of the dbsync wrapper (one remote database
 *			  schema), with its options resolved into a SourceConfig;
 *	 table    one remote table of a source, mirrored into one local table;
 *	 cursor   the column (updated_at, created_at...) whose high-water mark
 *			  lets a run read only what changed;
 *	 run      one call of dbsync_run(): sources x tables, one subtransaction
 *			  per table.
 *
 * The driver interface (what speaks a wire protocol) is in source.h.
 *-------------------------------------------------------------------------
 */
#ifndef DBSYNC_H
#define DBSYNC_H

#include "postgres.h"
#include "nodes/pg_list.h"
#include "datatype/timestamp.h"

/* deletes option */
typedef enum DeletesMode
{
	DELETES_HARD,
	DELETES_SOFT,
	DELETES_IGNORE
} DeletesMode;

/* on_row_error option */
typedef enum RowErrorMode
{
	ROW_ERROR_FAIL,
	ROW_ERROR_SKIP
} RowErrorMode;

struct SourceDriver;
struct SourceConn;

/* Hint for a source value the local column type does not accept. */
#define DBSYNC_HINT_BAD_VALUE \
	"A source value does not fit the local column type (see last_row_error_sample): fix it at the source, change the local column's type, or set the server option on_row_error 'skip' to skip such rows."

/* A source: server options + the owner's user mapping, validated. */
typedef struct SourceConfig
{
	Oid			serverid;
	char	   *server_name;
	Oid			owner;			/* server owner: syncs run as this role */
	Oid			umid;			/* the owner's (or PUBLIC's) user mapping */
	const struct SourceDriver *driver;
	char	   *source_type;	/* yugabytedb | tidb | postgresql | mysql */
	char	   *host;
	int			port;
	char	   *dbname;
	char	   *schema;			/* remote schema */
	char	   *target_schema;	/* local schema */
	char	   *user;
	char	   *password;		/* never logged */
	bool		password_required;	/* owner is not a superuser */
	char	   *sslmode;		/* PG family */
	char	   *sslrootcert;
	char	   *ssl_mode;		/* MySQL family */
	char	   *ssl_ca;
	int			connect_timeout;	/* seconds */
	int			read_timeout;	/* seconds, 0 = none */
	List	   *tables;			/* patterns (char *), NIL = all */
	List	   *exclude_tables; /* patterns (char *) */
	List	   *cursor_columns; /* candidates (char *) in preference order */
	char	   *lookback;		/* interval text */
	DeletesMode deletes;
	char	   *delete_check_interval;	/* interval text, NULL = the default
										 * (DELETE_CHECK_DEFAULT_*) */
	RowErrorMode on_row_error;
	int			batch_size;		/* rows per checkpoint of an initial load */
	char	   *sync_interval;	/* interval text or NULL */
	List	   *vector_columns; /* "table.column" (char *) */
	List	   *distributed_tables; /* patterns: Citus distributed targets */
	List	   *reference_tables;	/* patterns: Citus reference targets */
	List	   *distribution_columns;	/* "table.column" (char *) */
	List	   *colocate_with;	/* "table.other_table" or "table.none" */
	bool		capture_log;	/* capture 'log': logical replication */
	char	   *slot_name;		/* its slot (default dbsync_<server>) */
	char	   *publication;	/* its publication */
	bool		publication_ours;	/* not named: dbsync keeps it */
} SourceConfig;

/* How a driver must turn a remote value into COPY text (MySQL family). */
typedef enum ValueKind
{
	VK_PLAIN = 0,				/* copy the text as is (escaped for COPY) */
	VK_BOOL,					/* tinyint(1): 0 -> f, else t */
	VK_BIT1,					/* bit(1) -> boolean */
	VK_BITS,					/* bit(n) -> bit varying, all n bits */
	VK_BINARY,					/* bytes -> bytea hex */
	VK_DATE,					/* zero dates -> NULL */
	VK_DATETIME,				/* zero dates -> NULL */
	VK_TIME,					/* time -> interval */
	VK_SET,						/* set -> text[] */
	VK_JSON,					/* json text, checked locally */
	VK_VECTOR,					/* [1,2,3] -> vector or real[] */
	VK_FLOAT,					/* float32 read without rounding */
	VK_SPATIAL					/* SRID + WKB bytes -> bytea */
} ValueKind;

/* One remote column and where it goes locally. */
typedef struct RemoteColumn
{
	char	   *name;
	char	   *remote_type;	/* the source's own spelling */
	char	   *local_type;		/* candidate local type (SQL), resolved by
								 * typemap_resolve() to one that exists */
	char	   *fallback_type;	/* used when local_type does not exist */
	char	   *cast_type;		/* staged as text, then cast to this (NULL:
								 * staged in local_type) */
	int			pk_position;	/* 1-based position in the primary key, 0 */
	int			key_index;		/* 1-based position in the key in force
								 * (override or discovered), 0: not a key
								 * column; set by the engine per sync */
	ValueKind	kind;
	int			dims;			/* vector dimensions, 0 = unknown */
	bool		local_is_vector;	/* resolved to pgvector's vector */
} RemoteColumn;

/* One remote table as discovery sees it. */
typedef struct RemoteTable
{
	char	   *name;
	List	   *columns;		/* RemoteColumn *, in ordinal order */
	List	   *primary_key;	/* char *, in key order; NIL = none */
} RemoteTable;

/* Per-table configuration and state, as kept in dbsync.tables. */
typedef struct TableState
{
	bool		exists;			/* a catalog row exists */
	List	   *pk_override;	/* char *; NIL = use discovered key */
	char	   *cursor_override;	/* NULL = pick from cursor_columns */
	bool		enabled;
	char	   *cursor_value;	/* high-water mark, NULL = no incremental
								 * state yet */
	List	   *resume_key;		/* char *: last key of an interrupted
								 * initial load, NIL = none; cursor_value
								 * then holds the high-water mark taken
								 * when that load started */
	bool		load_direct;	/* that load COPYs into the target */
	int64		rows_total;
	Oid			target_relid;	/* the local table dbsync created for it */
	List	   *last_pk;		/* char *: key the stored state was made with */
	char	   *last_cursor;	/* cursor column it was made with */
	char	   *cursor_lost;	/* a cursor column gone at the source */
	TimestampTz deletes_checked_at; /* last exact delete check, 0 = never */
} TableState;

/* Result of syncing one table. */
typedef struct SyncResult
{
	const char *mode;			/* full | initial | resume | incremental */
	int64		rows_upserted;
	int64		rows_deleted;
	const char *status;			/* ok | error | skipped */
	char	   *message;
	bool		done;			/* false: initial load stopped at a checkpoint */
	bool		careful;		/* in: convert row by row, skipping bad rows */
	const char *run_mode;		/* in: mode of this run's first step, for
								 * its later steps (NULL: first step) */
	int64		run_upserted;	/* in: rows of this run's earlier steps */
	int64		run_deleted;
	int64		rows_skipped;	/* rows that could not be converted */
	char	   *row_sample;		/* jsonb text: the first of them */
	char	   *cursor_from;	/* stored cursor when the step started */
	char	   *cursor_to;		/* stored cursor when it ended */
	bool		progressed;		/* in: an earlier step of this run committed */
	char	   *notes;			/* out: notes of a step that stopped at a
								 * checkpoint (said again when the run ends) */
	char	   *run_notes;		/* in: notes of this run's earlier steps */
	bool		log_load;		/* in: log capture's load, in the slot's
								 * snapshot */
} SyncResult;

/* One table's run, as dbsync.runs records it (history.c). */
typedef struct RunRecord
{
	int64		run_id;
	char	   *server;
	Oid			serverid;
	char	   *table;			/* NULL: the server failed before its tables */
	const char *trigger;		/* sql | call | worker */
	char	   *mode;
	TimestampTz started_at;
	TimestampTz finished_at;	/* 0: now */
	const char *status;			/* ok | error | skipped | aborted */
	int64		rows_read;
	int64		rows_upserted;
	int64		rows_deleted;
	int64		rows_skipped;
	int64		bytes_read;
	char	   *cursor_from;
	char	   *cursor_to;
	char	   *sqlstate;
	const char *error_class;
	char	   *error;
	char	   *detail;
	char	   *hint;
	char	   *remote_sql;		/* the source statement that failed */
	char	   *message;		/* notes of a run that succeeded */
} RunRecord;

/* in guard.c */
typedef struct GuardUser
{
	Oid			userid;
	int			sec;
} GuardUser;
extern void guard_define(void);
extern void guard_check_not_active(void);
extern int	guard_begin(void);
extern int	guard_plan_probes(void);
extern void guard_end(int nest);
extern void guard_repin(void);
extern void guard_enter_owner(Oid owner, GuardUser *saved);
extern void guard_leave(GuardUser *saved);
extern void guard_unrestrict(GuardUser *saved);

/* in subxact.c */
typedef struct Subxact
{
	MemoryContext cxt;
	struct ResourceOwnerData *owner;
} Subxact;
extern void subxact_begin(Subxact *sx);
extern void subxact_commit(Subxact *sx);
extern ErrorData *subxact_abort(Subxact *sx);
extern bool subxact_is_interrupt(ErrorData *edata);

/* in options.c */
extern SourceConfig *source_config_get(Oid serverid);
extern List *split_list_option(const char *value);
extern bool slot_name_valid(const char *slot);
extern char *capture_default_name(const char *server);
extern Oid	dbsync_fdw_oid(void);
extern int64 interval_usecs(const char *text);

/* in typemap.c */
extern void typemap_resolve(RemoteTable *table);

/* in catalog.c */
extern void catalog_exec(const char *sql, int nargs, Oid *types, Datum *values,
						 const char *nulls, int expect);
extern Datum text_param(const char *s, char *null);
extern Datum text_array_param(List *list, char *null);
extern Datum list_to_text_array(List *list);
extern TableState *catalog_load(const char *server, const char *table);
extern void catalog_ensure(const char *server, Oid serverid, const char *table,
						   const char *target_schema);
extern void catalog_save_success(const char *server, const char *table,
								 RemoteTable *rt, const char *cursor_column,
								 const char *cursor_value, List *resume_key,
								 int64 rows_total, const char *mode,
								 int64 upserted, int64 deleted,
								 const char *row_sample, const char *message,
								 const char *cursor_lost,
								 bool deletes_checked);
extern void catalog_save_error(const char *server, Oid serverid,
							   const char *table, const char *target_schema,
							   const char *message, const char *row_sample);
extern void catalog_save_checkpoint(const char *server, const char *table,
									List *resume_key, const char *high_water,
									bool load_direct, int64 rows_total,
									List *pk, const char *cursor,
									int64 batch_upserted);
extern void catalog_save_target(const char *server, const char *table,
								Oid relid);
extern char *catalog_target_user(Oid relid);
extern bool catalog_note_missing(const char *server, const char *table);
extern bool catalog_register(const char *server, Oid serverid,
							 const char *target_schema, List *tables);
extern void catalog_unpark(const char *server, List *tables);
extern void catalog_set_table(const char *server, const char *table, Datum pk,
							  bool pk_null, const char *cursor, int enabled);
extern int64 catalog_forget_state(const char *server, const char *table);
extern void catalog_save_flavor(const char *server, const char *table,
								const char *flavor);
extern List *catalog_known_tables(const char *server, bool synced_only);
extern void catalog_forget_stale(const char *server, Oid serverid);

/* in sync.c */
extern void sync_table(SourceConfig *cfg, struct SourceConn *conn,
					   RemoteTable *rt, bool one_batch, SyncResult *result);
extern const char *pick_cursor(SourceConfig *cfg, RemoteTable *rt,
							   TableState *st);
extern List *effective_pk(RemoteTable *rt, TableState *st);

/* in run.c */
struct ForeignServer;
extern bool table_selected(SourceConfig *cfg, const char *name);
extern bool name_matches_any(List *patterns, const char *name);
extern struct ForeignServer *dbsync_server_by_name(const char *name);
extern void check_server_owner(struct ForeignServer *server);

/* in run.c (also) */
extern bool dbsync_sync_server_batched(Oid serverid);
extern void capture_init(void);

/* in history.c */
extern int	dbsync_history_retention;
extern void history_init(void);
extern int64 history_new_run_id(void);
extern void history_open(RunRecord *r);
extern void history_record(RunRecord *r);
extern void history_note_interrupt(ErrorData *edata);
extern void history_server_recovered(RunRecord *r);
extern void history_recover(void);
extern void history_prune(void);

/* in health.c */
extern int	dbsync_retry_min;
extern int	dbsync_retry_max;
extern int	dbsync_pause_after_failures;
extern int	dbsync_pause_after;
extern const char *health_error_class(int sqlerrcode);
extern void health_record_success(RunRecord *r, int64 step_upserted,
								  int64 step_deleted, TimestampTz freshness,
								  int interval_secs);
extern void health_record_failure(RunRecord *r, bool progressed,
								  int interval_secs);
extern bool health_table_due(const char *server, const char *table,
							 bool scheduled, char **why);
extern bool health_table_due_ext(const char *server, const char *table,
								 bool scheduled, char **why, bool *failing);
extern void health_park(const char *server, List *tables, bool excluded);

/* in progress.c */
extern void progress_init(void);
extern void progress_want_worker_slot(void);
extern TimestampTz progress_worker_slot_wanted(void);
extern bool progress_claim_prune(int every_secs);
extern void progress_begin(Oid serverid, const char *server, const char *table,
						   const char *trigger, bool with_notices);
extern void progress_end(void);
extern void progress_phase(const char *phase);
extern void progress_phase_copy(void);
extern void progress_mode(const char *mode);
extern void progress_estimate(int64 rows);
extern bool progress_has_estimate(void);
extern void progress_row(int len);
extern void progress_applied(int64 rows);
extern void progress_counts(int64 *rows_read, int64 *bytes_read);
extern void progress_take_uncredited(int64 *rows_read, int64 *bytes_read);
extern void progress_busy(Oid serverid, int *busy, int *busy_workers);

/* in worker.c */
extern int	dbsync_max_workers;
extern void dbsync_register_launcher(void);

/* in dbsync.c */
extern char *dbsync_database;

#endif							/* DBSYNC_H */
