"""PyTorch models exported to ONNX for the C test of the import
(tests/onnx/test_torch.c):

    python3 make_torch_models.py OUT_DIR

Builds, with random weights (torch.manual_seed) and in eval mode, a small
CNN (conv, batch norm, relu, max pool, flatten, linear; 32x32x3), a CNN of
the other operators PyTorch writes, one of F.pad and nn.ZeroPad2d, one of
dilated convolutions (plain, strided, grouped, depthwise),
torchvision's resnet18 and mobilenet_v3_small (10 classes) at 32x32 and
224x224, and mobilenet_v2, efficientnet_b0, squeezenet1_1 and densenet121
at 64x64.  Batch-norm statistics are randomised too, so that no layer is
an identity by chance.  Each is exported with torch.onnx.export (opset 13,
a free batch axis, constant folding) as OUT_DIR/NAME.onnx, with:

  NAME.in   float32 [N, 3, H, W] (NCHW, little-endian): the batch fed, what
            the graph's input takes (no scaling: normal values, as images
            normalised by their mean and deviation);
  NAME.out  float32 [N, 10]: PyTorch's softmax of the model's output.

and OUT_DIR/models.txt, a line "NAME N H W C CLASSES" per model.
One more graph, auto_pad_32, is written with onnx.helper for what PyTorch
does not write: auto_pad SAME_UPPER and SAME_LOWER (also of a dilated
Conv), AveragePool with count_include_pad=1 and padding, Gemm without
transB, Reshape to [0, -1]; its probabilities are computed with PyTorch's
functional operators.
Models the import must refuse, naming the node and its operator, are
listed in OUT_DIR/refused.txt as "NAME OPERATOR": a dilated max pool
(libkdens' pools have no dilation) and a LeakyReLU (no such layer).
Exits 77 when torch or torchvision is missing (the C test then skips)."""
import os
import sys

try:
    import onnx
    import onnx.helper
    import onnx.numpy_helper
    import torch
    import torchvision
except ImportError as e:
    print(f"make_torch_models.py: {e} "
          "(apt-get install python3-torch python3-torchvision python3-onnx)")
    sys.exit(77)

CLASSES = 10


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(16)
        self.pool = torch.nn.MaxPool2d(2)
        self.conv2 = torch.nn.Conv2d(16, 8, 3, stride=2, padding=1, bias=False)
        self.fc = torch.nn.Linear(8 * 8 * 8, CLASSES)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn(self.conv(x))))
        x = torch.relu(self.conv2(x))
        return self.fc(torch.flatten(x, 1))


class OpsCNN(torch.nn.Module):
    """The other operators PyTorch writes for image classifiers: ReLU6 (Clip),
    grouped and rectangular convolutions, x * sigmoid(y), SiLU, Hardswish,
    Concat, batch norm PyTorch cannot fold into a convolution, average
    pooling counting its padding (PyTorch's default: written as Pad and
    AveragePool, the Pad's pads a constant), max pooling with ceil_mode,
    x.view(x.size(0), -1) (Shape, Gather, Unsqueeze, Concat, Reshape),
    Dropout, a MatMul plus bias and a final Softmax."""

    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.c2 = torch.nn.Conv2d(8, 8, 3, padding=1, groups=4)
        self.c3 = torch.nn.Conv2d(8, 8, 1)
        self.c4 = torch.nn.Conv2d(8, 8, (3, 5), padding=(1, 2), bias=False)
        self.bn_cat = torch.nn.BatchNorm2d(16)
        self.avg = torch.nn.AvgPool2d(3, stride=2, padding=1)
        self.mp = torch.nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.fc1 = torch.nn.Linear(16 * 8 * 8, 32)
        self.drop = torch.nn.Dropout(0.5)
        self.w = torch.nn.Parameter(torch.randn(32, CLASSES) * 0.3)
        self.b = torch.nn.Parameter(torch.randn(CLASSES) * 0.1)

    def logits(self, x):
        a = torch.nn.functional.relu6(self.bn1(self.c1(x)))
        b = torch.sigmoid(self.c2(a)) * a
        c = torch.nn.functional.silu(self.c3(b))
        d = torch.nn.functional.hardswish(self.c4(c))
        e = self.avg(self.bn_cat(torch.cat([d, a], 1)))
        f = self.mp(e)  # 16x16 to 8x8 (7x7 without ceil_mode)
        h = self.drop(torch.relu(self.fc1(f.view(f.size(0), -1))))
        return h @ self.w + self.b

    def forward(self, x):
        return torch.softmax(self.logits(x), dim=1)


