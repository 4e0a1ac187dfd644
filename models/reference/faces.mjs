// Golden outputs of the original face-api models, for Vigil's Rust re-implementation.
//
// Runs @vladmandic/face-api (its CommonJS build `dist/face-api.node-wasm.js`, which takes
// TF.js from the pure-JS `@tensorflow/tfjs` package) on TF.js's pure-JS "cpu" backend: no
// native addon, no WASM, no WebGL. Weights are read from the assets folder that
// scripts/fetch-assets fills; the PNGs are decoded with pngjs. Besides the astronaut (and
// variants of it), `others` holds the faces in photos of two other people and their descriptor
// distances to the astronaut's.
//
//   node faces.mjs [OUTPUT.json]     (default: golden/astronaut.json beside this file)
//   VIGIL_ASSETS=/path node faces.mjs
//
// Besides face-api's own end-to-end results, the script re-runs each network layer by layer
// with plain TF.js ops (written from models/ARCHITECTURE.md) to record intermediate
// activations, and checks that this layer-by-layer run reproduces face-api's outputs
// (`self_checks` in the JSON). A failed check makes the script exit non-zero.

import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
const { PNG } = require('pngjs');

const { tf } = faceapi;
const here = dirname(fileURLToPath(import.meta.url));
const assets = process.env.VIGIL_ASSETS || join(homedir(), '.cache', 'vigil', 'assets');
const outPath = process.argv[2] || join(here, 'golden', 'astronaut.json');

const OTHER_IMAGES = [
  {
    name: '230501201_1',
    source: 'opencv-doc: usr/share/doc/opencv-doc/opencv4/html/230501201_1.jpg (the face-swapping tutorial\'s frontal '
      + 'portrait), decoded bit-exactly by ffmpeg to 8-bit RGB (scripts/fetch-assets)',
  },
  {
    name: 'messi5',
    source: 'opencv-doc: usr/share/doc/opencv-doc/examples/data/messi5.jpg (OpenCV\'s footballer sample), decoded '
      + 'bit-exactly by ffmpeg to 8-bit RGB (scripts/fetch-assets)',
  },
];
const MIN_CONFIDENCE = 0.5;
const MATCH_THRESHOLD = 0.6;
const MEAN_RGB = [122.782, 117.001, 104.298];
const SSD_BN_EPSILON = 0.0010000000474974513;
const SYNTHETIC_FORMULA = 'v(x, y, c) = (x*7 + y*13 + c*29) % 256, as float32; x = column, y = row, '
  + 'c = channel (0 = R, 1 = G, 2 = B); tensor layout [1, H, W, 3] (NHWC), values in 0..255 '
  + '(the same scale as image pixels: each network applies its own normalisation to it)';

const checks = [];
function check(name, value, tolerance) {
  checks.push({ name, value, tolerance, ok: value <= tolerance });
}

// ---------------------------------------------------------------------------------------------
// Loading

function loadWeightMap(model) {
  const dir = join(assets, 'face-api');
  const manifest = JSON.parse(readFileSync(join(dir, `${model}-weights_manifest.json`), 'utf8'));
  const shards = [];
  const specs = [];
  for (const group of manifest) {
    for (const path of group.paths) shards.push(readFileSync(join(dir, path)));
    specs.push(...group.weights);
  }
  const all = Buffer.concat(shards);
  const bytes = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  return tf.io.decodeWeights(bytes, specs);
}

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
  return { width, height, rgb, sha256: createHash('sha256').update(bytes).digest('hex') };
}

const imageTensor = (img) => tf.tensor3d(img.rgb, [img.height, img.width, 3], 'float32');

// ---------------------------------------------------------------------------------------------
// Image variants (all produce integer pixel values 0..255, like a decoded 8-bit image)

function flipHorizontal(img) {
  const { width, height } = img;
  const rgb = new Float32Array(img.rgb.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) rgb[(y * width + x) * 3 + c] = img.rgb[(y * width + (width - 1 - x)) * 3 + c];
    }
  }
  return { width, height, rgb };
}

