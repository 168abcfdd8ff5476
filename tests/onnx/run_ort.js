// Runs an ONNX model under ONNX Runtime (onnxruntime-node) for the C tests:
//   node run_ort.js MODEL.onnx INPUT.bin N C H W OUTPUT.bin
// INPUT.bin holds N*C*H*W float32 (little-endian, NCHW) fed as "input";
// OUTPUT.bin receives the float32 values of "probabilities".
// The package is found through NODE_PATH (the build folder's node_modules).
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

async function main() {
    const [model, input, n, c, h, w, output] = process.argv.slice(2);
    const dims = [n, c, h, w].map(Number);
    const bytes = fs.readFileSync(input);
    const count = dims.reduce((a, b) => a * b, 1);
    if (bytes.length !== count * 4)
        throw new Error(`${input}: ${bytes.length} bytes, expected ${count * 4}`);
    // a copy: the Buffer's memory may not be aligned for a Float32Array view
    const x = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
    const session = await ort.InferenceSession.create(model, {graphOptimizationLevel: 'disabled'});
    const result = await session.run({input: new ort.Tensor('float32', x, dims)});
    const probs = result.probabilities;
    fs.writeFileSync(output, Buffer.from(probs.data.buffer, probs.data.byteOffset,
                                         probs.data.byteLength));
}

main().catch((e) => {
    console.error(`run_ort.js: ${e.message}`);
    process.exit(1);
});
