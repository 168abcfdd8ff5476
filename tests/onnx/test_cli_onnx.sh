#!/bin/sh
# ONNX teachers from the command line (make check-onnx): kdens import (to a
# .kdm, and as a teachers.csv row pointing at the .onnx), .onnx files given
# to eval, ensemble and distill --teacher, a registry of ONNX rows sampled
# by distill --teacher-arch -- with a PyTorch-made teacher when Debian's
# python3-torch is installed -- and the errors.
set -u
BUILD=${BUILD:-build}
KDENS="$BUILD/kdens"
. "$(dirname "$0")/../harness.sh"
harness_start cli-onnx

# an image folder of two classes (RGB PNGs of 1x1 pixels of different colours,
# decoded at 4x4): train/, test/
red=iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGM4IacBAALAAQ/aQIG5AAAAAElFTkSuQmCC
blue=iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGMQ0bgEAAFiAQ8VEO48AAAAAElFTkSuQmCC
for part in train test; do
    for cls in red blue; do
        mkdir -p "$tmp/imgs/$part/$cls"
        for i in 0 1 2 3 4 5; do
            if [ $cls = red ]; then echo "$red"; else echo "$blue"; fi | base64 -d \
                >"$tmp/imgs/$part/$cls/$i.png"
        done
    done
done
D="--dataset $tmp/imgs --size 4x4"

# two teachers trained here, written as ONNX files
for s in 0 1; do
    check "teacher $s trains" "$KDENS" train $D --arch test --epochs 2 --batch 4 --seed $s --workdir "$tmp/tw" \
        --out "$tmp/t$s.kdm"
    check "teacher $s exports to ONNX" "$KDENS" export --onnx "$tmp/t$s.onnx" --model "$tmp/t$s.kdm"
done

# kdens eval, ensemble read .onnx files as they read .kdm files
"$KDENS" eval --model "$tmp/t0.kdm" $D >"$tmp/eval_kdm.txt" 2>&1
check "eval of an .onnx file equals its .kdm's" sh -c \
    "'$KDENS' eval --model '$tmp/t0.onnx' $D >'$tmp/eval_onnx.txt' 2>&1 &&
     cmp '$tmp/eval_kdm.txt' '$tmp/eval_onnx.txt'"
check "ensemble of .onnx and .kdm members" sh -c \
    "'$KDENS' ensemble --dataset '$tmp/imgs' --model '$tmp/t0.onnx' --model '$tmp/t1.kdm' --rules borda \
     --out '$tmp/ens.csv' 2>/dev/null | grep -q '(2 members, 12 samples)'"

# kdens import: to a .kdm that predicts what the .onnx does
check "import writes a .kdm" "$KDENS" import --onnx "$tmp/t0.onnx" --out "$tmp/t0b.kdm"
check "the imported .kdm evaluates as the original" sh -c \
    "'$KDENS' eval --model '$tmp/t0b.kdm' $D >'$tmp/eval_b.txt' 2>&1 &&
     cmp '$tmp/eval_kdm.txt' '$tmp/eval_b.txt'"

# kdens import --workdir: a teachers.csv row pointing at the .onnx itself
W="$tmp/ws"
for s in 0 1; do
    check "import registers t$s.onnx" "$KDENS" import --onnx "$tmp/t$s.onnx" --workdir "$W" \
        $D --arch onnxnet
done
check "teachers.csv rows point at the .onnx files, uuids from their names" sh -c \
    "grep -q '^$tmp/t0.onnx,imgs,onnxnet,1,t0,' '$W/teachers.csv' &&
     grep -q '^$tmp/t1.onnx,imgs,onnxnet,1,t1,' '$W/teachers.csv'"
check "import again: registered already, no new row" sh -c \
    "'$KDENS' import --onnx '$tmp/t0.onnx' --workdir '$W' $D --arch onnxnet >/dev/null &&
     test \$(wc -l <'$W/teachers.csv') -eq 3"
check "distill samples the registry's ONNX teachers" sh -c \
    "'$KDENS' distill --workdir '$W' $D --arch test --teacher-arch onnxnet --teachers 2 \
     --epochs 1 --batch 4 | grep -q '^trained 1 students (output_avg, 2 teachers each)'"
check "distill --teacher: files, .onnx and .kdm" sh -c \
    "'$KDENS' distill --workdir '$W' $D --arch test --teacher '$tmp/t0.onnx' \
     --teacher '$tmp/t1.kdm' --mode mimic_all --epochs 1 --batch 4 |
     grep -q '^trained 1 students (mimic_all, 2 teachers each)' &&
     tail -n 1 '$W/students.csv' | grep -q '$tmp/t0.onnx;$tmp/t1.kdm'"
check "the student classifies the test part" sh -c \
    "'$KDENS' eval --model \$(tail -n 1 '$W/students.csv' | cut -d, -f1) $D | grep -q '^images 12 '"

