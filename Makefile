# libkdens -- multi-teacher knowledge distillation in C11.
#   make            library (static and shared) and the kdens tool
#   make check      tests (make check SANITIZE=1: under ASan + UBSan; WERROR=1: -Werror)
#   make check-portable  the default build on emulated CPUs without AVX-512 / AVX
#   make bench      benchmarks (BENCH_ARGS="THREADS SECTION..." picks some);
#   make demo       the main job on Fashion-MNIST
#   make experiment a grid of runs on Fashion-MNIST (experiments/fmnist.plan)
#   make voting-experiment  the dissertation's voting experiment (55 small MLPs)
#   make install PREFIX=/usr/local DESTDIR=   make uninstall
#   make deps       installs missing Debian packages (apt-get, as root or via sudo)

# The version is written once, in include/kdens.h.
version_part = $(shell sed -n 's/^\#define KDENS_VERSION_$(1) \([0-9][0-9]*\)$$/\1/p' include/kdens.h)
VERSION_MAJOR := $(call version_part,MAJOR)
VERSION_MINOR := $(call version_part,MINOR)
VERSION_PATCH := $(call version_part,PATCH)
VERSION := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)

PREFIX ?= /usr/local
DESTDIR ?=
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig

CC ?= cc
CXX ?= c++
OPT ?= -O3
# Baseline x86-64 by default, so that one build runs on every machine: the hot
# kernels (lib/tensor/isa/) are compiled once per instruction-set path and
# chosen at run time.  `make ARCHFLAGS=-march=native` tunes the rest of the
# library for the building machine only (and may not run elsewhere).
ARCHFLAGS ?=
WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla -Wformat=2 \
	-Wno-psabi
ifeq ($(WERROR),1)
WARN += -Werror
endif

BUILD ?= build
ifeq ($(SANITIZE),1)
BUILD := $(BUILD)-san
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
OPT := -O1 -g
endif

# The library's own dependencies.  OpenBLAS is not one of them (every kernel
# is the library's, see docs/design.md): tests use it as an independent
# oracle for GEMM and the benchmarks for the machine's sgemm ceiling.
DEP_LIBS := -lpng -ljpeg -lz -lpthread -lm
BLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null)
BLAS_LIBS := $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)

# Where kdens_dataset_preset looks when given no folder (Debian's dataset
# packages install there).
DATASETS_DIR ?= /usr/share/datasets
CPPFLAGS_ALL := -Iinclude -D_POSIX_C_SOURCE=200809L -DKDENS_BUILDING \
	-DKDENS_DATASETS_DIR='"$(DATASETS_DIR)"'
CFLAGS_ALL := -std=c11 $(OPT) $(ARCHFLAGS) -g $(WARN) -fPIC -fvisibility=hidden $(SANFLAGS) \
	$(CFLAGS)
LDFLAGS_ALL := $(SANFLAGS) $(LDFLAGS)

