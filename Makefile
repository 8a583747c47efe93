# The two commands of README.md: `make install` builds and installs the patched Patroni, `make test` runs every test.
# The venv is made with Debian's /usr/bin/python3 so that the postgres user can run what it holds; `make install`
# refuses, in one line, a venv that user cannot reach (a checkout under /root, mode 0700).
PYTHON ?= /usr/bin/python3
VENV ?= .venv
SERVICE_USER ?= postgres
EXTRAS ?= etcd3,psycopg2-binary
# every pip step is bounded (seconds); tests/deps.sh bounds its apt-get and debootstrap steps the same way
STEP_TIMEOUT ?= 600
# the `series` line of a record in docs/results (its first line, or under a benchmark's command and date): the series
# it is of (sha256 of the patch files of patches/series, in order) and the package version; `make test` fails first,
# in one line, when a record is not of today's series (`make records`)
SERIES_STAMP = $(PYTHON) patchqueue.py series-stamp
# the records made on upstream's master also name the upstream-only docs patches they apply (their fingerprint)
UPSTREAM_STAMP = $(SERIES_STAMP) --upstream-only
# where `make upstream-suite` and `make pr-map` write their record: docs/results/<name>.txt with the machine's
# /usr/bin/python3 (PY unset), docs/results/<name>-py<version>.txt with PY= (a pyenv interpreter, or
# tests/root_python.sh: the Python of a Debian root, forky's 3.14); RECORD=<file name> names another file there,
# beginning with <name>- (patchqueue.py tells a record of upstream's suites from a benchmark's by that name)
PY_VERSION = $(if $(PY),$(shell $(PY) -c 'import platform; print(platform.python_version())'))
record = docs/results/$(if $(RECORD),$(if $(filter $(1)-%.txt,$(RECORD)),$(RECORD),$(error RECORD=$(RECORD): \
  name it $(1)-<what>.txt (patchqueue.py tells the records apart by their names))),$(1)$(if $(PY_VERSION),-py$(PY_VERSION)).txt)
PIP = timeout $(STEP_TIMEOUT) $(VENV)/bin/pip install --quiet --disable-pip-version-check

.PHONY: install records test deps demo results upstream-suite acceptance pr-map deb deb-source rpm test-deb test-py314

install:
	$(eval UNREACHABLE := $(shell $(PYTHON) patchqueue.py reachable $(VENV) $(SERVICE_USER) 2>&1))
	$(if $(UNREACHABLE),$(error $(UNREACHABLE)))
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(PIP) '.[$(EXTRAS)]'
	$(VENV)/bin/pip show patroni | sed -n "s/^Version: /patroni /p"

deps:
	SDNOTIFY_STEP_TIMEOUT=$(STEP_TIMEOUT) tests/deps.sh
	$(PIP) -r tests/requirements.txt
	# the control: unpatched upstream from pip, in its own venv
	test -x .venv-upstream/bin/patroni || ($(PYTHON) -m venv .venv-upstream && \
	  timeout $(STEP_TIMEOUT) .venv-upstream/bin/pip install --quiet --disable-pip-version-check \
	  'patroni[$(EXTRAS)]==4.1.5')

# first, before the dependencies: a record in docs/results that is not of today's series fails the run in one line
records:
	$(PYTHON) patchqueue.py records

# in TEST_WORKERS parallel pytest-xdist workers, each test module whole in one (TEST_DIST), the longest modules first
# (tests/conftest.py); TEST_WORKERS=0: in this process, one test after the other
TEST_WORKERS ?= 2
TEST_DIST = --dist loadfile --no-loadscope-reorder
test: records deps
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) $(TEST_DIST) --durations=20 tests \
	  generated/upstream-tests/test_systemd.py generated/upstream-tests/test_postmaster.py

# Python 3.14 (Debian forky's), apart from `make test`: on a fresh machine it makes the forky root
# (tests/debian_root.sh), installs Python and PostgreSQL 18 in it and a venv of it with the patched Patroni
# (tests/root_python.sh runs that interpreter from outside; README.md), several minutes. Under 3.14: the series' unit
# tests, test_build.py, and the real-parts tests that need no systemd (PostgreSQL 18 of the root, etcd 3.4); then
# tests/test_container_pid1.py with the machine's Python (3.11, fork) and 3.14 (forkserver) side by side
VENV314 = .venv-py314
PG314 = /usr/lib/postgresql/18/bin
test-py314: deps
	tests/root_python.sh setup
	$(MAKE) install PYTHON=$(CURDIR)/tests/root_python.sh VENV=$(VENV314)
	timeout $(STEP_TIMEOUT) $(VENV314)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	# (not the upstream control of the handler's order: it runs the machine's upstream venv, which cannot run inside
	# the forky root; `make test` runs it)
	SDNOTIFY_PG_BIN=$(PG314) $(VENV314)/bin/python -m pytest --durations=10 generated/upstream-tests/test_systemd.py \
	  generated/upstream-tests/test_postmaster.py tests/test_build.py tests/test_notify_integration.py \
	  tests/test_reload_wait.py -k 'not test_upstream_handles_sighup_only_after_its_imports'
	SDNOTIFY_PID1_VENVS=$(VENV314)=$(PG314) $(VENV)/bin/python -m pytest tests/test_container_pid1.py

