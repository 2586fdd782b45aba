//! headroom: a cgroup-aware sidecar that predicts a Go service's OOM kill
//! and says why its memory grows.

pub mod alert;
pub mod analysis;
pub mod app;
pub mod auth;
pub mod build_info;
pub mod check;
pub mod cli;
pub mod collector;
pub mod config;
pub mod dashboard;
pub mod http;
pub mod httpc;
pub mod inject;
pub mod key;
pub mod metrics;
pub mod monitor;
pub mod parse;
pub mod sample;
pub mod server;
pub mod source;
pub mod status;
pub mod status_cmd;
pub mod targets;
