/*-------------------------------------------------------------------------
 * mysql_values.c
 *	  MySQL-family values -> COPY text, one column value at a time.
 *
 * The MySQL-family driver (source_mysql.c) reads rows with Connector/C's
 * text protocol: each value is a byte string with a length (utf8mb4 text,
 * or raw bytes for BINARY/BLOB, BIT, spatial types and, in MySQL 9 and
 * MariaDB 11.7, VECTOR).  This file turns one such value into one field of
 * PostgreSQL COPY text according to the column's ValueKind (see
 * typemap_mysql.c): booleans, bit strings, bytea hex, zero dates as NULL,
 * SET as text[], vectors as pgvector or real[] literals, spatial values as
 * PostGIS EWKB.
 *
 * It works on plain C types only: <mysql.h> stays in source_mysql.c.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <math.h>

#include "common/shortest_dec.h"
#include "utils/memutils.h"

#include "mysql_values.h"
#include "source.h"

static const char hexdigits[] = "0123456789abcdef";

static void
append_hex(StringInfo buf, const unsigned char *p, size_t n)
{
	char	   *d;
	size_t		i;

	if (n > (size_t) (MaxAllocSize / 2 - 16))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("binary value of %zu bytes is too large", n),
				 errhint("PostgreSQL values are limited to 1 GB; leave the table out with the server option exclude_tables.")));
	enlargeStringInfo(buf, (int) (n * 2));
	d = buf->data + buf->len;
	for (i = 0; i < n; i++)
	{
		*d++ = hexdigits[p[i] >> 4];
		*d++ = hexdigits[p[i] & 0x0f];
	}
	buf->len += (int) (n * 2);
	buf->data[buf->len] = '\0';
}

/* '0000-00-00', '2020-00-00', '2020-01-00 ...': MySQL's zero dates */
static bool
is_zero_date(const char *v, unsigned long len)
{
	if (len < 10 || v[4] != '-' || v[7] != '-')
		return false;
	return memcmp(v, "0000", 4) == 0 || memcmp(v + 5, "00", 2) == 0 ||
		memcmp(v + 8, "00", 2) == 0;
}

/*
 * [1,2.5,-3] (text) or float32 LE bytes -> '[..]' (pgvector) / '{..}'.
 * Returns NULL, or why the value is not a vector.
 */
static const char *
append_vector(StringInfo out, const MyColumn *mc, const char *v,
			  unsigned long len)
{
	char		open = mc->vec_open;
	char		close = open == '[' ? ']' : '}';
	int			n = 0;

	if (mc->vec_binary)
	{
		unsigned long i;

		if (len % 4 != 0)
			return "A binary vector must hold 4 bytes per dimension.";
		appendStringInfoChar(out, open);
		for (i = 0; i < len; i += 4)
		{
			const unsigned char *b = (const unsigned char *) v + i;
			uint32		u = (uint32) b[0] | ((uint32) b[1] << 8) |
				((uint32) b[2] << 16) | ((uint32) b[3] << 24);
			float		f;
			char		num[32];

			memcpy(&f, &u, sizeof(f));
			if (!isfinite(f))
				return "Vector elements must be finite numbers.";
			float_to_shortest_decimal_buf(f, num);
			if (n++ > 0)
				appendStringInfoChar(out, ',');
			appendStringInfoString(out, num);
		}
		appendStringInfoChar(out, close);
	}
	else
	{
		const char *p = v;
		const char *end = v + len;

		while (p < end && isspace((unsigned char) *p))
			p++;
		if (p >= end || *p != '[')
			return "A vector must be a bracketed list of numbers, such as [1,2.5,-3].";
		p++;
		appendStringInfoChar(out, open);
		while (p < end && isspace((unsigned char) *p))
			p++;
		if (p < end && *p == ']')
			p++;				/* empty vector */
		else
		{
			for (;;)
			{
				const char *tok;
				char		num[64];
				char	   *numend;
				float		f;
				size_t		tl;

				while (p < end && isspace((unsigned char) *p))
					p++;
				tok = p;
				while (p < end && (isdigit((unsigned char) *p) || *p == '.' ||
								   *p == '-' || *p == '+' || *p == 'e' || *p == 'E'))
					p++;
				tl = p - tok;
				if (tl == 0 || tl >= sizeof(num))
					return "A vector must be a bracketed list of numbers, such as [1,2.5,-3].";
				memcpy(num, tok, tl);
				num[tl] = '\0';
				/* read as a float32, as pgvector and real[] will */
				errno = 0;
				f = strtof(num, &numend);
				if (*numend != '\0')
					return "A vector must be a bracketed list of numbers, such as [1,2.5,-3].";
				if (!isfinite(f))
					return "Vector elements must be finite single-precision numbers.";
				if (n++ > 0)
					appendStringInfoChar(out, ',');
				appendBinaryStringInfo(out, tok, (int) tl);
				while (p < end && isspace((unsigned char) *p))
					p++;
				if (p < end && *p == ',')
				{
					p++;
					continue;
				}
				if (p < end && *p == ']')
				{
					p++;
					break;
				}
				return "A vector must be a bracketed list of numbers, such as [1,2.5,-3].";
			}
		}
		while (p < end && isspace((unsigned char) *p))
			p++;
		if (p != end)
			return "Unexpected text after the closing bracket.";
		appendStringInfoChar(out, close);
	}
	if (mc->width > 0 && n != mc->width)
		return psprintf("Expected %d dimensions, found %d.", mc->width, n);
	return NULL;
}

