#!/bin/sh
# The kdens tool built with MPI=1 (make check-mpi): alone it runs without
# MPI; started by mpirun it joins the job, has a communicator with more than
# one rank, and a failure on the ranks ends them all with a non-zero status.
set -u
BUILD=${BUILD:-build}
KDENS="$BUILD/kdens"
MPIRUN=${MPIRUN:-mpirun}
. "$(dirname "$0")/../harness.sh"
harness_start cli-mpi

check "alone: MPI built in, no ranks" sh -c \
    "'$KDENS' version | sed -n 2p | grep -Eq '^mpi: yes \\(.+\\)\$'"
check "mpirun -np 1: no communicator" sh -c \
    "timeout 120 $MPIRUN -np 1 '$KDENS' version | sed -n 2p | grep -Eq '^mpi: yes \\([^)]+\\)\$'"
check "mpirun -np 2: rank 0 of 2 and rank 1 of 2" sh -c \
    "timeout 120 $MPIRUN -np 2 '$KDENS' version >'$tmp/v' &&
     grep -q ', rank 0 of 2\$' '$tmp/v' && grep -q ', rank 1 of 2\$' '$tmp/v'"
# every rank fails: MPI_Abort ends the job with a non-zero status, at once
timeout 120 $MPIRUN -np 2 "$KDENS" arch nope --input 8x8x1 --classes 2 >"$tmp/out" 2>&1
rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]; then
    ok "a failing command under mpirun -np 2 exits non-zero ($rc)"
else
    bad "a failing command under mpirun -np 2 exits non-zero (exit $rc)"
fi

# ---- the teacher farm, data-parallel training and refusals, on an image folder ----------
# 240 one-pixel PNGs of two classes, resized to 16x16 (the content does not matter here)
png1=iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg==
echo "$png1" | base64 -d >"$tmp/one.png"
for part in train test; do
    for cls in cat dog; do
        mkdir -p "$tmp/imgs/$part/$cls"
        i=0
        while [ $i -lt 60 ]; do cp "$tmp/one.png" "$tmp/imgs/$part/$cls/$i.png"; i=$((i + 1)); done
    done
done
IMG="--dataset $tmp/imgs --size 16x16 --color gray"
rows() { tail -n +2 "$1/teachers.csv" 2>/dev/null | wc -l; }
uuids() { tail -n +2 "$1/teachers.csv" | cut -d, -f5 | sort | uniq | wc -l; }

# five subsets on three ranks; the workers get a workspace that does not exist (and must
# not be made): rank 0's workspace is the only one
W=$tmp/farm
check "five subsets" "$KDENS" subset $IMG --workdir "$W" --fraction 0.5 --number 5
check "mpirun: a farm of 5 teachers on 3 ranks, workers without a workspace" \
    timeout 300 $MPIRUN -np 1 "$KDENS" teachers $IMG --workdir "$W" --arch test --epochs 2 \
    --batch 16 : -np 2 "$KDENS" teachers $IMG --workdir "$tmp/none" --arch test --epochs 2 \
    --batch 16
check "each subset trained exactly once, registered by rank 0" sh -c \
    "test \$(tail -n +2 '$W/teachers.csv' | wc -l) -eq 5 &&
     test \$(tail -n +2 '$W/teachers.csv' | cut -d, -f5 | sort -u | wc -l) -eq 5 &&
     test \$(ls '$W/imgs/teachers' | grep -c '\\.kdm\$') -eq 5 &&
     test \$(ls '$W/imgs/logs' | wc -l) -eq 5 && test ! -e '$tmp/none'"
check "run again: nothing to train, the baseline data-parallel over 2 ranks" sh -c \
    "timeout 300 $MPIRUN -np 2 '$KDENS' teachers $IMG --workdir '$W' --arch test --epochs 2 \
     --batch 16 --baseline >'$tmp/again' 2>&1 && grep -q 'trained 0 subset teachers, the baseline' '$tmp/again' &&
     test \$(tail -n +2 '$W/teachers.csv' | wc -l) -eq 6 && test \$(grep -c ',all_trainset,' '$W/teachers.csv') -eq 1"