function halfSize(img) {
  const width = Math.floor(img.width / 2);
  const height = Math.floor(img.height / 2);
  const rgb = new Float32Array(width * height * 3);
  const at = (x, y, c) => img.rgb[(y * img.width + x) * 3 + c];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) {
        const sum = at(2 * x, 2 * y, c) + at(2 * x + 1, 2 * y, c) + at(2 * x, 2 * y + 1, c) + at(2 * x + 1, 2 * y + 1, c);
        rgb[(y * width + x) * 3 + c] = Math.floor((sum + 2) / 4);
      }
    }
  }
  return { width, height, rgb };
}

function brighten(img, delta) {
  return { width: img.width, height: img.height, rgb: img.rgb.map((v) => Math.min(255, v + delta)) };
}

function synthetic(size) {
  const rgb = new Float32Array(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      for (let c = 0; c < 3; c++) rgb[(y * size + x) * 3 + c] = (x * 7 + y * 13 + c * 29) % 256;
    }
  }
  return { width: size, height: size, rgb };
}

// ---------------------------------------------------------------------------------------------
// Helpers

const rect = (b) => ({ x: b.x, y: b.y, width: b.width, height: b.height });
const maxAbsDiff = (a, b) => {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};
const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));

function summary(name, t) {
  const v = t.dataSync();
  let sum = 0;
  let sumAbs = 0;
  for (let i = 0; i < v.length; i++) { sum += v[i]; sumAbs += Math.abs(v[i]); }
  return { name, shape: t.shape, sum, mean_abs: sumAbs / v.length, first8: Array.from(v.slice(0, 8)) };
}

// ---------------------------------------------------------------------------------------------
// Layer-by-layer re-runs (plain TF.js ops on face-api's loaded parameters)

function ssdLayers(pixels) {
  const p = faceapi.nets.ssdMobilenetv1.params;
  return tf.tidy(() => {
    const taps = [];
    const pointwise = (x, q, stride) => tf.clipByValue(tf.add(tf.conv2d(x, q.filters, stride, 'same'), q.batch_norm_offset), 0, 6);
    const depthwise = (x, q, stride) => tf.clipByValue(tf.batchNorm(
      tf.depthwiseConv2d(x, q.filters, stride, 'same'),
      q.batch_norm_mean, q.batch_norm_variance, q.batch_norm_offset, q.batch_norm_scale, SSD_BN_EPSILON,
    ), 0, 6);
    let x = tf.sub(tf.div(pixels, 127.5), 1);
    taps.push(summary('input_normalised', x));
    x = pointwise(x, p.mobilenetv1.conv_0, 2);
    taps.push(summary('mobilenetv1/conv_0', x));
    let conv11;
    for (let i = 1; i <= 13; i++) {
      const q = p.mobilenetv1[`conv_${i}`];
      x = depthwise(x, q.depthwise_conv, [2, 4, 6, 12].includes(i) ? 2 : 1);
      taps.push(summary(`mobilenetv1/conv_${i}/depthwise`, x));
      x = pointwise(x, q.pointwise_conv, 1);
      taps.push(summary(`mobilenetv1/conv_${i}/pointwise`, x));
      if (i === 11) conv11 = x;
    }
    const pl = p.prediction_layer;
    const extra = [];
    let y = x;
    for (let i = 0; i <= 7; i++) {
      y = pointwise(y, pl[`conv_${i}`], i % 2 === 1 ? 2 : 1);
      taps.push(summary(`prediction_layer/conv_${i}`, y));
      extra.push(y);
    }
    const sources = [conv11, x, extra[1], extra[3], extra[5], extra[7]];
    const boxes = [];
    const classes = [];
    sources.forEach((f, i) => {
      const q = pl[`box_predictor_${i}`];
      boxes.push(tf.reshape(tf.add(tf.conv2d(f, q.box_encoding_predictor.filters, 1, 'same'), q.box_encoding_predictor.bias), [-1, 4]));
      classes.push(tf.reshape(tf.add(tf.conv2d(f, q.class_predictor.filters, 1, 'same'), q.class_predictor.bias), [-1, 3]));
    });
    const boxEncodings = tf.concat(boxes, 0);
    const classLogits = tf.concat(classes, 0);
    taps.push(summary('box_encodings', boxEncodings));
    taps.push(summary('class_logits', classLogits));
    return { taps, boxEncodings: boxEncodings.arraySync(), classLogits: classLogits.arraySync() };
  });
}

