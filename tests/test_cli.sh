#!/bin/sh
# The kdens tool: its --help equals docs/cli.md, `kdens arch` builds every
# built-in architecture and ends with 'params: N', errors give exit codes.
set -u
BUILD=${BUILD:-build}
KDENS="$BUILD/kdens"
. "$(dirname "$0")/harness.sh"
harness_start cli

# --help texts, compared with the blocks of docs/cli.md
sed -n '/^usage: kdens <command>/,/^  help/p' docs/cli.md >"$tmp/main.doc"
sed -n '/^usage: kdens arch NAME/,/--list          list/p' docs/cli.md >"$tmp/arch.doc"
sed -n '/^usage: kdens subset/,/^  --color MODE/p' docs/cli.md >"$tmp/subset.doc"
sed -n '/^usage: kdens split/,/^  --seed S        random seed (default 0)$/p' docs/cli.md \
    | sed -n '/^usage: kdens split/,$p' >"$tmp/split.doc"
"$KDENS" --help >"$tmp/main.out"
"$KDENS" arch --help >"$tmp/arch.out"
"$KDENS" subset --help >"$tmp/subset.out"
"$KDENS" split --help >"$tmp/split.out"
check "kdens --help matches docs/cli.md" cmp "$tmp/main.doc" "$tmp/main.out"
check "kdens arch --help matches docs/cli.md" cmp "$tmp/arch.doc" "$tmp/arch.out"
check "kdens subset --help matches docs/cli.md" cmp "$tmp/subset.doc" "$tmp/subset.out"
check "kdens split --help matches docs/cli.md" cmp "$tmp/split.doc" "$tmp/split.out"
sed -n '/^usage: kdens train/,/^  --out FILE      where to save the model instead$/p' docs/cli.md \
    >"$tmp/train.doc"
sed -n '/^usage: kdens eval --model/,/fraction F when given), one line each\.$/p' docs/cli.md \
    >"$tmp/eval.doc"
"$KDENS" train --help >"$tmp/train.out"
"$KDENS" eval --help >"$tmp/eval.out"
check "kdens train --help matches docs/cli.md" cmp "$tmp/train.doc" "$tmp/train.out"
check "kdens eval --help matches docs/cli.md" cmp "$tmp/eval.doc" "$tmp/eval.out"
sed -n '/^usage: kdens teachers/,/--no-augment    no augmentation/p' docs/cli.md \
    >"$tmp/teachers.doc"
"$KDENS" teachers --help >"$tmp/teachers.out"
check "kdens teachers --help matches docs/cli.md" cmp "$tmp/teachers.doc" "$tmp/teachers.out"

for cmd in ensemble diversity vote distill pipeline experiment quantize export import; do
    sed -n "/^usage: kdens $cmd /,/^\`\`\`/p" docs/cli.md | sed '$d' >"$tmp/$cmd.doc"
    "$KDENS" $cmd --help >"$tmp/$cmd.out"
    check "kdens $cmd --help matches docs/cli.md" cmp "$tmp/$cmd.doc" "$tmp/$cmd.out"
done

check "test network has 31530 parameters" sh -c \
    "'$KDENS' arch test --input 28x28x1 --classes 10 | tail -n 1 | grep -qx 'params: 31530'"
for arch in $("$KDENS" arch --list); do
    check "arch $arch builds" sh -c \
        "'$KDENS' arch $arch --input 40x40x3 --classes 5 | tail -n 1 | grep -q '^params: [0-9][0-9]*$'"
done
check "a spec file builds" "$KDENS" arch --spec docs/examples/residual.spec --input 28x28x1 \
    --classes 10
check "version" sh -c "'$KDENS' version | grep -q '^kdens [0-9]*\.[0-9]*\.[0-9]* (kernels: [a-z0-9]*)$'"
check "version: whether MPI is built in, on the second line" sh -c \
    "'$KDENS' version | sed -n 2p | grep -Eq '^mpi: (no|yes \(.+\))\$'"
for cmd in version cpu help; do
    sed -n "/^usage: kdens $cmd\( .*\)\{0,1\}\$/,/^\`\`\`/p" docs/cli.md | sed '$d' >"$tmp/$cmd.doc"
    "$KDENS" $cmd --help >"$tmp/$cmd.out"
    check "kdens $cmd --help matches docs/cli.md" cmp "$tmp/$cmd.doc" "$tmp/$cmd.out"
done
check "cpu: the path in use is the best supported" sh -c "[ \"\$(env -u KDENS_CPU '$KDENS' cpu | sed -n 's/^path: //p')\" = \"\$('$KDENS' cpu --paths | awk '{print \$NF}')\" ]"
check "KDENS_CPU=generic forces the generic path" sh -c "KDENS_CPU=generic '$KDENS' version | grep -q '(kernels: generic)\$'"
check "cpu --paths starts with generic" sh -c "'$KDENS' cpu --paths | grep -q '^generic'"