# a worker killed mid-farm: the job ends, whole files only; the same command again finishes
# the rest, and no teacher is trained twice
K=$tmp/kill
"$KDENS" subset $IMG --workdir "$K" --fraction 0.5 --number 5 >/dev/null 2>&1
FARM="teachers $IMG --arch resnet20 --epochs 6 --batch 16"
timeout 600 $MPIRUN -np 1 "$KDENS" $FARM --workdir "$K" : -np 2 "$KDENS" $FARM \
    --workdir "$tmp/victim" >"$tmp/killed.log" 2>&1 &
job=$!
waited=0
while [ "$(rows "$K")" -lt 1 ] && [ $waited -lt 300 ]; do sleep 1; waited=$((waited + 1)); done
victim=$(pgrep -f -- "^$KDENS teachers .*--workdir $tmp/victim" | head -n 1)
before=$(rows "$K")
[ -n "$victim" ] && kill -9 "$victim"
wait $job
rc=$?
if [ "$rc" -ne 0 ] && [ -n "$victim" ] && [ "$before" -lt 5 ]; then
    ok "a worker killed after $before of 5 teachers: the job ends (exit $rc)"
else
    bad "a worker killed mid-farm (exit $rc, $before teachers before the kill, victim '$victim')"
    cat "$tmp/killed.log" >"$tmp/out"
fi
check "after the kill: every registered teacher's file whole, no temporaries" sh -c \
    "for f in \$(tail -n +2 '$K/teachers.csv' | cut -d, -f1); do
         '$KDENS' eval --model \"\$f\" $IMG >/dev/null 2>&1 || exit 1; done &&
     ! ls -a '$K/imgs/teachers' | grep -q tmp"
kept=$(rows "$K")
check "the same command again finishes the farm" \
    timeout 600 $MPIRUN -np 3 "$KDENS" $FARM --workdir "$K"
check "five teachers in all, each once (the $kept finished before the kill kept)" sh -c \
    "test \$(tail -n +2 '$K/teachers.csv' | wc -l) -eq 5 &&
     test \$(tail -n +2 '$K/teachers.csv' | cut -d, -f5 | sort -u | wc -l) -eq 5"

# more ranks than work: the idle ones say so and stop, the job succeeds
check "4 ranks for 1 subset: a warning, success" sh -c \
    "'$KDENS' subset $IMG --workdir '$tmp/few' --fraction 0.5 --number 1 >/dev/null 2>&1 &&
     timeout 300 $MPIRUN -np 4 '$KDENS' teachers $IMG --workdir '$tmp/few' --arch test \
     --epochs 1 --batch 16 >'$tmp/few.log' 2>&1 && grep -q 'ranks stay idle' '$tmp/few.log' &&
     test \$(tail -n +2 '$tmp/few/teachers.csv' | wc -l) -eq 1"

# the pipeline's teacher stage over 3 ranks (workers without a workspace), the rest on rank 0
PIPE="pipeline $IMG --teachers 3 --epochs 1 --student-epochs 1 --repeats 2 --modes output_avg"
check "mpirun: kdens pipeline, its teacher stage a farm over 3 ranks" sh -c \
    "timeout 600 $MPIRUN -np 1 '$KDENS' $PIPE --workdir '$tmp/pipe' : -np 2 '$KDENS' $PIPE \
     --workdir '$tmp/none-pipe' >'$tmp/pipe.log' 2>&1 &&
     test \$(tail -n +2 '$tmp/pipe/teachers.csv' | wc -l) -eq 4 &&
     test -f '$tmp/pipe/report.md' && grep -q '^student,output_avg,' '$tmp/pipe/results.csv' &&
     test ! -e '$tmp/none-pipe' && test \$(grep -c '^report: ' '$tmp/pipe.log') -eq 1"

