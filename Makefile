# The two commands of the README's quick start: `make run` and `make test`.
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)

.PHONY: all deps build run cluster image compose-up compose-down compose-test test compat compat-cluster cli lifecycle lifecycle-ci jepsen jepsen-ci fuzz valgrind bench-storage bench-cluster bench-consume bench-ab clean

all: build

deps:
	./scripts/install-deps

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

# One galgod with embedded defaults: data in ./local_data, TCP 8090, QUIC 8080, HTTP 3000, WebSocket 8092.
run: build
	$(BUILD)/galgod --with-default-root-credentials

# Three nodes on loopback for a person to try (scripts/cluster); Ctrl-C stops them.
cluster: build
	./scripts/cluster $(BUILD)/galgod

# Everything CI runs, one stage after another (scripts/test-stages; every stage runs even after one
# fails, then a summary, and the target fails if any stage did): the ASan+UBSan build, the fuzz targets
# for a fixed time, valgrind, Iggy's official Python SDK against an ASan+UBSan galgod (over TCP, QUIC,
# HTTP and WebSocket, then against a three-node cluster), the lifecycle test's fixed seeds, the HTTP API
# suite, the WebSocket suite (tests/ws: the `websockets` client, raw sockets and the SDK over wss), Iggy's CLI
# (tests/cli: iggy-cli 0.14.0, every command group, one node and a cluster), the unit
# tests, the deploy tests (image, compose cluster, Kubernetes manifests; needs Docker), the jepsen suite's
# short matrix (jepsen/, needs root), and a check that no galgod, namespace, iptables rule or compose
# container was left behind. `scripts/test-stages NAME...` runs some stages; `--list` names them.
test: deps
	BUILD=$(BUILD) ASAN_BUILD=$(ASAN_BUILD) MAKE="$(MAKE)" ./scripts/test-stages

compat: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DGALGO_SANITIZE=ON >/dev/null
	cmake --build $(ASAN_BUILD) -j$(JOBS)
	GALGOD=$(CURDIR)/$(ASAN_BUILD)/galgod .venv/bin/python -m pytest tests/compat -q -p no:cacheprovider

compat-cluster: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DGALGO_SANITIZE=ON >/dev/null
	cmake --build $(ASAN_BUILD) -j$(JOBS)
	GALGO_COMPAT_TRANSPORTS=cluster GALGOD=$(CURDIR)/$(ASAN_BUILD)/galgod .venv/bin/python -m pytest tests/compat -q -p no:cacheprovider

# Iggy's own CLI (iggy-cli 0.14.0, built once into ~/.cache/galgo by scripts/install-iggy-cli) running every
# command group against an ASan galgod over TCP, QUIC, HTTP and WebSocket, then against a three-node cluster
# (tests/cli). Also a stage of `make test`.
cli: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DGALGO_SANITIZE=ON >/dev/null
	cmake --build $(ASAN_BUILD) -j$(JOBS)
	IGGY_CLI=$$(./scripts/install-iggy-cli) && IGGY_CLI=$$IGGY_CLI GALGOD=$(if $(GALGOD),$(GALGOD),$(CURDIR)/$(ASAN_BUILD)/galgod) \
	  .venv/bin/python -m pytest tests/cli -q -p no:cacheprovider

# The model-based lifecycle test (tests/lifecycle/README.md) against the ASan+UBSan galgod (or $(GALGOD)):
# `make lifecycle` runs one seeded sequence of OPS operations on NODES nodes (1 or 3) and prints its seed;
# SEED=N repeats one, KNOWN_BUGS=1 also runs the operations that reach known bugs. `make lifecycle-ci` is
# the test-stages stage: a few fixed seeds on one node and on three, and the known bugs as strict xfails.
OPS ?= 300
NODES ?= 1
LIFECYCLE_GALGOD = $(if $(GALGOD),$(GALGOD),$(CURDIR)/$(ASAN_BUILD)/galgod)

lifecycle: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DGALGO_SANITIZE=ON >/dev/null
	cmake --build $(ASAN_BUILD) -j$(JOBS)
	GALGOD=$(LIFECYCLE_GALGOD) .venv/bin/python tests/lifecycle/lifecycle.py --ops $(OPS) --nodes $(NODES) \
	  $(if $(SEED),--seed $(SEED)) $(if $(KNOWN_BUGS),--with-known-bugs)

