//! `vigil doctor`: checks what the configuration needs, one line each with a remedy, and exits
//! non-zero when something it needs is missing. It changes nothing: no database is created or
//! migrated, no weight is fetched.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::Row;

use crate::config::Config;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// As needed.
    Ok,
    /// Works, but worth a look.
    Warn,
    /// Something the configuration needs is missing or broken.
    Fail,
    /// Not configured, so not checked.
    Skip,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "FAIL",
            Self::Skip => "skip",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// How it came out.
    pub verdict: Verdict,
    /// What was found, and for a warning or failure what to do.
    pub detail: String,
}

impl Check {
    fn new(name: &'static str, verdict: Verdict, detail: impl Into<String>) -> Self {
        Self {
            name,
            verdict,
            detail: detail.into(),
        }
    }
}

/// Free space below which a folder fails the check.
const DISK_FAIL_BYTES: u64 = 256 << 20;
/// Free space below which a folder gets a warning.
const DISK_WARN_BYTES: u64 = 5 << 30;

/// Runs every check and prints the report; fails when any check failed.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let checks = checks(&config).await;
    let mut report = String::new();
    for c in &checks {
        report.push_str(&format!(
            "{:<5}{:<10}{}\n",
            c.verdict.label(),
            c.name,
            c.detail
        ));
    }
    let failed = checks.iter().filter(|c| c.verdict == Verdict::Fail).count();
    report.push_str(&if failed == 0 {
        "vigil doctor: everything the configuration needs is in place\n".to_string()
    } else {
        format!("vigil doctor: {failed} check(s) failed\n")
    });
    super::write_out(&report)?;
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// Every check, in report order.
pub async fn checks(config: &Config) -> Vec<Check> {
    let mut out = vec![config_check(config)];
    let assets = config.effective_assets_dir();
    out.push(
        tokio::task::spawn_blocking(move || weights_check(&assets))
            .await
            .unwrap_or_else(|e| Check::new("weights", Verdict::Fail, e.to_string())),
    );
    let preference = config.models_backend;
    out.push(
        tokio::task::spawn_blocking(move || device_check(preference))
            .await
            .unwrap_or_else(|e| Check::new("models", Verdict::Fail, e.to_string())),
    );
    let (database, newest) = database_check(config).await;
    out.push(database);
    out.push(kafka_check(config).await);
    out.push(mqtt_check(config).await);
    out.push(webhooks_check(config).await);
    out.push(disk_check("data", &config.data_dir));
    out.push(if config.uses_bucket() {
        bucket_check(config).await
    } else {
        disk_check("media", &config.data_dir.join("blobs"))
    });
    out.push(clock_check(newest));
    out
}

fn config_check(config: &Config) -> Check {
    let from = config.file.as_ref().map_or_else(
        || "defaults and VIGIL_* variables (no vigil.toml)".to_string(),
        |f| format!("{} and VIGIL_* variables", f.display()),
    );
    Check::new(
        "config",
        Verdict::Ok,
        format!(
            "read from {from}; {} declared camera(s); `vigil config` prints it",
            config.cameras.len()
        ),
    )
}

fn weights_check(assets: &Path) -> Check {
    match vigil_models::check_weights(assets) {
        Ok(()) => Check::new(
            "weights",
            Verdict::Ok,
            format!(
                "{} files present and matching their checksums in {}",
                vigil_models::required_weights().len(),
                assets.display()
            ),
        ),
        Err(e) => Check::new(
            "weights",
            Verdict::Fail,
            format!("{e}; VIGIL_ASSETS sets where it fetches to"),
        ),
    }
}

fn device_check(preference: vigil_models::BackendPreference) -> Check {
    let asked = serde_json::to_value(preference)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    match vigil_models::Compute::select(preference) {
        Ok(c) if c.backend == "cpu" => Check::new(
            "models",
            Verdict::Ok,
            format!("run on the CPU ({}; models_backend = {asked})", c.adapter),
        ),
        Ok(c) if c.physical => Check::new(
            "models",
            Verdict::Ok,
            format!(
                "run on the GPU `{}` (wgpu; models_backend = {asked})",
                c.adapter
            ),
        ),
        Ok(c) => Check::new(
            "models",
            Verdict::Warn,
            format!(
                "run on the software adapter `{}`, many times slower than the CPU backend → set models_backend = \"auto\" or \"cpu\"",
                c.adapter
            ),
        ),
        Err(e) => Check::new(
            "models",
            Verdict::Fail,
            format!(
                "models_backend = {asked}: {e} → install the GPU's Vulkan driver, or set models_backend = \"auto\""
            ),
        ),
    }
}

