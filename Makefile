# logpipe — the two commands a fresh Debian machine needs: `make demo` and `make test`.
# Everything they need is installed here: Debian packages with apt-get (as root),
# then a virtualenv in .venv with logpipe installed in it.

PYTHON     ?= python3
VENV       ?= .venv
VPY        := $(VENV)/bin/python
DEB_PKGS   := apache2 apache2-utils memcached goaccess wrk postgresql chromium systemd
# The command each Debian package provides; a package is installed only when its command is missing.
DEB_CHECKS := /usr/sbin/apache2 /usr/bin/ab /usr/bin/memcached /usr/bin/goaccess /usr/bin/wrk \
              /usr/lib/postgresql /usr/bin/chromium /usr/bin/systemd-analyze
PREFIX     ?= /usr/local
SYSTEMD_DIR ?= /etc/systemd/system
TMPFILES_DIR ?= /etc/tmpfiles.d

.PHONY: all deps venv demo test test-faults bench install uninstall clean

all: venv

deps:
	@missing=0; for f in $(DEB_CHECKS); do [ -e $$f ] || missing=1; done; \
	if [ $$missing = 1 ]; then \
	  echo "installing Debian packages: $(DEB_PKGS)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEB_PKGS) >/dev/null; \
	fi

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

demo: deps venv
	$(VPY) -m bench.demo

test: deps venv
	$(VPY) -m pytest -q

test-faults: deps venv
	$(VPY) -m pytest -q -m faults

bench: deps venv
	$(VPY) -m bench.run

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
