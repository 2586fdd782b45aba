//! Pressure stall information (`memory.pressure`, v2):
//!
//! ```text
//! some avg10=0.00 avg60=0.00 avg300=0.00 total=0
//! full avg10=0.00 avg60=0.00 avg300=0.00 total=0
//! ```
//! `total` is in microseconds and only ever grows; the averages are percent.

use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PsiLine {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    /// Total stall time in microseconds.
    pub total_us: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Pressure {
    pub some: Option<PsiLine>,
    pub full: Option<PsiLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct PsiError {
    pub line: usize,
    pub reason: String,
}

pub fn parse_pressure(text: &str) -> Result<Pressure, PsiError> {
    let mut out = Pressure::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let err = |reason: String| PsiError { line: i + 1, reason };
        let mut words = line.split_ascii_whitespace();
        let kind = words.next().unwrap_or_default();
        let mut p = PsiLine::default();
        let mut seen = 0;
        for w in words {
            let (k, v) = w
                .split_once('=')
                .ok_or_else(|| err(format!("{w:?} is not key=value")))?;
            let bad = || err(format!("{k}={v:?} is not a number"));
            match k {
                "avg10" | "avg60" | "avg300" => {
                    let f: f64 = v.parse().map_err(|_| bad())?;
                    if !f.is_finite() || f < 0.0 {
                        return Err(bad());
                    }
                    match k {
                        "avg10" => p.avg10 = f,
                        "avg60" => p.avg60 = f,
                        _ => p.avg300 = f,
                    }
                    seen += 1;
                }
                "total" => {
                    p.total_us = v.parse().map_err(|_| bad())?;
                    seen += 1;
                }
                _ => {} // future fields
            }
        }
        if seen < 4 {
            return Err(err(format!("{kind:?} line lacks avg10/avg60/avg300/total")));
        }
        match kind {
            "some" => out.some = Some(p),
            "full" => out.full = Some(p),
            other => return Err(err(format!("unknown kind {other:?}"))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_format() {
        let p = parse_pressure(
            "some avg10=1.50 avg60=0.25 avg300=0.00 total=123456\n\
             full avg10=0.00 avg60=0.00 avg300=0.00 total=42\n",
        )
        .unwrap();
        assert_eq!(p.some.unwrap().avg10, 1.5);
        assert_eq!(p.some.unwrap().total_us, 123456);
        assert_eq!(p.full.unwrap().total_us, 42);
    }

    #[test]
    fn hostile() {
        assert_eq!(parse_pressure("").unwrap(), Pressure::default());
        assert!(parse_pressure("some avg10=x avg60=0 avg300=0 total=0").is_err());
        assert!(parse_pressure("some avg10=NaN avg60=0 avg300=0 total=0").is_err());
        assert!(parse_pressure("some total=5").is_err());
        assert!(parse_pressure("weird avg10=0 avg60=0 avg300=0 total=0").is_err());
        assert!(parse_pressure("some avg10").is_err());
    }
}
