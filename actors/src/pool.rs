//! The inference pool: a fixed number of worker threads, each owning its models on one
//! device, fed by one bounded queue and batching dynamically (up to `max_batch` frames, or
//! what arrived within `max_wait` of the first). Model work never runs on the async
//! executor's threads; callers await a reply.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, TrySendError};
use serde::Serialize;
use tokio::sync::oneshot;
use vigil_models::Vision;

use crate::frame::RgbImage;

/// Pool settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolConfig {
    /// Worker threads, each with its own copy of the models.
    pub workers: usize,
    /// Most frames in one batch.
    pub max_batch: usize,
    /// Longest a batch waits for more frames after its first.
    pub max_wait: Duration,
    /// Frames that may wait in the queue; beyond it a frame is dropped (and counted).
    pub queue_capacity: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            max_batch: 8,
            max_wait: Duration::from_millis(20),
            queue_capacity: 64,
        }
    }
}

/// What to look for in a frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Want {
    /// Faces: inside the head of each person found (see [`head_region`]), or in the whole
    /// frame with `always_faces`.
    pub faces: bool,
    /// Look for faces in the whole frame, person or not (a face photo, a face crop, a pushed
    /// frame whose caller wants every face).
    pub always_faces: bool,
    /// A 128-d descriptor per face (a camera asks for its tracks' descriptors afterwards, with
    /// [`InferencePool::describe`], only where the face improved).
    pub embeddings: bool,
    /// Persons narrower than this many frame pixels are too small to hold a usable face and
    /// are not searched for one.
    pub face_min_pixels: u32,
    /// Where to look for persons, in frame pixels `(x, y, w, h)` (see
    /// [`crate::regions::plan`]); `None` looks at the whole frame.
    pub person_regions: Option<Vec<[f32; 4]>>,
}

/// Where a person's face can be, in frame pixels `(x, y, w, h)`: the top square of its box (the
/// whole box when it is wider than tall), widened by 15 % of its width to each side and
/// above. `None` when the box is narrower than `min_pixels`.
pub fn head_region(person: &Scored, width: u32, height: u32, min_pixels: u32) -> Option<[f32; 4]> {
    let (w, h) = (width as f32, height as f32);
    let (x1, y1) = (person.x1 * w, person.y1 * h);
    let (bw, bh) = ((person.x2 - person.x1) * w, (person.y2 - person.y1) * h);
    if bw < min_pixels.max(1) as f32 || bh <= 0.0 {
        return None;
    }
    let margin = 0.15 * bw;
    Some([
        x1 - margin,
        y1 - margin,
        bw + 2.0 * margin,
        bw.min(bh) + 2.0 * margin,
    ])
}

/// A box in normalised coordinates with its score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scored {
    /// Left.
    pub x1: f32,
    /// Top.
    pub y1: f32,
    /// Right.
    pub x2: f32,
    /// Bottom.
    pub y2: f32,
    /// Confidence, 0–1.
    pub score: f32,
}

/// A face found in a frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FoundFace {
    /// Its box and detector score.
    pub bbox: Scored,
    /// The 128-d descriptor, when asked for.
    pub embedding: Option<Vec<f32>>,
    /// Its 68 landmarks in frame pixels (what the descriptor's alignment and
    /// [`vigil_models::faces::frontalness`] read).
    #[serde(skip)]
    pub landmarks: Vec<[f32; 2]>,
}

/// What the models saw in one frame.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Analysis {
    /// Persons, strongest first.
    pub persons: Vec<Scored>,
    /// Faces, strongest first.
    pub faces: Vec<FoundFace>,
    /// How many frames shared the batch.
    pub batch_size: usize,
    /// Milliseconds from queueing to result.
    pub latency_ms: f64,
    /// Regions the person detector looked at (0: the whole frame).
    #[serde(skip)]
    pub person_regions: usize,
    /// Person-detector passes this frame took: 1 for the whole frame; for regions, its share
    /// of the canvases its batch's regions were laid out on.
    #[serde(skip)]
    pub person_passes: f32,
}

/// Why a frame was not analysed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PoolError {
    /// The queue is full: the frame was dropped.
    #[error("the inference queue is full ({0} frames waiting)")]
    Busy(usize),
    /// The models could not be loaded or failed.
    #[error("models unavailable: {0}")]
    Models(String),
    /// The pool has shut down.
    #[error("the inference pool has stopped")]
    Stopped,
}

/// Runs the models on a batch of frames. [`Vision`] is the real one; tests may bring others.
pub trait Analyzer: Send {
    /// One result per input, in order.
    fn analyze(&mut self, inputs: &[(&RgbImage, Want)]) -> Result<Vec<Analysis>, String>;