class DilatedCNN(torch.nn.Module):
    """Dilated convolutions: padded to keep the size (a batch norm folded
    into it), strided with a different dilation per axis, depthwise with a
    multiplier of 2, of the shape libkdens runs with Winograd undilated
    (32 -> 32 channels, 3x3, stride 1), and grouped with a rectangular
    kernel dilated along one axis."""

    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=2, dilation=2)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.c2 = torch.nn.Conv2d(8, 16, 3, stride=2, padding=(1, 2), dilation=(2, 3))
        self.dw = torch.nn.Conv2d(16, 32, 3, padding=3, dilation=3, groups=16, bias=False)
        self.c3 = torch.nn.Conv2d(32, 32, 3, padding=2, dilation=2)
        self.c4 = torch.nn.Conv2d(32, 16, (3, 2), padding=(1, 1), dilation=(1, 2), groups=2)
        self.fc = torch.nn.Linear(16, CLASSES)

    def forward(self, x):
        y = torch.relu(self.bn1(self.c1(x)))
        y = torch.nn.functional.relu6(self.c2(y))
        y = torch.nn.functional.hardswish(self.dw(y))
        y = torch.relu(self.c3(y))
        y = torch.nn.functional.silu(self.c4(y))
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(y, 1), 1))


class DilatedPool(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, CLASSES, 3)
        self.pool = torch.nn.MaxPool2d(3, dilation=2)

    def forward(self, x):
        y = self.pool(self.conv(x))
        return torch.flatten(torch.nn.functional.adaptive_avg_pool2d(y, 1), 1)


class Padded(torch.nn.Module):
    """F.pad and nn.ZeroPad2d, which PyTorch 1.13 writes at opset 13 as a
    chain computing the pads (ConstantOfShape, Concat, Reshape, Slice with
    step -1, Transpose, Cast) before the Pad."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.pad = torch.nn.ZeroPad2d((0, 2, 1, 0))
        self.conv2 = torch.nn.Conv2d(8, 8, 3, stride=2)
        self.fc = torch.nn.Linear(8, CLASSES)

    def forward(self, x):
        y = torch.relu(self.conv(torch.nn.functional.pad(x, (1, 0, 0, 0))))
        y = torch.relu(self.conv2(self.pad(y)))
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(y, 1), 1))


class ChannelsLast(torch.nn.Module):
    """A Keras-style graph: images in channels-last ([N, H, W, C], read by a
    Transpose to NCHW, as tf2onnx writes Keras models) and the map flattened
    in channels-last order (a Transpose back, then Flatten and Gemm)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(8 * 8 * 8, CLASSES)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x.permute(0, 3, 1, 2))))
        y = torch.relu(self.conv2(y))
        return self.fc(torch.flatten(y.permute(0, 2, 3, 1), 1))


class Leaky(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, CLASSES, 3)

    def forward(self, x):
        y = torch.nn.functional.leaky_relu(self.conv(x))
        return torch.flatten(torch.nn.functional.adaptive_avg_pool2d(y, 1), 1)


