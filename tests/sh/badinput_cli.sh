#!/usr/bin/env bash
# Command-line mistakes are errors, never ignored: one line on stderr naming
# the mistake (with the closest option when there is one) and exit status 2.
source "$(dirname "$0")/badinput.bash"
k=$kiln
expect 2 "kiln train: error: unknown option '--epoch'; did you mean '--epochs'?" "$k" train tiny.kiln --epoch 3
expect 2 "kiln train: error: unknown option '--frobnicate' (see 'kiln train --help')" "$k" train tiny.kiln --frobnicate
expect 2 "kiln train: error: unknown option '-x' (see 'kiln train --help')" "$k" train -x tiny.kiln
expect 2 "kiln eval: error: unknown option '--lod'; did you mean '--load'?" "$k" eval tiny.kiln --lod w.safetensors
expect 2 "kiln predict: error: unknown option '--inptu'; did you mean '--input'?" "$k" predict tiny.kiln --inptu x.idx
expect 2 "kiln compile: error: unknown option '--bogus' (see 'kiln compile --help')" "$k" compile tiny.kiln --bogus
expect 2 "kiln dump: error: unknown option '--fromat'; did you mean '--format'?" "$k" dump tiny.kiln --fromat dot
expect 2 "kiln opt: error: unknown option '--pases'; did you mean '--passes'?" "$k" opt m.kir --pases dce
expect 2 "kiln summary: error: unknown option '--verbose' (see 'kiln summary --help')" "$k" summary tiny.kiln --verbose
expect 2 "kiln: error: unknown command 'trian'; did you mean 'train'?" "$k" trian tiny.kiln
expect 2 "kiln: error: unknown command '--epochs' (see 'kiln --help')" "$k" --epochs 3
# Values: missing, malformed, out of range, or given to a flag.
expect 2 "kiln train: error: option '--epochs' needs a value (N)" "$k" train tiny.kiln --epochs
expect 2 "kiln train: error: --epochs expects an integer in [1, 2147483647], got '3x'" "$k" train tiny.kiln --epochs 3x
expect 2 "kiln train: error: --batch-size expects an integer in [1, 16777216], got '0'" "$k" train tiny.kiln --batch-size 0
expect 2 "kiln train: error: --seed expects an integer in [0, 9223372036854775807], got '-1'" "$k" train tiny.kiln --seed -1
expect 2 "kiln train: error: --threads expects an integer in [1, 256], got '0'" "$k" train tiny.kiln --threads 0
expect 2 "kiln train: error: --backend expects 'jit' or 'interp', got 'gpu'" "$k" train tiny.kiln --backend gpu
expect 2 "kiln train: error: option '--no-eval' takes no value" "$k" train tiny.kiln --no-eval=yes
expect 2 "kiln train: error: --checkpoint-every expects N (steps) or Ne (epochs), got '2x'" "$k" train tiny.kiln --checkpoint-every 2x
expect 2 "kiln train: error: --checkpoint-every needs --save CKPT" "$k" train tiny.kiln --checkpoint-every 2
expect 2 "kiln eval: error: --load CKPT is required" "$k" eval tiny.kiln
expect 2 "kiln predict: error: expected a model file and --input IDX" "$k" predict tiny.kiln --load w.safetensors
expect 2 "kiln train: error: expected one model file" "$k" train
expect 2 "kiln summary: error: unexpected argument 'other.kiln'" "$k" summary tiny.kiln other.kiln
expect 2 "kiln dump: error: --format expects 'text' or 'dot', got 'png'" "$k" dump tiny.kiln --format png
finish
