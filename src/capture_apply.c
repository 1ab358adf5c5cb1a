/*-------------------------------------------------------------------------
 * capture_apply.c
 *	  Log capture's apply: the row changes of source transactions, decoded
 *	  by the driver (pgoutput.h), collapsed per table and key in memory and
 *	  applied set-based: the rows staged by COPY, the unchanged (TOASTed)
 *	  values filled from the target, deletes by key, one upsert.
 *
 * Per key only the last change counts (a table's state after a set of
 * transactions is, key by key, what its last change made it): an insert
 * or update becomes an upsert of the whole row, a delete a delete; a
 * key-changing update is a delete of the old key and an upsert of the new
 * one.  Values an update did not send (unchanged TOASTed values, columns
 * the source does not publish) come from the row's earlier change in the
 * same set, else from the target's row as it was before the set (the old
 * key's row, else the new key's).  A set is flushed before it outgrows
 * CAPTURE_FLUSH_ROWS / CAPTURE_FLUSH_BYTES, so any source transaction is
 * applied in bounded memory; only whole source transactions commit.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "common/hashfn.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "apply.h"
#include "capture.h"
#include "source.h"

#define CAPTURE_FLUSH_ROWS 50000
#define CAPTURE_FLUSH_BYTES (64 * 1024 * 1024)

/* The last change of one key in the current set. */
typedef struct CapChange
{
	char	   *key;			/* hash key: the key's COPY text */
	char		op;				/* 'U' upsert, 'D' delete */
	char	   *row;			/* 'U': the row's COPY line (no newline) */
	bool	   *unchanged;		/* 'U': columns to fill from the target, or
								 * NULL */
	char	   *fill_key;		/* 'U' with unchanged: that target row's key */
} CapChange;


/* The key's COPY text of a tuple (key columns in key order). */
static char *
tuple_key(CapTable *t, const PgoTuple *tup, const PgoRelation *rel, const PgoTuple *old)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int k = 0; k < list_length(t->pk); k++)
	{
		int			i = t->key_att[k];
		const PgoTuple *src = tup;

		if (k > 0)
			appendStringInfoChar(&buf, '\t');
		/* a TOASTed key column an update left alone: the old key has it */
		if (old && i >= 0 && i < tup->ncols && tup->kinds[i] == 'u' &&
			i < old->ncols && old->kinds[i] == 't')
			src = old;
		if (i < 0 || i >= src->ncols || src->kinds[i] != 't')
			return NULL;		/* (the caller fails the table) */
		copy_append_escaped(&buf, src->values[i], strlen(src->values[i]));
	}
	return buf.data;
}

/*
 * The row's COPY line in the target's column order; *unchanged marks the
 * columns the tuple did not carry (NULL when it carried all).
 */
static char *
tuple_row(CapTable *t, const PgoTuple *tup, bool **unchanged, const PgoTuple *old)
{
	StringInfoData buf;
	int			n = list_length(t->rt->columns);

	initStringInfo(&buf);
	*unchanged = NULL;
	for (int c = 0; c < n; c++)
	{
		int			i = t->col_att[c];
		char		kind = i >= 0 && i < tup->ncols ? tup->kinds[i] : 'u';
		const PgoTuple *src = tup;

		/* a value an update left alone that the old tuple carries (key, FULL) */
		if (kind == 'u' && old && i >= 0 && i < old->ncols && old->kinds[i] == 't')
		{
			src = old;
			kind = 't';
		}
		if (c > 0)
			appendStringInfoChar(&buf, '\t');
		if (kind == 't')
			copy_append_escaped(&buf, src->values[i], strlen(src->values[i]));
		else
		{
			appendStringInfoString(&buf, "\\N");
			if (kind == 'u')
			{
				if (*unchanged == NULL)
					*unchanged = palloc0(sizeof(bool) * n);
				(*unchanged)[c] = true;
			}
		}
	}
	return buf.data;
}

/* Field c of a COPY line (escaped text), as a new string. */
static char *
line_field(const char *line, int c, int *len)
{
	const char *p = line;
	const char *end;

	for (int i = 0; i < c; i++)
	{
		const char *tab = strchr(p, '\t');

		/* (lines made by tuple_row: every column is there) */
		if (tab == NULL)
			elog(ERROR, "dbsync: a staged row lacks column %d", c + 1);
		p = tab + 1;
	}
	end = strchr(p, '\t');
	*len = end ? (int) (end - p) : (int) strlen(p);
	return pnstrdup(p, *len);
}

