//! Vigil's write side.
//!
//! The [`aggregates`] are pure and synchronous: `decide(&state, command) -> events` and
//! `evolve(state, event) -> state`, with no I/O. The [`handler::CommandHandler`] runs them
//! against an [`EventStore`](vigil_schemas::EventStore): load the stream, decide, append with the
//! expected version, and on a conflict decide again from fresh state.
//!
//! Camera ingest runs here too, on ractor: the [`supervisor`] tree (root → camera supervisor →
//! one [`camera_actor`] per enabled camera), frame [`source`]s (RTSP, MJPEG, snapshot, push),
//! the [`pool`] of inference workers, the per-camera [`tracker`], and the [`blob`] store for
//! frames and crops.
#![deny(missing_docs)]

pub mod aggregates;
pub mod appearances;
pub mod blob;
pub mod camera_actor;
pub mod clips;
pub mod frame;
pub mod gallery;
pub mod geometry;
pub mod handler;
pub mod motion;
pub mod node;
pub mod pool;
pub mod regions;
pub mod rules;
pub mod source;
pub mod supervisor;
pub mod tracker;

pub use aggregates::Aggregate;
pub use handler::{CommandError, CommandHandler, Executed};
