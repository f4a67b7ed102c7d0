# The two commands of the README:
#   make demo  - build the test hosts, bring up a buffer host and a leginondb host on this
#                machine, converge site.yml, and show sample movies arriving (tools/demo.sh);
#                every run starts from fresh hosts. `make demo-clean` tears them down.
#   make test  - everything CI runs: unit and fault tests, lint, molecule scenarios
# Both install what they need first (tools/setup-host.sh), so they work on a fresh machine.
.PHONY: setup demo demo-clean test test-python lint molecule bench

setup:
	bash tools/setup-host.sh

demo: setup
	bash tools/demo.sh

demo-clean:
	bash tools/demo.sh clean

test: setup
	bash tools/run-tests.sh

test-python: setup
	bash tools/run-tests.sh python

lint: setup
	bash tools/run-tests.sh lint

molecule: setup
	bash tools/run-tests.sh molecule

# every benchmark runs even when an earlier one misses a target; make fails at the end if any did
BENCHES = ingest_bench archive_bench journal_bench leginondb_bench camera_share_bench

bench: setup
	@missed=""; for b in $(BENCHES); do .venv/bin/python bench/$$b.py || missed="$$missed $$b"; done; \
	if [ -n "$$missed" ]; then echo "targets missed in:$$missed"; exit 1; fi
