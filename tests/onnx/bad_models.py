"""Writes ONNX models Kiln must refuse, with the message it must give:
    bad_models.py OUT_DIR
unsupported.onnx (two unknown ops: one message naming both),
huge.onnx (an initializer with a dimension of 2^40),
short.onnx (raw_data shorter than dims say), external.onnx (external data),
many.onnx (100,001 nodes), nested.onnx (graphs in attributes 10,000 deep, which
protobuf-c's recursive unpacking would overflow the stack on); and one Kiln
must take: deep.onnx (a chain of 10,000 Relu nodes)."""
import sys

from onnx import TensorProto, helper

out = sys.argv[1]
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])


def save(name, nodes, inits=()):
    g = helper.make_graph(nodes, name, [x], [y], initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    with open(f"{out}/{name}.onnx", "wb") as f:
        f.write(m.SerializeToString())


save("unsupported", [helper.make_node("Frobnicate", ["x"], ["t"], name="frob_1"),
                     helper.make_node("Relu", ["t"], ["u"], name="relu_1"),
                     helper.make_node("Zorp", ["u"], ["y"], name="zorp_2")])
huge = TensorProto(name="W_huge", data_type=TensorProto.FLOAT, dims=[1 << 40, 4], raw_data=b"\0" * 16)
save("huge", [helper.make_node("Add", ["x", "W_huge"], ["y"], name="add")], [huge])
short = TensorProto(name="W_short", data_type=TensorProto.FLOAT, dims=[4], raw_data=b"\0" * 12)
save("short", [helper.make_node("Add", ["x", "W_short"], ["y"], name="add")], [short])
ext = TensorProto(name="W_ext", data_type=TensorProto.FLOAT, dims=[4],
                  data_location=TensorProto.EXTERNAL)
ext.external_data.add(key="location", value="weights.bin")
save("external", [helper.make_node("Add", ["x", "W_ext"], ["y"], name="add")], [ext])

save("many", [helper.make_node("Relu", ["x"], ["y" if k == 100000 else "t"], name=f"r{k}")
              for k in range(100001)])
save("deep", [helper.make_node("Relu", ["x" if k == 0 else f"t{k}"], ["y" if k == 9999 else f"t{k + 1}"])
              for k in range(10000)])


def field(num, payload):  # one length-delimited field of the wire format
    def varint(n):
        b = bytearray()
        while True:
            b.append((n & 0x7F) | (0x80 if n >> 7 else 0))
            n >>= 7
            if not n:
                return bytes(b)
    return varint(num << 3 | 2) + varint(len(payload)) + payload


g = b""
for _ in range(10000):  # GraphProto.node -> NodeProto.attribute -> AttributeProto.g
    g = field(1, field(4, b"If") + field(5, field(1, b"then_branch") + field(6, g)))
with open(f"{out}/nested.onnx", "wb") as f:
    f.write(field(7, g))  # ModelProto.graph