/* The row with its unchanged columns taken from an earlier row of the set. */
static char *
merge_rows(CapTable *t, const char *row, const bool *unchanged, const char *earlier)
{
	StringInfoData buf;
	int			n = list_length(t->rt->columns);

	initStringInfo(&buf);
	for (int c = 0; c < n; c++)
	{
		int			len;
		char	   *f = line_field(unchanged[c] ? earlier : row, c, &len);

		if (c > 0)
			appendStringInfoChar(&buf, '\t');
		appendBinaryStringInfo(&buf, f, len);
	}
	return buf.data;
}

/* Keys of the set are C strings of any length: hashed and compared whole. */
static uint32
key_hash(const void *key, Size keysize)
{
	const char *s = *(char *const *) key;

	return hash_bytes((const unsigned char *) s, (int) strlen(s));
}

static int
key_match(const void *a, const void *b, Size keysize)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

static CapChange *
change_for(CapTable *t, const char *key, bool *found)
{
	CapChange  *ch = hash_search(t->changes, &key, HASH_ENTER, found);

	if (!*found)
	{
		ch->key = MemoryContextStrdup(t->cxt, key);
		t->nchanges++;
	}
	return ch;
}

static void
set_upsert(CapTable *t, CapChange *ch, char *row, bool *unchanged, const char *fill_key)
{
	MemoryContext old = MemoryContextSwitchTo(t->cxt);
	int			n = list_length(t->rt->columns);

	ch->op = 'U';
	ch->row = pstrdup(row);
	ch->unchanged = NULL;
	ch->fill_key = NULL;
	if (unchanged)
	{
		ch->unchanged = palloc(sizeof(bool) * n);
		memcpy(ch->unchanged, unchanged, sizeof(bool) * n);
		ch->fill_key = pstrdup(fill_key);
	}
	t->bytes += strlen(row) + strlen(ch->key) + 64;
	MemoryContextSwitchTo(old);
}

static void
set_delete(CapTable *t, const char *key)
{
	bool		found;
	CapChange  *ch = change_for(t, key, &found);

	ch->op = 'D';
	ch->row = NULL;
	ch->unchanged = NULL;
	ch->fill_key = NULL;
	t->bytes += strlen(key) + 64;
}

/*
 * An update's new row: values it did not carry come from an earlier change
 * of "from" in this set (merged, keeping what that one still lacked) or
 * from the target's row of "from" at apply time.
 */
static void
add_update(CapTable *t, const char *from, const char *key, char *row, bool *unchanged)
{
	bool		found;
	CapChange  *prev = hash_search(t->changes, &from, HASH_FIND, &found);
	CapChange  *ch;
	char	   *fill = (char *) from;

	if (unchanged && prev && prev->op == 'U')
	{
		int			n = list_length(t->rt->columns);
		bool		still = false;

		row = merge_rows(t, row, unchanged, prev->row);
		for (int c = 0; c < n; c++)
		{
			unchanged[c] = unchanged[c] && prev->unchanged && prev->unchanged[c];
			still |= unchanged[c];
		}
		fill = prev->fill_key;
		if (!still)
			unchanged = NULL;
	}
	ch = change_for(t, key, &found);
	set_upsert(t, ch, row, unchanged, fill);
}

static char *
nokey_message(CapTable *t)
{
	return psprintf("a change of table \"%s\" arrived without its key (%s)\nHINT: Give the source table a primary key and REPLICA IDENTITY DEFAULT or FULL; then run the server again.",
					t->name, apply_name_list_text(t->pk));
}

/*
 * Take one decoded row change into the table's set.  Returns NULL, or why
 * the table's changes cannot be applied (a change without its key).
 */
