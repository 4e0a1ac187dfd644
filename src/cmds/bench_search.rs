//! `vigil bench search`: the face-search vector index, measured.
//!
//! Synthetic descriptors shaped like face embeddings: `--vectors` unit-length 128-d vectors
//! around `vectors / 50` random identities (a sighting is its identity's centre plus noise, so
//! two sightings of one person lie about 0.45 apart and two people about 1.4, as with the dlib
//! descriptors), and `--queries` fresh sightings of random identities. The vectors go into a
//! Lance dataset; each query runs alone (one at a time, as the API runs them) by exact flat
//! scan (the ground truth), through IVF-PQ as Vigil configures it (√n partitions, 16 × 8-bit
//! sub-quantizers, `nprobes`, exact re-rank of `refine` × k), and through IVF-HNSW-SQ. Then
//! `scripts/bench-faiss` runs FAISS on the same files: flat, IVF-PQ with the same shape and
//! re-rank, and HNSW. One table: build seconds, p50/p99 latency, recall@10 against the
//! exact answer.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lance::Dataset;
use lance::dataset::{WriteMode, WriteParams};
use lance::deps::arrow_array::cast::AsArray;
use lance::deps::arrow_array::types::UInt64Type;
use lance::deps::arrow_array::{Float32Array, RecordBatch, RecordBatchIterator, UInt64Array};
use lance::deps::arrow_schema::{DataType, Field, Schema};
use lance::index::DatasetIndexExt;
use lance::index::vector::VectorIndexParams;
use lance_index::IndexType;
use lance_index::vector::hnsw::builder::HnswBuildParams;
use lance_index::vector::ivf::IvfBuildParams;
use lance_index::vector::sq::builder::SQBuildParams;
use lance_linalg::distance::MetricType;
use rand::{Rng, SeedableRng};
use vigil_projections::vectors::{
    DIM, embedding_array_flat, embedding_field, ivf_partitions, ivf_pq_params,
};

/// Options of `vigil bench search`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Vectors in the table.
    #[arg(long, default_value_t = 1_000_000)]
    vectors: usize,
    /// Queries timed per method.
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// Neighbours per query (recall@k).
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// IVF partitions probed per query.
    #[arg(long, default_value_t = vigil_projections::vectors::VectorConfig::default().nprobes)]
    nprobes: usize,
    /// Candidates re-ranked by exact distance, as a multiple of k.
    #[arg(long, default_value_t = vigil_projections::vectors::VectorConfig::default().refine)]
    refine: u32,
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Skip IVF-HNSW-SQ (its build is the slowest).
    #[arg(long)]
    no_hnsw: bool,
    /// Skip FAISS.
    #[arg(long)]
    no_faiss: bool,
    /// Python with `faiss-cpu` and `numpy` (default: `$VIGIL_VENV/bin/python`, else
    /// `~/.cache/vigil/venv/bin/python`).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Folder for the dataset and the vector files (default: a temporary folder).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// One measured method.
#[derive(Debug, Clone)]
struct Row {
    engine: String,
    method: String,
    build_s: Option<f64>,
    p50_ms: f64,
    p99_ms: f64,
    recall: f64,
}

fn gaussian(rng: &mut impl Rng) -> f32 {
    // Box–Muller.
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

fn normalise(v: &mut [f32]) {
    let n = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= n);
}

/// `count` sightings (flattened) of random identities among `centres`.
fn sightings(rng: &mut impl Rng, centres: &[Vec<f32>], count: usize) -> Vec<f32> {
    const NOISE: f32 = 0.03;
    let mut out = Vec::with_capacity(count * DIM);
    for _ in 0..count {
        let c = &centres[rng.random_range(0..centres.len())];
        let mut v: Vec<f32> = c.iter().map(|x| x + NOISE * gaussian(rng)).collect();
        normalise(&mut v);
        out.extend_from_slice(&v);
    }
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn recall(found: &[Vec<u64>], truth: &[Vec<u64>], k: usize) -> f64 {
    let mut hit = 0usize;
    for (f, t) in found.iter().zip(truth) {
        hit += f
            .iter()
            .take(k)
            .filter(|id| t.iter().take(k).any(|x| x == *id))
            .count();
    }
    hit as f64 / (truth.len() * k).max(1) as f64
}

/// Runs every query alone through `ds`; returns (latencies in ms sorted, ids per query).
async fn run_queries(
    ds: &Dataset,
    queries: &[f32],
    k: usize,
    tune: impl Fn(&mut lance::dataset::scanner::Scanner),
) -> anyhow::Result<(Vec<f64>, Vec<Vec<u64>>)> {
    let mut latencies = Vec::new();
    let mut ids = Vec::new();
    for q in queries.chunks(DIM) {
        let q = Float32Array::from(q.to_vec());
        let started = Instant::now();
        let mut scan = ds.scan();
        scan.project(&["id"])?;
        scan.disable_scoring_autoprojection();
        scan.nearest("embedding", &q, k)?
            .distance_metric(MetricType::L2);
        tune(&mut scan);
        let b = scan.try_into_batch().await?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        let col = b
            .column_by_name("id")
            .ok_or_else(|| anyhow::anyhow!("no id column"))?;
        ids.push(col.as_primitive::<UInt64Type>().values().to_vec());
    }
    latencies.sort_by(f64::total_cmp);
    Ok((latencies, ids))
}

fn write_f32(path: &Path, values: &[f32]) -> anyhow::Result<()> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes)?;
    Ok(())
}

