# The two commands of README.md: `make install` builds and installs the patched Patroni, `make test` runs every test.
# The venv is made with Debian's /usr/bin/python3 so that the postgres user can run what it holds; `make install`
# refuses, in one line, a venv that user cannot reach (a checkout under /root, mode 0700).
PYTHON ?= /usr/bin/python3
VENV ?= .venv
SERVICE_USER ?= postgres
EXTRAS ?= etcd3,psycopg2-binary
# every pip step is bounded (seconds); tests/deps.sh bounds its apt-get and debootstrap steps the same way
STEP_TIMEOUT ?= 600
# the first line of a record in docs/results: the series it is of (sha256 of the patch files of patches/series, in
# order) and the package version; `make test` fails first, in one line, when a record is not of today's series
SERIES_STAMP = $(PYTHON) patchqueue.py series-stamp
PIP = timeout $(STEP_TIMEOUT) $(VENV)/bin/pip install --quiet --disable-pip-version-check

.PHONY: install test deps demo results upstream-suite acceptance pr-map deb deb-source rpm test-deb

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

test: deps
	$(PYTHON) patchqueue.py records
	$(VENV)/bin/python -m pytest --durations=20 tests generated/upstream-tests/test_systemd.py generated/upstream-tests/test_postmaster.py

# boot a real systemd in private namespaces, start+reload the shipped unit, show status (see README); it needs only
# PostgreSQL 15 (installed without a cluster) and etcd (unpacked into .cache), not the rest of `make deps`
demo:
	SDNOTIFY_STEP_TIMEOUT=$(STEP_TIMEOUT) tests/deps.sh postgresql etcd
	$(PIP) -r tests/requirements.txt
	timeout $(STEP_TIMEOUT) $(VENV)/bin/python tests/demo.py

# every benchmark, upstream and patched side by side; rewrites docs/results.md and docs/startup-timeline.png (~55 min)
results: deps
	$(PIP) -r bench/requirements.txt
	$(VENV)/bin/python bench/results.py

# upstream's flake8, isort and unit suite on its master, without and with the series (docs/upstreaming.md):
#   make upstream-suite UPSTREAM=/path/to/a/clone/of/patroni [REF=commit] [PY=python3]
upstream-suite:
	test -n "$(UPSTREAM)" || (echo 'make upstream-suite: set UPSTREAM to a clone of upstream Patroni' >&2; exit 2)
	mkdir -p docs/results
	($(SERIES_STAMP) && \
	  bench/upstream_suite.sh $(UPSTREAM) $(or $(REF),HEAD) $(or $(PY),$(PYTHON))) > docs/results/upstream_suite.txt.tmp
	mv docs/results/upstream_suite.txt.tmp docs/results/upstream_suite.txt
	cat docs/results/upstream_suite.txt

# upstream's acceptance suite (behave, features/) on its master, without and with the series, feature by feature, on
# each DCS this machine runs (bench/acceptance.sh; as root: behave runs as postgres in private namespaces; needs
# PostgreSQL 15 and etcd from `make deps`, Debian's zookeeper package for DCS=zookeeper); runs of one DCS at a time
# add up in build/acceptance, the record docs/results/acceptance.txt holds all of them:
#   make acceptance UPSTREAM=/path/to/a/clone/of/patroni [REF=commit] [DCS="etcd3 etcd raft zookeeper"]
#                   [FEATURES="basic_replication ..."] [LOCK=/a/file/for/flock] [RECORD_ONLY=yes]
acceptance:
	test -n "$(UPSTREAM)" || (echo 'make acceptance: set UPSTREAM to a clone of upstream Patroni' >&2; exit 2)
	mkdir -p docs/results
	($(SERIES_STAMP) && PYTHON=$(PYTHON) FEATURES="$(FEATURES)" LOCK="$(LOCK)" RECORD_ONLY="$(RECORD_ONLY)" \
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

# the .deb where it runs (tests/test_deb.py, also part of `make test`): trixie booted with systemd 257 + journald,
# Debian's patroni 4.0.7 then ours over it, and the source package's autopkgtests against it (~14 s of the run);
# ~2 min 20-40 s on a fresh machine (build root, proof root, .deb), ~1 min 45 s once they are cached
test-deb: deps
	$(VENV)/bin/python -m pytest tests/test_deb.py

# the pull requests: the series cut into one PR per concern (bench/pr_map.sh), upstream's flake8, isort, unit suite and
# pyright on each prefix, the table of docs/upstreaming.md:
#   make pr-map UPSTREAM=/path/to/a/clone/of/patroni [REF=commit] [PY=python3] [PR_AUTHOR="Name <address>" PR_OUT=dir]
# with a real PR_AUTHOR and PR_OUT, the clean commits of each PR are written to PR_OUT/prN-<name>/ (git format-patch)
PYRIGHT_VERSION = 1.1.411
.cache/pyright/node_modules/.bin/pyright:
	mkdir -p .cache/pyright
	cd .cache/pyright && timeout $(STEP_TIMEOUT) npm install --silent --no-audit --no-fund pyright@$(PYRIGHT_VERSION)

pr-map: .cache/pyright/node_modules/.bin/pyright
	test -n "$(UPSTREAM)" || (echo 'make pr-map: set UPSTREAM to a clone of upstream Patroni' >&2; exit 2)
	mkdir -p docs/results
	($(SERIES_STAMP) && \
	  PR_AUTHOR="$(PR_AUTHOR)" PR_OUT="$(PR_OUT)" bench/pr_map.sh $(UPSTREAM) $(or $(REF),HEAD) $(or $(PY),$(PYTHON))) \
	  > docs/results/pr_map.txt.tmp
	mv docs/results/pr_map.txt.tmp docs/results/pr_map.txt
	cat docs/results/pr_map.txt