    /// The 128-d descriptor of each face of each frame (faces [`Analyzer::analyze`] found),
    /// one list per input, in order.
    fn describe(
        &mut self,
        inputs: &[(&RgbImage, &[FoundFace])],
    ) -> Result<Vec<Vec<Vec<f32>>>, String> {
        let _ = inputs;
        Err("these models compute no face descriptors".into())
    }
}

/// Lowest person score reported.
pub const PERSON_MIN_SCORE: f32 = vigil_models::persons::MIN_SCORE;
/// Lowest face score reported (face-api's default).
pub const FACE_MIN_SCORE: f32 = 0.5;

fn to_model_image(image: &RgbImage) -> Result<vigil_models::image::Image, String> {
    vigil_models::image::Image::from_rgb8(image.width as usize, image.height as usize, &image.data)
        .map_err(|e| e.to_string())
}

/// Persons in each input's frame: the whole frame through the detector for inputs without
/// regions; the regions of all other inputs on shared canvases
/// ([`Vision::detect_persons_in`]). Per input: its boxes in frame pixels, its regions and its
/// share of the detector's passes.
#[allow(clippy::type_complexity)]
fn detect_persons(
    vision: &Vision,
    inputs: &[(&RgbImage, Want)],
    images: &[vigil_models::image::Image],
) -> Result<Vec<(Vec<vigil_models::persons::ObjectBox>, usize, f32)>, String> {
    let mut out: Vec<_> = images.iter().map(|_| (Vec::new(), 0, 0.0)).collect();
    let whole: Vec<usize> = (0..inputs.len())
        .filter(|&i| inputs[i].1.person_regions.is_none())
        .collect();
    if !whole.is_empty() {
        let pictures: Vec<_> = whole.iter().map(|&i| images[i].clone()).collect();
        let found = vision
            .detect_persons(&pictures, PERSON_MIN_SCORE)
            .map_err(|e| e.to_string())?;
        for (&i, boxes) in whole.iter().zip(found) {
            out[i] = (boxes, 0, 1.0);
        }
    }
    let regions: Vec<vigil_models::mosaic::Region> = inputs
        .iter()
        .enumerate()
        .flat_map(|(i, (_, want))| {
            want.person_regions
                .iter()
                .flatten()
                .map(move |&[x, y, w, h]| vigil_models::mosaic::Region {
                    image: i,
                    x,
                    y,
                    w,
                    h,
                })
        })
        .collect();
    if !regions.is_empty() {
        let (found, canvases) = vision
            .detect_persons_in(images, &regions, PERSON_MIN_SCORE)
            .map_err(|e| e.to_string())?;
        for (i, boxes) in found.into_iter().enumerate() {
            let Some(mine) = inputs[i].1.person_regions.as_ref() else {
                continue;
            };
            let share = canvases as f32 * mine.len() as f32 / regions.len() as f32;
            out[i] = (boxes, mine.len(), share);
        }
    }
    Ok(out)
}

impl Analyzer for Vision {
    fn analyze(&mut self, inputs: &[(&RgbImage, Want)]) -> Result<Vec<Analysis>, String> {
        let images = inputs
            .iter()
            .map(|(image, _)| to_model_image(image))
            .collect::<Result<Vec<_>, _>>()?;
        let persons = detect_persons(self, inputs, &images)?;
        let mut out: Vec<Analysis> = persons
            .into_iter()
            .zip(&images)
            .map(|((boxes, regions, passes), image)| Analysis {
                persons: boxes
                    .iter()
                    .map(|b| Scored {
                        x1: b.x1 / image.width as f32,
                        y1: b.y1 / image.height as f32,
                        x2: b.x2 / image.width as f32,
                        y2: b.y2 / image.height as f32,
                        score: b.score,
                    })
                    .collect(),
                person_regions: regions,
                person_passes: passes,
                ..Analysis::default()
            })
            .collect();
        // Faces only where they can be: in the whole frame where asked, else in the head of
        // each person large enough to show one, all heads of the batch on shared canvases.
        let mut faces: Vec<Vec<vigil_models::Face>> = images.iter().map(|_| Vec::new()).collect();
        let whole: Vec<usize> = (0..inputs.len())
            .filter(|&i| inputs[i].1.faces && inputs[i].1.always_faces)
            .collect();
        if !whole.is_empty() {
            let pictures: Vec<_> = whole.iter().map(|&i| images[i].clone()).collect();
            for (&i, found) in whole
                .iter()
                .zip(self.detect_faces(&pictures, FACE_MIN_SCORE))
            {
                faces[i] = found;
            }
        }
        let regions: Vec<vigil_models::mosaic::Region> = (0..inputs.len())
            .filter(|&i| inputs[i].1.faces && !inputs[i].1.always_faces)
            .flat_map(|i| {
                let (frame, min_pixels) = (inputs[i].0, inputs[i].1.face_min_pixels);
                out[i].persons.iter().filter_map(move |p| {
                    head_region(p, frame.width, frame.height, min_pixels).map(|[x, y, w, h]| {
                        vigil_models::mosaic::Region {
                            image: i,
                            x,
                            y,
                            w,
                            h,
                        }
                    })
                })
            })
            .collect();
        if !regions.is_empty() {
            for (i, found) in self
                .detect_faces_in(&images, &regions, FACE_MIN_SCORE)
                .into_iter()
                .enumerate()
            {
                if !found.is_empty() {
                    faces[i] = found;
                }
            }
        }
        for (i, found) in faces.into_iter().enumerate() {
            if found.is_empty() {
                continue;
            }
            let image = &images[i];
            let embeddings = if inputs[i].1.embeddings {
                self.embed_faces(image, &found)
                    .into_iter()
                    .map(Some)
                    .collect()
            } else {
                vec![None; found.len()]
            };
            let (w, h) = (image.width as f32, image.height as f32);
            out[i].faces = found
                .into_iter()
                .zip(embeddings)
                .map(|(face, embedding)| {
                    let d = &face.detection;
                    FoundFace {
                        bbox: Scored {
                            x1: (d.x / w).clamp(0.0, 1.0),
                            y1: (d.y / h).clamp(0.0, 1.0),
                            x2: ((d.x + d.width) / w).clamp(0.0, 1.0),
                            y2: ((d.y + d.height) / h).clamp(0.0, 1.0),
                            score: d.score,
                        },
                        embedding,
                        landmarks: face.landmarks,
                    }
                })
                .collect();
        }
        Ok(out)
    }

