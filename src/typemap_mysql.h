/*-------------------------------------------------------------------------
 * typemap_mysql.h
 *	  MySQL-family column types -> candidate PostgreSQL types.
 *-------------------------------------------------------------------------
 */
#ifndef DBSYNC_TYPEMAP_MYSQL_H
#define DBSYNC_TYPEMAP_MYSQL_H

#include "dbsync.h"

/*
 * Fill col->local_type, fallback_type, kind and dims from what
 * information_schema.COLUMNS says about a column.  Integers that are NULL
 * in information_schema are passed as -1.  is_json_checked: MariaDB's
 * json_valid() check constraint covers the column; is_vector_option: the
 * column is listed in the server's vector_columns option.
 */
extern void mysql_map_column(RemoteColumn *col, const char *data_type,
							 const char *column_type, int char_len,
							 int num_prec, int num_scale, int dt_prec,
							 bool is_json_checked, bool is_vector_option);

#endif							/* DBSYNC_TYPEMAP_MYSQL_H */