# boot a real systemd in private namespaces, start+reload the shipped unit, show status (see README); it needs only
# PostgreSQL 15 (installed without a cluster) and etcd (unpacked into .cache), not the rest of `make deps`
demo:
	SDNOTIFY_STEP_TIMEOUT=$(STEP_TIMEOUT) tests/deps.sh postgresql etcd
	$(PIP) -r tests/requirements.txt
	timeout $(STEP_TIMEOUT) $(VENV)/bin/python tests/demo.py

# every benchmark, upstream and patched side by side; rewrites docs/results.md and docs/startup-timeline.png (~1 h)
results: install deps
	$(PIP) -r bench/requirements.txt
	# forky's Python 3.14 for bench/sigterm_lock.py (the root made once, several minutes on a fresh machine)
	tests/root_python.sh setup
	$(VENV)/bin/python bench/results.py

# upstream's flake8, isort and unit suite on its master, without and with the series (docs/upstreaming.md):
#   make upstream-suite UPSTREAM=/path/to/a/clone/of/patroni [REF=commit] [PY=python3] [AMEND=diff] [RECORD=name]
upstream-suite:
	test -n "$(UPSTREAM)" || (echo 'make upstream-suite: set UPSTREAM to a clone of upstream Patroni' >&2; exit 2)
	mkdir -p docs/results
	($(UPSTREAM_STAMP) && AMEND="$(AMEND)" \
	  bench/upstream_suite.sh $(UPSTREAM) $(or $(REF),HEAD) $(or $(PY),$(PYTHON))) > $(call record,upstream_suite).tmp
	mv $(call record,upstream_suite).tmp $(call record,upstream_suite)
	cat $(call record,upstream_suite)

# upstream's acceptance suite (behave, features/) on its master, without and with the series, feature by feature, on
# each DCS this machine runs (bench/acceptance.sh; as root: behave runs as postgres in private namespaces; needs
# PostgreSQL 15 and etcd from `make deps`, Debian's zookeeper package for DCS=zookeeper); runs of one DCS at a time
# add up in build/acceptance, the record docs/results/acceptance.txt holds all of them:
#   make acceptance UPSTREAM=/path/to/a/clone/of/patroni [REF=commit] [DCS="etcd3 etcd raft zookeeper"]
#                   [FEATURES="basic_replication ..."] [LOCK=/a/file/for/flock] [RECORD_ONLY=yes]
acceptance:
	test -n "$(UPSTREAM)" || (echo 'make acceptance: set UPSTREAM to a clone of upstream Patroni' >&2; exit 2)
	mkdir -p docs/results
	($(UPSTREAM_STAMP) && PYTHON=$(PYTHON) FEATURES="$(FEATURES)" LOCK="$(LOCK)" RECORD_ONLY="$(RECORD_ONLY)" \
	  bench/acceptance.sh $(UPSTREAM) $(or $(REF),HEAD) $(DCS)) > docs/results/acceptance.txt.tmp
	mv docs/results/acceptance.txt.tmp docs/results/acceptance.txt
	cat docs/results/acceptance.txt

# distribution packages from the pinned sdist + patches/series (docs/packaging.md), into build/deb and build/rpm:
# the 3.0 (quilt) source package (here, with dpkg-source), the .deb built in a Debian trixie build root
# (.cache/trixie-build, made once) with lintian, and a noarch RPM (rpmbuild: apt-get install rpm)
deb-source:
	$(PYTHON) packaging/build.py source

deb:
	$(PYTHON) packaging/build.py deb

rpm:
	$(PYTHON) packaging/build.py rpm

# the .deb where it runs (tests/test_deb.py, also part of `make test`): bookworm, trixie and forky, each booted
# with its own systemd + journald, the suite's own patroni then ours over it, and the source package's autopkgtests
# against it; SDNOTIFY_DEB_SUITES chooses the suites (docs/packaging.md gives the times)
test-deb: deps
	$(VENV)/bin/python -m pytest tests/test_deb.py

# the pull requests: the series cut into one PR per concern (bench/pr_map.sh), upstream's flake8, isort, unit suite and
# pyright on each prefix, the table of docs/upstreaming.md:
#   make pr-map UPSTREAM=/path/to/a/clone/of/patroni [REF=commit] [PY=python3] [PR_AUTHOR="Name <address>" PR_OUT=dir]
# with a real PR_AUTHOR and PR_OUT, the clean commits of each PR are written to PR_OUT/prN-<name>/ (git format-patch);
# the record says that each PR's export applies to REF with plain `git am`, in order (bench/pr_map.sh)
PYRIGHT_VERSION = 1.1.411
.cache/pyright/node_modules/.bin/pyright:
	mkdir -p .cache/pyright
	cd .cache/pyright && timeout $(STEP_TIMEOUT) npm install --silent --no-audit --no-fund pyright@$(PYRIGHT_VERSION)

pr-map: .cache/pyright/node_modules/.bin/pyright
	test -n "$(UPSTREAM)" || (echo 'make pr-map: set UPSTREAM to a clone of upstream Patroni' >&2; exit 2)
	mkdir -p docs/results
	($(UPSTREAM_STAMP) && \
	  PR_AUTHOR="$(PR_AUTHOR)" PR_OUT="$(PR_OUT)" bench/pr_map.sh $(UPSTREAM) $(or $(REF),HEAD) $(or $(PY),$(PYTHON))) \
	  > $(call record,pr_map).tmp
	mv $(call record,pr_map).tmp $(call record,pr_map)
	cat $(call record,pr_map)