    fn describe(
        &mut self,
        inputs: &[(&RgbImage, &[FoundFace])],
    ) -> Result<Vec<Vec<Vec<f32>>>, String> {
        inputs
            .iter()
            .map(|(frame, faces)| {
                if faces.is_empty() {
                    return Ok(Vec::new());
                }
                if faces.iter().any(|f| f.landmarks.len() != 68) {
                    return Err("a face to describe came without its 68 landmarks".to_string());
                }
                let image = to_model_image(frame)?;
                let (w, h) = (image.width as f32, image.height as f32);
                let faces: Vec<vigil_models::Face> = faces
                    .iter()
                    .map(|f| vigil_models::Face {
                        detection: vigil_models::ssd::FaceBox {
                            score: f.bbox.score,
                            x: f.bbox.x1 * w,
                            y: f.bbox.y1 * h,
                            width: (f.bbox.x2 - f.bbox.x1) * w,
                            height: (f.bbox.y2 - f.bbox.y1) * h,
                            anchor: 0,
                        },
                        landmarks: f.landmarks.clone(),
                    })
                    .collect();
                Ok(self.embed_faces(&image, &faces))
            })
            .collect()
    }
}

/// Largest batch a pool runs.
pub const MAX_BATCH: usize = 32;

/// The pool's counters (read at `/metrics`) and the histograms it records into.
#[derive(Debug, Default)]
pub struct PoolMetrics {
    /// Frames waiting in the queue now.
    pub queue_depth: AtomicU64,
    /// Frames analysed.
    pub frames: AtomicU64,
    /// Frames dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Frames whose analysis failed.
    pub failed: AtomicU64,
    /// Face descriptors computed for cameras' tracks ([`InferencePool::describe`]).
    pub faces_described: AtomicU64,
    /// Person-detector passes: whole frames plus canvases of regions.
    pub person_passes: AtomicU64,
    /// Regions of frames the person detector looked at instead of whole frames.
    pub person_regions: AtomicU64,
    /// Batches run.
    pub batches: AtomicU64,
    /// Batches by size: index `n - 1` counts batches of `n` frames.
    pub batch_sizes: [AtomicU64; MAX_BATCH],
    /// Where latencies (seconds from queueing to result) and batch sizes are recorded, once
    /// [`PoolMetrics::attach`] named them.
    histograms: std::sync::OnceLock<(metrics::Histogram, metrics::Histogram)>,
    /// Workers whose models are loaded.
    pub loaded_workers: AtomicU64,
    /// The largest batch the workers run: `inference_max_batch`, or less once the device refused
    /// a batch that size.
    pub batch_cap: AtomicU64,
    /// Why the latest model load failed (cleared by a later successful load).
    load_error: std::sync::Mutex<Option<String>>,
}

/// Whether the pool's models are loaded, as `/health/ready` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelsState {
    /// No worker has loaded its models yet (they load on the first frame, or at a preload).
    NotLoaded,
    /// This many workers hold loaded models.
    Loaded(u64),
    /// The latest load failed, for this reason.
    Failed(String),
}

