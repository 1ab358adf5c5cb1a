/*-------------------------------------------------------------------------
 * subxact.c
 *	  Run a piece of work in an internal subtransaction and catch its error,
 *	  the way PL/pgSQL exception blocks do.
 *
 *		Subxact sx;
 *		subxact_begin(&sx);
 *		PG_TRY();  { ...work...; subxact_commit(&sx); }
 *		PG_CATCH(); { ErrorData *e = subxact_abort(&sx); ... }
 *		PG_END_TRY();
 *
 * Work keeps allocating in the caller's memory context; after an abort the
 * caller's memory context and resource owner are current again.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/resowner.h"

#include "dbsync.h"

void
subxact_begin(Subxact *sx)
{
	sx->cxt = CurrentMemoryContext;
	sx->owner = CurrentResourceOwner;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(sx->cxt);
}

void
subxact_commit(Subxact *sx)
{
	ReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(sx->cxt);
	CurrentResourceOwner = sx->owner;
}

/* Roll back after an error; returns the error (the error state is reset). */
ErrorData *
subxact_abort(Subxact *sx)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(sx->cxt);
	edata = CopyErrorData();
	FlushErrorState();
	RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(sx->cxt);
	CurrentResourceOwner = sx->owner;
	return edata;
}

/*
 * Is this error a real interrupt of the statement (cancel, statement
 * timeout, shutdown), raised by PostgreSQL's interrupt processing?  Code
 * that fires during a sync (a trigger) may raise the same SQLSTATE; that
 * fails its table, not the whole run.
 */
bool
subxact_is_interrupt(ErrorData *edata)
{
	return (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
			edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN ||
			edata->sqlerrcode == ERRCODE_CRASH_SHUTDOWN) &&
		edata->funcname != NULL && strcmp(edata->funcname, "ProcessInterrupts") == 0;
}