# subsets and splits of an image folder (1x1 PNGs made from a fixed byte string)
png1=iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg==
for cls in cat dog; do
    mkdir -p "$tmp/imgs/train/$cls"
    for i in 0 1 2 3 4 5 6 7 8 9; do
        echo "$png1" | base64 -d >"$tmp/imgs/train/$cls/$i.png"
    done
done
check "subset of a folder" "$KDENS" subset --dataset "$tmp/imgs" --workdir "$tmp/wd" --count 5 \
    --number 2 --seed 1
check "two subset manifests named subset_n5_<uuid>.csv" sh -c \
    "ls '$tmp/wd/imgs/subsets' | grep -c '^subset_n5_[0-9a-f]\{32\}\.csv$' | grep -qx 2"
check "a manifest lists 5 images" sh -c \
    "test \$(cat '$tmp'/wd/imgs/subsets/*.csv | grep -c png) -eq 10"
check "split writes train.csv and val.csv" "$KDENS" split --dataset "$tmp/imgs" --workdir \
    "$tmp/wd" --fraction 0.2 --seed 4
check "val.csv holds 4 images" sh -c "test \$(grep -c png '$tmp/wd/imgs/val.csv') -eq 4"
check "split --move moves 2 files per class" "$KDENS" split --move "$tmp/imgs" --fraction 0.2
check "val folders hold them" sh -c \
    "test \$(ls '$tmp/imgs/val/cat' | wc -l) -eq 2 && test \$(ls '$tmp/imgs/train/cat' | wc -l) -eq 8"

# train on the folder (before the move above took a fifth of it), then evaluate
mkdir -p "$tmp/imgs/test"
cp -r "$tmp/imgs/val/"* "$tmp/imgs/test/"
check "kdens train on a folder" "$KDENS" train --dataset "$tmp/imgs" --arch test --size 4x4 \
    --epochs 2 --batch 4 --workdir "$tmp/wd"
check "the model and log are written" test -f "$tmp/wd/imgs/models/test_0.kdm" -a \
    -f "$tmp/wd/imgs/logs/test_0.csv"
check "kdens eval on the folder's test part" sh -c \
    "'$KDENS' eval --model '$tmp/wd/imgs/models/test_0.kdm' --dataset '$tmp/imgs' | grep -q '^images 4 '"
# the same model quantised to int8, calibrated on the folder, then evaluated
check "kdens quantize writes an int8 model" sh -c \
    "'$KDENS' quantize --model '$tmp/wd/imgs/models/test_0.kdm' --calibrate '$tmp/imgs' \
        --out '$tmp/q8.kdm' --samples 8 | grep -q '^wrote .*q8.kdm (int8 percentile 8; calibrated on 8 images'"
check "kdens eval reads the int8 model" sh -c \
    "'$KDENS' eval --model '$tmp/q8.kdm' --dataset '$tmp/imgs' | grep -q '^images 4 '"
check "kdens quantize --method minmax" "$KDENS" quantize --model "$tmp/wd/imgs/models/test_0.kdm" \
    --calibrate "$tmp/imgs" --out "$tmp/q8m.kdm" --method minmax
expect_exit "quantize needs --model, --calibrate and --out" 2 "$KDENS" quantize --model x.kdm \
    --out y.kdm
expect_exit "quantize refuses an unknown method" 2 "$KDENS" quantize --model x.kdm \
    --calibrate "$tmp/imgs" --out y.kdm --method entropy
expect_exit "quantize refuses 0 samples" 2 "$KDENS" quantize --model x.kdm \
    --calibrate "$tmp/imgs" --out y.kdm --samples 0
expect_exit "quantize of a missing model fails" 1 "$KDENS" quantize --model "$tmp/missing.kdm" \
    --calibrate "$tmp/imgs" --out "$tmp/y.kdm"
expect_exit "an int8 model cannot be quantised again" 1 "$KDENS" quantize --model "$tmp/q8.kdm" \
    --calibrate "$tmp/imgs" --out "$tmp/y.kdm"
check "kdens cpu names the int8 kernel" sh -c "'$KDENS' cpu | grep -Eq '^int8: (avx512-vnni|avx-vnni|avx512|avx2|generic)\$'"