/* 'a,b' -> {"a","b"} (array literal, still to be COPY-escaped) */
static void
build_set(StringInfo s, const char *v, unsigned long len)
{
	unsigned long i;

	appendStringInfoChar(s, '{');
	if (len > 0)
	{
		appendStringInfoChar(s, '"');
		for (i = 0; i < len; i++)
		{
			char		ch = v[i];

			if (ch == ',')
				appendStringInfoString(s, "\",\"");
			else
			{
				if (ch == '"' || ch == '\\')
					appendStringInfoChar(s, '\\');
				appendStringInfoChar(s, ch);
			}
		}
		appendStringInfoChar(s, '"');
	}
	appendStringInfoChar(s, '}');
}

/* PostGIS keeps SRIDs up to this; it would change a larger one silently. */
#define POSTGIS_MAX_SRID 999999

/*
 * SRID (4 bytes LE) + WKB -> EWKB hex, as PostGIS's geometry input takes.
 * Returns why not (an SRID PostGIS would change), else NULL.
 */
static const char *
append_ewkb(StringInfo out, const unsigned char *v, unsigned long len)
{
	uint32		srid;
	uint32		type;
	unsigned char hdr[9];
	bool		le;

	if (len < 9)
	{
		append_hex(out, v, len);	/* let PostGIS say what is wrong */
		return NULL;
	}
	srid = (uint32) v[0] | ((uint32) v[1] << 8) | ((uint32) v[2] << 16) |
		((uint32) v[3] << 24);
	le = v[4] == 1;
	if (srid > POSTGIS_MAX_SRID)
		return "PostGIS keeps SRIDs up to 999999 and would change this one; keep the column as bytea (drop PostGIS's geometry type from the warehouse or the column from the table) or fix the SRID at the source.";
	if (srid == 0)
	{
		append_hex(out, v + 4, len - 4);
		return NULL;
	}
	type = le ? ((uint32) v[5] | ((uint32) v[6] << 8) | ((uint32) v[7] << 16) | ((uint32) v[8] << 24)) :
		((uint32) v[8] | ((uint32) v[7] << 8) | ((uint32) v[6] << 16) | ((uint32) v[5] << 24));
	type |= 0x20000000;			/* EWKB: an SRID follows */
	hdr[0] = v[4];
	for (int i = 0; i < 4; i++)
	{
		hdr[1 + i] = le ? (type >> (8 * i)) & 0xff : (type >> (8 * (3 - i))) & 0xff;
		hdr[5 + i] = le ? (srid >> (8 * i)) & 0xff : (srid >> (8 * (3 - i))) & 0xff;
	}
	append_hex(out, hdr, 9);
	append_hex(out, v + 9, len - 9);
	return NULL;
}

