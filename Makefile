# logpipe — the two commands a fresh Debian machine needs: `make demo` and `make test`.
# Everything they need is installed here: Debian packages with apt-get (as root),
# then a virtualenv in .venv with logpipe installed in it.

PYTHON     ?= python3
VENV       ?= .venv
VPY        := $(VENV)/bin/python
DEB_PKGS   := apache2 apache2-utils memcached goaccess wrk postgresql chromium systemd man-db python3-venv
# The command each Debian package provides; a package is installed only when its command is missing.
DEB_CHECKS := /usr/sbin/apache2 /usr/bin/ab /usr/bin/memcached /usr/bin/goaccess /usr/bin/wrk \
              /usr/lib/postgresql /usr/bin/chromium /usr/bin/systemd-analyze /usr/bin/man \
              /usr/share/doc/python3-venv
PREFIX     ?= /usr/local
SYSTEMD_DIR ?= /etc/systemd/system
TMPFILES_DIR ?= /etc/tmpfiles.d

.PHONY: all deps venv demo test test-faults bench install uninstall clean man config-example \
        install-man uninstall-man

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
	# Django 4.2 LTS beside the current Django, for tests/test_django_versions.py
	$(VPY) -m pip install -q --no-deps --target $(VENV)/django42 'Django>=4.2,<4.3'
	touch $@

venv: $(VENV)/.installed

demo: deps venv
	$(VPY) -m bench.demo

test: deps venv
	$(VPY) -m pytest -q

# The fault-injection scenarios (pytest marker `faults`, also part of `make test`), then the
# reliability table they measured (bench/out/reliability.md; the README's "Reliability").
test-faults: deps venv
	@$(VPY) -m pytest -q -m faults; status=$$?; echo; $(VPY) tests/faults_report.py; exit $$status

bench: deps venv
	$(VPY) -m bench.run

# The man page and the example config file are generated from logpipe.config.SETTINGS (plus the
# README's prose for the man page) and checked in; tests/test_cli_docs.py fails when they are stale.
man: venv
	$(VPY) -m logpipe.commands.manpage -o man/logpipe.1

config-example: venv
	$(VPY) -m logpipe --print-config > systemd/logpipe.conf.example

# logpipe(1) into $(PREFIX)/share/man/man1 with make install; make uninstall removes it.
MAN_DIR ?= $(PREFIX)/share/man/man1
install: install-man
uninstall: uninstall-man
install-man:
	install -D -m 0644 man/logpipe.1 '$(DESTDIR)$(MAN_DIR)/logpipe.1'
uninstall-man:
	rm -f '$(DESTDIR)$(MAN_DIR)/logpipe.1'