# a preset from a folder of its official files (NAME=DIR): a tiny MNIST in the IDX format,
# 30 training and 10 test images of 28x28 (big-endian header, then the bytes)
be32() { printf "\\$(printf %03o $(($1 >> 24 & 255)))\\$(printf %03o $(($1 >> 16 & 255)))\\$(printf %03o $(($1 >> 8 & 255)))\\$(printf %03o $(($1 & 255)))"; }
idx_pair() { # prefix, count
    { be32 2051; be32 "$2"; be32 28; be32 28; head -c $(($2 * 784)) /dev/urandom; } >"$1-images-idx3-ubyte"
    { be32 2049; be32 "$2"; i=0; while [ $i -lt "$2" ]; do printf "\\$(printf %03o $((i % 10)))"; i=$((i + 1)); done; } \
        >"$1-labels-idx1-ubyte"
}
mkdir -p "$tmp/mnist"
idx_pair "$tmp/mnist/train" 30
idx_pair "$tmp/mnist/t10k" 10
check "kdens train --dataset mnist=DIR reads the official files from DIR" "$KDENS" train \
    --dataset "mnist=$tmp/mnist" --arch test --epochs 1 --batch 8 --workdir "$tmp/wm"
check "the workspace names the preset" test -f "$tmp/wm/mnist/models/test_0.kdm"
check "kdens eval on mnist=DIR's test part" sh -c \
    "'$KDENS' eval --model '$tmp/wm/mnist/models/test_0.kdm' --dataset 'mnist=$tmp/mnist' |
     grep -q '^images 10 '"
rm "$tmp/mnist/t10k-labels-idx1-ubyte"
expect_exit "a missing file exits 1" 1 "$KDENS" eval --model "$tmp/wm/mnist/models/test_0.kdm" \
    --dataset "mnist=$tmp/mnist"
grep -q "$tmp/mnist: t10k-images-idx3-ubyte\[.gz\] or t10k-labels-idx1-ubyte\[.gz\] is missing" \
    "$tmp/out" && ok "and names it, with the folder" || bad "and names it, with the folder"

# a fresh workspace for the folder as it is after the move
check "subsets for teachers" "$KDENS" subset --dataset "$tmp/imgs" --workdir "$tmp/wt" \
    --fraction 0.5 --number 2 --size 4x4
check "kdens teachers on the folder's subsets" "$KDENS" teachers --dataset "$tmp/imgs" --arch test \
    --size 4x4 --epochs 1 --batch 4 --workdir "$tmp/wt" --baseline
check "teachers.csv has two subset teachers and the baseline" sh -c \
    "test \$(tail -n +2 '$tmp/wt/teachers.csv' | wc -l) -eq 3"
check "snapshot and checkpoint ensembles" "$KDENS" teachers --dataset "$tmp/imgs" --arch test \
    --size 4x4 --batch 4 --workdir "$tmp/wt" --snapshots 2 --cycle-epochs 1 --checkpoints 2 \
    --epochs 3
check "four more teachers registered" sh -c \
    "test \$(tail -n +2 '$tmp/wt/teachers.csv' | wc -l) -eq 7"
check "kdens eval of the registered teachers" sh -c \
    "test \$('$KDENS' eval --workdir '$tmp/wt' --dataset '$tmp/imgs' --arch test | wc -l) -eq 7"

# fusion of the registered teachers
check "kdens ensemble of the registered teachers" "$KDENS" ensemble --workdir "$tmp/wt" \
    --dataset "$tmp/imgs" --arch test --save "$tmp/pred.kdp" --sizes 1,3,7 --repeats 3
check "ensemble.csv has every rule" sh -c \
    "test \$(tail -n +2 '$tmp/wt/imgs/ensemble.csv' | wc -l) -eq \$('$KDENS' vote --list | wc -l)"
check "ensemble.csv header" sh -c \
    "head -n 1 '$tmp/wt/imgs/ensemble.csv' | grep -qx 'rule,accuracy,correct,samples,members'"
check "accuracy versus size: 3 sizes per rule" sh -c \
    "test \$(grep -c '^mean,' '$tmp/wt/imgs/ensemble.sizes.csv') -eq 3"
check "saved predictions give the same accuracies" sh -c \
    "'$KDENS' ensemble --predictions '$tmp/pred.kdp' --out '$tmp/again.csv' &&
     cmp '$tmp/again.csv' '$tmp/wt/imgs/ensemble.csv'"
check "named rules only" sh -c \
    "'$KDENS' ensemble --predictions '$tmp/pred.kdp' --rules borda,stv --out '$tmp/two.csv' &&
     test \"\$(cut -d, -f1 '$tmp/two.csv' | tr '\n' ' ')\" = 'rule borda stv '"
check "--model is repeatable: two members" sh -c \
    "set -- \$(ls '$tmp'/wt/imgs/teachers/*.kdm | head -n 2) &&
     '$KDENS' ensemble --dataset '$tmp/imgs' --model \"\$1\" --model=\"\$2\" --rules borda \
     --out '$tmp/m2.csv' 2>/dev/null | grep -q '(2 members, 4 samples)' &&
     test \"\$(tail -n 1 '$tmp/m2.csv' | cut -d, -f5)\" = 2"
