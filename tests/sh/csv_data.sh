#!/usr/bin/env bash
# CSV data: a regression trains on float labels and a classifier on integer
# ones (--data train.csv --test test.csv --label-column NAME); ragged rows,
# non-numbers and a missing label column get file:line:col with a caret.
source "$(dirname "$0")/badinput.bash"
python3 - <<'PY'
import random
r = random.Random(5)
for name, n in (("train.csv", 800), ("test.csv", 200)):
    with open(name, "w") as f:
        f.write("a,b,target\n")
        for _ in range(n):
            a, b = r.uniform(-1, 1), r.uniform(-1, 1)
            f.write("%.6f,%.6f,%.6f\n" % (a, b, 2 * a - b + 0.5))
    with open("cls_" + name, "w") as f:
        f.write('"x1","x2",class\r\n')
        for _ in range(n):
            a, b = r.uniform(-1, 1), r.uniform(-1, 1)
            f.write("%.5f,%.5f,%d\r\n" % (a, b, 0 if a < -0.3 else 1 if a < 0.3 else 2))
PY
cat >reg.kiln <<'KILN'
input x : f32[?, 2]
label y : f32[?, 1]
p = dense(x, 1)
output p
loss mse(p, y)
train {
  optimizer = adam(lr=0.05)
  batch_size = 16
  epochs = 20
}
KILN
cat >cls.kiln <<'KILN'
input x : f32[?, 2]
label y : i32[?]
h = dense(x, 16, activation=relu)
p = dense(h, 3, activation=softmax)
output p
loss sparse_categorical_crossentropy(p, y)
train {
  optimizer = adam(lr=0.02)
  batch_size = 16
  epochs = 20
  metrics = [accuracy]
}
KILN
checks=$((checks + 2))
"$kiln" train reg.kiln --data train.csv --test test.csv --label-column target --save reg.safetensors >reg.log
if awk '/^test: loss/ { exit !($3 < 0.001) }' reg.log; then echo "ok: regression: $(tail -1 reg.log)"
else fails=$((fails + 1)); echo "FAIL: regression"; tail -3 reg.log; fi
"$kiln" train cls.kiln --data cls_train.csv --test cls_test.csv --label-column class >cls.log
if awk '/^test: loss/ { exit !($6 > 0.95) }' cls.log; then echo "ok: classifier: $(tail -1 cls.log)"
else fails=$((fails + 1)); echo "FAIL: classifier"; tail -3 cls.log; fi
checks=$((checks + 1))
if "$kiln" eval reg.kiln --load reg.safetensors --data test.csv --label-column target | grep -q "^test: loss 0.000"; then
  echo "ok: eval on a CSV file"; else fails=$((fails + 1)); echo "FAIL: eval on CSV"; fi

printf 'a,b,target\n1,2,3\n4,5\n' >ragged.csv
printf 'a,b,target\n1,2,3\n4,x5,6\n' >word.csv
printf 'a,b,target\n1,,3\n' >hole.csv
printf 'a,b,trget\n1,2,3\n' >nolabel.csv
t=("$kiln" train reg.kiln --label-column target --data)
# expect3 RC 'three lines' CMD...: the message, the line, the caret
expect3() {
  local rc=$1 want=$2 got
  shift 2
  checks=$((checks + 1))
  set +e; "$@" >"$T/.out" 2>"$T/.err"; got=$?; set -e
  if [ "$got" -eq "$rc" ] && [ "$(cat "$T/.err")" = "$want" ]; then echo "ok: [$rc] $(head -1 "$T/.err")"
  else fails=$((fails + 1)); echo "FAIL: $* (status $got)"; cat "$T/.err"; fi
}
expect3 1 "ragged.csv:3:4: error: this row has 2 fields, the header has 3
    4,5
       ^" "${t[@]}" ragged.csv
expect3 1 "word.csv:3:3: error: 'x5' is not a number
    4,x5,6
      ^" "${t[@]}" word.csv
expect3 1 "hole.csv:2:3: error: an empty field; every field is a number
    1,,3
      ^" "${t[@]}" hole.csv
expect 1 "nolabel.csv:1:1: error: no column 'target' in the header; did you mean 'trget'?" "${t[@]}" nolabel.csv
expect 2 "kiln train: error: --data train.csv needs --label-column NAME" "$kiln" train reg.kiln --data train.csv
finish