const char *
mysql_append_value(StringInfo out, StringInfo scratch, const MyColumn *mc,
				   const char *v, unsigned long len)
{
	switch (mc->kind)
	{
		case VK_PLAIN:
		case VK_JSON:
		case VK_FLOAT:
		case VK_TIME:			/* '-838:59:59.5' reads as an interval */
			copy_append_escaped(out, v, len);
			break;
		case VK_BOOL:
			{
				char	   *end;
				long		n = strtol(v, &end, 10);

				/* MySQL truthiness: anything but 0 is true */
				appendStringInfoChar(out, (end != v && n == 0) ? 'f' : 't');
				break;
			}
		case VK_BIT1:
			appendStringInfoChar(out,
								 (len > 0 && (((const unsigned char *) v)[len - 1] & 1)) ? 't' : 'f');
			break;
		case VK_BITS:
			{
				int			i;

				/* the raw value: ceil(n/8) bytes, big endian */
				enlargeStringInfo(out, mc->width);
				for (i = mc->width - 1; i >= 0; i--)
				{
					unsigned long byte = (unsigned long) (i / 8);
					bool		set = byte < len &&
						(((const unsigned char *) v)[len - 1 - byte] >> (i % 8)) & 1;

					out->data[out->len++] = set ? '1' : '0';
				}
				out->data[out->len] = '\0';
				break;
			}
		case VK_BINARY:
			appendStringInfoString(out, "\\\\x");
			append_hex(out, (const unsigned char *) v, len);
			break;
		case VK_SPATIAL:
			if (mc->geometry)
			{
				int			start = out->len;
				const char *why = append_ewkb(out, (const unsigned char *) v, len);

				if (why && mc->lenient)
				{
					/* a text that the cast to geometry rejects: only this row fails */
					out->len = start;
					out->data[start] = '\0';
					appendStringInfo(out, "SRID %u beyond PostGIS's 999999",
									 (uint32) (unsigned char) v[0] |
									 ((uint32) (unsigned char) v[1] << 8) |
									 ((uint32) (unsigned char) v[2] << 16) |
									 ((uint32) (unsigned char) v[3] << 24));
					why = NULL;
				}
				return why;
			}
			else
			{
				appendStringInfoString(out, "\\\\x");
				append_hex(out, (const unsigned char *) v, len);
			}
			break;
		case VK_DATE:
		case VK_DATETIME:
			if (is_zero_date(v, len))
				appendStringInfoString(out, "\\N");
			else
			{
				copy_append_escaped(out, v, len);
				if (mc->as_utc)
					appendStringInfoString(out, "+00");
			}
			break;
		case VK_SET:
			resetStringInfo(scratch);
			build_set(scratch, v, len);
			copy_append_escaped(out, scratch->data, scratch->len);
			break;
		case VK_VECTOR:
			{
				int			start = out->len;
				const char *why = append_vector(out, mc, v, len);

				if (why && mc->lenient)
				{
					out->len = start;
					out->data[start] = '\0';
					copy_append_escaped(out, v, len);
					why = NULL;
				}
				return why;
			}
	}
	return NULL;
}

void
mysql_key_source_form(StringInfo out, const MyColumn *mc, const char *v,
					  unsigned long len)
{
	unsigned long i;

	resetStringInfo(out);
	if (mc->kind == VK_BINARY)
	{
		for (i = 0; i < len; i++)
			appendStringInfo(out, "%02x", (unsigned char) v[i]);
	}
	else if (mc->kind == VK_BIT1 || mc->kind == VK_BITS)
	{
		uint64		n = 0;

		for (i = 0; i < len; i++)
			n = (n << 8) | (unsigned char) v[i];
		appendStringInfo(out, UINT64_FORMAT, n);
	}
	else
		appendBinaryStringInfo(out, v, (int) len);
}