fn default_python() -> PathBuf {
    let venv = std::env::var_os("VIGIL_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/vigil/venv")
        });
    venv.join("bin/python")
}

/// Runs `vigil bench search` and prints its table.
pub async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.vectors >= 256,
        "--vectors must be at least 256 (IVF-PQ training)"
    );
    anyhow::ensure!(
        args.queries >= 1 && args.k >= 1,
        "--queries and --k must be at least 1"
    );
    let tmp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let python = args.python.clone().unwrap_or_else(default_python);
    let faiss_script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench-faiss");
    if !args.no_faiss {
        let ok = std::process::Command::new(&python)
            .args(["-c", "import faiss, numpy"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        anyhow::ensure!(
            ok,
            "{} cannot import faiss and numpy: run scripts/setup (it installs faiss-cpu into the \
             venv), pass --python, or --no-faiss",
            python.display()
        );
    }

    let n = args.vectors;
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let identities = (n / 50).max(16);
    let centres: Vec<Vec<f32>> = (0..identities)
        .map(|_| {
            let mut c: Vec<f32> = (0..DIM).map(|_| gaussian(&mut rng)).collect();
            normalise(&mut c);
            c
        })
        .collect();
    eprintln!("generating {n} vectors around {identities} identities…");
    let data = sightings(&mut rng, &centres, n);
    let queries = sightings(&mut rng, &centres, args.queries);

    // Lance: write in batches of 100k rows.
    let uri = dir.join("bench.lance").display().to_string();
    if Path::new(&uri).exists() {
        std::fs::remove_dir_all(&uri)?;
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::UInt64, false),
        embedding_field(),
    ]));
    let mut batches = Vec::new();
    for (chunk_no, chunk) in data.chunks(100_000 * DIM).enumerate() {
        let first = (chunk_no * 100_000) as u64;
        let rows = chunk.len() / DIM;
        let ids = UInt64Array::from_iter_values(first..first + rows as u64);
        let emb = embedding_array_flat(chunk.to_vec()).map_err(anyhow::Error::msg)?;
        batches.push(Ok(RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(ids), Arc::new(emb)],
        )?));
    }
    eprintln!("writing the Lance dataset…");
    let started = Instant::now();
    let reader = RecordBatchIterator::new(batches, schema.clone());
    let mut ds = Dataset::write(
        reader,
        uri.as_str(),
        Some(WriteParams {
            mode: WriteMode::Create,
            ..Default::default()
        }),
    )
    .await?;
    let write_s = started.elapsed().as_secs_f64();

    let k = args.k;
    let mut rows = Vec::new();
    eprintln!("exact search ({} queries)…", args.queries);
    let (lat, truth) = run_queries(&ds, &queries, k, |s| {
        s.use_index(false);
    })
    .await?;
    rows.push(Row {
        engine: "lance".into(),
        method: "exact (flat scan)".into(),
        build_s: None,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        recall: recall(&truth, &truth, k),
    });

    let partitions = ivf_partitions(n);
    eprintln!("building IVF-PQ ({partitions} partitions)…");
    let started = Instant::now();
    ds.create_index(
        &["embedding"],
        IndexType::IvfPq,
        Some("embedding_idx".into()),
        &ivf_pq_params(n),
        true,
    )
    .await?;
    let build = started.elapsed().as_secs_f64();
    let (nprobes, refine) = (args.nprobes, args.refine);
    let (lat, found) = run_queries(&ds, &queries, k, |s| {
        s.nprobes(nprobes).refine(refine);
    })
    .await?;
    rows.push(Row {
        engine: "lance".into(),
        method: format!("IVF-PQ {partitions}×PQ16, nprobes {nprobes}, refine {refine}"),
        build_s: Some(build),
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        recall: recall(&found, &truth, k),
    });
    let (lat, found) = run_queries(&ds, &queries, k, |s| {
        s.nprobes(nprobes);
    })
    .await?;
    rows.push(Row {
        engine: "lance".into(),
        method: format!("IVF-PQ {partitions}×PQ16, nprobes {nprobes}, no refine"),
        build_s: Some(build),
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        recall: recall(&found, &truth, k),
    });

    let hnsw_partitions = (partitions / 8).max(1);
    if !args.no_hnsw {
        eprintln!("building IVF-HNSW-SQ ({hnsw_partitions} partitions)…");
        let started = Instant::now();
        let params = VectorIndexParams::with_ivf_hnsw_sq_params(
            MetricType::L2,
            IvfBuildParams::new(hnsw_partitions),
            HnswBuildParams::default(),
            SQBuildParams::default(),
        );
        ds.create_index(
            &["embedding"],
            IndexType::IvfHnswSq,
            Some("embedding_idx".into()),
            &params,
            true,
        )
        .await?;
        let build = started.elapsed().as_secs_f64();
        let hnsw_probes = nprobes.min(hnsw_partitions).max(1);
        // HNSW must look at least at every candidate the re-rank takes.
        let ef = (k * refine as usize).max(64);
        let (lat, found) = run_queries(&ds, &queries, k, |s| {
            s.nprobes(hnsw_probes).ef(ef).refine(refine);
        })
        .await?;
        rows.push(Row {
            engine: "lance".into(),
            method: format!(
                "IVF-HNSW-SQ {hnsw_partitions} partitions, nprobes {hnsw_probes}, ef {ef}, refine {refine}"
            ),
            build_s: Some(build),
            p50_ms: percentile(&lat, 0.5),
            p99_ms: percentile(&lat, 0.99),
            recall: recall(&found, &truth, k),
        });
    }

    if !args.no_faiss {
        eprintln!("running FAISS on the same vectors…");
        write_f32(&dir.join("vectors.f32"), &data)?;
        write_f32(&dir.join("queries.f32"), &queries)?;
        let truth_flat: Vec<u8> = truth
            .iter()
            .flat_map(|t| {
                let mut t = t.clone();
                t.resize(k, u64::MAX);
                t
            })
            .flat_map(|id| (id as i64).to_le_bytes())
            .collect();
        std::fs::write(dir.join("truth.i64"), truth_flat)?;
        let out = tokio::time::timeout(
            Duration::from_secs(3600),
            tokio::process::Command::new(&python)
                .arg(&faiss_script)
                .arg(&dir)
                .args([
                    DIM.to_string(),
                    k.to_string(),
                    partitions.to_string(),
                    nprobes.to_string(),
                    refine.to_string(),
                    if args.no_hnsw { "0" } else { "1" }.to_string(),
                ])
                .stderr(std::process::Stdio::inherit())
                .output(),
        )
        .await??;
        anyhow::ensure!(
            out.status.success(),
            "scripts/bench-faiss failed ({})",
            out.status
        );
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let v: serde_json::Value = serde_json::from_str(line)?;
            rows.push(Row {
                engine: "faiss".into(),
                method: v["method"].as_str().unwrap_or("?").into(),
                build_s: v["build_s"].as_f64(),
                p50_ms: v["p50_ms"].as_f64().unwrap_or(f64::NAN),
                p99_ms: v["p99_ms"].as_f64().unwrap_or(f64::NAN),
                recall: v["recall"].as_f64().unwrap_or(f64::NAN),
            });
        }
    }

    let mut text = format!(
        "vigil bench search: {n} × {DIM}-d vectors ({identities} identities, seed {}), {} \
         queries one at a time, k = {k}; Lance write {write_s:.1} s\n\n\
         | engine | method | build s | p50 ms | p99 ms | recall@{k} |\n\
         |---|---|---:|---:|---:|---:|\n",
        args.seed, args.queries
    );
    for r in rows {
        text += &format!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.3} |\n",
            r.engine,
            r.method,
            r.build_s.map_or("–".to_string(), |b| format!("{b:.1}")),
            r.p50_ms,
            r.p99_ms,
            r.recall
        );
    }
    super::write_out(&text)
}