check "kdens diversity: a row per pair of the 7 members" sh -c \
    "test \$('$KDENS' diversity --predictions '$tmp/pred.kdp' 2>/dev/null | tail -n +2 | wc -l) -eq 21"
check "diversity names members by uuid" sh -c \
    "'$KDENS' diversity --workdir '$tmp/wt' --dataset '$tmp/imgs' --arch test 2>/dev/null |
     grep -q '^all_trainset,\|,all_trainset,'"
# distillation of the registered teachers
check "kdens distill: two mimic_all students" "$KDENS" distill --workdir "$tmp/wt" \
    --dataset "$tmp/imgs" --arch test --size 4x4 --teachers 3 --repetitions 2 \
    --mode mimic_all --temperature 2 --epochs 1 --batch 4
check "students.csv header and two rows" sh -c \
    "head -n 1 '$tmp/wt/students.csv' | grep -q '^model_location,dataset,architecture,n_teachers,' &&
     test \$(grep -c ',mimic_all,0.5,2,' '$tmp/wt/students.csv') -eq 2"
check "run again: nothing to train" sh -c \
    "'$KDENS' distill --workdir '$tmp/wt' --dataset '$tmp/imgs' --arch test --size 4x4 \
     --teachers 3 --repetitions 2 --mode mimic_all --temperature 2 --epochs 1 --batch 4 |
     grep -q '^trained 0 students'"
check "a student classifies the test part" sh -c \
    "'$KDENS' eval --model \$(tail -n 1 '$tmp/wt/students.csv' | cut -d, -f1) --dataset '$tmp/imgs' \
     | grep -q '^images 4 '"
# an architecture from a spec file: trained as teachers (the spec stored in the workspace and
# named in teachers.csv), then taken by name as a student's architecture
cat >"$tmp/mlp.spec" <<'SPEC'
# a small MLP, as the dissertation's voting members
dense units=12
relu
dense units=classes
softmax
SPEC
check "kdens train --arch FILE.spec" sh -c \
    "'$KDENS' train --dataset '$tmp/imgs' --arch '$tmp/mlp.spec' --size 4x4 --epochs 1 --batch 4 \
     --workdir '$tmp/wspec' && test -f '$tmp/wspec/imgs/models/mlp_0.kdm'"
check "kdens teachers --arch FILE.spec: the spec stored in the workspace, named in teachers.csv" \
    sh -c "'$KDENS' teachers --dataset '$tmp/imgs' --arch '$tmp/mlp.spec' --size 4x4 --epochs 1 \
     --batch 4 --workdir '$tmp/wt' --baseline &&
     cmp '$tmp/mlp.spec' '$tmp/wt/imgs/archs/mlp.spec' &&
     test \$(grep -c ',imgs,mlp,' '$tmp/wt/teachers.csv') -eq 3"
check "kdens distill --arch NAME of a workspace spec" sh -c \
    "'$KDENS' distill --workdir '$tmp/wt' --dataset '$tmp/imgs' --arch mlp --size 4x4 \
     --teachers 2 --epochs 1 --batch 4 && grep -q ',imgs,mlp,2,' '$tmp/wt/students.csv'"
check "kdens eval --registry by the spec file's name" sh -c \
    "test \$('$KDENS' eval --workdir '$tmp/wt' --dataset '$tmp/imgs' --arch '$tmp/mlp.spec' |
     wc -l) -eq 3"
mkdir -p "$tmp/other"
sed 's/units=12/units=13/' "$tmp/mlp.spec" >"$tmp/other/mlp.spec"
expect_exit "another spec under a workspace's name exits 1" 1 "$KDENS" teachers \
    --dataset "$tmp/imgs" --arch "$tmp/other/mlp.spec" --size 4x4 --epochs 1 --workdir "$tmp/wt"
grep -q "holds a different spec for 'mlp'" "$tmp/out" && ok "and says so" || bad "and says so"
expect_exit "an unknown architecture name exits 1, naming the spec file looked for" 1 \
    "$KDENS" distill --workdir "$tmp/wt" --dataset "$tmp/imgs" --arch nosuch --teacher-arch test \
    --size 4x4 --teachers 2 --epochs 1
grep -q "archs/nosuch.spec" "$tmp/out" && ok "and names it" || bad "and names it"