char *
capture_add_change(CapTable *t, const PgoMessage *msg)
{
	bool	   *unchanged;
	char	   *row;
	char	   *key;
	char	   *old;
	bool		found;

	switch (msg->kind)
	{
		case PGO_INSERT:
			row = tuple_row(t, &msg->new, &unchanged, NULL);
			key = tuple_key(t, &msg->new, msg->rel, NULL);
			if (key == NULL)
				return nokey_message(t);
			/* an insert carries every published column */
			set_upsert(t, change_for(t, key, &found), row, NULL, NULL);
			t->upserted++;
			break;
		case PGO_UPDATE:
			row = tuple_row(t, &msg->new, &unchanged, msg->oldkind ? &msg->old : NULL);
			key = tuple_key(t, &msg->new, msg->rel, msg->oldkind ? &msg->old : NULL);
			if (key == NULL)
				return nokey_message(t);
			if (msg->oldkind)
			{
				old = tuple_key(t, &msg->old, msg->rel, NULL);
				if (old == NULL)
					return nokey_message(t);
				if (strcmp(old, key) != 0)
				{
					add_update(t, old, key, row, unchanged);
					set_delete(t, old);
					t->upserted++;
					break;
				}
			}
			add_update(t, key, key, row, unchanged);
			t->upserted++;
			break;
		case PGO_DELETE:
			old = msg->oldkind ? tuple_key(t, &msg->old, msg->rel, NULL) : NULL;
			if (old == NULL)
				return nokey_message(t);
			set_delete(t, old);
			if (!t->keep_deleted)
				t->deleted++;
			break;
		default:
			break;
	}
	return NULL;
}

bool
capture_table_full(CapTable *t)
{
	return t->nchanges >= CAPTURE_FLUSH_ROWS || t->bytes >= CAPTURE_FLUSH_BYTES;
}

/* Stage columns: the key's columns (as the target's), named base_N. */
static List *
key_stage_columns(CapTable *t, const char *prefix)
{
	List	   *cols = NIL;
	ListCell   *lc;

	foreach(lc, t->pk)
	{
		RemoteColumn *rc = find_column(t->rt, lfirst(lc));

		cols = lappend(cols, stage_column(prefix ? psprintf("%s%d", prefix, foreach_current_index(lc) + 1) :
										  rc->name, rc->local_type));
	}
	return cols;
}

/*
 * Fill the upserts' unchanged columns from the target: its row of the
 * fill key (the update's old key, as it was before the set), else its row
 * of the new key.
 */
static void
fill_unchanged(CapTable *t, const char *stage, const char *fills)
{
	StringInfoData sql;
	ListCell   *lc;
	int			k;

	initStringInfo(&sql);
	appendStringInfo(&sql, "UPDATE %s v SET ", stage);
	foreach(lc, t->rt->columns)
	{
		const char *c = quote_identifier(((RemoteColumn *) lfirst(lc))->name);
		int			pos = foreach_current_index(lc) + 1;

		appendStringInfo(&sql, "%s%s = CASE WHEN %d OPERATOR(pg_catalog.=) ANY (f.dbsync_unchanged) "
						 "THEN CASE WHEN o.ctid IS NOT NULL THEN o.%s ELSE n.%s END ELSE v.%s END",
						 pos > 1 ? ", " : "", c, pos, c, c, c);
	}
	appendStringInfo(&sql, " FROM %s f LEFT JOIN %s o ON ", fills, t->target);
	k = 0;
	foreach(lc, t->pk)
		appendStringInfo(&sql, "%so.%s OPERATOR(pg_catalog.=) f.dbsync_old_%d", k++ ? " AND " : "",
						 quote_identifier(lfirst(lc)), foreach_current_index(lc) + 1);
	appendStringInfo(&sql, " LEFT JOIN %s n ON ", t->target);
	append_key_match(&sql, t->pk, "n", "f");
	appendStringInfoString(&sql, " WHERE ");
	append_key_match(&sql, t->pk, "v", "f");
	spi_exec(sql.data, SPI_OK_UPDATE);
}

/*
 * Apply the table's set: stage upserts, fills and deleted keys, fill, then
 * delete and upsert.  The set is emptied.
 */
