#!/usr/bin/env node
// ort_run.js — runs an ONNX model in ONNX Runtime (the npm package
// onnxruntime-node, CPU), NumPy files in and out, on one thread.
//
//   node ort_run.js MODEL.onnx --input x.npy [--input NAME=y.npy ...]
//                   [--output out.npy [--output NAME=out2.npy ...]]
//                   [--runs N] [--warmup K] [--threads T] [--no-optimize]
//
// Inputs without NAME= go to the model's inputs in order; outputs likewise.
// With --runs N the model is run N times more (after K warm-up runs, default
// 3) on the same inputs and one JSON line goes to stdout:
//   {"model", "threads", "runs", "seconds": [...], "median_s", "min_s", "mean_s"}
// Each time is one awaited session.run(), so it includes the binding's own
// cost per call (measure it with an identity model and subtract it).
// The package is found through NODE_PATH or require's usual search
// (tests/onnx/ort_env.sh installs it and sets NODE_PATH).
'use strict';
const fs = require('fs');

function die(msg) {
  process.stderr.write(`ort_run.js: error: ${msg}\n`);
  process.exit(1);
}

// ---------------------------------------------------------------- .npy

const NPY_TYPES = {
  '<f4': ['float32', Float32Array],
  '<f8': ['float64', Float64Array],
  '<i4': ['int32', Int32Array],
  '<i8': ['int64', BigInt64Array],
  '|u1': ['uint8', Uint8Array],
  '|b1': ['bool', Uint8Array],
};

function readNpy(path) {
  let buf;
  try {
    buf = fs.readFileSync(path);
  } catch (e) {
    die(`${path}: ${e.message}`);
  }
  if (buf.length < 10 || buf.toString('latin1', 0, 6) !== '\x93NUMPY')
    die(`${path}: not a NumPy .npy file`);
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const hstart = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', hstart, hstart + hlen);
  const descr = /'descr':\s*'([^']*)'/.exec(header);
  const fortran = /'fortran_order':\s*(True|False)/.exec(header);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!descr || !fortran || !shape) die(`${path}: damaged .npy header`);
  if (fortran[1] === 'True') die(`${path}: Fortran order is not supported`);
  const t = NPY_TYPES[descr[1]];
  if (!t) die(`${path}: dtype ${descr[1]} is not supported`);
  const dims = shape[1].split(',').map((s) => s.trim()).filter((s) => s.length).map(Number);
  const n = dims.reduce((a, b) => a * b, 1);
  const off = hstart + hlen;
  if (buf.length - off !== n * t[1].BYTES_PER_ELEMENT)
    die(`${path}: ${buf.length - off} data bytes for shape (${dims})`);
  // Copied into an aligned array of its own.
  const data = new t[1](n);
  new Uint8Array(data.buffer).set(buf.subarray(off));
  let type = t[0];
  let arr = data;
  if (type === 'float64') {
    arr = Float32Array.from(data);
    type = 'float32';
  }
  return { type, data: arr, dims };
}

const ORT_TO_NPY = {
  float32: '<f4', float64: '<f8', int32: '<i4', int64: '<i8', uint8: '|u1', bool: '|b1',
};

function writeNpy(path, tensor) {
  const descr = ORT_TO_NPY[tensor.type];
  if (!descr) die(`output type ${tensor.type} cannot be written as .npy`);
  const dims = tensor.dims.map(Number);
  const shape = dims.length === 1 ? `(${dims[0]},)` : `(${dims.join(', ')})`;
  let h = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
  const total = 10 + h.length + 1;
  h += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const head = Buffer.alloc(10);
  Buffer.from('\x93NUMPY', 'latin1').copy(head, 0);
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(h.length, 8);
  const d = tensor.data;
  const body = Buffer.from(d.buffer, d.byteOffset, d.byteLength);
  fs.writeFileSync(path, Buffer.concat([head, Buffer.from(h, 'latin1'), body]));
}

// ---------------------------------------------------------------- main

function parseArgs(argv) {
  const a = { model: null, inputs: [], outputs: [], runs: 0, warmup: 3, threads: 1, optimize: true };
  for (let i = 0; i < argv.length; i++) {
    const s = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) die(`${s} needs a value`);
      return argv[++i];
    };
    if (s === '--input') a.inputs.push(val());
    else if (s === '--output') a.outputs.push(val());
    else if (s === '--runs') a.runs = Number(val());
    else if (s === '--warmup') a.warmup = Number(val());
    else if (s === '--threads') a.threads = Number(val());
    else if (s === '--no-optimize') a.optimize = false;
    else if (s.startsWith('--')) die(`unknown option ${s}`);
    else if (!a.model) a.model = s;
    else die(`unexpected argument ${s}`);
  }
  if (!a.model) die('usage: ort_run.js MODEL.onnx --input x.npy [--output y.npy] [--runs N]');
  for (const k of ['runs', 'warmup', 'threads'])
    if (!Number.isInteger(a[k]) || a[k] < 0) die(`--${k} expects a non-negative integer`);
  return a;
}

// "NAME=file" or "file" (the k-th of `names`).
function bind(specs, names, what) {
  const out = {};
  specs.forEach((s, k) => {
    const eq = s.indexOf('=');
    const name = eq > 0 ? s.slice(0, eq) : names[k];
    if (name === undefined) die(`the model has ${names.length} ${what}s, got more`);
    if (!names.includes(name)) die(`the model has no ${what} '${name}' (it has ${names.join(', ')})`);
    out[name] = eq > 0 ? s.slice(eq + 1) : s;
  });
  return out;
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  let ort;
  try {
    ort = require('onnxruntime-node');
  } catch (e) {
    die(`cannot load onnxruntime-node (${e.message}); run tests/onnx/ort_env.sh`);
  }
  const session = await ort.InferenceSession.create(a.model, {
    intraOpNumThreads: a.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: a.optimize ? 'all' : 'disabled',
  }).catch((e) => die(`${a.model}: ${e.message}`));
  const inFiles = bind(a.inputs, session.inputNames, 'input');
  const feeds = {};
  for (const name of session.inputNames) {
    if (!inFiles[name]) die(`no --input for the model's input '${name}'`);
    const t = readNpy(inFiles[name]);
    feeds[name] = new ort.Tensor(t.type, t.data, t.dims);
  }
  const run = () => session.run(feeds).catch((e) => die(`${a.model}: ${e.message}`));
  const results = await run();
  const outFiles = bind(a.outputs, session.outputNames, 'output');
  for (const [name, path] of Object.entries(outFiles)) writeNpy(path, results[name]);
  if (a.runs > 0) {
    for (let k = 0; k < a.warmup; k++) await run();
    const secs = [];
    for (let k = 0; k < a.runs; k++) {
      const t0 = process.hrtime.bigint();
      await run();
      secs.push(Number(process.hrtime.bigint() - t0) * 1e-9);
    }
    const sorted = [...secs].sort((x, y) => x - y);
    const mean = secs.reduce((x, y) => x + y, 0) / secs.length;
    process.stdout.write(JSON.stringify({
      model: a.model, threads: a.threads, runs: a.runs, seconds: secs,
      median_s: sorted[sorted.length >> 1], min_s: sorted[0], mean_s: mean,
    }) + '\n');
  }
}

main();