# an experiment grid from a plan on the image folder
cat >"$tmp/plan.txt" <<'PLAN'
teachers = 1, 2
fraction = 0.5
mode = output_avg, mimic_all
seeds = 2
teacher_epochs = 1
student_epochs = 1
batch = 4
PLAN
check "kdens experiment: a plan of 8 students" sh -c \
    "'$KDENS' experiment '$tmp/plan.txt' --dataset '$tmp/imgs' --size 4x4 --workdir '$tmp/wg' \
     >/dev/null 2>&1 && test \$(tail -n +2 '$tmp/wg/imgs/grid.csv' | wc -l) -eq 8 &&
     grep -q '8 of 8 students done' '$tmp/wg/imgs/grid.md'"
expect_exit "a plan without a dataset exits 2" 2 "$KDENS" experiment "$tmp/plan.txt" \
    --workdir "$tmp/wg"
echo "colour = red" >>"$tmp/plan.txt"
expect_exit "a bad plan exits 1, naming the line" 1 "$KDENS" experiment "$tmp/plan.txt" \
    --dataset "$tmp/imgs" --workdir "$tmp/wg"
grep -q "plan line 8: unknown key 'colour'" "$tmp/out" && ok "and names it" || bad "and names it"

cat >"$tmp/tn.csv" <<'CSV'
sample,member,p0,p1,p2
s1,a,0.6,0.3,0.1
s1,b,0.6,0.3,0.1
s1,c,0.6,0.3,0.1
s1,d,0.1,0.5,0.4
s1,e,0.1,0.5,0.4
s1,f,0.1,0.3,0.6
s1,g,0.1,0.3,0.6
s2,a,1,0,0
s2,b,0,3,1
s2,c,0,0,7
s2,d,0,1,0
s2,e,0,1,0
s2,f,0,1,0
s2,g,0,0.4,0.6
CSV
# s1: plurality 0 (3 votes of 7) against the Condorcet and Borda winner 1
check "kdens vote: plurality" sh -c \
    "test \"\$('$KDENS' vote --rule plurality '$tmp/tn.csv' | tr '\n' ' ')\" = 'sample,winner s1,0 s2,1 '"
check "kdens vote: Borda" sh -c \
    "test \"\$('$KDENS' vote --rule borda '$tmp/tn.csv' | tr '\n' ' ')\" = 'sample,winner s1,1 s2,1 '"
check "kdens vote: Condorcet" sh -c \
    "test \"\$('$KDENS' vote --rule condorcet '$tmp/tn.csv' | tr '\n' ' ')\" = 'sample,winner s1,1 s2,1 '"
grep -v '^s2,c' "$tmp/tn.csv" >"$tmp/missing.csv"

# the whole pipeline on a slice of Fashion-MNIST (seven students at the chosen T, and
# output_avg students at the two other candidate temperatures)
pp="$tmp/pipe"
check "kdens pipeline on 400 images, one epoch, every mode" "$KDENS" pipeline --workdir "$pp" \
    --limit 400 --teachers 3 --epochs 1 --student-epochs 1 --repeats 2 --modes all
check "results.csv header" sh -c \
    "head -n 1 '$pp/results.csv' | grep -qx 'kind,name,test_accuracy,test_loss,params,ms_per_image,only_right_vs_baseline,only_baseline_right,p_vs_baseline'"
check "results.csv: every student paired with the baseline (counts and a p-value)" sh -c \
    "grep '^student,' '$pp/results.csv' | awk -F, 'NF != 9 || \$7 == \"\" || \$9 < 0 || \$9 > 1 { exit 1 }' &&
     grep -q '^baseline,all_trainset,.*,,,\$' '$pp/results.csv'"
check "the headline states McNemar's p and a verdict; T chosen on validation" sh -c \
    "grep -q \"McNemar's exact p = \" '$pp/report.md' &&
     grep -Eq 'verdict \\*\\*(holds|not significant|fails)\\*\\*' '$pp/report.md' &&
     grep -q 'chosen on the validation part' '$pp/report.md'"
check "results.csv: a baseline, 3 teachers, every fusion rule, a student per mode" sh -c \
    "test \$(grep -c '^baseline,all_trainset,' '$pp/results.csv') -eq 1 &&
     test \$(grep -c '^teacher,' '$pp/results.csv') -eq 3 &&
     test \$(grep -c '^ensemble,' '$pp/results.csv') -eq \$('$KDENS' vote --list | wc -l) &&
     for m in output_avg loss_avg mimic_all supernet supernet2 fusion mimic_all_probs; do
         grep -q \"^student,\$m,\" '$pp/results.csv' || exit 1; done"
check "report.md has the headline and the plots" sh -c \
    "grep -q '^## Headline' '$pp/report.md' && grep -q 'Best student' '$pp/report.md' &&
     test \$(grep -c '^!\[' '$pp/report.md') -eq 3"
check "report.html inlines 3 PNG plots" sh -c \
    "test \$(grep -o 'data:image/png;base64,iVBORw0KGgo' '$pp/report.html' | wc -l) -eq 3"