# -- install / uninstall ---------------------------------------------------------------------
# make install [PREFIX=/usr/local] [DESTDIR=] [LOGPIPE_HOME=$(PREFIX)/lib/logpipe]
#              [INSTALL_PYTHON=/usr/bin/python3] [EXTRAS=postgresql[,django]] [FORCE=1]
#              [CHECK_USER=<the --user of apache/logpipe.conf>] [CONFIG_FILE=/etc/logpipe/logpipe.conf]
#              [APACHE_CONF_DIR=/etc/apache2/conf-available] [INSTALL_PACKAGE=yes|no]
#   - logpipe and its libraries into a virtualenv of its own, $(LOGPIPE_HOME), built on
#     INSTALL_PYTHON (Debian's /usr/bin/python3: a Python under /root, e.g. pyenv's, is
#     unreadable by the --user logpipe drops to), with the optional EXTRAS; $(PREFIX)/bin/logpipe
#     linked to its script (Debian's Python refuses a system-wide pip install, PEP 668). An
#     existing $(PREFIX)/bin/logpipe that is not that link is left alone unless FORCE=1.
#     INSTALL_PACKAGE=no skips this part.
#   - the systemd units into $(SYSTEMD_DIR), their ExecStart= pointed at $(PREFIX)/bin/logpipe;
#     the tmpfiles.d entry (the status directory) into $(TMPFILES_DIR)/logpipe.conf;
#   - the Apache snippet into $(APACHE_CONF_DIR)/logpipe.conf, the commented config file
#     (every setting at its default) into $(CONFIG_FILE) and the units' environment file into
#     $(DEFAULT_FILE), each only when absent (never overwritten). Nothing is enabled: the last
#     lines printed say how.
#   - then a check: CHECK_USER (the snippet's --user, www-data) must be able to run
#     `logpipe --version` and import the worker's libraries with it, or make install fails
#     saying why (CHECK_USER= skips it).
# make uninstall removes all of that (edited config files and Apache snippet are kept), after
# disabling the timers; it refuses while the snippet is enabled in Apache, whose start would
# then fail.
INSTALL_PYTHON ?= /usr/bin/python3
install uninstall: LOGPIPE_HOME ?= $(PREFIX)/lib/logpipe
install uninstall: APACHE_CONF_DIR ?= /etc/apache2/conf-available
install uninstall: CONFIG_FILE ?= /etc/logpipe/logpipe.conf
install uninstall: DEFAULT_FILE ?= /etc/default/logpipe
install uninstall: CONFIG_EXAMPLE ?= systemd/logpipe.conf.example
install uninstall: INSTALL_PACKAGE ?= yes
install uninstall: UNITS = $(notdir $(wildcard systemd/*.service systemd/*.timer))
install: CHECK_USER ?= $(shell sed -n 's/^ *GlobalLog .*--user \([^ "]*\).*/\1/p' apache/logpipe.conf | head -n 1)

install:
	@set -e; \
	home='$(DESTDIR)$(LOGPIPE_HOME)'; link='$(DESTDIR)$(PREFIX)/bin/logpipe'; \
	if [ '$(INSTALL_PACKAGE)' = yes ]; then \
	  if [ -e "$$link" ] || [ -L "$$link" ]; then \
	    what=$$(if [ -L "$$link" ]; then echo "a link to $$(readlink "$$link")"; else echo "not a link"; fi); \
	    if [ -L "$$link" ] && [ "$$(readlink "$$link")" = '$(LOGPIPE_HOME)/bin/logpipe' ]; then :; \
	    elif [ '$(FORCE)' = 1 ]; then \
	      echo "replacing $$link ($$what) with logpipe's link: FORCE=1"; \
	    else \
	      echo "make install: $$link exists and is not logpipe's link to $(LOGPIPE_HOME)/bin/logpipe" >&2; \
	      echo "  ($$what): remove it, or run make install FORCE=1 to replace it" >&2; \
	      exit 1; \
	    fi; \
	  fi; \
	  if ! [ -x '$(INSTALL_PYTHON)' ]; then \
	    echo "make install: no Python at INSTALL_PYTHON=$(INSTALL_PYTHON) (Debian: apt-get install python3-venv)" >&2; \
	    exit 1; \
	  fi; \
	  echo "installing logpipe into the virtualenv $$home (on $(INSTALL_PYTHON))"; \
	  '$(INSTALL_PYTHON)' -m venv "$$home"; \
	  spec=.; if [ -n '$(EXTRAS)' ]; then spec='.[$(EXTRAS)]'; fi; \
	  "$$home/bin/python" -m pip install -q --upgrade "$$spec"; \
	  if [ -n '$(DESTDIR)' ]; then sed -i '1s|^#!$(DESTDIR)/|#!/|' "$$home/bin/logpipe"; fi; \
	  install -d '$(DESTDIR)$(PREFIX)/bin'; \
	  ln -sfn '$(LOGPIPE_HOME)/bin/logpipe' "$$link"; \
	fi; \
	install -d '$(DESTDIR)$(SYSTEMD_DIR)' '$(DESTDIR)$(TMPFILES_DIR)' '$(DESTDIR)$(APACHE_CONF_DIR)'; \
	for unit in $(UNITS); do \
	  sed 's|/usr/local/bin/logpipe|$(PREFIX)/bin/logpipe|g' "systemd/$$unit" > '$(DESTDIR)$(SYSTEMD_DIR)/'"$$unit"; \
	  chmod 0644 '$(DESTDIR)$(SYSTEMD_DIR)/'"$$unit"; \
	done; \
	install -m 0644 systemd/logpipe.tmpfiles '$(DESTDIR)$(TMPFILES_DIR)/logpipe.conf'; \
	echo "installed $(UNITS) into $(DESTDIR)$(SYSTEMD_DIR), logpipe.conf into $(DESTDIR)$(TMPFILES_DIR)"; \
	conf='$(DESTDIR)$(APACHE_CONF_DIR)/logpipe.conf'; \
	if [ -e "$$conf" ]; then echo "kept $$conf (not overwritten; compare with apache/logpipe.conf)"; \
	else sed 's|/usr/local/bin/logpipe|$(PREFIX)/bin/logpipe|g' apache/logpipe.conf > "$$conf"; \
	  chmod 0644 "$$conf"; echo "installed $$conf"; fi; \
	for pair in '$(CONFIG_EXAMPLE):$(CONFIG_FILE)' 'systemd/logpipe.default:$(DEFAULT_FILE)'; do \
	  src="$${pair%%:*}"; dest='$(DESTDIR)'"$${pair#*:}"; \
	  if [ ! -f "$$src" ]; then echo "no $$src in this tree: $$dest not installed"; \
	  elif [ -e "$$dest" ]; then echo "kept $$dest (not overwritten; compare with $$src)"; \
	  else install -D -m 0644 "$$src" "$$dest"; echo "installed $$dest"; fi; \
	done; \
	if [ -z '$(DESTDIR)' ] && [ -d /run/systemd/system ]; then \
	  systemctl daemon-reload; systemd-tmpfiles --create '$(TMPFILES_DIR)/logpipe.conf'; \
	fi; \
	if [ '$(INSTALL_PACKAGE)' = yes ] && [ -n '$(CHECK_USER)' ]; then \
	  if [ -n '$(DESTDIR)' ]; then run="$$home/bin/python -m logpipe"; else run="$(PREFIX)/bin/logpipe"; fi; \
	  if ! id -u '$(CHECK_USER)' >/dev/null 2>&1; then \
	    echo "make install: no user $(CHECK_USER) (the --user of apache/logpipe.conf) to check with: create it, or CHECK_USER=" >&2; \
	    exit 1; \
	  fi; \
	  if ! out=$$(cd / && runuser -u '$(CHECK_USER)' -- $$run --version 2>&1 && \
	              runuser -u '$(CHECK_USER)' -- "$$home/bin/python" -c 'import logpipe.daemon.worker' 2>&1); then \
	    echo "make install: FAILED: user $(CHECK_USER) cannot run logpipe as installed: $$(echo "$$out" | tail -n 1)" >&2; \
	    echo "  logpipe drops to --user $(CHECK_USER) before its worker imports its libraries, so that user" >&2; \
	    echo "  must read $(LOGPIPE_HOME) and the Python it is built on, $(INSTALL_PYTHON)" >&2; \
	    echo "  (in $$(sed -n 's/^home = //p' "$$home/pyvenv.cfg"))." >&2; \
	    echo "  Rebuild on Debian's Python: make install INSTALL_PYTHON=/usr/bin/python3" >&2; \
	    exit 1; \
	  fi; \
	  echo "checked: user $(CHECK_USER) runs $$run: $$out"; \
	fi; \
	echo "next: edit $(APACHE_CONF_DIR)/logpipe.conf (memcached address), then"; \
	echo "  a2enconf logpipe && apache2ctl configtest && systemctl reload apache2"; \
	echo "  systemctl enable --now logpipe-health.timer   # and logpipe-rollup.timer with --archive"

uninstall:
	@set -e; \
	conf='$(DESTDIR)$(APACHE_CONF_DIR)/logpipe.conf'; \
	if [ -e "$${conf%/*}/../conf-enabled/logpipe.conf" ]; then \
	  echo "logpipe is enabled in Apache ($${conf%/*}/../conf-enabled/logpipe.conf): Apache would fail"; \
	  echo "to start without it. First: a2disconf logpipe && systemctl reload apache2"; exit 1; \
	fi; \
	if [ -z '$(DESTDIR)' ] && [ -d /run/systemd/system ]; then \
	  systemctl disable --now logpipe-health.timer logpipe-rollup.timer 2>/dev/null || true; \
	fi; \
	for unit in $(UNITS); do rm -f '$(DESTDIR)$(SYSTEMD_DIR)/'"$$unit"; done; \
	rm -f '$(DESTDIR)$(TMPFILES_DIR)/logpipe.conf'; \
	echo "removed $(UNITS) from $(DESTDIR)$(SYSTEMD_DIR), logpipe.conf from $(DESTDIR)$(TMPFILES_DIR)"; \
	if [ -e "$$conf" ]; then \
	  if sed 's|/usr/local/bin/logpipe|$(PREFIX)/bin/logpipe|g' apache/logpipe.conf | cmp -s - "$$conf"; \
	  then rm -f "$$conf"; echo "removed $$conf"; else echo "kept $$conf: it was edited"; fi; \
	fi; \
	for pair in '$(CONFIG_EXAMPLE):$(CONFIG_FILE)' 'systemd/logpipe.default:$(DEFAULT_FILE)'; do \
	  src="$${pair%%:*}"; dest='$(DESTDIR)'"$${pair#*:}"; \
	  if [ -e "$$dest" ]; then \
	    if [ -f "$$src" ] && cmp -s "$$src" "$$dest"; then rm -f "$$dest"; echo "removed $$dest"; \
	      rmdir "$${dest%/*}" 2>/dev/null || true; \
	    else echo "kept $$dest: it was edited"; fi; \
	  fi; \
	done; \
	link='$(DESTDIR)$(PREFIX)/bin/logpipe'; \
	if [ -L "$$link" ] && [ "$$(readlink "$$link")" = '$(LOGPIPE_HOME)/bin/logpipe' ]; then rm -f "$$link"; fi; \
	home='$(DESTDIR)$(LOGPIPE_HOME)'; \
	if [ -f "$$home/pyvenv.cfg" ]; then rm -rf "$$home"; echo "removed $$home"; fi; \
	if [ -z '$(DESTDIR)' ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; \
	echo "left in place: /run/logpipe, /var/lib/logpipe (the history database), any --archive files"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
