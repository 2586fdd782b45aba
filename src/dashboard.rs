//! The dashboard at `/`: one static page that renders /api/v1/status.

pub const PAGE: &str = include_str!("dashboard.html");