# Two layers (docs/design.md): the engine (include/kdens.h) and, above it,
# the experiment workflow (include/kdens_experiment.h, lib/experiment/).
# One library holds both; make check-layers proves that the engine links
# without the workflow.
ENGINE_MODULES := core tensor nn data train ensemble distill
ENGINE_SRC := $(foreach m,$(ENGINE_MODULES),$(wildcard lib/$(m)/*.c))
EXPERIMENT_SRC := $(wildcard lib/experiment/*.c)
LIB_SRC := $(ENGINE_SRC) $(EXPERIMENT_SRC)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
PUBLIC_HDR := include/kdens.h include/kdens_experiment.h
LIB_HDR := $(PUBLIC_HDR) $(wildcard lib/*/*.h lib/tensor/isa/*.h)

# The dispatched kernels: every file of lib/tensor/isa/ once per path.  FMA
# contraction is on for them (-std=c11 turns it off elsewhere).
ISA_SRC := $(wildcard lib/tensor/isa/*.c)
ISA_FLAGS_generic := -ffp-contract=fast
ISA_FLAGS_avx2 := -DKD_ISA_AVX2 -mavx2 -mfma -ffp-contract=fast
ISA_FLAGS_avx512 := -DKD_ISA_AVX512 -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma \
	-mprefer-vector-width=512 -ffp-contract=fast
ifneq ($(filter x86_64%,$(shell $(CC) -dumpmachine)),)
ISA_PATHS := generic avx2 avx512
else
ISA_PATHS := generic
endif
ISA_OBJ := $(foreach p,$(ISA_PATHS),$(ISA_SRC:%.c=$(BUILD)/%.$(p).o))
LIB_OBJ += $(ISA_OBJ)

STATIC := $(BUILD)/libkdens.a
SONAME := libkdens.so.$(VERSION_MAJOR)
SHARED := $(BUILD)/libkdens.so.$(VERSION)
CLI := $(BUILD)/kdens
EXAMPLES := $(BUILD)/train_fmnist $(BUILD)/classify $(BUILD)/custom_driver $(BUILD)/fuse

TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_BIN := $(BUILD)/bench

.PHONY: all lib examples check bench demo experiment voting-experiment install uninstall deps clean fuzz fuzz-deps FORCE \
	check-portable portable-deps check-deps check-layers check-abi abi-update
all: lib $(CLI) $(EXAMPLES)
lib: $(STATIC) $(SHARED)

deps:
	@CC="$(CC)" sh scripts/deps.sh
check-deps:
	@CC="$(CC)" sh scripts/deps.sh check

# The layering of lib/ (docs/design.md): every module includes only the
# modules below it, the engine nothing of the experiment layer, and the
# engine's objects link into a shared library of their own (-z defs: no
# symbol left to the experiment layer) that defines every function of
# kdens.h and none of kdens_experiment.h.
ENGINE_OBJ := $(ENGINE_SRC:%.c=$(BUILD)/%.o) $(ISA_OBJ)
ENGINE_SO := $(BUILD)/layers/libkdens-engine.so
$(ENGINE_SO): $(ENGINE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-z,defs $(LDFLAGS_ALL) -o $@ $(ENGINE_OBJ) $(DEP_LIBS)
check-layers: $(ENGINE_SO)
	@sh scripts/check-layers.sh $(ENGINE_SO)

# The ABI of libkdens.so against the baseline recorded in abi/ (abidw of
# the public headers' types and functions).  An intended change is recorded
# with `make abi-update` and committed with the change.
ABI_BASELINE := abi/libkdens.abi
ABIDW_FLAGS := --headers-dir include --drop-private-types --no-corpus-path --no-comp-dir-path \
	--short-locs
check-abi: $(SHARED)
	@sh scripts/check-abi.sh $(SHARED) $(ABI_BASELINE)
abi-update: $(SHARED)
	@mkdir -p abi
	abidw $(ABIDW_FLAGS) --out-file $(ABI_BASELINE) $(SHARED)

# Header dependencies are tracked per object (-MMD -MP), and the compiler and
# flags in a stamp file: changing either (ARCHFLAGS, CC, OPT) rebuilds.
DEPFLAGS = -MMD -MP
FLAGS_STAMP := $(BUILD)/.flags
FLAGS_NOW := $(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) $(LDFLAGS_ALL)
$(FLAGS_STAMP): FORCE
	@mkdir -p $(BUILD)
	@if [ "$$(cat $@ 2>/dev/null)" != "$(FLAGS_NOW)" ]; then echo "$(FLAGS_NOW)" > $@; fi
FORCE:
$(LIB_OBJ): $(FLAGS_STAMP)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) $(DEPFLAGS) -c $< -o $@

define isa_rule
$$(BUILD)/lib/tensor/isa/%.$(1).o: lib/tensor/isa/%.c
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CPPFLAGS_ALL) $$(CFLAGS_ALL) $$(ISA_FLAGS_$(1)) $$(DEPFLAGS) -c $$< -o $$@
endef
$(foreach p,$(ISA_PATHS),$(eval $(call isa_rule,$(p))))

$(STATIC): $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(SHARED): $(LIB_OBJ) lib/kdens.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=lib/kdens.map -Wl,-z,defs \
		$(LDFLAGS_ALL) -o $@ $(LIB_OBJ) $(DEP_LIBS)
	ln -sf libkdens.so.$(VERSION) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $(BUILD)/libkdens.so

# Made at install time, so that it always names the PREFIX being installed to.
PC_SED := -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	-e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' \
	-e 's|@PRIVATE_LIBS@|$(DEP_LIBS)|'

# The command-line tool links the static library: one self-contained binary.
# Its sources: tools/kdens/ (main.c the command table, one file per command family).
CLI_SRC := $(wildcard tools/kdens/*.c)
$(CLI): $(CLI_SRC) $(wildcard tools/kdens/*.h) $(STATIC) $(PUBLIC_HDR)
	$(CC) -Iinclude $(CFLAGS_ALL) -o $@ $(CLI_SRC) $(STATIC) $(LDFLAGS_ALL) $(DEP_LIBS)

$(BUILD)/%: examples/%.c $(STATIC) $(PUBLIC_HDR)
	$(CC) -Iinclude $(CFLAGS_ALL) -o $@ $< $(STATIC) $(LDFLAGS_ALL) $(DEP_LIBS)

examples: $(CLI) $(EXAMPLES)

# Tests link the static library, so they can reach internal kernels too.
# OpenBLAS is their independent oracle for GEMM.
$(BUILD)/tests/%: tests/%.c $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) -Ilib $(CFLAGS_ALL) $(BLAS_CFLAGS) $(DEPFLAGS) -o $@ $< $(STATIC) \
		$(LDFLAGS_ALL) $(TEST_LDFLAGS) $(DEP_LIBS) $(BLAS_LIBS) -lcmocka
# Counts the library's own allocations.
$(BUILD)/tests/test_alloc: TEST_LDFLAGS := \
	-Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=posix_memalign

# The convolution, layer and model tests run once per kernel path this
# processor supports (KDENS_CPU=generic, avx2, avx512); the others once, on
# the path chosen by default.
PATH_TESTS := test_reference test_layers test_model
check: check-deps
	@$(MAKE) --no-print-directory all $(TEST_BIN)
	@failed=0; $(MAKE) --no-print-directory check-layers check-abi || failed=1; \
	sh scripts/api-index.sh --check || failed=1; \
	paths=$$(./$(CLI) cpu --paths) || exit 1; \
	echo "== kernel paths of this processor: $$paths"; \
	for t in $(TEST_BIN); do \
		case " $(PATH_TESTS) " in *" $$(basename $$t) "*) run_paths="$$paths";; *) run_paths=auto;; esac; \
		for p in $$run_paths; do \
			echo "== $$t (kernels: $$p)"; \
			KDENS_CPU=$$p KDENS_TEST_ROOT=$(CURDIR) KDENS_BUILD=$(BUILD) ./$$t || failed=1; \
		done; \
	done; \
	echo "== tests/test_cli.sh"; BUILD=$(BUILD) sh tests/test_cli.sh || failed=1; \
	echo "== tests/test_install.sh"; \
	CC="$(CC)" CXX="$(CXX)" SANFLAGS="$(SANFLAGS)" BUILD=$(BUILD) sh tests/test_install.sh \
		|| failed=1; \
	exit $$failed

# The proof that one build runs everywhere: tests/portable/ on this machine
# (the reference), under KDENS_CPU for each lower path, and under qemu as
# processors without AVX-512 (Haswell: AVX2 + FMA) and without AVX (qemu64,
# the baseline x86-64);
# each checks the path chosen and agrees with the reference within the
# promised tolerance, and loads the models the reference run saved.
PORTABLE_BIN := $(BUILD)/tests/portable/test_portable
QEMU_X86 := qemu-x86_64-static
check-portable: portable-deps
	@$(MAKE) --no-print-directory $(CLI) $(PORTABLE_BIN)
	@dir=$(BUILD)/portable; rm -rf $$dir; mkdir -p $$dir; failed=0; \
	native=$$(./$(CLI) cpu | sed -n 's/^path: //p'); \
	export PORTABLE_DIR=$$dir PORTABLE_REF_PATH=$$native; \
	echo "== $(PORTABLE_BIN) on this machine ($$native): the reference"; \
	PORTABLE_WRITE=$$dir/ref.bin ./$(PORTABLE_BIN) || exit 1; \
	for p in $$(./$(CLI) cpu --paths); do \
		[ $$p = $$native ] && continue; \
		echo "== $(PORTABLE_BIN) with KDENS_CPU=$$p"; \
		KDENS_CPU=$$p PORTABLE_EXPECT=$$p PORTABLE_REF=$$dir/ref.bin ./$(PORTABLE_BIN) || failed=1; \
	done; \
	for cpu in Haswell:avx2 qemu64:generic; do \
		echo "== $(PORTABLE_BIN) under $(QEMU_X86) -cpu $${cpu%%:*} (expects $${cpu#*:})"; \
		PORTABLE_EXPECT=$${cpu#*:} PORTABLE_REF=$$dir/ref.bin \
			$(QEMU_X86) -cpu $${cpu%%:*} ./$(PORTABLE_BIN) || failed=1; \
	done; \
	exit $$failed

portable-deps:
	@CC="$(CC)" sh scripts/deps.sh portable

$(BENCH_BIN): tests/bench/bench.c $(STATIC)
	$(CC) $(CPPFLAGS_ALL) -Ilib $(CFLAGS_ALL) $(BLAS_CFLAGS) $(DEPFLAGS) -o $@ $< $(STATIC) \
		$(LDFLAGS_ALL) $(DEP_LIBS) $(BLAS_LIBS)

bench: deps
	@$(MAKE) --no-print-directory $(BENCH_BIN)
	./$(BENCH_BIN) $(BENCH_ARGS)

# The main job: the whole multi-teacher experiment on the real Fashion-MNIST
# with the pipeline's defaults, its report in demo-out/ (DEMO_FLAGS adds
# kdens pipeline flags).
demo: deps
	@$(MAKE) --no-print-directory all
	./$(CLI) pipeline --workdir demo-out $(DEMO_FLAGS)

# The scaled-down grid of the dissertation's experiments (experiments/fmnist.plan), report
# in experiment-out/fmnist/grid.md; EXPERIMENT_FLAGS adds flags (--dataset, --limit).
experiment: deps
	@$(MAKE) --no-print-directory all
	./$(CLI) experiment experiments/fmnist.plan --workdir experiment-out $(EXPERIMENT_FLAGS)

# The dissertation's voting experiment: 55 small MLPs (experiments/mlp50.spec), each trained on
# a random 0.5% of the training part, fused by softmax averaging, plurality, Borda, STV and
# Copeland at ensemble sizes 5, 25 and 55 (report in voting-out/report.md).  VOTING_FLAGS
# adds flags (--dataset mnist=DIR for MNIST's files).
voting-experiment: deps
	@$(MAKE) --no-print-directory all
	./$(CLI) pipeline --workdir voting-out --arch experiments/mlp50.spec --teachers 55 \
		--fraction 0.005 --epochs 30 --student-epochs 30 --modes none \
		--curve-rules mean,plurality,borda,stv,copeland --sizes 5,25,55 --repeats 10 \
		$(VOTING_FLAGS)

# libFuzzer harnesses (Debian's clang): each runs FUZZ_SECONDS on a copy of its
# seed corpus; crashes are written to build-fuzz/.
FUZZ_SECONDS ?= 60
FUZZERS := model spec idx cifar png jpeg csv votecsv
FUZZ_CC ?= clang
# The harnesses compile the library's sources straight in, with the generic
# kernel path only (KD_GENERIC_ONLY).
FUZZ_FLAGS := -std=c11 -g -O1 $(ARCHFLAGS) -Wno-psabi -fsanitize=fuzzer,address,undefined -Iinclude -Ilib \
	-D_POSIX_C_SOURCE=200809L -DKD_GENERIC_ONLY
build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_image.inc $(LIB_SRC) $(ISA_SRC) $(LIB_HDR)
	@mkdir -p build-fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(LIB_SRC) $(ISA_SRC) $(DEP_LIBS)

fuzz-deps:
	@CC="$(CC)" sh scripts/deps.sh fuzz

fuzz: fuzz-deps
	@$(MAKE) --no-print-directory $(FUZZERS:%=build-fuzz/fuzz_%)
	@for f in $(FUZZERS); do \
		mkdir -p build-fuzz/corpus_$$f && cp -n tests/fuzz/corpus_$$f/* build-fuzz/corpus_$$f/; \
		echo "== fuzz_$$f for $(FUZZ_SECONDS) s"; \
		./build-fuzz/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
			-artifact_prefix=build-fuzz/$$f- build-fuzz/corpus_$$f || exit 1; \
	done

install: all
	install -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) \
		$(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 644 $(PUBLIC_HDR) $(DESTDIR)$(INCLUDEDIR)/
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/libkdens.a
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/libkdens.so.$(VERSION)
	ln -sf libkdens.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libkdens.so
	sed $(PC_SED) pkgconfig/kdens.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/kdens.pc
	chmod 644 $(DESTDIR)$(PKGCONFIGDIR)/kdens.pc
	install -m 755 $(CLI) $(DESTDIR)$(BINDIR)/kdens
	install -m 644 docs/kdens.1 $(DESTDIR)$(MANDIR)/man1/kdens.1

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/kdens.h $(DESTDIR)$(INCLUDEDIR)/kdens_experiment.h \
		$(DESTDIR)$(LIBDIR)/libkdens.a \
		$(DESTDIR)$(LIBDIR)/libkdens.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME) \
		$(DESTDIR)$(LIBDIR)/libkdens.so $(DESTDIR)$(PKGCONFIGDIR)/kdens.pc \
		$(DESTDIR)$(BINDIR)/kdens $(DESTDIR)$(MANDIR)/man1/kdens.1

clean:
	rm -rf build build-* build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
