//! Read-your-writes: a write answers once this process's read models show what it appended,
//! and says where that is in `X-Vigil-Position`.
//!
//! Every write goes through [`wait_visible`], so a read right after the answer (of any read
//! model: the ids a write answers with may be incidents, tracks, alerts or actions) finds it.

use std::time::{Duration, Instant};

use crate::app::App;

/// How long a write waits, in all, for the read models before answering anyway.
pub const WRITE_VISIBILITY_WAIT: Duration = Duration::from_secs(2);

/// Waits up to [`WRITE_VISIBILITY_WAIT`] until every projection running in this process has
/// applied `position` (the last event the write appended; `None` when it appended nothing).
/// A projection that is backing off after an error is not waited for: it would not catch up
/// in time. Returns the position every waited-for read model has applied (`position` itself
/// when they all got there).
pub async fn wait_visible(app: &App, position: Option<u64>) -> u64 {
    let deadline = Instant::now() + WRITE_VISIBILITY_WAIT;
    let mut seen: Option<u64> = None;
    for runner in app.runners() {
        let status = runner.status();
        if status.last_error().is_some() {
            continue;
        }
        if let Some(position) = position {
            let left = deadline.saturating_duration_since(Instant::now());
            status.wait_for(position, left).await;
        }
        let at = status.position();
        seen = Some(seen.map_or(at, |s| s.min(at)));
    }
    match (seen, position) {
        (Some(seen), Some(position)) => seen.min(position),
        (Some(seen), None) => seen,
        (None, position) => position.unwrap_or_default(),
    }
}
