//! Vigil: a self-hosted backend for AI video surveillance.
//!
//! This crate is the edge and the wiring: the event store adapters ([`store`]), the HTTP API
//! ([`api`]), the use cases it and the dispatcher call ([`service`]), configuration
//! ([`config`]), response-action delivery ([`dispatch`], [`webhooks`]), the CLI subcommands
//! ([`cmds`]) and the assembly of all of them ([`app`]). The contracts live in `vigil-schemas`, the write side in
//! `vigil-actors`, the read side in `vigil-projections`, the models in `vigil-models`.
#![deny(missing_docs)]

/// jemalloc, with background threads returning freed pages to the system after 10 s: under
/// glibc's allocator a burst (a fault's backlog, many clients at once) left the process's
/// resident memory higher for good. Its counters are the `vigil_memory_*` series.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

pub mod access;
pub mod api;
pub mod app;
pub mod cluster;
pub mod cmds;
pub mod config;
pub mod declared;
pub mod dispatch;
pub mod links;
pub mod mqtt;
pub mod relay;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod webhooks;