/// The database check, and the newest event's recording time (for the clock check).
async fn database_check(config: &Config) -> (Check, Option<chrono::DateTime<chrono::Utc>>) {
    let url = config.effective_database_url();
    let shown = crate::config::mask_url(&url);
    let fail = |detail: String| (Check::new("database", Verdict::Fail, detail), None);
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let path = PathBuf::from(path.split('?').next().unwrap_or_default());
        if !path.exists() {
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let writable = nearest_existing(parent)
                .and_then(|p| std::fs::metadata(p).ok())
                .is_some_and(|m| !m.permissions().readonly());
            return if writable {
                (
                    Check::new(
                        "database",
                        Verdict::Ok,
                        format!(
                            "{shown} does not exist yet; `vigil serve` creates and migrates it"
                        ),
                    ),
                    None,
                )
            } else {
                fail(format!(
                    "{shown} does not exist and {} cannot be written → set data_dir or database_url to a writable place",
                    parent.display()
                ))
            };
        }
    }
    sqlx::any::install_default_drivers();
    let pool = match sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&url)
        .await
    {
        Ok(pool) => pool,
        Err(e) => {
            return fail(format!(
                "{shown}: {e} → start the database or fix database_url (VIGIL_DATABASE_URL)"
            ));
        }
    };
    let latest = vigil_schemas::MIGRATIONS
        .iter()
        .map(|m| m.0)
        .max()
        .unwrap_or(0);
    let applied = sqlx::query("SELECT MAX(version) AS v FROM vigil_migrations")
        .fetch_one(&pool)
        .await
        .ok()
        .and_then(|row| row.try_get::<Option<i64>, _>("v").ok().flatten());
    let newest = sqlx::query("SELECT MAX(recorded_at) AS t FROM events")
        .fetch_one(&pool)
        .await
        .ok()
        .and_then(|row| row.try_get::<Option<String>, _>("t").ok().flatten())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&chrono::Utc));
    pool.close().await;
    let check = match applied {
        None => Check::new(
            "database",
            Verdict::Ok,
            format!("{shown} answers; not migrated yet (`vigil serve` migrates it at start)"),
        ),
        Some(v) if v == latest => Check::new(
            "database",
            Verdict::Ok,
            format!("{shown} answers, migrated to version {v}"),
        ),
        Some(v) if v < latest => Check::new(
            "database",
            Verdict::Warn,
            format!(
                "{shown} is at migration {v} of {latest}; `vigil serve` applies the rest at start"
            ),
        ),
        Some(v) => Check::new(
            "database",
            Verdict::Fail,
            format!(
                "{shown} is at migration {v}, newer than this build knows ({latest}) → run the Vigil version that migrated it"
            ),
        ),
    };
    (check, newest)
}

async fn kafka_check(config: &Config) -> Check {
    if config.kafka_brokers.is_empty() {
        return Check::new(
            "kafka",
            Verdict::Skip,
            "no kafka_brokers configured; events are not relayed",
        );
    }
    let brokers = config.kafka_brokers.clone();
    let result = tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .map_err(|e| e.to_string())?;
        consumer
            .fetch_metadata(None, Duration::from_secs(5))
            .map(|m| m.brokers().len())
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match result {
        Ok(n) => Check::new(
            "kafka",
            Verdict::Ok,
            format!("{} answers ({n} broker(s))", config.kafka_brokers),
        ),
        Err(e) => Check::new(
            "kafka",
            Verdict::Fail,
            format!(
                "{}: {e} → start the broker or fix kafka_brokers",
                config.kafka_brokers
            ),
        ),
    }
}

async fn mqtt_check(config: &Config) -> Check {
    if config.mqtt_url.is_empty() {
        return Check::new("mqtt", Verdict::Skip, "no mqtt_url configured; MQTT is off");
    }
    let shown = crate::config::mask_url(&config.mqtt_url);
    match crate::mqtt::probe(config).await {
        Ok(()) => Check::new("mqtt", Verdict::Ok, format!("{shown} accepts a connection")),
        Err(e) => Check::new(
            "mqtt",
            Verdict::Fail,
            format!("{shown}: {e} → start the broker or fix mqtt_url"),
        ),
    }
}

