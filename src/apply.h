/*-------------------------------------------------------------------------
 * apply.h
 *	  Local side of a sync: target DDL (apply.c), staging and COPY
 *	  (stage.c), the statements that apply a batch (merge.c).
 *-------------------------------------------------------------------------
 */
#ifndef DBSYNC_APPLY_H
#define DBSYNC_APPLY_H

#include "dbsync.h"
#include "lib/stringinfo.h"

struct SourceConn;

extern void spi_exec(const char *sql, int expect);
extern void spi_exec_args(const char *sql, int nargs, const char **args);
extern char *apply_name_list_text(List *names);
extern RemoteColumn *stage_column(const char *name, const char *type);
extern char *cmp_expr(const char *alias, RemoteColumn *col);
extern void append_key_match(StringInfo buf, List *pk, const char *a, const char *b);
extern void append_cmp_list(StringInfo buf, List *columns, const char *alias);
extern void append_numbered(StringInfo buf, int n);
extern void append_conflict_head(StringInfo buf, List *pk, bool dedupe);
extern void append_name_list(StringInfo buf, List *names, const char *prefix);
extern char *target_name(SourceConfig *cfg, const char *table);
extern bool same_names(List *a, List *b);
extern bool name_in_list(List *list, const char *name);
extern bool apply_is_empty(const char *target);
extern Oid	apply_prepare_target(SourceConfig *cfg, RemoteTable *rt, List *pk,
								 bool soft, Oid recorded, List **added,
								 char **note, bool *created, bool *reshaped);
extern void apply_check_writable(Oid relid);
extern Oid	apply_lock_target(const char *schema, const char *table);
extern char *apply_create_stage(List *columns);
extern void apply_drop_stage(const char *stage);
extern uint64 apply_copy(struct SourceConn *conn, const char *select_sql,
						 List *columns, const char *relname,
						 StringInfo last_row);
extern void apply_copy_start(struct SourceConn *conn, const char *select_sql,
							 List *columns, StringInfo last_row);
extern uint64 apply_copy_next(List *columns, const char *relname,
							  int64 limit_bytes, bool *more);
extern void apply_copy_end(void);
extern uint64 apply_copy_buffer(List *columns, const char *relname,
								const char *data, int len);
extern char *copy_row_field(const char *row, int index);
extern uint64 apply_copy_careful(struct SourceConn *conn, const char *select_sql,
								 List *columns, const char *stage,
								 StringInfo last_row, List *pk,
								 int64 *skipped, char **sample);
/* How apply_upsert finds a staged row's target row */
typedef enum CompareMode
{
	COMPARE_JOIN,				/* let the planner join (large batches) */
	COMPARE_KEY_RANGE,			/* join with only the batch's key range */
	COMPARE_PROBE				/* one index probe per staged row (few rows) */
} CompareMode;

extern int64 apply_upsert(const char *target, const char *stage, List *columns,
						  List *pk, bool soft, bool dedupe, CompareMode how,
						  int64 *inserted);
extern void merge_init(void);
extern int64 apply_count_revived(const char *target, const char *stage, List *pk);
extern int64 apply_upsert_small(const char *target, const char *stage,
								List *columns, List *pk, bool soft,
								int64 *inserted);
extern int64 apply_delete_missing(const char *target, const char *keystage,
								  List *pk, bool soft, const char *filter);
extern int64 apply_delete_keys(const char *target, const char *keystage,
							   List *pk, bool soft);
extern void apply_mirror_multiset(const char *target, const char *stage,
								  List *columns, DeletesMode deletes,
								  int64 *inserted, int64 *deleted);
extern char *apply_query_value(const char *sql);
extern char *apply_query_value_args(const char *sql, int nargs,
									const char **args);


/* citus.c: targets on a Citus coordinator */
extern char citus_partmethod(Oid relid);
extern bool citus_target(const char *target);
extern List *citus_order_tables(SourceConfig *cfg, List *names);
extern char *citus_apply_layout(SourceConfig *cfg, const char *table, Oid relid,
								List *pk);
extern void citus_check_new_key(Oid relid, const char *target, List *pk);
extern void citus_delete_key_conflicts(const char *target, List *pk);
extern void citus_check_type_change(Oid relid, const char *target,
									const char *column);
extern void citus_insert(const char *target, const char *stage, List *columns,
						 bool soft);
extern int64 citus_upsert(const char *target, const char *stage, List *columns,
						  List *pk, bool soft, bool dedupe, int64 *inserted);
extern int64 citus_delete_missing(const char *target, const char *keystage,
								  List *pk, bool soft, const char *filter);
extern void citus_mirror_multiset(const char *target, const char *stage,
								  List *columns, DeletesMode deletes,
								  int64 *inserted, int64 *deleted);

#endif							/* DBSYNC_APPLY_H */