impl PoolMetrics {
    /// Whether the models are loaded.
    pub fn models_state(&self) -> ModelsState {
        if let Some(e) = self.load_error.lock().expect("load error lock").clone() {
            return ModelsState::Failed(e);
        }
        match self.loaded_workers.load(Ordering::Relaxed) {
            0 => ModelsState::NotLoaded,
            n => ModelsState::Loaded(n),
        }
    }

    fn observe_load(&self, result: &Result<Box<dyn Analyzer>, String>) {
        let mut error = self.load_error.lock().expect("load error lock");
        match result {
            Ok(_) => {
                self.loaded_workers.fetch_add(1, Ordering::Relaxed);
                *error = None;
            }
            Err(e) => *error = Some(e.clone()),
        }
    }

    /// Records latencies and batch sizes into these histograms from now on (once).
    pub fn attach(&self, latency_seconds: metrics::Histogram, batch_size: metrics::Histogram) {
        let _ = self.histograms.set((latency_seconds, batch_size));
    }

    fn observe_latency(&self, seconds: f64) {
        if let Some((latency, _)) = self.histograms.get() {
            latency.record(seconds);
        }
    }

    fn observe_batch(&self, size: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batch_sizes[size.clamp(1, MAX_BATCH) - 1].fetch_add(1, Ordering::Relaxed);
        if let Some((_, batch)) = self.histograms.get() {
            batch.record(size as f64);
        }
    }
}

struct Job {
    image: Arc<RgbImage>,
    want: Want,
    queued: Instant,
    reply: oneshot::Sender<Result<Analysis, PoolError>>,
}

/// Faces of an analysed frame to describe.
struct DescribeJob {
    image: Arc<RgbImage>,
    faces: Vec<FoundFace>,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>, PoolError>>,
}

/// Builds a worker's models; called once on each worker thread.
pub type Loader = Arc<dyn Fn() -> Result<Box<dyn Analyzer>, String> + Send + Sync>;

/// A handle to the pool; clones share it. The workers stop when every handle is dropped.
#[derive(Clone)]
pub struct InferencePool {
    tx: crossbeam_channel::Sender<Job>,
    /// Descriptor requests: the workers take them before any frame, since they finish frames
    /// already analysed.
    describe_tx: crossbeam_channel::Sender<DescribeJob>,
    /// One per worker: a message asks it to load its models now (a node that serves analysis
    /// preloads, so its first frame does not wait for them).
    loads: Vec<crossbeam_channel::Sender<()>>,
    metrics: Arc<PoolMetrics>,
    config: PoolConfig,
}

impl std::fmt::Debug for InferencePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InferencePool")
            .field("config", &self.config)
            .finish()
    }
}

impl InferencePool {
    /// Starts `config.workers` threads, each loading its models with `loader`.
    pub fn start(config: PoolConfig, loader: Loader) -> Self {
        let config = PoolConfig {
            workers: config.workers.max(1),
            max_batch: config.max_batch.clamp(1, MAX_BATCH),
            queue_capacity: config.queue_capacity.max(1),
            ..config
        };
        let (tx, rx) = crossbeam_channel::bounded::<Job>(config.queue_capacity);
        let (describe_tx, describe_rx) =
            crossbeam_channel::bounded::<DescribeJob>(config.queue_capacity);
        let mut loads = Vec::new();
        let metrics = Arc::new(PoolMetrics::default());
        metrics
            .batch_cap
            .store(config.max_batch as u64, Ordering::Relaxed);
        for n in 0..config.workers {
            let queues = Queues {
                frames: rx.clone(),
                describe: describe_rx.clone(),
            };
            let loader = loader.clone();
            let metrics = metrics.clone();
            let (load_tx, load_rx) = crossbeam_channel::bounded(1);
            loads.push(load_tx);
            std::thread::Builder::new()
                .name(format!("vigil-infer-{n}"))
                .spawn(move || worker(n, config, loader, queues, load_rx, metrics))
                .expect("spawning an inference worker thread");
        }
        Self {
            tx,
            describe_tx,
            loads,
            metrics,
            config,
        }
    }

    /// A pool whose workers run [`Vision`] loaded from `assets` on `compute`'s device.
    pub fn with_vision(
        config: PoolConfig,
        assets: std::path::PathBuf,
        compute: vigil_models::Compute,
    ) -> Self {
        Self::start(
            config,
            Arc::new(move || {
                Vision::load(&assets, compute.clone())
                    .map(|v| Box::new(v) as Box<dyn Analyzer>)
                    .map_err(|e| format!("{e} (assets in {})", assets.display()))
            }),
        )
    }

    /// Asks every worker to load its models now instead of at its first frame (without
    /// waiting; [`PoolMetrics::models_state`] tells when they are loaded).
    pub fn preload(&self) {
        for load in &self.loads {
            let _ = load.try_send(());
        }
    }

    /// Its settings.
    pub fn config(&self) -> PoolConfig {
        self.config
    }