def randomise_bn(model, gen):
    """Moving statistics and affine terms away from 0 and 1."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=gen) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(c, generator=gen) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(c, generator=gen) * 0.4 + 0.8)
            m.bias.data.copy_(torch.rand(c, generator=gen) * 0.2 - 0.1)


def spread_logits(model, x):
    """The last layer's weights scaled so that the logits spread (a
    deviation of 2 across the classes): the probabilities compared are then
    far from uniform.  The scale multiplies the logits exactly."""
    if hasattr(model, "w"):
        logits, last = model.logits(x), (model.w, model.b)
    else:  # the classifier: a Linear, or SqueezeNet's Conv before ReLU and pooling
        kinds = (torch.nn.Linear, torch.nn.Conv2d)
        layer = [m for m in model.modules() if isinstance(m, kinds)][-1]
        logits, last = model(x), (layer.weight, layer.bias)
    k = 2.0 / float(logits.std(dim=1).mean())
    for p in last:
        p.mul_(k)


def build(kind):
    if kind == "small_cnn":
        return SmallCNN()
    if kind == "ops_cnn":
        return OpsCNN()
    if kind == "padded":
        return Padded()
    if kind == "channels_last":
        return ChannelsLast()
    if kind == "dilated":
        return DilatedCNN()
    return getattr(torchvision.models, kind)(weights=None, num_classes=CLASSES)


MODELS = [  # name, builder, size, batch
    ("small_cnn_32", "small_cnn", 32, 3),
    ("ops_cnn_32", "ops_cnn", 32, 3),
    ("padded_32", "padded", 32, 3),
    ("resnet18_32", "resnet18", 32, 3),
    ("resnet18_224", "resnet18", 224, 2),
    ("mobilenet_v3_small_32", "mobilenet_v3_small", 32, 3),
    ("mobilenet_v3_small_224", "mobilenet_v3_small", 224, 2),
    # more of torchvision's classifiers, at 64x64: ReLU6 (Clip), SiLU and
    # sigmoid squeeze-and-excitation, ceil_mode pooling and Concat, dense
    # blocks (a Concat of one input, many of many)
    ("mobilenet_v2_64", "mobilenet_v2", 64, 2),
    ("efficientnet_b0_64", "efficientnet_b0", 64, 2),
    ("squeezenet1_1_64", "squeezenet1_1", 64, 2),
    ("densenet121_64", "densenet121", 64, 2),
    ("dilated_32", "dilated", 32, 3),  # last ones: the others keep their seeds
    ("channels_last_32", "channels_last", 32, 3),
]


def auto_pad_graph(out, gen, batch):
    """A graph of ONNX attributes PyTorch does not write, and its
    probabilities computed by PyTorch."""
    F = torch.nn.functional
    w1 = torch.randn(8, 3, 3, 3, generator=gen) * 0.3
    b1 = torch.randn(8, generator=gen) * 0.1
    w2 = torch.randn(8, CLASSES, generator=gen)
    b2 = torch.randn(CLASSES, generator=gen) * 0.1
    x = torch.randn(batch, 3, 32, 32, generator=gen)
    w3 = torch.randn(8, 8, 3, 3, generator=gen) * 0.3
    b3 = torch.randn(8, generator=gen) * 0.1
    # SAME_UPPER, 32 -> 16 with stride 2: 1 pixel of padding after
    y = F.relu(F.conv2d(F.pad(x, (0, 1, 0, 1)), w1, b1, stride=2))
    y = F.avg_pool2d(y, 3, stride=1, padding=1, count_include_pad=True)
    # SAME_LOWER of a 3x3 kernel dilated 2 (a span of 5), 16 -> 8 with
    # stride 2: 3 pixels of padding, 2 before
    y = F.relu(F.conv2d(F.pad(y, (2, 1, 2, 1)), w3, b3, stride=2, dilation=2))
    # SAME_LOWER, 8 -> 4 with a 3x3 window, stride 2: 1 pixel before
    y = F.max_pool2d(F.pad(y, (1, 0, 1, 0), value=-float("inf")), 3, stride=2)
    y = torch.mean(y, (2, 3)) @ w2 + b2
    probs = torch.softmax(y, dim=1)
    h = onnx.helper
    nodes = [
        h.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv_same_upper",
                    auto_pad="SAME_UPPER", strides=[2, 2], kernel_shape=[3, 3]),
        h.make_node("Relu", ["c1"], ["r1"], name="relu"),
        h.make_node("AveragePool", ["r1"], ["a1"], name="avg_include_pad", kernel_shape=[3, 3],
                    pads=[1, 1, 1, 1], count_include_pad=1),
        h.make_node("Conv", ["a1", "w3", "b3"], ["c2"], name="conv_dilated_same_lower",
                    auto_pad="SAME_LOWER", strides=[2, 2], dilations=[2, 2]),
        h.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        h.make_node("MaxPool", ["r2"], ["m1"], name="max_same_lower", kernel_shape=[3, 3],
                    strides=[2, 2], auto_pad="SAME_LOWER"),
        h.make_node("GlobalAveragePool", ["m1"], ["g1"], name="gap"),
        h.make_node("Reshape", ["g1", "shape"], ["f1"], name="reshape"),
        h.make_node("Gemm", ["f1", "w2", "b2"], ["logits"], name="gemm"),
        h.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1),
    ]
    inits = [onnx.numpy_helper.from_array(t.numpy(), name)
             for name, t in [("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2), ("w3", w3),
                             ("b3", b3)]]
    inits.append(onnx.numpy_helper.from_array(torch.tensor([0, -1]).numpy(), "shape"))
    graph = h.make_graph(
        nodes, "auto_pad", [h.make_tensor_value_info("input", onnx.TensorProto.FLOAT,
                                                     ["batch", 3, 32, 32])],
        [h.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT, ["batch", CLASSES])],
        inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 13)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, os.path.join(out, "auto_pad_32.onnx"))
    x.numpy().astype("<f4").tofile(os.path.join(out, "auto_pad_32.in"))
    probs.numpy().astype("<f4").tofile(os.path.join(out, "auto_pad_32.out"))
    return f"auto_pad_32 {batch} 32 32 3 {CLASSES}\n"


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    lines = []
    for seed, (name, kind, size, batch) in enumerate(MODELS):
        torch.manual_seed(1000 + seed)
        gen = torch.Generator().manual_seed(2000 + seed)
        model = build(kind)
        with torch.no_grad():
            randomise_bn(model, gen)
        model.eval()
        x = torch.randn(batch, 3, size, size, generator=gen)
        # the channels-last model takes x as [N, H, W, C]; x is written NCHW all the same
        arg = x.permute(0, 2, 3, 1).contiguous() if kind == "channels_last" else x
        with torch.no_grad():
            spread_logits(model, arg)
            y = model(arg)
            probs = y if kind == "ops_cnn" else torch.softmax(y, dim=1)
        path = os.path.join(out, name + ".onnx")
        torch.onnx.export(model, arg, path, opset_version=13, do_constant_folding=True,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        x.numpy().astype("<f4").tofile(os.path.join(out, name + ".in"))
        probs.numpy().astype("<f4").tofile(os.path.join(out, name + ".out"))
        lines.append(f"{name} {batch} {size} {size} 3 {CLASSES}\n")
    lines.append(auto_pad_graph(out, torch.Generator().manual_seed(3000), 3))
    with open(os.path.join(out, "models.txt"), "w") as f:
        f.writelines(lines)
    refused = [("dilated_maxpool", DilatedPool(), "MaxPool"), ("leaky_relu", Leaky(), "LeakyRelu")]
    for name, model, op in refused:
        model.eval()
        torch.onnx.export(model, torch.zeros(1, 3, 16, 16), os.path.join(out, name + ".onnx"),
                          opset_version=13, do_constant_folding=True, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}})
    with open(os.path.join(out, "refused.txt"), "w") as f:
        f.writelines(f"{name} {op}\n" for name, _, op in refused)
    return 0


if __name__ == "__main__":
    sys.exit(main())
