/*-------------------------------------------------------------------------
 * mysql_values.h
 *	  MySQL-family values -> COPY text (mysql_values.c).
 *-------------------------------------------------------------------------
 */
#ifndef DBSYNC_MYSQL_VALUES_H
#define DBSYNC_MYSQL_VALUES_H

#include "dbsync.h"
#include "lib/stringinfo.h"

/* How one column of the stream is turned into COPY text. */
typedef struct MyColumn
{
	const char *name;
	ValueKind	kind;
	int			width;			/* VK_BITS: n; VK_VECTOR: dimensions, 0 =
								 * any */
	bool		as_utc;			/* TIMESTAMP: the text is UTC, say so */
	bool		geometry;		/* VK_SPATIAL to PostGIS (EWKB), else bytea */
	char		vec_open;		/* '[' pgvector, '{' real[] */
	bool		lenient;		/* staged as text (on_row_error 'skip'): a
								 * bad vector or SRID is passed on as text,
								 * so that only its row fails the cast */
	bool		vec_binary;		/* float32 little endian (MySQL 9, MariaDB
								 * 11.7) */
	int			key_index;		/* 1-based position in the key, 0 = none */
} MyColumn;

/*
 * The source form of a key value v (len bytes), as a resumed load compares
 * it at the source: bytes as hex digits, bits as an unsigned number, any
 * other value as sent (tinyint(1) as its number, an ENUM as its label).
 */
extern void mysql_key_source_form(StringInfo out, const MyColumn *mc,
								  const char *v, unsigned long len);

/*
 * Append the non-NULL value v (len bytes, as the source sent it) of column
 * mc to out as one COPY text field; scratch is a work buffer.  Returns NULL,
 * or why the value cannot be converted (a malformed vector in a column that
 * is not lenient): out then ends with a partial field, which the caller
 * discards.  Throws when a binary value is too large to hex-encode.
 */
extern const char *mysql_append_value(StringInfo out, StringInfo scratch,
									  const MyColumn *mc, const char *v,
									  unsigned long len);

#endif							/* DBSYNC_MYSQL_VALUES_H */
