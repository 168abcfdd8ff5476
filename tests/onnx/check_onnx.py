"""ONNX's own checker over the files the C tests exported:
    python3 check_onnx.py FILE.onnx...
Exits 0 when every file passes onnx.checker.check_model (full_check: the
shapes are inferred too), 1 naming each that does not, 77 without the onnx
module (the C test then skips with a message)."""
import sys

try:
    import onnx
except ImportError:
    print("check_onnx.py: the onnx module is missing (apt-get install python3-onnx)")
    sys.exit(77)

failed = 0
for path in sys.argv[1:]:
    try:
        onnx.checker.check_model(onnx.load(path), full_check=True)
    except Exception as e:  # the checker raises several kinds
        print(f"check_onnx.py: {path}: {e}")
        failed = 1
sys.exit(failed)
