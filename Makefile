# libkdens -- multi-teacher knowledge distillation in C11.
#   make            library (static and shared) and the kdens tool
#   make check      tests (make check SANITIZE=1: under ASan + UBSan; WERROR=1: -Werror)
#   make check-portable  the default build on emulated CPUs without AVX-512 / AVX
#   make lib-infer  the inference-only library, libkdens_infer.a (libc and libm only)
#   make check-aarch64  that library cross-compiled for ARM64, its tests under qemu
#                   (make deps AARCH64=1 installs the cross compiler and qemu)
#   make bench      benchmarks (BENCH_ARGS="THREADS SECTION..." picks some;
#                   with ONNX=1 also ONNX Runtime beside libkdens);
#   make demo       the main job on Fashion-MNIST
#   make experiment a grid of runs on Fashion-MNIST (experiments/fmnist.plan)
#   make voting-experiment  the dissertation's voting experiment (55 small MLPs)
#   make install PREFIX=/usr/local DESTDIR=   make uninstall
#   make deps       installs missing Debian packages (apt-get, as root or via sudo)
#   make MPI=1 ...  also the MPI transport, libkdens_mpi (docs/mpi.md): with deps,
#                   check (check-mpi: its tests under mpirun) and install
#   make ONNX=1 ... also the ONNX exchange, libkdens_onnx (include/kdens_onnx.h):
#                   with deps, check (check-onnx: ONNX's checker and ONNX Runtime)
#                   and install

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