lifecycle-ci: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DGALGO_SANITIZE=ON >/dev/null
	cmake --build $(ASAN_BUILD) -j$(JOBS)
	GALGOD=$(LIFECYCLE_GALGOD) .venv/bin/python -m pytest tests/lifecycle -q -p no:cacheprovider

# The jepsen suite (jepsen/README.md): hosts in network namespaces, faults, Iggy's Python SDK and Galgo's
# C client, checkers. Needs root. `make jepsen` runs the default matrix (every nemesis, ~12 minutes);
# JEPSEN_TIME, JEPSEN_NEMESIS, JEPSEN_WORKLOAD and JEPSEN_SEED choose (see python -m galgo_jepsen.run -h).
# `make jepsen-ci` is the test-stages stage: the suite's own tests and a short matrix.
jepsen: build
	cd jepsen && GALGOD=$(CURDIR)/$(BUILD)/galgod GALGO_BUILD=$(CURDIR)/$(BUILD) ../.venv/bin/python -m galgo_jepsen.run

jepsen-ci: build
	GALGO_BUILD=$(CURDIR)/$(BUILD) .venv/bin/python -m pytest -q -p no:cacheprovider jepsen/tests
	cd jepsen && GALGOD=$(CURDIR)/$(BUILD)/galgod GALGO_BUILD=$(CURDIR)/$(BUILD) JEPSEN_TIME=25 \
	  ../.venv/bin/python -m galgo_jepsen.run --matrix ci

fuzz: deps
	./scripts/fuzz 60

# Under valgrind: the storage engine on the real disk (a small benchmark run), then a three-node cluster
# (scripts/valgrind-cluster). No errors, no leaks.
valgrind: build
	valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect \
	  $(BUILD)/galgo-storage-bench --total-mb 4 --partitions 1,4 --policies fsync,none --no-fio >/dev/null
	./scripts/valgrind-cluster $(BUILD)

bench-storage: build
	$(BUILD)/galgo-storage-bench

# docs/BENCHMARKS.md's cluster figures: three nodes and a single node, each durability, then failover
# (scripts/bench-cluster; BATCHES, PRODUCERS, FAILOVERS, ... in the environment scale it).
bench-cluster: build
	./scripts/bench-cluster $(BUILD)

# What verifying stored bytes before serving them costs a consumer (scripts/bench-consume; OTHER=a build
# directory to compare with, TOTAL=... in the environment).
bench-consume: build
	./scripts/bench-consume $(BUILD) $(OTHER)

# A/B: two revisions (A, B: anything git names; default A = HEAD~1, B = HEAD) built in scratch worktrees
# under /tmp and benchmarked in alternating rounds (scripts/bench-ab).
A ?= HEAD~1
B ?= HEAD
bench-ab:
	@set -e; for r in A:$(A) B:$(B); do n=$${r%%:*}; rev=$${r#*:}; w=/tmp/galgo-ab-$$n; \
	  git worktree remove --force $$w 2>/dev/null || rm -rf $$w; git worktree add -q --detach $$w $$rev; \
	  cmake -S $$w -B $$w/build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null; \
	  cmake --build $$w/build -j$$(nproc) --target galgod galgo-bench >/dev/null; done
	./scripts/bench-ab /tmp/galgo-ab-A/build /tmp/galgo-ab-B/build
	git worktree remove --force /tmp/galgo-ab-A; git worktree remove --force /tmp/galgo-ab-B

# The container image galgo:<version> and galgo:latest, written without a registry (scripts/build-image:
# the binaries, the libraries they link and nothing else; prints its id, size and build time).
image: build
	./scripts/build-image $(BUILD)

# A three-node cluster in containers (deploy/compose): TCP 8101-8103, QUIC 8201-8203, HTTP 8301-8303 on
# 127.0.0.1; waits until every node is ready. compose-down removes containers, network and volumes.
compose-up: image
	./scripts/compose up

compose-down:
	./scripts/compose down

# The deploy tests: the image, the compose cluster used from the host by Iggy's Python SDK over TCP,
# QUIC and HTTP, and container faults (tests/deploy; needs Docker). Part of `make test`.
compose-test: image
	.venv/bin/python -m pytest -q -p no:cacheprovider tests/deploy

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz
