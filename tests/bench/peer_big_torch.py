#!/usr/bin/python3
"""The yardstick beside `make bench BENCH_ARGS="2 big"`: torchvision's versions of the
reference's large architectures (ResNet-50 ~ Keras ResNet50V2's conv shapes, DenseNet121,
EfficientNet-B0, MobileNetV3-Large), 10 classes, Debian's python3-torch and
python3-torchvision.  Training at 32x32x3, batch 32, Adam (timed after one warm-up step),
and inference at 224x224x3, batch 1 and 32 (eval mode, no_grad).
Usage: peer_big_torch.py [THREADS [STEPS [ARCH,ARCH...]]]"""
import sys, time, torch, torchvision.models as tvm

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
archs = sys.argv[3].split(",") if len(sys.argv) > 3 else \
    ["resnet50", "densenet121", "efficientnet_b0", "mobilenet_v3_large"]
torch.set_num_threads(threads)
torch.manual_seed(0)
print("torch", torch.__version__, "threads", torch.get_num_threads(), flush=True)

def median3(f):
    return sorted(f() for _ in range(3))[1]

for a in archs:
    m = getattr(tvm, a)(num_classes=10)
    m.train()
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    x = torch.rand(32, 3, 32, 32); y = torch.randint(0, 10, (32,))
    lossf = torch.nn.CrossEntropyLoss()
    def step():
        opt.zero_grad(); lossf(m(x), y).backward(); opt.step()
    step()
    def window():
        t = time.perf_counter()
        for _ in range(steps): step()
        return 32 * steps / (time.perf_counter() - t)
    print(f"{a} 32x32x3 batch 32: {median3(window):.1f} train img/s", flush=True)
    m.eval()
    with torch.no_grad():
        for batch in (1, 32):
            xb = torch.rand(batch, 3, 224, 224)
            m(xb)
            def infer():
                t = time.perf_counter(); m(xb)
                return batch / (time.perf_counter() - t)
            print(f"{a} 224x224x3 batch {batch}: {median3(infer):.1f} infer img/s", flush=True)