function decodeBox(anchor, enc) {
  const [ay0, ax0, ay1, ax1] = anchor;
  const ah = ay1 - ay0;
  const aw = ax1 - ax0;
  const acy = ay0 + ah / 2;
  const acx = ax0 + aw / 2;
  const cy = (enc[0] / 10) * ah + acy;
  const cx = (enc[1] / 10) * aw + acx;
  const h = Math.exp(enc[2] / 5) * ah;
  const w = Math.exp(enc[3] / 5) * aw;
  return [cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2];
}

const sigmoid = (v) => 1 / (1 + Math.exp(-v));

// Anchors as the TF object-detection SSD anchor generator makes them (min_scale 0.2, max_scale 0.95,
// aspect ratios 1, 2, 0.5, 3, 0.3333 plus an interpolated scale; 3 reduced boxes in the lowest
// layer), in the order Output/extra_dim stores them.
function generatedAnchors() {
  const grids = [32, 16, 8, 4, 2, 1];
  const scales = [0.2, 0.35, 0.5, 0.65, 0.8, 0.95, 1.0];
  const out = [];
  grids.forEach((g, layer) => {
    const s = scales[layer];
    const shapes = layer === 0
      ? [[0.1, 1], [s, 2], [s, 0.5]]
      : [[s, 1], [Math.sqrt(s * scales[layer + 1]), 1], [s, 2], [s, 0.5], [s, 3], [s, 0.3333]];
    for (let r = 0; r < g; r++) {
      for (let c = 0; c < g; c++) {
        const cy = (r + 0.5) / g;
        const cx = (c + 0.5) / g;
        for (const [scale, ar] of shapes) {
          const h = scale / Math.sqrt(ar);
          const w = scale * Math.sqrt(ar);
          out.push([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2]);
        }
      }
    }
  });
  return out;
}

function landmarkLayers(pixels) {
  const net = faceapi.nets.faceLandmark68Net;
  const p = net.faceFeatureExtractor.params;
  return tf.tidy(() => {
    const taps = [];
    const sep = (x, q, stride) => tf.add(tf.separableConv2d(x, q.depthwise_filter, q.pointwise_filter, stride, 'same'), q.bias);
    let x = tf.div(tf.sub(pixels, tf.tensor1d(MEAN_RGB)), 255);
    taps.push(summary('input_normalised', x));
    for (let i = 0; i < 4; i++) {
      const b = p[`dense${i}`];
      const o1 = tf.relu(i === 0 ? tf.add(tf.conv2d(x, b.conv0.filters, 2, 'same'), b.conv0.bias) : sep(x, b.conv0, 2));
      const o2 = sep(o1, b.conv1, 1);
      const o3 = sep(tf.relu(tf.add(o1, o2)), b.conv2, 1);
      const o4 = sep(tf.relu(tf.add(o1, tf.add(o2, o3))), b.conv3, 1);
      x = tf.relu(tf.add(o1, tf.add(o2, tf.add(o3, o4))));
      taps.push(summary(`dense${i}`, x));
    }
    x = tf.avgPool(x, 7, 2, 'valid');
    taps.push(summary('avg_pool', x));
    const out = tf.add(tf.matMul(tf.reshape(x, [1, -1]), net.params.fc.weights), net.params.fc.bias);
    taps.push(summary('fc', out));
    return { taps, output: Array.from(out.dataSync()) };
  });
}