    /// Its counters.
    pub fn metrics(&self) -> &PoolMetrics {
        &self.metrics
    }

    /// Analyses one frame. A full queue drops it at once ([`PoolError::Busy`]).
    pub async fn analyze(&self, image: Arc<RgbImage>, want: Want) -> Result<Analysis, PoolError> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            image,
            want,
            queued: Instant::now(),
            reply,
        };
        self.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                self.metrics.dropped.fetch_add(1, Ordering::Relaxed);
                return Err(PoolError::Busy(self.tx.len()));
            }
            Err(TrySendError::Disconnected(_)) => {
                self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                return Err(PoolError::Stopped);
            }
        }
        rx.await.unwrap_or(Err(PoolError::Stopped))
    }

    /// The 128-d descriptor of each of `faces` (found in `image` by [`InferencePool::analyze`],
    /// landmarks included), computed ahead of any waiting frame. A full queue refuses at once
    /// ([`PoolError::Busy`]).
    pub async fn describe(
        &self,
        image: Arc<RgbImage>,
        faces: Vec<FoundFace>,
    ) -> Result<Vec<Vec<f32>>, PoolError> {
        if faces.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        match self.describe_tx.try_send(DescribeJob {
            image,
            faces,
            reply,
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(PoolError::Busy(self.describe_tx.len())),
            Err(TrySendError::Disconnected(_)) => return Err(PoolError::Stopped),
        }
        rx.await.unwrap_or(Err(PoolError::Stopped))
    }
}

/// A worker's two queues.
struct Queues {
    frames: crossbeam_channel::Receiver<Job>,
    describe: crossbeam_channel::Receiver<DescribeJob>,
}

/// Runs descriptor requests as one call and answers each.
fn run_describe(
    analyzer: &mut Result<Box<dyn Analyzer>, String>,
    jobs: Vec<DescribeJob>,
    metrics: &PoolMetrics,
) {
    let jobs: Vec<DescribeJob> = jobs.into_iter().filter(|j| !j.reply.is_closed()).collect();
    if jobs.is_empty() {
        return;
    }
    let results = match analyzer {
        Ok(a) => {
            let inputs: Vec<(&RgbImage, &[FoundFace])> =
                jobs.iter().map(|j| (&*j.image, &j.faces[..])).collect();
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a.describe(&inputs)))
                .unwrap_or_else(|_| Err("the descriptor network panicked".to_string()))
                .and_then(|out| {
                    if out.len() == jobs.len() {
                        Ok(out)
                    } else {
                        Err(format!("{} results for {} frames", out.len(), jobs.len()))
                    }
                })
        }
        Err(e) => Err(e.clone()),
    };
    match results {
        Ok(results) => {
            for (job, descriptors) in jobs.into_iter().zip(results) {
                metrics
                    .faces_described
                    .fetch_add(descriptors.len() as u64, Ordering::Relaxed);
                let _ = job.reply.send(Ok(descriptors));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "face descriptors failed");
            for job in jobs {
                let _ = job.reply.send(Err(PoolError::Models(e.clone())));
            }
        }
    }
}

