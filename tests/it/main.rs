//! Vigil's integration tests: one binary, real SQLite files and a real PostgreSQL server.
//!
//! PostgreSQL tests create a fresh database per test on `VIGIL_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and fail with a clear message when it is down;
//! `scripts/test` starts it.

mod access;
mod api;
mod cameras;
mod cli;
mod cluster;
mod durability;
mod faults;
mod incidents;
mod kafka;
mod metrics;
mod mqtt;
mod objects;
mod projections;
mod readme;
mod store_conformance;
mod subjects;
mod support;
mod ws;
