"""PyTorch's side of bench/onnx.sh.

    onnx_torch.py export OUT_DIR     the MLP (784-128-64-10, Keras' MNIST example) and the
                                     convnet (examples/fashion_cnn.kiln's layers, NCHW) with
                                     seeded weights, exported by torch.onnx (opset 13, dynamic
                                     batch) as OUT_DIR/{mlp,cnn}_torch.onnx; OUT_DIR/identity.onnx
                                     (one Identity on [batch, 1]) for ONNX Runtime's per-call
                                     cost; inputs x1 / x10k (.npy) for each model and layout
    onnx_torch.py time OUT_DIR [--calls N] [--reps R]
                                     eager inference at 1 thread (torch.inference_mode):
                                     batch-1 latency (median of 15 rounds of N/15 calls, us) and
                                     batch-10,000 throughput (median of R calls, samples/s);
                                     one line "RESULT {json}"
"""
import json
import sys
import time

import numpy as np
import torch
from torch import nn


def models():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                        nn.Linear(64, 10), nn.Softmax(dim=1))
    cnn = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3),
                        nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1600, 10),
                        nn.Softmax(dim=1))
    return {"mlp": (mlp.eval(), (784,)), "cnn": (cnn.eval(), (1, 28, 28))}


def inputs(n, shape):
    return np.random.RandomState(n).rand(n, *shape).astype(np.float32)


def export(out):
    import onnx
    from onnx import TensorProto, helper
    for name, (m, shape) in models().items():
        x = torch.from_numpy(inputs(2, shape))
        torch.onnx.export(m, x, f"{out}/{name}_torch.onnx", input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=13)
        np.save(f"{out}/{name}_x1.npy", inputs(1, shape))
        np.save(f"{out}/{name}_x10k.npy", inputs(10000, shape))
    # Kiln's own convnet export is NHWC.
    np.save(f"{out}/cnn_nhwc_x1.npy", inputs(1, (28, 28, 1)))
    np.save(f"{out}/cnn_nhwc_x10k.npy", inputs(10000, (28, 28, 1)))
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]),
              f"{out}/identity.onnx")
    np.save(f"{out}/identity_x1.npy", np.zeros((1, 1), np.float32))


def timing(out, calls, reps):
    torch.set_num_threads(1)
    res = {}
    with torch.inference_mode():
        for name, (m, shape) in models().items():
            x1 = torch.from_numpy(np.load(f"{out}/{name}_x1.npy"))
            xb = torch.from_numpy(np.load(f"{out}/{name}_x10k.npy"))
            per = max(calls // 15, 1)
            for _ in range(per // 10 + 1):
                m(x1)
            rounds = []
            for _ in range(15):
                t0 = time.perf_counter()
                for _ in range(per):
                    m(x1)
                rounds.append((time.perf_counter() - t0) / per)
            m(xb)
            big = []
            for _ in range(reps):
                t0 = time.perf_counter()
                m(xb)
                big.append(time.perf_counter() - t0)
            res[name] = {"b1_us": float(np.median(rounds)) * 1e6,
                         "tput": xb.shape[0] / float(np.median(big))}
            print(f"torch {name}: batch-1 {res[name]['b1_us']:.2f} us, "
                  f"batch-10,000 {res[name]['tput']:.0f} samples/s")
    print("RESULT " + json.dumps(res))


if __name__ == "__main__":
    if sys.argv[1] == "export":
        export(sys.argv[2])
    else:
        args = sys.argv[3:]
        opt = {args[i]: int(args[i + 1]) for i in range(0, len(args), 2)}
        timing(sys.argv[2], opt.get("--calls", 30000), opt.get("--reps", 9))