for png in accuracy_vs_size agreement learning_curves; do
    check "$png.png is a PNG" sh -c "head -c 8 '$pp/$png.png' | od -An -tx1 | grep -q '89 50 4e 47 0d 0a 1a 0a'"
done
check "registries and logs in the workspace" sh -c \
    "test -f '$pp/teachers.csv' -a -f '$pp/students.csv' -a -d '$pp/fmnist/logs'"
check "run again: everything reused" sh -c \
    "'$KDENS' pipeline --workdir '$pp' --limit 400 --teachers 3 --epochs 1 --student-epochs 1 \
     --repeats 2 --modes all >'$tmp/again.log' 2>&1 && ! grep -q '^.*epoch 1/1:' '$tmp/again.log' &&
     test \$(tail -n +2 '$pp/teachers.csv' | wc -l) -eq 4 &&
     test \$(tail -n +2 '$pp/students.csv' | wc -l) -eq 9"
check "--alphas: alpha chosen on validation too (one new output_avg student)" sh -c \
    "'$KDENS' pipeline --workdir '$pp' --limit 400 --teachers 3 --epochs 1 --student-epochs 1 \
     --repeats 2 --modes output_avg --alphas 0.2,0.5 --temperature 2 >/dev/null 2>&1 &&
     grep -q 'Alpha was chosen on the validation part' '$pp/report.md' &&
     grep -q 'alpha 0.2: ' '$pp/report.md' && grep -q 'alpha 0.5: ' '$pp/report.md' &&
     test \$(tail -n +2 '$pp/students.csv' | wc -l) -eq 10 &&
     grep -q ',output_avg,0.2,2,' '$pp/students.csv'"

for part in train test; do
    for cls in cat dog; do
        mkdir -p "$tmp/folder/$part/$cls"
        for i in 0 1 2 3 4 5 6 7; do echo "$png1" | base64 -d >"$tmp/folder/$part/$cls/$i.png"; done
    done
done
check "kdens pipeline on an image folder" sh -c \
    "'$KDENS' pipeline --workdir '$tmp/pf' --dataset '$tmp/folder' --size 8x8 --color gray \
     --teachers 2 --epochs 1 --student-epochs 1 --repeats 2 >/dev/null 2>&1 &&
     test \$(grep -c '^teacher,' '$tmp/pf/results.csv') -eq 2 && test -d '$tmp/pf/folder/students'"
check "kdens pipeline --modes none with its own curve: the ensemble only" sh -c \
    "'$KDENS' pipeline --workdir '$tmp/pn' --dataset '$tmp/folder' --size 8x8 --teachers 3 \
     --epochs 1 --student-epochs 1 --repeats 2 --modes none --curve-rules borda,stv \
     --sizes 1,3 >/dev/null 2>&1 && ! grep -q '^student,' '$tmp/pn/results.csv' &&
     grep -q '^| rule | 1 | 3 |' '$tmp/pn/report.md' && grep -q '^| stv |' '$tmp/pn/report.md'"
expect_exit "--sizes without --curve-rules exits 2" 2 "$KDENS" pipeline --workdir "$tmp/pn" \
    --sizes 1,3
expect_exit "an unknown curve rule exits 2" 2 "$KDENS" pipeline --workdir "$tmp/pn" \
    --curve-rules borda,nope

# larger images end to end, at the corrosion detector's 240x320x3: teachers, fusion, students
check "kdens pipeline at 240x320x3" sh -c \
    "'$KDENS' pipeline --workdir '$tmp/pl' --dataset '$tmp/folder' --size 240x320 \
     --teachers 2 --epochs 1 --student-epochs 1 --repeats 1 --batch 8 \
     --modes output_avg,mimic_all --temperature 2 >/dev/null 2>&1 &&
     test \$(grep -c '^student,' '$tmp/pl/results.csv') -eq 2 &&
     '$KDENS' eval --model \$(tail -n 1 '$tmp/pl/students.csv' | cut -d, -f1) \
       --dataset '$tmp/folder' | grep -q '^images 16 '"

expect_exit "unknown architecture exits 1" 1 "$KDENS" arch nope --input 8x8x1 --classes 2
grep -q "unknown architecture 'nope'" "$tmp/out" && ok "and names it" || bad "and names it"
expect_exit "input too small exits 1" 1 "$KDENS" arch densenet121 --input 16x16x3 --classes 2
expect_exit "bad --input exits 2" 2 "$KDENS" arch test --input 28x28 --classes 10
expect_exit "missing --classes exits 2" 2 "$KDENS" arch test --input 28x28x1
expect_exit "unknown command exits 2" 2 "$KDENS" frobnicate
expect_exit "missing spec file exits 1" 1 "$KDENS" arch --spec /nonexistent.spec --input 8x8x1 \
    --classes 2
