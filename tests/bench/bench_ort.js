// Inference throughput of an ONNX model under ONNX Runtime (onnxruntime-node),
// for tests/bench/bench.c's onnx section, timed as bench.c times libkdens:
//   node bench_ort.js MODEL.onnx C H W THREADS
// THREADS intra-op threads, one inter-op thread, sequential execution, every
// graph optimisation on.  Input "input": float [N, C, H, W], random values
// 0..255 (the raw pixels a libkdens export takes).  Prints
//   ort batch=1 img_per_s=X      (200 runs of one image after a warm-up)
//   ort batch=1000 img_per_s=Y   (the median of 3 runs after a warm-up)
// The package is found through NODE_PATH (the build folder's node_modules).
'use strict';
const ort = require('onnxruntime-node');

function randomInput(n, c, h, w) {
    const x = new Float32Array(n * c * h * w);
    let s = 1n;
    for (let i = 0; i < x.length; i++) { // the same generator as bench.c's images
        s = (s * 6364136223846793005n + 1442695040888963407n) & 0xffffffffffffffffn;
        x[i] = Number(s >> 56n);
    }
    return new ort.Tensor('float32', x, [n, c, h, w]);
}

async function main() {
    const [model, c, h, w, threads] = process.argv.slice(2);
    const dims = [c, h, w].map(Number);
    const session = await ort.InferenceSession.create(model, {
        intraOpNumThreads: Number(threads),
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
    });
    const one = {input: randomInput(1, ...dims)};
    await session.run(one);
    let t = process.hrtime.bigint();
    for (let i = 0; i < 200; i++)
        await session.run(one);
    let secs = Number(process.hrtime.bigint() - t) / 1e9;
    console.log(`ort batch=1 img_per_s=${(200 / secs).toFixed(1)}`);
    const many = {input: randomInput(1000, ...dims)};
    await session.run(many);
    const rates = [];
    for (let k = 0; k < 3; k++) {
        t = process.hrtime.bigint();
        await session.run(many);
        rates.push(1000 / (Number(process.hrtime.bigint() - t) / 1e9));
    }
    rates.sort((a, b) => a - b);
    console.log(`ort batch=1000 img_per_s=${rates[1].toFixed(1)}`);
}

main().catch((e) => {
    console.error(`bench_ort.js: ${e.message}`);
    process.exit(1);
});
