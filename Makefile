# The two commands of README.md: `make install` builds and installs the patched Patroni, `make test` runs every test.
# The venv is made with Debian's /usr/bin/python3 so that the postgres user can run what it holds.
PYTHON ?= /usr/bin/python3
VENV ?= .venv
EXTRAS ?= etcd3,psycopg2-binary

.PHONY: install test deps demo results

install:
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check '.[$(EXTRAS)]'
	$(VENV)/bin/pip show patroni | sed -n "s/^Version: /patroni /p"

deps:
	tests/deps.sh
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	# the control: unpatched upstream from pip, in its own venv
	test -x .venv-upstream/bin/patroni || ($(PYTHON) -m venv .venv-upstream && \
	  .venv-upstream/bin/pip install --quiet --disable-pip-version-check 'patroni[$(EXTRAS)]==4.1.5')

test: deps
	$(VENV)/bin/python -m pytest tests generated/upstream-tests/test_systemd.py generated/upstream-tests/test_reload_config.py

# boot a real systemd in private namespaces, start+reload the shipped unit, show status (see README)
demo: deps
	$(VENV)/bin/python tests/demo.py

# every benchmark, upstream and patched side by side; rewrites docs/results.md and docs/startup-timeline.png (~35 min)
results: deps
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	$(VENV)/bin/python bench/results.py