void
capture_flush_table(CapTable *t, int64 rows_total)
{
	HASH_SEQ_STATUS seq;
	CapChange  *ch;
	StringInfoData rows;
	StringInfoData fills;
	StringInfoData dels;
	int64		nrows = 0;
	int64		ndels = 0;
	int64		inserted = 0;
	bool		small;
	int			nest = 0;

	if (t->nchanges == 0)
		return;
	t->applied = true;
	initStringInfo(&rows);
	initStringInfo(&fills);
	initStringInfo(&dels);
	hash_seq_init(&seq, t->changes);
	while ((ch = hash_seq_search(&seq)) != NULL)
	{
		if (ch->op == 'D')
		{
			appendStringInfo(&dels, "%s\n", ch->key);
			ndels++;
			continue;
		}
		appendStringInfo(&rows, "%s\n", ch->row);
		nrows++;
		if (ch->unchanged)
		{
			bool		first = true;

			appendStringInfo(&fills, "%s\t%s\t{", ch->key, ch->fill_key);
			for (int c = 0; c < list_length(t->rt->columns); c++)
				if (ch->unchanged[c])
				{
					appendStringInfo(&fills, "%s%d", first ? "" : ",", c + 1);
					first = false;
				}
			appendStringInfoString(&fills, "}\n");
		}
	}

	/* a few keys next to a large table: probe its key index, never scan it */
	small = (nrows + ndels) * 20 < rows_total;
	if (small)
		nest = guard_plan_probes();
	if (nrows > 0)
	{
		char	   *stage = apply_create_stage(t->rt->columns);

		apply_copy_buffer(t->rt->columns, stage, rows.data, rows.len);
		if (fills.len > 0)
		{
			List	   *fcols = list_concat(key_stage_columns(t, NULL),
											key_stage_columns(t, "dbsync_old_"));
			char	   *fstage;

			fcols = lappend(fcols, stage_column("dbsync_unchanged", "integer[]"));
			fstage = apply_create_stage(fcols);
			apply_copy_buffer(fcols, fstage, fills.data, fills.len);
			/* (probed once per staged row under the nested-loop setting) */
			spi_exec(psprintf("CREATE INDEX ON %s (%s)", fstage, apply_name_list_text(t->pk)),
					 SPI_OK_UTILITY);
			fill_unchanged(t, stage, fstage);
			apply_drop_stage(fstage);
		}
		if (dels.len > 0)
			capture_flush_deletes(t, &dels);
		/* (deletes 'soft': flagged rows that come back count as rows again) */
		if (t->soft)
			t->inserted += apply_count_revived(t->target, stage, t->pk);
		if (small)
			(void) apply_upsert_small(t->target, stage, t->rt->columns, t->pk, t->soft,
									  &inserted);
		else
			(void) apply_upsert(t->target, stage, t->rt->columns, t->pk, t->soft, false,
								COMPARE_JOIN, &inserted);
		t->inserted += inserted;
		apply_drop_stage(stage);
	}
	else if (dels.len > 0)
		capture_flush_deletes(t, &dels);
	if (small)
		guard_end(nest);
	capture_table_reset(t);
}

/* Delete the set's deleted keys (dels: COPY lines of keys). */
void
capture_flush_deletes(CapTable *t, StringInfo dels)
{
	List	   *kcols;
	char	   *kstage;

	/* deletes 'ignore': the rows stay */
	if (!t->keep_deleted)
	{
		kcols = key_stage_columns(t, NULL);
		kstage = apply_create_stage(kcols);
		apply_copy_buffer(kcols, kstage, dels->data, dels->len);
		t->removed += apply_delete_keys(t->target, kstage, t->pk, t->soft);
		apply_drop_stage(kstage);
	}
	resetStringInfo(dels);
}

/* An empty set (after a flush, or to begin with). */
void
capture_table_reset(CapTable *t)
{
	HASHCTL		ctl;

	if (t->cxt == NULL)
		t->cxt = AllocSetContextCreate(CurrentMemoryContext, "dbsync capture set",
									   ALLOCSET_DEFAULT_SIZES);
	else
		MemoryContextReset(t->cxt);
	ctl.keysize = sizeof(char *);
	ctl.entrysize = sizeof(CapChange);
	ctl.hcxt = t->cxt;
	ctl.hash = key_hash;
	ctl.match = key_match;
	t->changes = hash_create("dbsync capture changes", 1024, &ctl,
							 HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	t->nchanges = 0;
	t->bytes = 0;
}
