//! Prometheus metrics through the `metrics` facade and its Prometheus exporter
//! (`metrics-exporter-prometheus`), with the process's own series from `metrics-process`.
//!
//! Each node ([`crate::app::App`]) owns its recorder instead of installing the process-global
//! one, so several nodes in one process (the tests) keep their series apart. Things that happen
//! (HTTP requests, inference latencies) are recorded as they happen through handles; state that
//! lives elsewhere (the log's head, checkpoints, per-camera counters, the dead-letter queue) is
//! read at scrape time and set on gauges and counters just before rendering.

use metrics::{Histogram, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Upper bounds of the inference latency histogram, in seconds.
pub const INFERENCE_LATENCY_BUCKETS: [f64; 10] =
    [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Upper bounds of the batch size histogram.
pub const BATCH_SIZE_BUCKETS: [f64; 6] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0];
/// Upper bounds of the HTTP request duration histogram, in seconds.
pub const HTTP_DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Every series Vigil itself writes: name, kind, unit and help. `/metrics` shows each with its
/// `# HELP` line; the Grafana dashboard in `docs/grafana/` queries them.
pub const SERIES: &[(&str, &str, Option<Unit>, &str)] = &[
    (
        "vigil_event_log_head",
        "gauge",
        None,
        "Position of the newest stored event.",
    ),
    (
        "vigil_projection_checkpoint",
        "gauge",
        None,
        "Last position a projection applied.",
    ),
    (
        "vigil_projection_lag",
        "gauge",
        None,
        "Events a projection has not applied yet.",
    ),
    (
        "vigil_kafka_relay_lag",
        "gauge",
        None,
        "Stored events the Kafka broker has not acknowledged yet.",
    ),
    (
        "vigil_mqtt_relay_lag",
        "gauge",
        None,
        "Stored events the MQTT broker has not acknowledged yet.",
    ),
    (
        "vigil_relay_lag",
        "gauge",
        None,
        "Stored events a relay's broker has not acknowledged yet, by sink.",
    ),
    (
        "vigil_inference_queue_depth",
        "gauge",
        None,
        "Frames waiting for the inference pool.",
    ),
    (
        "vigil_inference_frames_total",
        "counter",
        None,
        "Frames analysed.",
    ),
    (
        "vigil_inference_faces_described_total",
        "counter",
        None,
        "Face descriptors computed for cameras' tracks (only where a track's face improved).",
    ),
    (
        "vigil_inference_person_passes_total",
        "counter",
        None,
        "Person-detector passes: whole frames plus canvases of regions.",
    ),
    (
        "vigil_inference_person_regions_total",
        "counter",
        None,
        "Frame regions the person detector looked at instead of whole frames.",
    ),
    (
        "vigil_inference_dropped_total",
        "counter",
        None,
        "Frames dropped because the inference queue was full.",
    ),
    (
        "vigil_inference_failed_total",
        "counter",
        None,
        "Frames whose analysis failed.",
    ),
    (
        "vigil_inference_batch_size",
        "histogram",
        None,
        "Frames per batch.",
    ),
    (
        "vigil_inference_latency_seconds",
        "histogram",
        Some(Unit::Seconds),
        "Time from queueing a frame to its result.",
    ),
    (
        "vigil_camera_frames_in_total",
        "counter",
        None,
        "Frames decoded or uploaded per camera.",
    ),
    (
        "vigil_camera_sampled_total",
        "counter",
        None,
        "Frames kept by sampling per camera.",
    ),
    (
        "vigil_camera_dropped_total",
        "counter",
        None,
        "Sampled frames dropped before analysis per camera.",
    ),
    (
        "vigil_memory_allocated_bytes",
        "gauge",
        None,
        "Bytes the process has allocated and not freed (jemalloc's count).",
    ),
    (
        "vigil_memory_resident_bytes",
        "gauge",
        None,
        "Bytes of physical memory the allocator holds, freed-but-kept pages included (jemalloc's count).",
    ),
    (
        "vigil_camera_analysed_total",
        "counter",
        None,
        "Frames analysed per camera.",
    ),
    (
        "vigil_camera_damaged_total",
        "counter",
        None,
        "Frames lost in transport or skipped until a keyframe per camera.",
    ),
    (
        "vigil_camera_still_total",
        "counter",
        None,
        "Sampled frames not analysed because nothing moved and no track was alive, per camera.",
    ),
    (
        "vigil_camera_motion_frames_total",
        "counter",
        None,
        "Sampled frames in which the motion detector found movement, per camera.",
    ),
    (
        "vigil_camera_region_frames_total",
        "counter",
        None,
        "Analysed frames in which the person detector looked only at regions around motion, per camera.",
    ),
    (
        "vigil_camera_held_total",
        "counter",
        None,
        "Sampled frames not analysed while tracks were alive but nothing moved near them (tracks held), per camera.",
    ),
    (
        "vigil_camera_media_dropped_total",
        "counter",
        None,
        "Pictures per camera not stored because the media folder was full.",
    ),
    (
        "vigil_camera_events_dropped_total",
        "counter",
        None,
        "Events per camera not recorded because the event store could not be reached.",
    ),
    (
        "vigil_camera_fps",
        "gauge",
        None,
        "Sampled frames handled per second now (smoothed), per camera.",
    ),
    (
        "vigil_camera_moving",
        "gauge",
        None,
        "Whether the camera's newest handled frame had motion (1) or not (0).",
    ),
    (
        "vigil_camera_persons",
        "gauge",
        None,
        "Persons in view per camera (confirmed tracks after the newest analysed frame).",
    ),
    (
        "vigil_camera_running",
        "gauge",
        None,
        "Whether the camera's actor runs on this node (1) or not (0).",
    ),
    (
        "vigil_tracks_swept_total",
        "counter",
        None,
        "Tracks left open by a killed process or a failed camera actor, ended (`interrupted`) before the camera started again.",
    ),
    (
        "vigil_webhook_deliveries",
        "gauge",
        None,
        "Webhook deliveries by target and status (pending, delivered, dead, discarded).",
    ),
    (
        "vigil_webhook_dlq_size",
        "gauge",
        None,
        "Deliveries in the dead-letter queue.",
    ),
    (
        "vigil_http_responses_total",
        "counter",
        None,
        "HTTP responses by status class.",
    ),
    (
        "vigil_http_requests_total",
        "counter",
        None,
        "HTTP requests by method, route and status.",
    ),
    (
        "vigil_http_request_duration_seconds",
        "histogram",
        Some(Unit::Seconds),
        "HTTP request duration by method and route.",
    ),
];

/// One node's metrics.
pub struct Telemetry {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    /// A recorder with Vigil's histogram buckets and every series described.
    pub fn new() -> Self {
        let buckets = |builder: PrometheusBuilder, name: &str, bounds: &[f64]| {
            builder
                .set_buckets_for_metric(Matcher::Full(name.to_string()), bounds)
                .expect("bucket bounds are not empty")
        };
        let builder = PrometheusBuilder::new();
        let builder = buckets(
            builder,
            "vigil_inference_latency_seconds",
            &INFERENCE_LATENCY_BUCKETS,
        );
        let builder = buckets(builder, "vigil_inference_batch_size", &BATCH_SIZE_BUCKETS);
        let builder = buckets(
            builder,
            "vigil_http_request_duration_seconds",
            &HTTP_DURATION_BUCKETS,
        );
        let recorder = builder.build_recorder();
        let telemetry = Self {
            handle: recorder.handle(),
            recorder,
            process: metrics_process::Collector::default(),
        };
        telemetry.record(|| {
            for &(name, kind, unit, help) in SERIES {
                match (kind, unit) {
                    ("counter", _) => metrics::describe_counter!(name, help),
                    ("gauge", _) => metrics::describe_gauge!(name, help),
                    (_, Some(unit)) => metrics::describe_histogram!(name, unit, help),
                    (_, None) => metrics::describe_histogram!(name, help),
                }
            }
            telemetry.process.describe();
        });
        telemetry
    }

    /// Runs `f` with this node's recorder as the one the `metrics` macros write to.
    pub fn record<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }

    /// A handle to one of this node's histograms, usable from any thread.
    pub fn histogram(&self, name: &'static str) -> Histogram {
        self.record(|| metrics::histogram!(name))
    }

    /// The Prometheus text exposition of everything recorded, with the process's own series
    /// (CPU, memory, file descriptors, threads, start time) read now.
    pub fn render(&self) -> String {
        self.record(|| {
            self.process.collect();
            if let Some((allocated, resident)) = allocator_stats() {
                metrics::gauge!("vigil_memory_allocated_bytes").set(allocated as f64);
                metrics::gauge!("vigil_memory_resident_bytes").set(resident as f64);
            }
        });
        self.handle.render()
    }
}