# The inference-only library (make lib-infer; docs/design.md, "The
# inference-only library"): models from files or memory, predictions from
# float and uint8 images, image files as PGM/PPM -- on libc and libm alone, no libpng,
# libjpeg, zlib or OpenBLAS, for firmware and mobile apps.  It is the full
# library's code, not a fork: the very objects of lib/core, lib/tensor (with
# every kernel path of isa/) and lib/nn, so that a new file there joins it
# by itself, minus INFER_EXCLUDE, plus INFER_EXTRA and the stand-ins of
# lib/infer/.  make check-infer proves what it needs (nm) and that a program
# links with -lkdens_infer -lm alone.
INFER_MODULES := core tensor nn
# Files of those modules that inference never calls, left out to keep the
# library small (check-infer fails, on an undefined symbol, if one becomes
# needed):
#   lib/core/csv.c   the CSV reader and writer (manifests, registries, tables)
INFER_EXCLUDE := lib/core/csv.c
# From above those modules, what an embedder needs to classify image files:
#   lib/data/image.c   kdens_image_load: PGM/PPM decoding, resizing, and the
#                      dispatch to the PNG and JPEG codecs
INFER_EXTRA := lib/data/image.c
# Stand-ins for what the full library takes from its dependencies:
#   lib/infer/image_codecs.c   PNG and JPEG give KDENS_E_UNSUPPORTED (no libpng, libjpeg)
INFER_STANDINS := $(wildcard lib/infer/*.c)
INFER_SRC := $(filter-out $(INFER_EXCLUDE),$(foreach m,$(INFER_MODULES),$(wildcard lib/$(m)/*.c))) \
	$(INFER_EXTRA) $(INFER_STANDINS)
INFER_OBJ := $(INFER_SRC:%.c=$(BUILD)/%.o) $(ISA_OBJ)
INFER_STATIC := $(BUILD)/libkdens_infer.a
# What a program linking it needs besides libc.  The thread pool uses
# pthreads, part of glibc's libc since 2.34 (Debian 12) and of musl's; with
# an older glibc add -lpthread.
INFER_LIBS := -lm
INFER_CLASSIFY := $(BUILD)/infer/classify
# binutils of the target (aarch64-linux-gnu-gcc: aarch64-linux-gnu-nm, ...)
CROSS_PREFIX := $(filter %-,$(patsubst %gcc,%,$(notdir $(CC))))
ifeq ($(origin AR),default)
AR := $(CROSS_PREFIX)ar
endif

# The MPI transport (make MPI=1, docs/mpi.md): lib/mpi/ in a library of its
# own, libkdens_mpi, over libkdens' public API.  Only its objects, the kdens
# tool and the MPI tests see mpi.h; libkdens' objects are the same with and
# without MPI=1, and without it nothing of MPI is built or needed.
MPI_SRC := $(wildcard lib/mpi/*.c)
MPI_OBJ := $(MPI_SRC:%.c=$(BUILD)/%.o)
MPI_HDR := include/kdens_mpi.h
MPI_STATIC := $(BUILD)/libkdens_mpi.a
MPI_SONAME := libkdens_mpi.so.$(VERSION_MAJOR)
MPI_SHARED := $(BUILD)/libkdens_mpi.so.$(VERSION)
ifeq ($(MPI),1)
# Open MPI's flags from pkg-config, or from its compiler wrapper.
MPI_CFLAGS := $(shell pkg-config --cflags ompi-c 2>/dev/null || mpicc --showme:compile 2>/dev/null)
MPI_LIBS := $(shell pkg-config --libs ompi-c 2>/dev/null || mpicc --showme:link 2>/dev/null)
MPI_TARGETS := $(MPI_STATIC) $(MPI_SHARED)
endif
# Stops a build with MPI=1 that finds no MPI.
MPI_PRESENT = @[ -n "$(MPI_LIBS)" ] || { echo "MPI=1: no MPI found (pkg-config ompi-c, \
	mpicc); make deps MPI=1 installs Debian's libopenmpi-dev and openmpi-bin" >&2; exit 1; }

# The ONNX exchange (make ONNX=1): lib/onnx/ in a library of its own,
# libkdens_onnx, over protobuf-c.  Its reader/writer is generated at build
# time by protoc-c from Debian's onnx.proto (libonnx-dev) into
# $(BUILD)/onnx/, never committed.  Unlike lib/mpi/ it reads libkdens'
# internal headers (it walks the layer DAG's structures), but it calls only
# libkdens' public functions: it links against libkdens.so with -z defs.
# libkdens' objects are the same with and without ONNX=1, and no engine
# object includes protobuf-c.
ONNX_PROTO ?= /usr/include/onnx/onnx.proto
ONNX_GEN := $(BUILD)/onnx
ONNX_SRC := $(wildcard lib/onnx/*.c)
ONNX_OBJ := $(ONNX_SRC:%.c=$(BUILD)/%.o) $(ONNX_GEN)/onnx.pb-c.o
ONNX_HDR := include/kdens_onnx.h
ONNX_STATIC := $(BUILD)/libkdens_onnx.a
ONNX_SONAME := libkdens_onnx.so.$(VERSION_MAJOR)
ONNX_SHARED := $(BUILD)/libkdens_onnx.so.$(VERSION)
ONNX_LIBS := $(shell pkg-config --libs libprotobuf-c 2>/dev/null || echo -lprotobuf-c)
ONNX_CFLAGS := $(shell pkg-config --cflags libprotobuf-c 2>/dev/null) -I$(ONNX_GEN)
ifeq ($(ONNX),1)
ONNX_TARGETS := $(ONNX_STATIC) $(ONNX_SHARED)
endif
# Stops a build with ONNX=1 that lacks protoc-c, protobuf-c or onnx.proto.
ONNX_PRESENT = @command -v protoc-c >/dev/null 2>&1 && [ -f $(ONNX_PROTO) ] && \
	pkg-config --exists libprotobuf-c 2>/dev/null || { echo "ONNX=1: needs protoc-c, \
	libprotobuf-c and $(ONNX_PROTO); make deps ONNX=1 installs Debian's \
	protobuf-c-compiler, libprotobuf-c-dev and libonnx-dev" >&2; exit 1; }

STATIC := $(BUILD)/libkdens.a
SONAME := libkdens.so.$(VERSION_MAJOR)
SHARED := $(BUILD)/libkdens.so.$(VERSION)
CLI := $(BUILD)/kdens
EXAMPLES := $(BUILD)/train_fmnist $(BUILD)/classify $(BUILD)/custom_driver $(BUILD)/fuse
ifeq ($(ONNX),1)
EXAMPLES += $(BUILD)/onnx_teachers
endif

TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_BIN := $(BUILD)/bench

.PHONY: all lib lib-infer check-infer check-aarch64 aarch64-deps examples check check-mpi check-onnx bench demo experiment voting-experiment install uninstall deps clean fuzz fuzz-deps FORCE \
	check-portable portable-deps check-deps check-layers check-abi abi-update
all: lib $(INFER_STATIC) $(CLI) $(EXAMPLES)
lib: $(STATIC) $(SHARED) $(MPI_TARGETS) $(ONNX_TARGETS)

deps:
	@CC="$(CC)" MPI="$(MPI)" ONNX="$(ONNX)" AARCH64="$(AARCH64)" BUILD="$(BUILD)" sh scripts/deps.sh
check-deps:
	@CC="$(CC)" MPI="$(MPI)" ONNX="$(ONNX)" BUILD="$(BUILD)" sh scripts/deps.sh check

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
# With MPI=1, libkdens_mpi too: it defines the functions of kdens_mpi.h and
# nothing else, and no object of libkdens includes mpi.h.
# With ONNX=1, libkdens_onnx the functions of kdens_onnx.h.
check-layers: $(ENGINE_SO) $(if $(filter 1,$(MPI)),$(MPI_SHARED)) \
		$(if $(filter 1,$(ONNX)),$(ONNX_SHARED))
	@MPI_SO="$(if $(filter 1,$(MPI)),$(MPI_SHARED))" \
		ONNX_SO="$(if $(filter 1,$(ONNX)),$(ONNX_SHARED))" \
		sh scripts/check-layers.sh $(ENGINE_SO)

# The ABI of libkdens.so against the baseline recorded in abi/ (abidw of
# the public headers' types and functions).  An intended change is recorded
# with `make abi-update` and committed with the change.
# With MPI=1, libkdens_mpi.so's against abi/libkdens_mpi.abi too.
ABI_BASELINE := abi/libkdens.abi
MPI_ABI_BASELINE := abi/libkdens_mpi.abi
ONNX_ABI_BASELINE := abi/libkdens_onnx.abi
ABIDW_FLAGS := --headers-dir include --drop-private-types --no-corpus-path --no-comp-dir-path \
	--short-locs
# With ONNX=1, libkdens_onnx.so's against abi/libkdens_onnx.abi too.
check-abi: $(SHARED) $(if $(filter 1,$(MPI)),$(MPI_SHARED)) $(if $(filter 1,$(ONNX)),$(ONNX_SHARED))
	@sh scripts/check-abi.sh $(SHARED) $(ABI_BASELINE)
	@if [ "$(MPI)" = 1 ]; then sh scripts/check-abi.sh $(MPI_SHARED) $(MPI_ABI_BASELINE); fi
	@if [ "$(ONNX)" = 1 ]; then sh scripts/check-abi.sh $(ONNX_SHARED) $(ONNX_ABI_BASELINE); fi
abi-update: $(SHARED) $(if $(filter 1,$(MPI)),$(MPI_SHARED)) $(if $(filter 1,$(ONNX)),$(ONNX_SHARED))
	@mkdir -p abi
	abidw $(ABIDW_FLAGS) --out-file $(ABI_BASELINE) $(SHARED)
	@if [ "$(MPI)" = 1 ]; then set -x; \
		abidw $(ABIDW_FLAGS) --out-file $(MPI_ABI_BASELINE) $(MPI_SHARED); fi
	@if [ "$(ONNX)" = 1 ]; then set -x; \
		abidw $(ABIDW_FLAGS) --out-file $(ONNX_ABI_BASELINE) $(ONNX_SHARED); fi

# Header dependencies are tracked per object (-MMD -MP), and the compiler and
# flags in a stamp file: changing either (ARCHFLAGS, CC, OPT) rebuilds.
DEPFLAGS = -MMD -MP
FLAGS_STAMP := $(BUILD)/.flags
FLAGS_NOW := $(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) $(LDFLAGS_ALL)
$(FLAGS_STAMP): FORCE
	@mkdir -p $(BUILD)
	@if [ "$$(cat $@ 2>/dev/null)" != "$(FLAGS_NOW)" ]; then echo "$(FLAGS_NOW)" > $@; fi
FORCE:
$(LIB_OBJ) $(INFER_STANDINS:%.c=$(BUILD)/%.o): $(FLAGS_STAMP)

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

# The inference-only library, and examples/classify.c (unchanged) linked
# against it with libm alone; the build prints their sizes.
$(INFER_STATIC): $(INFER_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^
$(INFER_CLASSIFY): examples/classify.c $(INFER_STATIC) include/kdens.h
	@mkdir -p $(dir $@)
	$(CC) -Iinclude $(CFLAGS_ALL) -o $@ $< $(LDFLAGS_ALL) -L$(BUILD) -lkdens_infer $(INFER_LIBS)
lib-infer: $(INFER_STATIC) $(INFER_CLASSIFY)
	@CROSS_PREFIX="$(CROSS_PREFIX)" sh scripts/infer-size.sh $(INFER_STATIC) $(INFER_CLASSIFY)

# The MPI transport: its objects with MPI's flags, linked against libkdens
# (-z defs: it needs nothing else) and MPI.
$(BUILD)/lib/mpi/%.o: lib/mpi/%.c $(FLAGS_STAMP)
	$(MPI_PRESENT)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(MPI_CFLAGS) $(CFLAGS_ALL) $(DEPFLAGS) -c $< -o $@

$(MPI_STATIC): $(MPI_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(MPI_SHARED): $(MPI_OBJ) lib/mpi/kdens_mpi.map $(SHARED)
	$(MPI_PRESENT)
	$(CC) -shared -Wl,-soname,$(MPI_SONAME) -Wl,--version-script=lib/mpi/kdens_mpi.map \
		-Wl,-z,defs $(LDFLAGS_ALL) -o $@ $(MPI_OBJ) -L$(BUILD) -lkdens $(MPI_LIBS)
	ln -sf libkdens_mpi.so.$(VERSION) $(BUILD)/$(MPI_SONAME)
	ln -sf $(MPI_SONAME) $(BUILD)/libkdens_mpi.so

# The ONNX exchange: the reader/writer generated from onnx.proto (protoc-c
# names its output after the .proto; compiled without the project's
# warnings, it is not the project's code), lib/onnx/ with protobuf-c's
# flags, linked against libkdens (-z defs) and protobuf-c.
$(ONNX_GEN)/onnx.pb-c.c: $(ONNX_PROTO)
	$(ONNX_PRESENT)
	@mkdir -p $(ONNX_GEN)
	protoc-c -I$(dir $(ONNX_PROTO)) --c_out=$(ONNX_GEN) $(ONNX_PROTO)
$(ONNX_GEN)/onnx.pb-c.h: $(ONNX_GEN)/onnx.pb-c.c
$(ONNX_GEN)/onnx.pb-c.o: $(ONNX_GEN)/onnx.pb-c.c $(FLAGS_STAMP)
	$(CC) $(ONNX_CFLAGS) -std=c11 $(OPT) $(ARCHFLAGS) -g -fPIC -fvisibility=hidden $(SANFLAGS) \
		$(CFLAGS) -c $< -o $@
$(BUILD)/lib/onnx/%.o: lib/onnx/%.c $(ONNX_GEN)/onnx.pb-c.h $(FLAGS_STAMP)
	$(ONNX_PRESENT)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(ONNX_CFLAGS) $(CFLAGS_ALL) $(DEPFLAGS) -c $< -o $@

$(ONNX_STATIC): $(ONNX_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(ONNX_SHARED): $(ONNX_OBJ) lib/onnx/kdens_onnx.map $(SHARED)
	$(CC) -shared -Wl,-soname,$(ONNX_SONAME) -Wl,--version-script=lib/onnx/kdens_onnx.map \
		-Wl,-z,defs $(LDFLAGS_ALL) -o $@ $(ONNX_OBJ) -L$(BUILD) -lkdens $(ONNX_LIBS) -lm
	ln -sf libkdens_onnx.so.$(VERSION) $(BUILD)/$(ONNX_SONAME)
	ln -sf $(ONNX_SONAME) $(BUILD)/libkdens_onnx.so

# Made at install time, so that it always names the PREFIX being installed to.
PC_SED := -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	-e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' \
	-e 's|@PRIVATE_LIBS@|$(DEP_LIBS)|'

# The command-line tool links the static library: one self-contained binary.
# Its sources: tools/kdens/ (main.c the command table, one file per command family).
# With MPI=1 it also links libkdens_mpi and MPI (tools/kdens/comm.c); a stamp
# of that choice relinks it when MPI= changes.
CLI_SRC := $(wildcard tools/kdens/*.c)
ifeq ($(MPI),1)
CLI_MPI := -DKDENS_WITH_MPI $(MPI_CFLAGS)
CLI_MPI_LIBS := $(MPI_STATIC)
endif
# With ONNX=1 it links libkdens_onnx and protobuf-c (kdens export --onnx).
ifeq ($(ONNX),1)
CLI_ONNX := -DKDENS_WITH_ONNX
CLI_ONNX_LIBS := $(ONNX_STATIC)
CLI_ONNX_LINK := $(ONNX_LIBS) -lm
endif
CLI_STAMP := $(BUILD)/.flags-cli
CLI_CHOICE := MPI=$(MPI) $(MPI_LIBS) ONNX=$(ONNX)
$(CLI_STAMP): FORCE
	@mkdir -p $(BUILD)
	@if [ "$$(cat $@ 2>/dev/null)" != "$(CLI_CHOICE)" ]; then \
		echo "$(CLI_CHOICE)" > $@; fi
$(CLI): $(CLI_SRC) $(wildcard tools/kdens/*.h) $(STATIC) $(CLI_MPI_LIBS) $(CLI_ONNX_LIBS) \
		$(PUBLIC_HDR) $(CLI_STAMP)
	$(CC) -Iinclude $(CLI_MPI) $(CLI_ONNX) $(CFLAGS_ALL) -o $@ $(CLI_SRC) $(CLI_MPI_LIBS) \
		$(CLI_ONNX_LIBS) $(STATIC) $(LDFLAGS_ALL) $(DEP_LIBS) $(MPI_LIBS) $(CLI_ONNX_LINK)

# The ONNX example links libkdens_onnx and protobuf-c too (make ONNX=1).
$(BUILD)/onnx_teachers: examples/onnx_teachers.c $(ONNX_STATIC) $(STATIC) $(PUBLIC_HDR) $(ONNX_HDR)
	$(CC) -Iinclude $(CFLAGS_ALL) -o $@ $< $(ONNX_STATIC) $(STATIC) $(LDFLAGS_ALL) $(DEP_LIBS) \
		$(ONNX_LIBS)
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
PATH_TESTS := test_reference test_layers test_model test_quant
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
	CC="$(CC)" CXX="$(CXX)" SANFLAGS="$(SANFLAGS)" BUILD=$(BUILD) MPI="$(MPI)" ONNX="$(ONNX)" \
		sh tests/test_install.sh || failed=1; \
	$(MAKE) --no-print-directory check-infer || failed=1; \
	if [ "$(MPI)" = 1 ]; then \
		$(MAKE) --no-print-directory check-mpi || failed=1; \
	elif command -v mpirun >/dev/null 2>&1 && pkg-config --exists ompi-c 2>/dev/null; then \
		echo "== MPI is installed: its tests too (make check-mpi MPI=1)"; \
		$(MAKE) --no-print-directory check-mpi MPI=1 || failed=1; \
	else \
		echo "== MPI tests skipped (MPI is not installed: make deps MPI=1 installs it)"; \
	fi; \
	if [ "$(ONNX)" = 1 ]; then \
		$(MAKE) --no-print-directory check-onnx || failed=1; \
	elif command -v protoc-c >/dev/null 2>&1 && [ -f $(ONNX_PROTO) ] && \
			pkg-config --exists libprotobuf-c 2>/dev/null; then \
		echo "== protobuf-c and onnx.proto are installed: the ONNX tests too (make check-onnx ONNX=1)"; \
		$(MAKE) --no-print-directory check-onnx ONNX=1 || failed=1; \
	else \
		echo "== ONNX tests skipped (protobuf-c or onnx.proto is not installed: make deps ONNX=1 installs them)"; \
	fi; \
	exit $$failed

# The MPI transport's tests (make check MPI=1 runs them too): tests/mpi/ under
# mpirun with 2 and 3 ranks, once more with pieces shrunk (the transport's
# objects compiled again with small KD_MPI_PIECE_*, so that a few megabytes
# cross every piece boundary), and the kdens tool started by mpirun.  Open
# MPI's own allocations that it never frees at exit are left to LSan's
# suppressions (tests/mpi/lsan.supp: MPI's libraries only).
MPI_TEST := $(BUILD)/tests/mpi/test_comm_mpi
MPI_TEST_SMALL := $(BUILD)/tests/mpi/test_comm_mpi_small
MPI_TRAIN_TEST := $(BUILD)/tests/mpi/test_train_mpi
MPI_SMALL_DEFS := -DKD_MPI_PIECE_VALUES=100000 -DKD_MPI_PIECE_BYTES=65536 \
	-DKD_MPI_INLINE_BYTES=100 -DKD_MPI_SHORT_BYTES=64
# mpirun as root needs its consent (CI runs as root).
MPIRUN_SH := mpirun="mpirun --oversubscribe"; \
	if [ "$$(id -u)" = 0 ]; then mpirun="$$mpirun --allow-run-as-root"; fi
# Under SANITIZE=1: full stacks (Open MPI has no frame pointers) and its
# components kept loaded, so that the suppressions can name MPI's libraries.
MPI_RUN_ENV := LSAN_OPTIONS=suppressions=$(CURDIR)/tests/mpi/lsan.supp:print_suppressions=0 \
	ASAN_OPTIONS="$${ASAN_OPTIONS:+$$ASAN_OPTIONS:}fast_unwind_on_malloc=0" \
	OMPI_MCA_mca_base_component_disable_dlclose=1 KDENS_TEST_ROOT=$(CURDIR) KDENS_BUILD=$(BUILD)
ifeq ($(MPI),1)
check-mpi: check-deps
	@$(MAKE) --no-print-directory $(MPI_TARGETS) $(CLI) $(MPI_TEST) $(MPI_TEST_SMALL) \
		$(MPI_TRAIN_TEST)
	@failed=0; $(MPIRUN_SH); \
	for np in 2 3; do \
		echo "== $(MPI_TEST) under mpirun -np $$np"; \
		$(MPI_RUN_ENV) timeout 300 $$mpirun -np $$np ./$(MPI_TEST) || failed=1; \
		echo "== $(MPI_TRAIN_TEST) under mpirun -np $$np"; \
		$(MPI_RUN_ENV) timeout 600 $$mpirun -np $$np ./$(MPI_TRAIN_TEST) || failed=1; \
	done; \
	echo "== $(MPI_TEST_SMALL) (small pieces) under mpirun -np 3"; \
	$(MPI_RUN_ENV) timeout 300 $$mpirun -np 3 ./$(MPI_TEST_SMALL) || failed=1; \
	echo "== tests/mpi/test_cli_mpi.sh"; \
	$(MPI_RUN_ENV) BUILD=$(BUILD) MPIRUN="$$mpirun" sh tests/mpi/test_cli_mpi.sh || failed=1; \
	exit $$failed
else
check-mpi:
	@echo "check-mpi: MPI support is not built; run make check-mpi MPI=1" >&2; exit 2
endif

$(MPI_TEST): tests/mpi/test_comm_mpi.c tests/testutil.h $(MPI_STATIC) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) -Ilib -Itests $(MPI_CFLAGS) $(CFLAGS_ALL) $(DEPFLAGS) -o $@ $< \
		$(MPI_STATIC) $(STATIC) $(LDFLAGS_ALL) $(DEP_LIBS) -lcmocka $(MPI_LIBS)
$(MPI_TRAIN_TEST): tests/mpi/test_train_mpi.c tests/testutil.h $(MPI_STATIC) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) -Ilib -Itests $(MPI_CFLAGS) $(CFLAGS_ALL) $(DEPFLAGS) -o $@ $< \
		$(MPI_STATIC) $(STATIC) $(LDFLAGS_ALL) $(DEP_LIBS) -lcmocka $(MPI_LIBS)
$(BUILD)/tests/mpi/comm_mpi_small.o: lib/mpi/comm_mpi.c $(FLAGS_STAMP)
	$(MPI_PRESENT)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(MPI_CFLAGS) $(CFLAGS_ALL) $(MPI_SMALL_DEFS) $(DEPFLAGS) -c $< -o $@
$(MPI_TEST_SMALL): tests/mpi/test_comm_mpi.c tests/testutil.h \
		$(BUILD)/tests/mpi/comm_mpi_small.o $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) -Ilib -Itests $(MPI_CFLAGS) $(CFLAGS_ALL) -DKD_MPI_SMALL_PIECES \
		$(DEPFLAGS) -o $@ $< $(BUILD)/tests/mpi/comm_mpi_small.o $(STATIC) $(LDFLAGS_ALL) \
		$(DEP_LIBS) -lcmocka $(MPI_LIBS)

# The ONNX exchange's tests (make check runs them whenever protoc-c,
# protobuf-c and onnx.proto are installed): tests/onnx/ exports models and
# has ONNX's checker (python3-onnx) and ONNX Runtime (onnxruntime-node in
# $(BUILD)/onnx-node, installed by make deps ONNX=1) judge them.
# tests/onnx/test_torch imports PyTorch's exports (python3-torch and
# python3-torchvision; skipped with a message without them).
ONNX_TEST := $(BUILD)/tests/onnx/test_onnx
ONNX_TORCH_TEST := $(BUILD)/tests/onnx/test_torch
ONNX_TEACHERS_TEST := $(BUILD)/tests/onnx/test_teachers_onnx
ifeq ($(ONNX),1)
check-onnx: check-deps
	@$(MAKE) --no-print-directory ONNX=1 $(ONNX_TARGETS) $(CLI) $(ONNX_TEST) $(ONNX_TORCH_TEST) \
		$(ONNX_TEACHERS_TEST) $(BUILD)/onnx_teachers
	@echo "== $(ONNX_TEST)"; KDENS_TEST_ROOT=$(CURDIR) KDENS_BUILD=$(BUILD) ./$(ONNX_TEST)
	@echo "== $(ONNX_TORCH_TEST)"; KDENS_TEST_ROOT=$(CURDIR) KDENS_BUILD=$(BUILD) ./$(ONNX_TORCH_TEST)
	@echo "== $(ONNX_TEACHERS_TEST)"; ./$(ONNX_TEACHERS_TEST)
	@echo "== tests/onnx/test_cli_onnx.sh"; BUILD=$(BUILD) sh tests/onnx/test_cli_onnx.sh
else
check-onnx:
	@echo "check-onnx: ONNX support is not built; run make check-onnx ONNX=1" >&2; exit 2
endif
$(ONNX_TEST): tests/onnx/test_onnx.c tests/testutil.h $(ONNX_STATIC) $(STATIC) \
		$(ONNX_GEN)/onnx.pb-c.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) -Ilib -Itests $(ONNX_CFLAGS) $(CFLAGS_ALL) $(DEPFLAGS) -o $@ $< $(ONNX_STATIC) \
		$(STATIC) $(LDFLAGS_ALL) $(DEP_LIBS) -lcmocka $(ONNX_LIBS)
$(ONNX_TEACHERS_TEST): tests/onnx/test_teachers_onnx.c tests/testutil.h $(ONNX_STATIC) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) -Ilib -Itests $(CFLAGS_ALL) $(DEPFLAGS) -o $@ $< $(ONNX_STATIC) \
		$(STATIC) $(LDFLAGS_ALL) $(DEP_LIBS) -lcmocka $(ONNX_LIBS)
$(ONNX_TORCH_TEST): tests/onnx/test_torch.c tests/testutil.h $(ONNX_STATIC) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) -Itests $(CFLAGS_ALL) $(DEPFLAGS) -o $@ $< $(ONNX_STATIC) \
		$(STATIC) $(LDFLAGS_ALL) $(DEP_LIBS) -lcmocka $(ONNX_LIBS)

# The inference-only library's checks (make check runs them): the
# dependency proof on the archive and on classify linked with it
# (scripts/check-infer.sh; skipped under SANITIZE=1, whose runtime is a
# dependency of its own), then tests/infer/ against a reference run of the
# full library: infer_ref trains models and writes their predictions,
# test_infer (linked with -lkdens_infer -lm -lcmocka) must predict the same
# bits, and its netpbm cases pass against the full library too;
# test_classify.sh compares the two builds of examples/classify.c.
INFER_REF := $(BUILD)/tests/infer/infer_ref
INFER_TEST := $(BUILD)/tests/infer/test_infer
INFER_TEST_FULL := $(BUILD)/tests/infer/test_infer_full
INFER_REF_DIR := $(BUILD)/infer-ref
$(INFER_REF): tests/infer/infer_ref.c $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) $(DEPFLAGS) -o $@ $< $(STATIC) $(LDFLAGS_ALL) $(DEP_LIBS)
$(INFER_TEST): tests/infer/test_infer.c tests/testutil.h $(INFER_STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) $(DEPFLAGS) -o $@ $< $(LDFLAGS_ALL) -L$(BUILD) \
		-lkdens_infer -lcmocka $(INFER_LIBS)
$(INFER_TEST_FULL): tests/infer/test_infer.c tests/testutil.h $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS_ALL) -DKD_TEST_FULL_LIBRARY $(CFLAGS_ALL) -o $@ $< $(STATIC) \
		$(LDFLAGS_ALL) $(DEP_LIBS) -lcmocka
$(INFER_REF_DIR)/models.txt: $(INFER_REF)
	@rm -rf $(INFER_REF_DIR); mkdir -p $(INFER_REF_DIR)/images
	./$(INFER_REF) $(INFER_REF_DIR)
check-infer:
	@$(MAKE) --no-print-directory lib-infer $(INFER_TEST) $(INFER_TEST_FULL) \
		$(INFER_REF_DIR)/models.txt $(BUILD)/classify
	@failed=0; \
	if [ "$(SANITIZE)" = 1 ]; then \
		echo "== check-infer: the dependency proof is the plain build's (the sanitizers' runtime is linked here)"; \
	else \
		echo "== scripts/check-infer.sh: what libkdens_infer.a needs"; \
		CC="$(CC)" CROSS_PREFIX="$(CROSS_PREFIX)" sh scripts/check-infer.sh $(INFER_STATIC) \
			$(INFER_CLASSIFY) || failed=1; \
	fi; \
	echo "== $(INFER_TEST) (libkdens_infer, against the full library's predictions)"; \
	INFER_DIR=$(INFER_REF_DIR) INFER_EXACT=1 ./$(INFER_TEST) || failed=1; \
	echo "== $(INFER_TEST_FULL) (the same cases with the full library)"; \
	INFER_DIR=$(INFER_REF_DIR) ./$(INFER_TEST_FULL) || failed=1; \
	echo "== tests/infer/test_classify.sh"; \
	REF_DIR=$(INFER_REF_DIR) FULL_CLASSIFY=./$(BUILD)/classify INFER_CLASSIFY=./$(INFER_CLASSIFY) \
		EXACT=1 sh tests/infer/test_classify.sh || failed=1; \
	exit $$failed

# ARM64 (make check-aarch64; it installs what it needs, as make deps
# AARCH64=1 does: Debian's gcc-aarch64-linux-gnu, qemu-user-static, and
# libc6-dev and libcmocka-dev of the arm64 architecture through multiarch).
# The inference-only library is cross-compiled in $(AARCH64_BUILD) (the
# generic kernel path: GCC's vector extensions become NEON, checked in the
# objects), proved to need only libc and libm there too, and tests/infer/
# runs under qemu-aarch64-static against the reference run of the full
# library on this machine (models trained here on x86-64), with classify
# compared to the x86-64 full library's.
AARCH64_CC ?= aarch64-linux-gnu-gcc
AARCH64_BUILD ?= build-aarch64
QEMU_AARCH64 ?= qemu-aarch64-static
AARCH64_PREFIX := $(patsubst %gcc,%,$(AARCH64_CC))
AARCH64_TEST := $(AARCH64_BUILD)/tests/infer/test_infer
check-aarch64: aarch64-deps
	@$(MAKE) --no-print-directory $(INFER_REF_DIR)/models.txt $(BUILD)/classify
	@$(MAKE) --no-print-directory CC=$(AARCH64_CC) BUILD=$(AARCH64_BUILD) SANITIZE= \
		lib-infer $(AARCH64_TEST)
	@failed=0; \
	echo "== scripts/check-infer.sh: what libkdens_infer.a needs on aarch64"; \
	CC=$(AARCH64_CC) CROSS_PREFIX=$(AARCH64_PREFIX) sh scripts/check-infer.sh \
		$(AARCH64_BUILD)/libkdens_infer.a $(AARCH64_BUILD)/infer/classify || failed=1; \
	echo "== NEON in the dispatched kernels (fmla on 4 floats; int8: vector multiplies)"; \
	for f in $(AARCH64_BUILD)/lib/tensor/isa/*.generic.o; do \
		case $$f in *qgemm*) re='(mul|mla|smlal2?|sdot)[[:space:]]+v[0-9]+\.';; \
			*) re='fmla[[:space:]]+v[0-9]+\.4s';; esac; \
		n=$$($(AARCH64_PREFIX)objdump -d $$f | grep -cE "$$re"); \
		echo "$$(basename $$f): $$n"; [ "$$n" -gt 0 ] || failed=1; \
	done; \
	echo "== $(AARCH64_TEST) under $(QEMU_AARCH64) (against the x86-64 reference)"; \
	INFER_DIR=$(INFER_REF_DIR) $(QEMU_AARCH64) ./$(AARCH64_TEST) || failed=1; \
	echo "== tests/infer/test_classify.sh: classify on aarch64 under $(QEMU_AARCH64)"; \
	REF_DIR=$(INFER_REF_DIR) FULL_CLASSIFY=./$(BUILD)/classify \
		INFER_CLASSIFY=./$(AARCH64_BUILD)/infer/classify RUNNER=$(QEMU_AARCH64) \
		sh tests/infer/test_classify.sh || failed=1; \
	exit $$failed
aarch64-deps:
	@CC="$(CC)" sh scripts/deps.sh aarch64

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

# With ONNX=1 the benchmark links libkdens_onnx too: its onnx section exports
# models and times them in ONNX Runtime (tests/bench/bench_ort.js, node and
# onnxruntime-node from $(BUILD)/onnx-node) beside libkdens.  The tool's
# stamp of the MPI=/ONNX= choice relinks it when that changes.
$(BENCH_BIN): tests/bench/bench.c $(STATIC) $(CLI_ONNX_LIBS) $(CLI_STAMP)
	$(CC) $(CPPFLAGS_ALL) -Ilib $(CLI_ONNX) $(CFLAGS_ALL) $(BLAS_CFLAGS) $(DEPFLAGS) -o $@ $< \
		$(CLI_ONNX_LIBS) $(STATIC) $(LDFLAGS_ALL) $(DEP_LIBS) $(BLAS_LIBS) $(CLI_ONNX_LINK)

bench: deps
	@$(MAKE) --no-print-directory $(BENCH_BIN)
	KDENS_ONNX_NODE=$(CURDIR)/$(BUILD)/onnx-node/node_modules ./$(BENCH_BIN) $(BENCH_ARGS)
ifeq ($(MPI),1)
	@$(MAKE) --no-print-directory $(BENCH_MPI_BIN)
	@$(MPIRUN_SH); set -e; \
	echo "== ResNet-20 training: 1 rank x 2 threads, then 2 ranks x 1 thread"; \
	mpirun="$$mpirun --bind-to none"; \
	$$mpirun -np 1 ./$(BENCH_MPI_BIN) 2 train; \
	$$mpirun -np 2 ./$(BENCH_MPI_BIN) 1 train; \
	echo "== one gradient allreduce per architecture, 2 ranks"; \
	$$mpirun -np 2 ./$(BENCH_MPI_BIN) 1 allreduce
endif

BENCH_MPI_BIN := $(BUILD)/bench_mpi
$(BENCH_MPI_BIN): tests/bench/bench_mpi.c $(MPI_STATIC) $(STATIC)
	$(CC) $(CPPFLAGS_ALL) -Ilib $(MPI_CFLAGS) $(CFLAGS_ALL) $(DEPFLAGS) -o $@ $< $(MPI_STATIC) \
		$(STATIC) $(LDFLAGS_ALL) $(DEP_LIBS) $(MPI_LIBS)

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
# seed corpus; crashes are written to build-fuzz/.  FUZZERS= picks some
# (make fuzz FUZZERS=onnx FUZZ_SECONDS=600).  The ONNX import's harness is
# among them whenever protoc-c, protobuf-c and onnx.proto are installed
# (as make check's ONNX tests; make deps ONNX=1 installs them).
FUZZ_SECONDS ?= 60
ONNX_INSTALLED := $(shell command -v protoc-c >/dev/null 2>&1 && [ -f $(ONNX_PROTO) ] && \
	pkg-config --exists libprotobuf-c 2>/dev/null && echo 1)
FUZZERS ?= model spec idx cifar png jpeg pnm csv votecsv $(if $(ONNX_INSTALLED),onnx)
# The ONNX import's harness: a single allocation over 64 MiB from an input
# of at most 64 KiB is a defect (fuzz_onnx.c also bounds the import's peak).
FUZZ_LIMITS_onnx := -malloc_limit_mb=64 -rss_limit_mb=2048
FUZZ_CC ?= clang
# The harnesses compile the library's sources straight in, with the generic
# kernel path only (KD_GENERIC_ONLY).
FUZZ_FLAGS := -std=c11 -g -O1 $(ARCHFLAGS) -Wno-psabi -fsanitize=fuzzer,address,undefined -Iinclude -Ilib \
	-D_POSIX_C_SOURCE=200809L -DKD_GENERIC_ONLY
build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_image.inc $(LIB_SRC) $(ISA_SRC) $(LIB_HDR)
	@mkdir -p build-fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(LIB_SRC) $(ISA_SRC) $(DEP_LIBS)

# The ONNX import's harness also compiles lib/onnx/import.c and the reader
# generated from onnx.proto, and links protobuf-c.
build-fuzz/fuzz_onnx: tests/fuzz/fuzz_onnx.c lib/onnx/import.c lib/onnx/import.h \
		$(ONNX_GEN)/onnx.pb-c.c $(LIB_SRC) $(ISA_SRC) $(LIB_HDR)
	@mkdir -p build-fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) $(ONNX_CFLAGS) -o $@ $< lib/onnx/import.c $(ONNX_GEN)/onnx.pb-c.c \
		$(LIB_SRC) $(ISA_SRC) $(DEP_LIBS) $(ONNX_LIBS)

fuzz-deps:
	@CC="$(CC)" sh scripts/deps.sh fuzz

fuzz: fuzz-deps
	@$(if $(ONNX_INSTALLED),,echo "== fuzz_onnx skipped: protoc-c, protobuf-c or $(ONNX_PROTO) \
		is not installed (make deps ONNX=1 installs them)")
	@$(MAKE) --no-print-directory $(FUZZERS:%=build-fuzz/fuzz_%)
	@for f in $(FUZZERS); do \
		mkdir -p build-fuzz/corpus_$$f && cp -n tests/fuzz/corpus_$$f/* build-fuzz/corpus_$$f/; \
		case $$f in onnx) limits="$(FUZZ_LIMITS_onnx)";; *) limits="";; esac; \
		echo "== fuzz_$$f for $(FUZZ_SECONDS) s"; \
		./build-fuzz/fuzz_$$f -max_total_time=$(FUZZ_SECONDS) -max_len=65536 $$limits \
			-artifact_prefix=build-fuzz/$$f- build-fuzz/corpus_$$f || exit 1; \
	done

install: all
	install -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) \
		$(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 644 $(PUBLIC_HDR) $(DESTDIR)$(INCLUDEDIR)/
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/libkdens.a
	install -m 644 $(INFER_STATIC) $(DESTDIR)$(LIBDIR)/libkdens_infer.a
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/libkdens.so.$(VERSION)
	ln -sf libkdens.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libkdens.so
	sed $(PC_SED) pkgconfig/kdens.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/kdens.pc
	chmod 644 $(DESTDIR)$(PKGCONFIGDIR)/kdens.pc
	install -m 755 $(CLI) $(DESTDIR)$(BINDIR)/kdens
	install -m 644 docs/kdens.1 $(DESTDIR)$(MANDIR)/man1/kdens.1
ifeq ($(MPI),1)
	install -m 644 $(MPI_HDR) $(DESTDIR)$(INCLUDEDIR)/
	install -m 644 $(MPI_STATIC) $(DESTDIR)$(LIBDIR)/libkdens_mpi.a
	install -m 755 $(MPI_SHARED) $(DESTDIR)$(LIBDIR)/libkdens_mpi.so.$(VERSION)
	ln -sf libkdens_mpi.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(MPI_SONAME)
	ln -sf $(MPI_SONAME) $(DESTDIR)$(LIBDIR)/libkdens_mpi.so
	sed $(PC_SED) pkgconfig/kdens-mpi.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/kdens-mpi.pc
	chmod 644 $(DESTDIR)$(PKGCONFIGDIR)/kdens-mpi.pc
endif
ifeq ($(ONNX),1)
	install -m 644 $(ONNX_HDR) $(DESTDIR)$(INCLUDEDIR)/
	install -m 644 $(ONNX_STATIC) $(DESTDIR)$(LIBDIR)/libkdens_onnx.a
	install -m 755 $(ONNX_SHARED) $(DESTDIR)$(LIBDIR)/libkdens_onnx.so.$(VERSION)
	ln -sf libkdens_onnx.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(ONNX_SONAME)
	ln -sf $(ONNX_SONAME) $(DESTDIR)$(LIBDIR)/libkdens_onnx.so
	sed $(PC_SED) pkgconfig/kdens-onnx.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/kdens-onnx.pc
	chmod 644 $(DESTDIR)$(PKGCONFIGDIR)/kdens-onnx.pc
endif

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/kdens.h $(DESTDIR)$(INCLUDEDIR)/kdens_experiment.h \
		$(DESTDIR)$(LIBDIR)/libkdens.a $(DESTDIR)$(LIBDIR)/libkdens_infer.a \
		$(DESTDIR)$(LIBDIR)/libkdens.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME) \
		$(DESTDIR)$(LIBDIR)/libkdens.so $(DESTDIR)$(PKGCONFIGDIR)/kdens.pc \
		$(DESTDIR)$(BINDIR)/kdens $(DESTDIR)$(MANDIR)/man1/kdens.1 \
		$(DESTDIR)$(INCLUDEDIR)/kdens_mpi.h $(DESTDIR)$(LIBDIR)/libkdens_mpi.a \
		$(DESTDIR)$(LIBDIR)/libkdens_mpi.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(MPI_SONAME) \
		$(DESTDIR)$(LIBDIR)/libkdens_mpi.so $(DESTDIR)$(PKGCONFIGDIR)/kdens-mpi.pc \
		$(DESTDIR)$(INCLUDEDIR)/kdens_onnx.h $(DESTDIR)$(LIBDIR)/libkdens_onnx.a \
		$(DESTDIR)$(LIBDIR)/libkdens_onnx.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(ONNX_SONAME) \
		$(DESTDIR)$(LIBDIR)/libkdens_onnx.so $(DESTDIR)$(PKGCONFIGDIR)/kdens-onnx.pc

clean:
	rm -rf build build-* build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
