//! Parsing `--duration-ms` values into a [`DurationDist`].

use std::time::Duration;

use swarm::DurationDist;

/// The grammar, for `--help` and error messages.
pub(crate) const DIST_HELP: &str = "`20` (fixed 20 ms), `10..50` (uniform between 10 and 50 ms) \
     or `exp:20` (exponential with a 20 ms mean); milliseconds, decimals allowed";

/// Parses `20`, `10..50` or `exp:20` (milliseconds).
pub(crate) fn parse_duration_dist(s: &str) -> Result<DurationDist, String> {
    let s = s.trim();
    let bad = |why: &str| format!("invalid duration {s:?}: {why}; expected {DIST_HELP}");
    if let Some(mean) = s.strip_prefix("exp:") {
        let mean = millis(mean).map_err(|e| bad(&e))?;
        return Ok(DurationDist::Exponential { mean });
    }
    if let Some((lo, hi)) = s.split_once("..") {
        let min = millis(lo).map_err(|e| bad(&e))?;
        let max = millis(hi).map_err(|e| bad(&e))?;
        if max < min {
            return Err(bad("the range's end is below its start"));
        }
        return Ok(DurationDist::Uniform { min, max });
    }
    Ok(DurationDist::Fixed(millis(s).map_err(|e| bad(&e))?))
}

fn millis(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{:?} is not a number", s.trim()))?;
    if !v.is_finite() || !(0.0..=86_400_000.0).contains(&v) {
        return Err(format!("{v} ms is out of range (0 to one day)"));
    }
    Ok(Duration::from_secs_f64(v / 1000.0))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(
            parse_duration_dist("20").unwrap(),
            DurationDist::Fixed(Duration::from_millis(20))
        );
        assert_eq!(
            parse_duration_dist("10..50").unwrap(),
            DurationDist::Uniform {
                min: Duration::from_millis(10),
                max: Duration::from_millis(50)
            }
        );
        assert_eq!(
            parse_duration_dist("exp:2.5").unwrap(),
            DurationDist::Exponential {
                mean: Duration::from_micros(2500)
            }
        );
    }

    #[test]
    fn refuses_bad_values() {
        for s in ["", "x", "-1", "50..10", "exp:", "1..x", "nan", "inf"] {
            let e = parse_duration_dist(s).unwrap_err();
            assert!(e.contains("invalid duration"), "{s}: {e}");
        }
    }
}