expect_exit "subset without fraction or count exits 2" 2 "$KDENS" subset --dataset "$tmp/imgs" \
    --workdir "$tmp/wd"
expect_exit "subset of an unknown folder exits 1" 1 "$KDENS" subset --dataset "$tmp/none" \
    --workdir "$tmp/wd" --fraction 0.5
expect_exit "train without --arch exits 2" 2 "$KDENS" train --dataset "$tmp/imgs"
expect_exit "eval of a missing model exits 1" 1 "$KDENS" eval --model "$tmp/none.kdm" \
    --dataset "$tmp/imgs"
expect_exit "vote with a missing member exits 1" 1 "$KDENS" vote --rule borda "$tmp/missing.csv"
grep -q "sample 's2' has no row for member 'c'" "$tmp/out" && ok "and names them" || bad "and names them"
expect_exit "vote with an unknown rule exits 1" 1 "$KDENS" vote --rule nope "$tmp/tn.csv"
expect_exit "ensemble without members exits 2" 2 "$KDENS" ensemble --dataset "$tmp/imgs"
expect_exit "ensemble with an unknown rule exits 2" 2 "$KDENS" ensemble --predictions \
    "$tmp/pred.kdp" --rules borda,nope
expect_exit "ensemble asking more teachers than registered exits 1" 1 "$KDENS" ensemble \
    --workdir "$tmp/wt" --dataset "$tmp/imgs" --arch test --teachers 99
expect_exit "distill with an unknown mode exits 1" 1 "$KDENS" distill --workdir "$tmp/wt" \
    --dataset "$tmp/imgs" --arch test --size 4x4 --mode nope
grep -q "unknown distillation mode 'nope'" "$tmp/out" && ok "and names it" || bad "and names it"
expect_exit "distill with alpha 2 exits 1" 1 "$KDENS" distill --workdir "$tmp/wt" \
    --dataset "$tmp/imgs" --arch test --size 4x4 --alpha 2
expect_exit "distill with more teachers than registered exits 1" 1 "$KDENS" distill \
    --workdir "$tmp/wt" --dataset "$tmp/imgs" --arch test --size 4x4 --teachers 50
expect_exit "pipeline with an unknown mode exits 2" 2 "$KDENS" pipeline --workdir "$tmp/p2" \
    --modes output_avg,nope
expect_exit "pipeline with fraction 0 exits 1" 1 "$KDENS" pipeline --workdir "$tmp/p2" \
    --limit 100 --fraction 0
expect_exit "pipeline with a bad temperature list exits 2" 2 "$KDENS" pipeline \
    --workdir "$tmp/p2" --temperatures 1,x
expect_exit "pipeline with --temperature and --temperatures exits 2" 2 "$KDENS" pipeline \
    --workdir "$tmp/p2" --temperature 2 --temperatures 1,2
expect_exit "pipeline with one candidate temperature exits 1" 1 "$KDENS" pipeline \
    --workdir "$tmp/p2" --limit 100 --temperatures 2
expect_exit "pipeline with --alpha and --alphas exits 2" 2 "$KDENS" pipeline \
    --workdir "$tmp/p2" --alpha 0.5 --alphas 0.2,0.8
expect_exit "pipeline with an alpha candidate above 1 exits 1" 1 "$KDENS" pipeline \
    --workdir "$tmp/p2" --limit 100 --alphas 0.2,1.5
expect_exit "pipeline with 24 candidate pairs exits 1" 1 "$KDENS" pipeline \
    --workdir "$tmp/p2" --limit 100 --alphas 0.2,0.5,0.8 --temperatures 1,2,3,4,5,6,7,8

# the option parser: --name=value, and each kind of rejection is a usage error (2) whose
# message names the option and the value, found before any work is done
check "--name=value form" sh -c \
    "'$KDENS' arch test --input=28x28x1 --classes=10 --seed=3 | tail -n 1 | grep -qx 'params: 31530'"
check "kdens help train is kdens train --help" sh -c \
    "'$KDENS' help train | cmp - '$tmp/train.out'"
rejects() { # name, text the message must hold, command...
    name=$1 text=$2
    shift 2
    expect_exit "$name exits 2" 2 "$@"
    if grep -qF -- "$text" "$tmp/out"; then ok "and says: $text"; else
        bad "and says: $text"; sed 's/^/    /' "$tmp/out"; fi
}
rejects "a bad whole number" "--epochs wants a whole number, got '3x'" \
    "$KDENS" train --dataset "$tmp/imgs" --arch test --epochs 3x
rejects "trailing junk after a number" "--lr wants a number, got '0.1x'" \
    "$KDENS" train --dataset "$tmp/imgs" --arch test --lr 0.1x
