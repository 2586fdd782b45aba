//! Pure analysis: data and `now` in, results out. No I/O, no clock.

pub mod breakdown;
pub mod diagnosis;
pub mod findings;
pub mod gc_pace;
pub mod go_heap;
pub mod misconfig;
pub mod predict;
pub mod recommend;
pub mod risk;
pub mod slope;
pub mod window;