# a PyTorch teacher: torch.onnx.export of a small CNN that takes raw pixels
# (x * scale + shift in front: the input scaling libkdens reads), registered
# and distilled with the others
# (Debian's python3-torch is /usr/bin/python3's; another python3 may be first on PATH)
PY3=python3
python3 -c 'import torch' 2>/dev/null || PY3=/usr/bin/python3
if $PY3 -c 'import torch' 2>/dev/null; then
    if $PY3 - "$tmp/torch.onnx" >"$tmp/out" 2>&1 <<'PY'
import sys, torch
torch.manual_seed(0)
class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.full((1, 3, 1, 1), 1 / 255.0))
        self.register_buffer("shift", torch.full((1, 3, 1, 1), -0.5))
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, 2)
    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x * self.scale + self.shift)))
        return torch.softmax(self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1)), 1)
net = Net().eval()
torch.onnx.export(net, torch.zeros(1, 3, 4, 4), sys.argv[1], opset_version=13,
                  input_names=["input"], output_names=["probabilities"],
                  dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}})
PY
    then
        ok "PyTorch writes an ONNX teacher"
        check "import registers the PyTorch teacher" "$KDENS" import --onnx "$tmp/torch.onnx" \
            --workdir "$W" $D --arch torchnet --uuid torch0
        check "distill --teacher: a PyTorch and a libkdens teacher" sh -c \
            "'$KDENS' distill --workdir '$W' $D --arch test --teacher '$tmp/torch.onnx' \
             --teacher '$tmp/t1.onnx' --epochs 1 --batch 4 | grep -q '^trained 1 students'"
    else
        bad "PyTorch writes an ONNX teacher"
    fi
else
    echo "skip - python3-torch is not installed (make deps ONNX=1): no PyTorch teacher"
fi

# examples/onnx_teachers.c: the same from C, student written as .kdm and .onnx
if [ -x "$BUILD/onnx_teachers" ]; then
    check "onnx_teachers distils ONNX teachers, writes the student twice" sh -c \
        "'$BUILD/onnx_teachers' --data '$tmp/imgs' --epochs 1 --out '$tmp/ex' '$tmp/t0.onnx' \
         '$tmp/t1.onnx' >'$tmp/ex.txt' && grep -q '^ensemble of 2 (mean of probabilities)' \
         '$tmp/ex.txt' && test -s '$tmp/ex.kdm' && test -s '$tmp/ex.onnx'"
    check "its .onnx student evaluates as its .kdm" sh -c \
        "'$KDENS' eval --model '$tmp/ex.kdm' $D >'$tmp/ex1.txt' 2>&1 &&
         '$KDENS' eval --model '$tmp/ex.onnx' $D >'$tmp/ex2.txt' 2>&1 && cmp '$tmp/ex1.txt' '$tmp/ex2.txt'"
else
    bad "examples/onnx_teachers is built (make ONNX=1)"
fi

# errors
printf 'not an onnx file' >"$tmp/junk.onnx"
expect_exit "import of a damaged file fails" 1 "$KDENS" import --onnx "$tmp/junk.onnx" \
    --out "$tmp/junk.kdm"
cp "$tmp/out" "$tmp/junk.err"
check "and names it" grep -q 'junk.onnx' "$tmp/junk.err"
check "and writes nothing" test ! -e "$tmp/junk.kdm"
expect_exit "import needs --out or a registry" 2 "$KDENS" import --onnx "$tmp/t0.onnx"
expect_exit "a registry needs --dataset and --arch" 2 "$KDENS" import --onnx "$tmp/t0.onnx" \
    --workdir "$W"
expect_exit "--input-scale needs --out" 2 "$KDENS" import --onnx "$tmp/t0.onnx" --workdir "$W" \
    $D --arch onnxnet --input-scale 0.5
expect_exit "--input-scale takes 1 or C numbers" 2 "$KDENS" import --onnx "$tmp/t0.onnx" \
    --out "$tmp/s.kdm" --input-scale 1,2
check "--input-scale sets the model's scaling" sh -c \
    "'$KDENS' import --onnx '$tmp/t0.onnx' --out '$tmp/s.kdm' --input-scale 0.5 \
     --input-offset 1,2,3 >/dev/null && ! cmp -s '$tmp/s.kdm' '$tmp/t0b.kdm'"
expect_exit "distill: a missing teacher file fails" 1 "$KDENS" distill --workdir "$W" $D \
    --arch test --teacher "$tmp/none.onnx" --epochs 1
cp "$tmp/out" "$tmp/none.err"
check "and names it" grep -q 'none.onnx' "$tmp/none.err"
expect_exit "distill: --teachers differing from the files given" 1 "$KDENS" distill \
    --workdir "$W" $D --arch test --teacher "$tmp/t0.onnx" --teachers 3 --epochs 1

harness_end