# the experiment grid over 3 ranks: teachers a farm, each student (cell, seed) on a free
# rank; the same students, bit for bit, as one process makes (the same threads per process)
cat >"$tmp/plan.txt" <<'PLAN'
arch = test
teachers = 2, 3
fraction = 0.5
mode = output_avg, mimic_all
seeds = 2
teacher_epochs = 1
student_epochs = 1
batch = 16
PLAN
EXP="experiment $tmp/plan.txt $IMG"
check "mpirun: kdens experiment, 8 students over 3 ranks (workers without a workspace)" sh -c \
    "timeout 600 $MPIRUN -np 1 '$KDENS' $EXP --workdir '$tmp/grid' : -np 2 '$KDENS' $EXP \
     --workdir '$tmp/none-grid' >'$tmp/grid.log' 2>&1 &&
     test \$(tail -n +2 '$tmp/grid/students.csv' | wc -l) -eq 8 &&
     test -f '$tmp/grid/imgs/grid.md' && test ! -e '$tmp/none-grid' &&
     test \$(grep -c '^grid of 8 students' '$tmp/grid.log') -eq 1"
check "the same grid alone: the same students (uuids and accuracies)" sh -c \
    "'$KDENS' $EXP --workdir '$tmp/grid1' >/dev/null 2>&1 &&
     cut -d, -f2- '$tmp/grid/students.csv' | sort >'$tmp/g.ranks' &&
     cut -d, -f2- '$tmp/grid1/students.csv' | sort >'$tmp/g.alone' && cmp '$tmp/g.ranks' '$tmp/g.alone'"

# kdens distill over 2 ranks (the farm's workspace; the worker has none): the student trains
# data-parallel, rank 0 registers it once
check "mpirun: kdens distill data-parallel over 2 ranks, registered once by rank 0" sh -c \
    "timeout 600 $MPIRUN -np 1 '$KDENS' distill $IMG --workdir '$W' --arch test --teachers 3 \
     --epochs 1 --batch 16 : -np 1 '$KDENS' distill $IMG --workdir '$tmp/none-distill' \
     --arch test --teachers 3 --epochs 1 --batch 16 >'$tmp/distill.log' 2>&1 &&
     test \$(tail -n +2 '$W/students.csv' | wc -l) -eq 1 && test ! -e '$tmp/none-distill' &&
     test \$(grep -c '^trained 1 students' '$tmp/distill.log') -eq 1"

# data-parallel kdens train: one model, written by rank 0; --resume continues
check "mpirun -np 2 kdens train: data-parallel, one model file" sh -c \
    "timeout 300 $MPIRUN -np 2 '$KDENS' train $IMG --arch test --epochs 2 --batch 16 \
     --workdir '$tmp/dp' >'$tmp/dp.log' 2>&1 && test \$(grep -c 'validation accuracy' '$tmp/dp.log') -eq 1 &&
     test -f '$tmp/dp/imgs/models/test_0.kdm' && test ! -e '$tmp/dp/imgs/models/test_0.kdm.ckpt'"

# refusals: settings that differ, a rank whose data is missing -- every rank stops, rank 0
# names the rank, nothing is written
timeout 300 $MPIRUN -np 1 "$KDENS" train $IMG --arch test --epochs 2 --workdir "$tmp/diff" : \
    -np 1 "$KDENS" train $IMG --arch test --epochs 3 --workdir "$tmp/diff" >"$tmp/out" 2>&1
rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q 'rank 1: differs from rank 0' "$tmp/out" &&
    [ ! -e "$tmp/diff/imgs/models/test_0.kdm" ]; then
    ok "different settings on rank 1: refused, named on rank 0, nothing written"
else
    bad "different settings on rank 1 (exit $rc)"
fi
timeout 300 $MPIRUN -np 1 "$KDENS" teachers $IMG --workdir "$W" --arch test --epochs 1 : \
    -np 1 "$KDENS" teachers --dataset "$tmp/missing" --size 16x16 --color gray \
    --workdir "$W" --arch test --epochs 1 >"$tmp/out" 2>&1
rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q "rank 1: .*$tmp/missing" "$tmp/out" &&
    [ "$(rows "$W")" -eq 6 ]; then
    ok "a rank whose data is missing: every rank stops, rank 0 names it, the registry unchanged"
else
    bad "a rank whose data is missing (exit $rc)"
fi

harness_end