fn worker(
    n: usize,
    config: PoolConfig,
    loader: Loader,
    queues: Queues,
    load_requests: crossbeam_channel::Receiver<()>,
    metrics: Arc<PoolMetrics>,
) {
    // The models load on the first frame (or a preload): a node that never analyses never pays
    // for them.
    let mut analyzer: Option<Result<Box<dyn Analyzer>, String>> = None;
    let load = |analyzer: &mut Option<Result<Box<dyn Analyzer>, String>>| {
        if analyzer.is_none() {
            let started = Instant::now();
            let loaded = loader();
            match &loaded {
                Ok(_) => {
                    tracing::info!(
                        worker = n,
                        secs = started.elapsed().as_secs_f64(),
                        "models loaded"
                    )
                }
                Err(e) => tracing::error!(worker = n, error = %e, "models failed to load"),
            }
            metrics.observe_load(&loaded);
            *analyzer = Some(loaded);
        }
    };
    // The largest batch this worker runs: the setting, lowered when the device refuses one.
    let mut cap = config.max_batch;
    let rx = &queues.frames;
    loop {
        // Descriptors first: each finishes a frame that was already analysed.
        let waiting: Vec<DescribeJob> = queues.describe.try_iter().take(MAX_BATCH).collect();
        if !waiting.is_empty() {
            load(&mut analyzer);
            run_describe(analyzer.as_mut().expect("loaded above"), waiting, &metrics);
            continue;
        }
        let first = crossbeam_channel::select! {
            recv(rx) -> job => match job {
                Ok(job) => job,
                Err(_) => break,
            },
            recv(queues.describe) -> job => {
                if let Ok(job) = job {
                    load(&mut analyzer);
                    run_describe(analyzer.as_mut().expect("loaded above"), vec![job], &metrics);
                }
                continue;
            }
            recv(load_requests) -> request => {
                // Disconnected: every handle of the pool is gone.
                if request.is_err() {
                    break;
                }
                load(&mut analyzer);
                continue;
            }
        };
        load(&mut analyzer);
        let analyzer = analyzer.as_mut().expect("loaded above");
        let mut batch = vec![first];
        let deadline = Instant::now() + config.max_wait;
        while batch.len() < cap {
            match rx.recv_deadline(deadline) {
                Ok(job) => batch.push(job),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        metrics
            .queue_depth
            .fetch_sub(batch.len() as u64, Ordering::Relaxed);
        // A caller that gave up (its camera stopped) needs no answer.
        batch.retain(|job| !job.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let size = batch.len();
        let span = tracing::debug_span!("inference_batch", worker = n, size);
        let _enter = span.enter();
        let results = match analyzer {
            Ok(a) => {
                let inputs: Vec<(&RgbImage, Want)> =
                    batch.iter().map(|j| (&*j.image, j.want.clone())).collect();
                let (results, fits) = analyze_splitting(a.as_mut(), &inputs);
                if let Some(fits) = fits.filter(|&f| f < cap) {
                    tracing::warn!(
                        worker = n,
                        refused = size,
                        cap = fits,
                        "the device refused a batch; batches are capped from now on"
                    );
                    cap = fits;
                    metrics.batch_cap.store(cap as u64, Ordering::Relaxed);
                }
                results
            }
            Err(e) => vec![Err(e.clone()); size],
        };
        metrics.observe_batch(size);
        let (passes, regions) = results.iter().flatten().fold((0.0f32, 0), |(p, r), a| {
            (p + a.person_passes, r + a.person_regions as u64)
        });
        metrics
            .person_passes
            .fetch_add(passes.round() as u64, Ordering::Relaxed);
        metrics.person_regions.fetch_add(regions, Ordering::Relaxed);
        for (job, result) in batch.into_iter().zip(results) {
            let latency = job.queued.elapsed().as_secs_f64();
            metrics.observe_latency(latency);
            match result {
                Ok(mut analysis) => {
                    metrics.frames.fetch_add(1, Ordering::Relaxed);
                    analysis.latency_ms = latency * 1e3;
                    let _ = job.reply.send(Ok(analysis));
                }
                Err(e) => {
                    tracing::warn!(worker = n, error = %e, "inference failed");
                    metrics.failed.fetch_add(1, Ordering::Relaxed);
                    let _ = job.reply.send(Err(PoolError::Models(e)));
                }
            }
        }
    }
}

/// Runs `inputs` as one batch; when that fails, as two halves, and so on down to single frames,
/// so a batch the device cannot hold (a wgpu adapter caps one buffer) still gets its results.
/// Returns one result per input and, when halves succeeded where their whole failed, the
/// largest batch size that ran.
fn analyze_splitting(
    analyzer: &mut dyn Analyzer,
    inputs: &[(&RgbImage, Want)],
) -> (Vec<Result<Analysis, String>>, Option<usize>) {
    let size = inputs.len();
    let whole = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| analyzer.analyze(inputs)))
        .unwrap_or_else(|_| Err("the models panicked".to_string()))
        .and_then(|out| {
            if out.len() == size {
                Ok(out)
            } else {
                Err(format!("{} results for {size} frames", out.len()))
            }
        });
    match whole {
        Ok(out) => (
            out.into_iter()
                .map(|mut a| {
                    a.batch_size = size;
                    Ok(a)
                })
                .collect(),
            None,
        ),
        Err(e) if size == 1 => (vec![Err(e)], None),
        Err(_) => {
            let (left, right) = inputs.split_at(size / 2);
            let (mut results, fits_left) = analyze_splitting(analyzer, left);
            let (more, fits_right) = analyze_splitting(analyzer, right);
            results.extend(more);
            let all_ran = results.iter().all(Result::is_ok);
            let fits = match (fits_left, fits_right) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (Some(a), None) | (None, Some(a)) => Some(a),
                (None, None) if all_ran => Some(left.len().max(right.len())),
                (None, None) => None,
            };
            (results, fits)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts persons as the number of bright pixels' rows — a stand-in that records batch
    /// sizes and can be told to be slow.
    struct Recorder {
        sizes: Arc<std::sync::Mutex<Vec<usize>>>,
        delay: Duration,
        /// Batches larger than this panic, as Burn does when a buffer exceeds the device's limit.
        refuse_above: usize,
    }

    impl Analyzer for Recorder {
        /// Records `usize::MAX` and gives each face a one-value descriptor: its box's left.
        fn describe(
            &mut self,
            inputs: &[(&RgbImage, &[FoundFace])],
        ) -> Result<Vec<Vec<Vec<f32>>>, String> {
            self.sizes.lock().unwrap().push(usize::MAX);
            Ok(inputs
                .iter()
                .map(|(_, faces)| faces.iter().map(|f| vec![f.bbox.x1]).collect())
                .collect())
        }

        fn analyze(&mut self, inputs: &[(&RgbImage, Want)]) -> Result<Vec<Analysis>, String> {
            self.sizes.lock().unwrap().push(inputs.len());
            assert!(
                inputs.len() <= self.refuse_above,
                "buffer too large for the device"
            );
            std::thread::sleep(self.delay);
            Ok(inputs
                .iter()
                .map(|(image, _)| Analysis {
                    persons: vec![Scored {
                        x1: 0.0,
                        y1: 0.0,
                        x2: 1.0,
                        y2: 1.0,
                        score: image.data[0] as f32 / 255.0,
                    }],
                    ..Analysis::default()
                })
                .collect())
        }
    }

    fn image(value: u8) -> Arc<RgbImage> {
        Arc::new(RgbImage {
            width: 2,
            height: 2,
            data: vec![value; 12],
        })
    }

    fn pool(
        config: PoolConfig,
        delay: Duration,
    ) -> (InferencePool, Arc<std::sync::Mutex<Vec<usize>>>) {
        refusing_pool(config, delay, usize::MAX)
    }

    fn refusing_pool(
        config: PoolConfig,
        delay: Duration,
        refuse_above: usize,
    ) -> (InferencePool, Arc<std::sync::Mutex<Vec<usize>>>) {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = sizes.clone();
        let pool = InferencePool::start(
            config,
            Arc::new(move || {
                Ok(Box::new(Recorder {
                    sizes: s.clone(),
                    delay,
                    refuse_above,
                }) as Box<dyn Analyzer>)
            }),
        );
        (pool, sizes)
    }

    #[test]
    fn a_head_region_is_the_top_of_the_box_widened_and_small_persons_have_none() {
        let standing = Scored {
            x1: 0.5,
            y1: 0.2,
            x2: 0.6,
            y2: 0.8,
            score: 0.9,
        };
        // 64 × 216 pixels in a 640 × 360 frame: the top 64-pixel square, 9.6 pixels wider
        // each side and higher.
        let [x, y, w, h] = head_region(&standing, 640, 360, 32).unwrap();
        for (got, want) in [(x, 310.4), (y, 62.4), (w, 83.2), (h, 83.2)] {
            assert!((got - want).abs() < 1e-3, "{got} vs {want}");
        }
        assert_eq!(
            head_region(&standing, 640, 360, 65),
            None,
            "narrower than asked"
        );
        // Wider than tall (sitting, lying): the whole box.
        let lying = Scored {
            x1: 0.0,
            y1: 0.5,
            x2: 0.5,
            y2: 0.6,
            score: 0.9,
        };
        let [_, _, w, h] = head_region(&lying, 640, 360, 32).unwrap();
        assert!(
            (w - 416.0).abs() < 1e-3 && (h - (36.0 + 96.0)).abs() < 1e-3,
            "{w} {h}"
        );
    }

    #[tokio::test]
    async fn descriptor_requests_go_before_frames_already_waiting() {
        let config = PoolConfig {
            max_batch: 1,
            max_wait: Duration::ZERO,
            queue_capacity: 8,
            workers: 1,
        };
        let (pool, sizes) = pool(config, Duration::from_millis(150));
        let frames: Vec<_> = (0..3u8)
            .map(|i| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.analyze(image(i), Want::default()).await })
            })
            .collect();
        // The first frame is being analysed, two wait.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let face = |x1: f32| FoundFace {
            bbox: Scored {
                x1,
                y1: 0.0,
                x2: 1.0,
                y2: 1.0,
                score: 0.9,
            },
            embedding: None,
            landmarks: vec![],
        };
        let described = pool
            .describe(image(9), vec![face(0.25), face(0.5)])
            .await
            .unwrap();
        assert_eq!(described, vec![vec![0.25], vec![0.5]]);
        assert_eq!(
            sizes.lock().unwrap()[..2],
            [1, usize::MAX],
            "described right after the running frame"
        );
        for frame in frames {
            frame.await.unwrap().unwrap();
        }
        assert_eq!(pool.metrics().faces_described.load(Ordering::Relaxed), 2);
        assert_eq!(pool.describe(image(9), vec![]).await, Ok(vec![]));
    }

    #[tokio::test]
    async fn a_batch_the_device_refuses_is_split_and_later_batches_are_capped() {
        let config = PoolConfig {
            max_batch: 8,
            max_wait: Duration::from_millis(200),
            ..PoolConfig::default()
        };
        let (pool, sizes) = refusing_pool(config, Duration::ZERO, 2);
        assert_eq!(pool.metrics().batch_cap.load(Ordering::Relaxed), 8);
        let results = futures::future::join_all(
            (0..8u8).map(|i| pool.analyze(image(i * 30), Want::default())),
        )
        .await;
        for (i, r) in results.into_iter().enumerate() {
            let r = r.expect("every frame gets its analysis");
            assert_eq!(r.persons[0].score, (i as f32 * 30.0) / 255.0, "frame {i}");
            assert_eq!(r.batch_size, 2);
        }
        // 8 refused, then 4 and 4 refused, then four batches of 2.
        assert_eq!(*sizes.lock().unwrap(), vec![8, 4, 2, 2, 4, 2, 2]);
        assert_eq!(pool.metrics().batch_cap.load(Ordering::Relaxed), 2);
        assert_eq!(pool.metrics().failed.load(Ordering::Relaxed), 0);
        sizes.lock().unwrap().clear();
        let again =
            futures::future::join_all((0..4u8).map(|i| pool.analyze(image(i), Want::default())))
                .await;
        assert!(again.iter().all(Result::is_ok));
        assert!(
            sizes.lock().unwrap().iter().all(|&n| n <= 2),
            "no batch over the cap: {:?}",
            sizes.lock().unwrap()
        );
    }

    #[tokio::test]
    async fn preload_loads_the_models_before_any_frame_and_a_failed_load_is_reported() {
        let (pool, sizes) = pool(
            PoolConfig {
                workers: 2,
                ..PoolConfig::default()
            },
            Duration::ZERO,
        );
        assert_eq!(pool.metrics().models_state(), ModelsState::NotLoaded);
        pool.preload();
        let deadline = Instant::now() + Duration::from_secs(5);
        while pool.metrics().models_state() != ModelsState::Loaded(2) {
            assert!(
                Instant::now() < deadline,
                "{:?}",
                pool.metrics().models_state()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(sizes.lock().unwrap().is_empty(), "no frame was analysed");
        assert_eq!(pool.metrics().frames.load(Ordering::Relaxed), 0);

        let broken = InferencePool::start(
            PoolConfig::default(),
            Arc::new(|| Err("face-api/x.bin: missing".to_string())),
        );
        broken.preload();
        let deadline = Instant::now() + Duration::from_secs(5);
        while broken.metrics().models_state() == ModelsState::NotLoaded {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            broken.metrics().models_state(),
            ModelsState::Failed("face-api/x.bin: missing".into())
        );
        let refused = broken.analyze(image(1), Want::default()).await;
        assert_eq!(
            refused,
            Err(PoolError::Models("face-api/x.bin: missing".into()))
        );
    }

    #[tokio::test]
    async fn frames_arriving_together_share_a_batch_and_get_their_own_results() {
        let config = PoolConfig {
            max_batch: 4,
            max_wait: Duration::from_millis(200),
            ..PoolConfig::default()
        };
        let (pool, sizes) = pool(config, Duration::ZERO);
        let results = futures::future::join_all(
            (0..4u8).map(|i| pool.analyze(image(i * 50), Want::default())),
        )
        .await;
        for (i, r) in results.into_iter().enumerate() {
            let r = r.unwrap();
            assert_eq!(
                r.persons[0].score,
                (i as f32 * 50.0) / 255.0,
                "result {i} is its own"
            );
            assert_eq!(r.batch_size, 4);
        }
        assert_eq!(*sizes.lock().unwrap(), vec![4]);
        assert_eq!(pool.metrics().frames.load(Ordering::Relaxed), 4);
        assert_eq!(pool.metrics().batch_sizes[3].load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_full_queue_drops_frames_and_counts_them() {
        let config = PoolConfig {
            max_batch: 1,
            max_wait: Duration::ZERO,
            queue_capacity: 2,
            workers: 1,
        };
        let (pool, _) = pool(config, Duration::from_millis(300));
        let results =
            futures::future::join_all((0..8u8).map(|i| pool.analyze(image(i), Want::default())))
                .await;
        let busy = results
            .iter()
            .filter(|r| matches!(r, Err(PoolError::Busy(_))))
            .count();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert!(busy >= 4, "{busy} of 8 dropped");
        assert_eq!(ok + busy, 8);
        assert_eq!(pool.metrics().dropped.load(Ordering::Relaxed), busy as u64);
        assert_eq!(pool.metrics().queue_depth.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn models_that_fail_to_load_answer_every_frame_with_the_reason() {
        let pool = InferencePool::start(
            PoolConfig::default(),
            Arc::new(|| Err("no weights in /nowhere".to_string())),
        );
        let err = pool.analyze(image(1), Want::default()).await.unwrap_err();
        assert_eq!(err, PoolError::Models("no weights in /nowhere".into()));
    }
}
