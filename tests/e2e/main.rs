//! End-to-end tests: the real `deconflict` binary on a free loopback port, spoken to over HTTP.

mod api;
mod auth;
mod bench;
mod conformance;
mod durability;
mod flight_planning;
mod hardening;
mod harness;
mod hygiene;
mod input;
mod interop;
mod jwks;
mod map;
mod otlp;
mod pool;
mod rid;
mod telemetry;
mod tls;
mod uss;
mod uss_safety;