/// jemalloc's allocated and resident bytes, refreshed now; `None` when they cannot be read.
pub fn allocator_stats() -> Option<(usize, usize)> {
    use tikv_jemalloc_ctl::{epoch, stats};
    epoch::advance().ok()?;
    Some((
        stats::allocated::read().ok()?,
        stats::resident::read().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_keep_their_series_apart_and_render_them_with_help() {
        let a = Telemetry::new();
        let b = Telemetry::new();
        a.record(|| metrics::gauge!("vigil_event_log_head").set(7.0));
        b.record(|| metrics::gauge!("vigil_event_log_head").set(9.0));
        a.histogram("vigil_inference_latency_seconds").record(0.03);
        let text = a.render();
        assert!(text.contains("vigil_event_log_head 7"), "{text}");
        assert!(!text.contains("vigil_event_log_head 9"));
        assert!(text.contains("# HELP vigil_event_log_head Position of the newest stored event."));
        assert!(
            text.contains("vigil_inference_latency_seconds_bucket{le=\"0.05\"} 1"),
            "{text}"
        );
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
        assert!(b.render().contains("vigil_event_log_head 9"));
    }

    #[test]
    fn the_allocator_counts_what_is_allocated_and_exports_it() {
        let (before, _) = allocator_stats().expect("jemalloc's statistics");
        let block = vec![1u8; 64 << 20];
        let (during, resident) = allocator_stats().unwrap();
        assert!(during >= before + (60 << 20), "{before} → {during}");
        assert!(resident >= 64 << 20, "{resident}");
        drop(block);
        let (after, _) = allocator_stats().unwrap();
        assert!(after + (60 << 20) <= during, "{during} → {after}");
        let text = Telemetry::new().render();
        assert!(
            text.contains("# TYPE vigil_memory_allocated_bytes gauge"),
            "{text}"
        );
        assert!(text.contains("vigil_memory_resident_bytes "), "{text}");
    }
}
