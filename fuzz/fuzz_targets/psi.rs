//! Pressure stall information (`memory.pressure`): a parsed file printed
//! in the kernel's format parses back to the same values.
#![no_main]

use headroom::parse::psi::{parse_pressure, PsiLine};
use libfuzzer_sys::fuzz_target;

fn line(kind: &str, p: &PsiLine) -> String {
    format!(
        "{kind} avg10={} avg60={} avg300={} total={}\n",
        p.avg10, p.avg60, p.avg300, p.total_us
    )
}

fuzz_target!(|text: &str| {
    if let Ok(p) = parse_pressure(text) {
        for v in p.some.iter().chain(p.full.iter()) {
            assert!(v.avg10.is_finite() && v.avg10 >= 0.0);
            assert!(v.avg60.is_finite() && v.avg60 >= 0.0);
            assert!(v.avg300.is_finite() && v.avg300 >= 0.0);
        }
        let mut printed = String::new();
        if let Some(s) = &p.some {
            printed.push_str(&line("some", s));
        }
        if let Some(f) = &p.full {
            printed.push_str(&line("full", f));
        }
        assert_eq!(parse_pressure(&printed), Ok(p));
    }
});