function recognitionLayers(pixels) {
  const p = faceapi.nets.faceRecognitionNet.params;
  return tf.tidy(() => {
    const taps = [];
    const layer = (x, q, stride, relu, padding) => {
      const y = tf.add(tf.mul(tf.add(tf.conv2d(x, q.conv.filters, stride, padding), q.conv.bias), q.scale.weights), q.scale.biases);
      return relu ? tf.relu(y) : y;
    };
    const residual = (x, q) => tf.relu(tf.add(layer(layer(x, q.conv1, 1, true, 'same'), q.conv2, 1, false, 'same'), x));
    const residualDown = (x, q) => {
      let out = layer(layer(x, q.conv1, 2, true, 'valid'), q.conv2, 1, false, 'same');
      let pooled = tf.avgPool(x, 2, 2, 'valid');
      if (pooled.shape[1] !== out.shape[1] || pooled.shape[2] !== out.shape[2]) {
        out = tf.pad(out, [[0, 0], [0, pooled.shape[1] - out.shape[1]], [0, pooled.shape[2] - out.shape[2]], [0, 0]]);
      }
      if (pooled.shape[3] !== out.shape[3]) pooled = tf.pad(pooled, [[0, 0], [0, 0], [0, 0], [0, out.shape[3] - pooled.shape[3]]]);
      return tf.relu(tf.add(pooled, out));
    };
    let x = tf.div(tf.sub(pixels, tf.tensor1d(MEAN_RGB)), 255);
    taps.push(summary('input_normalised', x));
    x = layer(x, p.conv32_down, 2, true, 'valid');
    taps.push(summary('conv32_down', x));
    x = tf.maxPool(x, 3, 2, 'valid');
    taps.push(summary('max_pool', x));
    for (const name of ['conv32_1', 'conv32_2', 'conv32_3', 'conv64_down', 'conv64_1', 'conv64_2', 'conv64_3',
      'conv128_down', 'conv128_1', 'conv128_2', 'conv256_down', 'conv256_1', 'conv256_2', 'conv256_down_out']) {
      x = name.includes('down') ? residualDown(x, p[name]) : residual(x, p[name]);
      taps.push(summary(name, x));
    }
    x = tf.mean(x, [1, 2]);
    taps.push(summary('global_mean', x));
    const out = tf.matMul(x, p.fc);
    taps.push(summary('fc', out));
    return { taps, output: Array.from(out.dataSync()) };
  });
}

// ---------------------------------------------------------------------------------------------
// End-to-end (face-api's own pipeline) plus the documented post-processing re-derived