async fn webhooks_check(config: &Config) -> Check {
    if config.webhooks.is_empty() {
        return Check::new("webhooks", Verdict::Skip, "no webhook targets configured");
    }
    let mut unresolved = Vec::new();
    for target in &config.webhooks {
        let resolved = match reqwest::Url::parse(&target.url) {
            Ok(url) => match (url.host_str(), url.port_or_known_default()) {
                (Some(host), Some(port)) => tokio::time::timeout(
                    Duration::from_secs(5),
                    tokio::net::lookup_host((host.trim_matches(['[', ']']), port)),
                )
                .await
                .is_ok_and(|r| r.is_ok_and(|mut a| a.next().is_some())),
                _ => false,
            },
            Err(_) => false,
        };
        if !resolved {
            unresolved.push(format!("{} ({})", target.name, target.url));
        }
    }
    if unresolved.is_empty() {
        Check::new(
            "webhooks",
            Verdict::Ok,
            format!("{} target(s), every host resolves", config.webhooks.len()),
        )
    } else {
        Check::new(
            "webhooks",
            Verdict::Fail,
            format!(
                "cannot resolve {} → fix the [[webhooks]] url or the DNS",
                unresolved.join(", ")
            ),
        )
    }
}

/// The folder itself or its nearest existing ancestor.
fn nearest_existing(path: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(path).ok()?;
    absolute
        .ancestors()
        .find(|p| p.exists())
        .map(Path::to_path_buf)
}

/// Writes, reads back and deletes a small object in the media bucket.
async fn bucket_check(config: &Config) -> Check {
    let store = match config.blob_store() {
        Ok(store) => store,
        Err(e) => return Check::new("media", Verdict::Fail, e),
    };
    let label = store.remote_label().unwrap_or_default().to_string();
    let probe = format!("vigil doctor probe {}", uuid::Uuid::now_v7());
    let round_trip = async {
        let id = store.put(probe.as_bytes()).await?;
        let back = store.get(&id).await?;
        store.delete(&id).await?;
        Ok::<_, std::io::Error>(back.as_deref() == Some(probe.as_bytes()))
    };
    match tokio::time::timeout(std::time::Duration::from_secs(15), round_trip).await {
        Ok(Ok(true)) => Check::new(
            "media",
            Verdict::Ok,
            format!("{label}: an object was written, read back and deleted"),
        ),
        Ok(Ok(false)) => Check::new(
            "media",
            Verdict::Fail,
            format!("{label}: an object written could not be read back"),
        ),
        Ok(Err(e)) => Check::new("media", Verdict::Fail, format!("{label}: {e}")),
        Err(_) => Check::new(
            "media",
            Verdict::Fail,
            format!("{label}: no answer within 15 s (s3_endpoint, network?)"),
        ),
    }
}

fn disk_check(name: &'static str, folder: &Path) -> Check {
    let Some(existing) = nearest_existing(folder).and_then(|p| p.canonicalize().ok()) else {
        return Check::new(
            name,
            Verdict::Fail,
            format!("{}: no such folder nor any parent", folder.display()),
        );
    };
    let disks = sysinfo::Disks::new_with_refreshed_list();
    let disk = disks
        .iter()
        .filter(|d| existing.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len());
    let Some(disk) = disk else {
        return Check::new(
            name,
            Verdict::Warn,
            format!(
                "{}: the file system holding it is not listed; free space unknown",
                folder.display()
            ),
        );
    };
    let free = disk.available_space();
    let gib = free as f64 / f64::from(1u32 << 30);
    let detail = format!(
        "{}: {gib:.1} GiB free on {}",
        folder.display(),
        disk.mount_point().display()
    );
    if free < DISK_FAIL_BYTES {
        Check::new(name, Verdict::Fail, format!("{detail} → free some space"))
    } else if free < DISK_WARN_BYTES {
        Check::new(
            name,
            Verdict::Warn,
            format!("{detail}; frames and clips need room → free some space"),
        )
    } else {
        Check::new(name, Verdict::Ok, detail)
    }
}

fn clock_check(newest_event: Option<chrono::DateTime<chrono::Utc>>) -> Check {
    let now = chrono::Utc::now();
    let floor = chrono::DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
        .expect("a valid time")
        .with_timezone(&chrono::Utc);
    if now < floor {
        return Check::new(
            "clock",
            Verdict::Fail,
            format!("the system clock says {now}, before this build existed → set the time (NTP)"),
        );
    }
    match newest_event {
        Some(t) if t > now + chrono::Duration::seconds(5) => Check::new(
            "clock",
            Verdict::Fail,
            format!(
                "the newest stored event was recorded at {t}, after now ({now}): the clock went back → set the time (NTP)"
            ),
        ),
        Some(t) => Check::new(
            "clock",
            Verdict::Ok,
            format!("{now}; the newest stored event is from {t}"),
        ),
        None => Check::new("clock", Verdict::Ok, now.to_rfc3339()),
    }
}
