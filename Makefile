# dbsync: PGXS build.  `make demo` runs the demo, `make test` runs every test.
EXTENSION = dbsync
MODULE_big = dbsync
DATA = dbsync--1.0.sql
PGFILEDESC = "dbsync - sync YugabyteDB and TiDB tables into PostgreSQL"

OBJS = \
	src/dbsync.o \
	src/options.o \
	src/source.o \
	src/conncache.o \
	src/source_pg.o \
	src/source_pg_repl.o \
	src/source_mysql.o \
	src/mysql_values.o \
	src/remote_sql.o \
	src/typemap.o \
	src/typemap_mysql.o \
	src/catalog.o \
	src/apply.o \
	src/stage.o \
	src/merge.o \
	src/citus.o \
	src/pgoutput.o \
	src/capture.o \
	src/capture_state.o \
	src/capture_stream.o \
	src/capture_apply.o \
	src/sync.o \
	src/deletes.o \
	src/run.o \
	src/admin.o \
	src/subxact.o \
	src/guard.o \
	src/worker.o \
	src/progress.o \
	src/history.o \
	src/health.o

PG_CONFIG ?= pg_config
MARIADB_CONFIG ?= $(shell command -v mariadb_config || command -v mysql_config)
# On a bare machine neither exists yet: `make demo` and `make test` install them.
ifneq ($(MARIADB_CONFIG),)
MARIADB_INCLUDE := $(shell $(MARIADB_CONFIG) --include)
MARIADB_LIBS := $(shell $(MARIADB_CONFIG) --libs)
endif

PG_CPPFLAGS = -I$(libpq_srcdir) -Isrc $(MARIADB_INCLUDE)
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare
SHLIB_LINK_INTERNAL = $(libpq)
SHLIB_LINK = $(MARIADB_LIBS)

PGXS := $(shell command -v $(PG_CONFIG) >/dev/null 2>&1 && $(PG_CONFIG) --pgxs)
ifneq ($(PGXS),)
include $(PGXS)
else
# bare machine: install what the build needs (Debian 12, as root), then build
all install installcheck:
	bash scripts/deps.sh
	$(MAKE) $@
endif

# PGXS tracks no header dependencies: rebuild every object when a header changes
$(OBJS): $(wildcard src/*.h)

.PHONY: test demo demo-stop cppcheck
test:
	bash scripts/run-tests.sh

demo:
	bash scripts/demo.sh

demo-stop:
	DBSYNC_TESTDIR=$${DEMO_DIR:-/tmp/dbsync-demo} bash scripts/testenv.sh stop

cppcheck:
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
		--suppress=missingIncludeSystem --suppress=missingInclude \
		--suppress=unknownEvaluationOrder --suppress=nullPointerRedundantCheck \
		-D__GNUC__ -Isrc -I$(shell $(PG_CONFIG) --includedir-server) \
		--include=$(shell $(PG_CONFIG) --includedir-server)/postgres.h \
		$(MARIADB_INCLUDE) src/*.c