async function faces(img, label, withDetail) {
  const input = imageTensor(img);
  const results = await faceapi
    .detectAllFaces(input, new faceapi.SsdMobilenetv1Options({ minConfidence: MIN_CONFIDENCE }))
    .withFaceLandmarks()
    .withFaceDescriptors();

  // SSD decoded boxes and scores for every anchor, to name the anchor behind each detection.
  const netInput = await faceapi.toNetInput(input);
  const { boxes, scores } = faceapi.nets.ssdMobilenetv1.forwardInput(netInput);
  const boxesData = boxes[0].arraySync();
  const scoresData = Array.from(scores[0].dataSync());
  boxes.forEach((t) => t.dispose());
  scores.forEach((t) => t.dispose());
  const side = Math.max(img.width, img.height);

  const out = [];
  for (const r of results) {
    const det = r.detection;
    const anchor = scoresData.indexOf(det.score);
    const face = {
      score: det.score,
      box: rect(det.box),
      ssd_anchor_index: anchor,
      ssd_box_normalized_ymin_xmin_ymax_xmax: boxesData[anchor],
      descriptor: Array.from(r.descriptor),
    };
    // box = clamp(ssd box, 0, 1) * padded-square side; face-api gets there via rounded sizes,
    // which only agrees exactly for square images (checked there; the next check is exact).
    const [t, l, b, rr] = boxesData[anchor];
    const got = [det.box.x, det.box.y, det.box.width, det.box.height];
    if (img.width === img.height) {
      const expected = [Math.max(0, l) * side, Math.max(0, t) * side,
        (Math.min(1, rr) - Math.max(0, l)) * side, (Math.min(1, b) - Math.max(0, t)) * side];
      check(`${label}: detection box = clamped SSD box x padded side`, maxAbsDiff(expected, got), 1e-3);
    }
    // Exactly as face-api: clamped SSD box x (512 / round(dim * 512 / side)) x dim, per axis.
    const padX = 512 / Math.round((img.width * 512) / side);
    const padY = 512 / Math.round((img.height * 512) / side);
    const [top, bottom, left, right] = [Math.max(0, t) * padY, Math.min(1, b) * padY, Math.max(0, l) * padX, Math.min(1, rr) * padX];
    const exact = [left * img.width, top * img.height, (right - left) * img.width, (bottom - top) * img.height];
    check(`${label}: detection box = clamped SSD box x 512/round(dim*512/side) x dim`, maxAbsDiff(exact, got), 0);

    if (withDetail) {
      const crop = det.box.clipAtImageBorders(img.width, img.height);
      const cropTensor = tf.slice3d(input, [crop.y, crop.x, 0], [crop.height, crop.width, 3]);
      const raw = Array.from(faceapi.nets.faceLandmark68Net.runNet(await faceapi.toNetInput(cropTensor)).dataSync());
      cropTensor.dispose();
      // Documented mapping from the 136 raw outputs to image pixels.
      const s = 112 / Math.max(crop.width, crop.height);
      const sw = crop.width * s;
      const sh = crop.height * s;
      const padX = sw < sh ? (sh - sw) / 2 : 0;
      const padY = sh < sw ? (sw - sh) / 2 : 0;
      const mine = [];
      for (let i = 0; i < 68; i++) {
        mine.push(((raw[2 * i] * 112 - padX) / sw) * crop.width + det.box.x);
        mine.push(((raw[2 * i + 1] * 112 - padY) / sh) * crop.height + det.box.y);
      }
      const positions = r.landmarks.positions.map((pt) => [pt.x, pt.y]);
      check(`${label}: landmarks re-derived from raw output`, maxAbsDiff(mine, positions.flat()), 1e-3);

      const dlib = r.landmarks.align(null, { useDlibAlignment: true });
      const mean = (a, b) => {
        let x = 0;
        let y = 0;
        for (let i = a; i < b; i++) { x += positions[i][0]; y += positions[i][1]; }
        return [x / (b - a), y / (b - a)];
      };
      const [le, re, mo] = [mean(36, 42), mean(42, 48), mean(48, 68)];
      const dist = (p, q) => Math.hypot(p[0] - q[0], p[1] - q[1]);
      const size = Math.floor((dist(mo, le) + dist(mo, re)) / 2 / 0.45);
      const cx = (le[0] + re[0] + mo[0]) / 3;
      const cy = (le[1] + re[1] + mo[1]) / 3;
      const mineRect = [Math.floor(Math.max(0, cx - 0.5 * size)), Math.floor(Math.max(0, cy - 0.43 * size)), size, size];
      check(`${label}: dlib-style descriptor rect re-derived from landmarks`, maxAbsDiff(mineRect, [dlib.x, dlib.y, dlib.width, dlib.height]), 0);
      const dcrop = dlib.clipAtImageBorders(img.width, img.height);
      const dTensor = tf.slice3d(input, [dcrop.y, dcrop.x, 0], [dcrop.height, dcrop.width, 3]);
      const again = await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(dTensor);
      dTensor.dispose();
      check(`${label}: descriptor recomputed from the clipped dlib crop`, maxAbsDiff(Array.from(again), face.descriptor), 0);

      Object.assign(face, {
        landmark_crop: rect(crop),
        landmark_net_raw_136: raw,
        landmarks: positions,
        aligned_rect_min_bbox: rect(r.alignedRect.box),
        descriptor_rect_dlib: rect(dlib),
        descriptor_crop: rect(dcrop),
        angle: r.angle,
      });
    }
    face.descriptor_l2_norm = norm(face.descriptor);
    out.push(face);
  }
  input.dispose();
  return out;
}

// ---------------------------------------------------------------------------------------------

