// The yardstick for Vigil's CPU models bench, run in a browser page by peer.py: the same five
// networks, from the same weight files, on TF.js's WebAssembly backend (XNNPACK kernels, SIMD,
// threads), at batch 1. TF.js and its backends come from face-api's browser bundle
// (`face-api.js`, TF.js 4.22.0), the .wasm binaries from `@tensorflow/tfjs-backend-wasm` 4.22.0.
//
// Each network is timed the way Vigil's bench times its own: from a tensor already at the
// network's input size to its raw outputs read back. The face networks run through face-api's
// own `forwardInput`/`runNet` (which add a resize to the size the input already has and, for
// the SSD, the box decode: both small next to the network); NanoDet and MoveNet run as graph
// models up to the head nodes Vigil computes.

const { tf } = window.faceapi;
const params = new URLSearchParams(window.location.search);
const threads = Number(params.get('threads') || 2);
const seconds = Number(params.get('seconds') || 3);

async function bytes(paths) {
  const parts = await Promise.all(paths.map(async (p) => {
    const response = await fetch(p);
    if (!response.ok) throw new Error(`${p}: ${response.status}`);
    return new Uint8Array(await response.arrayBuffer());
  }));
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return all.buffer;
}

// A face-api weight manifest and its shards as a name → tensor map.
async function weightMap(model) {
  const dir = '/assets/face-api';
  const manifest = await (await fetch(`${dir}/${model}-weights_manifest.json`)).json();
  const specs = manifest.flatMap((g) => g.weights);
  const data = await bytes(manifest.flatMap((g) => g.paths.map((p) => `${dir}/${p}`)));
  return tf.io.decodeWeights(data, specs);
}

// A graph model.json and its shards.
async function graph(file) {
  const dir = '/assets/human-models';
  const json = await (await fetch(`${dir}/${file}`)).json();
  const weightSpecs = json.weightsManifest.flatMap((g) => g.weights);
  const weightData = await bytes(json.weightsManifest.flatMap((g) => g.paths.map((p) => `${dir}/${p}`)));
  return tf.loadGraphModel({
    load: async () => ({
      modelTopology: json.modelTopology,
      format: json.format,
      generatedBy: json.generatedBy,
      convertedBy: json.convertedBy,
      signature: json.signature,
      weightSpecs,
      weightData,
    }),
  });
}

// Images per second of `run` (which returns the outputs to read back), after one warm-up call.
async function rate(run) {
  const once = async () => {
    const outs = tf.tidy(() => [run()].flat());
    await Promise.all(outs.map((t) => t.data()));
    outs.forEach((t) => t.dispose());
  };
  await once();
  const start = performance.now();
  let n = 0;
  let elapsed = 0;
  while (elapsed < seconds) {
    await once();
    n += 1;
    elapsed = (performance.now() - start) / 1000;
  }
  return n / elapsed;
}

async function main() {
  tf.setWasmPaths('/wasm/');
  tf.setThreadsCount(threads);
  if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend did not start');
  await tf.ready();
  const env = tf.env();
  const lines = [`TF.js ${tf.version.tfjs} ${tf.getBackend()} (cross-origin isolated: ${self.crossOriginIsolated}): SIMD ${env.getBool('WASM_HAS_SIMD_SUPPORT')}, threads `
    + `${env.getBool('WASM_HAS_MULTITHREAD_SUPPORT') ? tf.getThreadsCount() : '1 (no SharedArrayBuffer)'}`, ''];

  const { nets } = window.faceapi;
  nets.ssdMobilenetv1.loadFromWeightMap(await weightMap('ssd_mobilenetv1_model'));
  nets.faceLandmark68Net.loadFromWeightMap(await weightMap('face_landmark_68_model'));
  nets.faceRecognitionNet.loadFromWeightMap(await weightMap('face_recognition_model'));
  const nanodet = await graph('nanodet.json');
  const movenet = await graph('movenet-lightning.json');

  const image = (size, dtype = 'float32') => tf.randomUniform([1, size, size, 3], 0, 255, dtype);
  const netInput = (size) => window.faceapi.toNetInput(image(size).squeeze([0]));
  const ssdIn = await netInput(512);
  const lmIn = await netInput(112);
  const recIn = await netInput(150);
  const ndIn = tf.randomUniform([1, 3, 416, 416], 0, 1, 'float32');
  const mnIn = image(192, 'int32');
  const mnHeads = ['kpt_heatmap_0/conv2d_5', 'center_0/conv2d_4', 'kpt_regress_0/conv2d_6',
    'kpt_offset_0/conv2d_7'].map((h) => `StatefulPartitionedCall/${h}/BiasAdd`);
  const ndHeads = ['Identity', 'Identity_1', 'Identity_2', 'Identity_3', 'Identity_4', 'Identity_5'];

  const rows = [
    ['face detector (SSD MobileNetV1)', '512²', () => {
      const { boxes, scores } = nets.ssdMobilenetv1.forwardInput(ssdIn);
      return [boxes, scores].flat();
    }],
    ['face landmarks (68)', '112²', () => nets.faceLandmark68Net.runNet(lmIn)],
    ['face descriptor (ResNet)', '150²', () => nets.faceRecognitionNet.forwardInput(recIn)],
    ['persons (NanoDet, graph)', '416²', () => nanodet.execute(ndIn, ndHeads)],
    ['pose (MoveNet Lightning, graph, per image)', '192²', () => movenet.execute(mnIn, mnHeads)],
  ];
  lines.push('| model | input | batch | images/s |', '|---|---|---:|---:|');
  for (const [name, size, run] of rows) {
    lines.push(`| ${name} | ${size} | 1 | ${(await rate(run)).toFixed(1)} |`);
  }
  return lines.join('\n');
}

window.peer = main().then(
  (text) => ({ ok: true, text }),
  (e) => ({ ok: false, text: String(e && e.stack ? e.stack : e) }),
);