rejects "an empty number" "--batch wants a whole number, got ''" \
    "$KDENS" train --dataset "$tmp/imgs" --arch test --batch=
rejects "NaN" "--alpha wants a finite number, got 'nan'" \
    "$KDENS" distill --workdir "$tmp/wt" --dataset "$tmp/imgs" --arch test --alpha nan
rejects "infinity" "--lr wants a finite number, got 'inf'" \
    "$KDENS" train --dataset "$tmp/imgs" --arch test --lr inf
rejects "below the range" "--epochs must be at least 1, got '0'" \
    "$KDENS" train --dataset "$tmp/imgs" --arch test --epochs 0
rejects "above the range" "--fraction must be at most 1, got '1.5'" \
    "$KDENS" subset --dataset "$tmp/imgs" --workdir "$tmp/w3" --fraction 1.5
rejects "an excluded bound" "--fraction must be less than 1, got '1'" \
    "$KDENS" split --dataset "$tmp/imgs" --workdir "$tmp/w3" --fraction 1
rejects "an int overflow, --name=value" "--epochs must be at most 2147483647, got '99999999999'" \
    "$KDENS" train --dataset "$tmp/imgs" --arch test --epochs=99999999999
rejects "a 64-bit overflow" "--seed must be at most 18446744073709551615, got '18446744073709551616'" \
    "$KDENS" arch test --input 8x8x1 --classes 2 --seed 18446744073709551616
rejects "a negative seed" "--seed must be at least 0, got '-1'" \
    "$KDENS" subset --dataset "$tmp/imgs" --workdir "$tmp/w3" --count 2 --seed -1
rejects "a float overflow" "--temperature is out of range (of a float), got '1e39'" \
    "$KDENS" distill --workdir "$tmp/wt" --dataset "$tmp/imgs" --arch test --temperature 1e39
rejects "an unknown choice" "--color wants gray or rgb, got 'blue'" \
    "$KDENS" train --dataset "$tmp/imgs" --arch test --color blue
rejects "a bad --size" "--size wants HxW, got '4x'" \
    "$KDENS" train --dataset "$tmp/imgs" --arch test --size 4x
rejects "an unknown option" "kdens train: unknown option '--epoch'" \
    "$KDENS" train --dataset "$tmp/imgs" --arch test --epoch 3
grep -q "^  --epochs N " "$tmp/out" && ok "and lists the options" || bad "and lists the options"
rejects "an unknown option, --name=value" "kdens eval: unknown option '--epochs'" \
    "$KDENS" eval --dataset "$tmp/imgs" --epochs=3
rejects "a missing value" "kdens train: --epochs needs a value" \
    "$KDENS" train --dataset "$tmp/imgs" --arch test --epochs
rejects "a value given to a flag" "--augment takes no value, got '--augment=1'" \
    "$KDENS" train --dataset "$tmp/imgs" --arch test --augment=1
rejects "a stray word" "kdens subset: unexpected argument 'extra'" \
    "$KDENS" subset --dataset "$tmp/imgs" --workdir "$tmp/w3" --count 2 extra
rejects "a bad --sizes list" "--sizes wants at most 256 positive sizes like 1,2,5, got '1,,3'" \
    "$KDENS" ensemble --predictions "$tmp/pred.kdp" --sizes 1,,3
check "nothing was written by the rejected commands" test ! -e "$tmp/w3"
expect_exit "version takes no arguments" 2 "$KDENS" version extra
expect_exit "export needs --onnx and --model" 2 "$KDENS" export --model x.kdm
# with ONNX=1 the model cannot be read; without, the tool says it needs ONNX=1
expect_exit "export of a missing model fails" 1 "$KDENS" export --onnx "$tmp/x.onnx" \
    --model "$tmp/missing.kdm"
cp "$tmp/out" "$tmp/export.err"
check "export names the missing model or the build it needs" grep -Eq 'missing.kdm|make ONNX=1' \
    "$tmp/export.err"
expect_exit "import needs --out or a registry" 2 "$KDENS" import --onnx x.onnx
expect_exit "import of a missing file fails" 1 "$KDENS" import --onnx "$tmp/missing.onnx" \
    --out "$tmp/m.kdm"
cp "$tmp/out" "$tmp/import.err"
check "import names the missing file or the build it needs" grep -Eq 'missing.onnx|make ONNX=1' \
    "$tmp/import.err"
check "an .onnx model without ONNX support says what it needs" sh -c \
    "printf x >'$tmp/m.onnx'; ! '$KDENS' eval --model '$tmp/m.onnx' --dataset '$tmp/imgs' \
     >'$tmp/e.err' 2>&1 && grep -Eq 'kdens_onnx_enable|m.onnx' '$tmp/e.err'"

harness_end