async function main() {
  await tf.setBackend('cpu');
  await tf.ready();

  const ssdWeights = loadWeightMap('ssd_mobilenetv1_model');
  const anchors = ssdWeights['Output/extra_dim'].arraySync()[0];
  faceapi.nets.ssdMobilenetv1.loadFromWeightMap(ssdWeights);
  faceapi.nets.faceLandmark68Net.loadFromWeightMap(loadWeightMap('face_landmark_68_model'));
  faceapi.nets.faceRecognitionNet.loadFromWeightMap(loadWeightMap('face_recognition_model'));

  const imagePath = join(assets, 'images', 'astronaut.png');
  const img = readPng(imagePath);

  const original = await faces(img, 'original', true);
  const variants = {
    flip_horizontal: { transform: 'out(x, y, c) = in(W-1-x, y, c)', image: flipHorizontal(img) },
    scale_0_5: { transform: 'W/2 x H/2, out(x, y, c) = floor((in(2x,2y,c) + in(2x+1,2y,c) + in(2x,2y+1,c) + in(2x+1,2y+1,c) + 2) / 4)', image: halfSize(img) },
    brightness_plus_30: { transform: 'out = min(255, in + 30) per channel', image: brighten(img, 30) },
  };
  const variantOut = {};
  for (const [name, v] of Object.entries(variants)) {
    variantOut[name] = { transform: v.transform, width: v.image.width, height: v.image.height, faces: await faces(v.image, name, true) };
  }

  // Distances between the first (best) face's descriptors.
  const descriptors = { original: original[0]?.descriptor };
  for (const [name, v] of Object.entries(variantOut)) descriptors[name] = v.faces[0]?.descriptor;
  const distances = {};
  const names = Object.keys(descriptors);
  for (let i = 0; i < names.length; i++) {
    for (let j = i + 1; j < names.length; j++) {
      const [a, b] = [descriptors[names[i]], descriptors[names[j]]];
      distances[`${names[i]}~${names[j]}`] = a && b ? faceapi.euclideanDistance(a, b) : null;
    }
  }

  // Other people: every face face-api finds in each image, and each face's descriptor distance
  // to the astronaut's (original image, first face); face-api calls a pair the same person when
  // the distance is below MATCH_THRESHOLD.
  const astronaut = original[0]?.descriptor;
  const others = {};
  for (const { name, source } of OTHER_IMAGES) {
    const path = join(assets, 'images', `${name}.png`);
    const other = readPng(path);
    const found = await faces(other, name, true);
    others[name] = {
      path: relative(assets, path),
      source,
      sha256: other.sha256,
      width: other.width,
      height: other.height,
      faces: found,
      distances_to_astronaut: found.map((f) => (astronaut ? faceapi.euclideanDistance(f.descriptor, astronaut) : null)),
    };
  }
  // Between the other images: every face of one against every face of the other.
  const otherNames = Object.keys(others);
  const otherDistances = {};
  for (let i = 0; i < otherNames.length; i++) {
    for (let j = i + 1; j < otherNames.length; j++) {
      const [a, b] = [others[otherNames[i]].faces, others[otherNames[j]].faces];
      otherDistances[`${otherNames[i]}~${otherNames[j]}`] = a.map((fa) => b.map((fb) => faceapi.euclideanDistance(fa.descriptor, fb.descriptor)));
    }
  }

  // Raw networks on synthetic inputs.
  const synth = (size) => tf.tensor4d(synthetic(size).rgb, [1, size, size, 3], 'float32');

  const ssdIn = synth(512);
  const ssdMine = ssdLayers(ssdIn);
  const ssdApi = faceapi.nets.ssdMobilenetv1.forwardInput(await faceapi.toNetInput(ssdIn));
  const apiBoxes = ssdApi.boxes[0].arraySync();
  const apiScores = Array.from(ssdApi.scores[0].dataSync());
  ssdApi.boxes.forEach((t) => t.dispose());
  ssdApi.scores.forEach((t) => t.dispose());
  ssdIn.dispose();
  const anchorEntry = (i) => ({
    index: i,
    anchor_ymin_xmin_ymax_xmax: anchors[i],
    box_encoding_ty_tx_th_tw: ssdMine.boxEncodings[i],
    class_logits: ssdMine.classLogits[i],
    score: apiScores[i],
    decoded_box_ymin_xmin_ymax_xmax: apiBoxes[i],
  });
  let decodeDiff = 0;
  let scoreDiff = 0;
  for (let i = 0; i < anchors.length; i++) {
    decodeDiff = Math.max(decodeDiff, maxAbsDiff(decodeBox(anchors[i], ssdMine.boxEncodings[i]), apiBoxes[i]));
    scoreDiff = Math.max(scoreDiff, Math.abs(sigmoid(ssdMine.classLogits[i][1]) - apiScores[i]));
  }
  check('ssd synthetic: layer-by-layer encodings decode to face-api boxes', decodeDiff, 1e-5);
  check('ssd synthetic: sigmoid(class_logits[1]) = face-api score', scoreDiff, 1e-6);
  const generated = generatedAnchors();
  let anchorDiff = 0;
  for (let i = 0; i < anchors.length; i++) anchorDiff = Math.max(anchorDiff, maxAbsDiff(generated[i], anchors[i]));
  check('ssd anchors: generator formula vs stored Output/extra_dim', anchorDiff, 1e-6);
  const top5 = apiScores.map((s, i) => [s, i]).sort((a, b) => b[0] - a[0]).slice(0, 5).map(([, i]) => anchorEntry(i));

  const lmIn = synth(112);
  const lmMine = landmarkLayers(lmIn);
  const lmApi = faceapi.nets.faceLandmark68Net.runNet(await faceapi.toNetInput(lmIn.squeeze([0])));
  const lmApiOut = Array.from(lmApi.dataSync());
  lmApi.dispose();
  lmIn.dispose();
  check('landmark synthetic: layer-by-layer = face-api runNet', maxAbsDiff(lmMine.output, lmApiOut), 1e-5);

  const recIn = synth(150);
  const recMine = recognitionLayers(recIn);
  const recApi = Array.from(await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(recIn.squeeze([0])));
  recIn.dispose();
  check('recognition synthetic: layer-by-layer = face-api descriptor', maxAbsDiff(recMine.output, recApi), 1e-5);

  const golden = {
    about: 'Golden outputs of face-api models for Vigil; regenerate with models/reference (see README.md there). '
      + 'Coordinates are image pixels (x right, y down) unless a key says normalized; boxes are {x, y, width, height}.',
    generator: {
      script: 'models/reference/faces.mjs',
      face_api: faceapi.version,
      tfjs: tf.version_core,
      tfjs_backend: tf.getBackend(),
      node: process.version,
    },
    image: {
      path: relative(assets, imagePath),
      sha256: img.sha256,
      width: img.width,
      height: img.height,
      decode: 'pngjs, 8-bit RGB (alpha, if any, dropped), values 0..255 as float32',
    },
    options: {
      detector: 'SsdMobilenetv1',
      min_confidence: MIN_CONFIDENCE,
      max_results: 100,
      nms_iou_threshold: 0.5,
      landmarks: 'FaceLandmark68Net (full, not tiny)',
      descriptor_crop: 'landmarks.align(null, {useDlibAlignment: true}) -> clipAtImageBorders (floored) -> slice, '
        + 'no rotation; then the recognition net pads to square (centered, zeros) and resizes bilinear to 150x150',
      match_threshold: MATCH_THRESHOLD,
    },
    faces: original,
    variants: variantOut,
    descriptor_distances: distances,
    others: {
      note: 'Photos of people other than the astronaut, decoded like image (pngjs, RGB as float32) and run through '
        + 'the same pipeline and options; faces holds every face found, with the same keys as the top-level faces. '
        + 'distances_to_astronaut[i] = euclidean distance of faces[i].descriptor to faces[0].descriptor of the top-level '
        + '(original astronaut) image; face-api treats a distance below match_threshold as the same person.',
      images: others,
      distances_between: otherDistances,
      distances_between_note: 'A~B: [i][j] = euclidean distance of A.faces[i].descriptor to B.faces[j].descriptor',
    },
    raw_networks: {
      input_formula: SYNTHETIC_FORMULA,
      ssd_mobilenetv1: {
        input_size: 512,
        note: 'input is already 512x512, so no padding/resizing; net computes x/127.5 - 1. Anchor order: '
          + 'feature map (32x32x3, 16x16x6, 8x8x6, 4x4x6, 2x2x6, 1x1x6), then row, column, anchor. '
          + 'score = sigmoid(class_logits[1]).',
        num_anchors: anchors.length,
        first_20: Array.from({ length: 20 }, (_, i) => anchorEntry(i)),
        top_5: top5,
        score_sum: apiScores.reduce((s, v) => s + v, 0),
        decoded_box_sum: apiBoxes.flat().reduce((s, v) => s + v, 0),
        intermediates: ssdMine.taps,
      },
      face_landmark_68: {
        input_size: 112,
        note: 'input is already 112x112, so no padding/resizing; net computes (x - mean_rgb)/255. '
          + 'output_136 is the raw fc output: x0, y0, x1, y1, ... relative to the 112x112 input (multiply by 112 for pixels).',
        output_136: lmApiOut,
        intermediates: lmMine.taps,
      },
      face_recognition: {
        input_size: 150,
        note: 'input is already 150x150, so no padding/resizing; net computes (x - mean_rgb)/255.',
        output_128: recApi,
        output_l2_norm: norm(recApi),
        intermediates: recMine.taps,
      },
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
