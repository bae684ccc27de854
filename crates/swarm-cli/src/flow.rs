//! Flow control on the command line (`swarm run`, `swarm serve`): rate and
//! concurrency limits and fair share, as `SwarmBuilder` has them.
//!
//! A limit names its tasks, then its bound after the last `@`:
//! - `--concurrency-limit each_key@2`: at most 2 running per key;
//! - `--rate-limit key=tenant-a@60/min`: 60 cost units a minute for one key;
//! - `--rate-limit 'kind=job@90000/min,burst=8000'`: a bucket of 8 000.
//!
//! The selector is `each_key`, `key=NAME` or `kind=NAME` (jobs are kind
//! `job`); a rate is `COUNT/PERIOD`, the period `ms`, `s`, `min` or `h`,
//! optionally with a number (`100/10s`). A value that does not parse is
//! refused before anything runs, with the reason and the accepted form.

use std::str::FromStr;
use std::time::Duration;

use swarm::{Rate, Selector, SwarmBuilder};

/// The flow-control flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct FlowArgs {
    /// Rate limit, repeatable: SELECTOR@COUNT/PERIOD[,burst=N], SELECTOR being
    /// each_key, key=NAME or kind=NAME; e.g. each_key@60/min,burst=5. A job's
    /// "cost" is what it charges (default 1).
    #[arg(long = "rate-limit", value_name = "SELECTOR@RATE")]
    pub(crate) rate_limits: Vec<RateLimitArg>,
    /// Concurrency limit, repeatable: SELECTOR@N, e.g. each_key@2 (at most 2
    /// jobs running per key) or key=tenant-a@1.
    #[arg(long = "concurrency-limit", value_name = "SELECTOR@N")]
    pub(crate) concurrency_limits: Vec<ConcurrencyLimitArg>,
    /// Share the agents fairly between job keys (deficit round robin within
    /// each priority) instead of first come, first served.
    #[arg(long)]
    pub(crate) fair_share: bool,
    /// With --fair-share, a key's weight, repeatable: KEY=W (default 1).
    #[arg(long = "key-weight", value_name = "KEY=W", requires = "fair_share")]
    pub(crate) key_weights: Vec<KeyWeightArg>,
    /// With --fair-share, the cost units a key of weight 1 starts per turn.
    #[arg(long, value_name = "UNITS", requires = "fair_share")]
    pub(crate) fair_share_quantum: Option<u32>,
}

impl FlowArgs {
    /// `builder` with these limits and this fair share.
    pub(crate) fn apply(&self, mut builder: SwarmBuilder) -> SwarmBuilder {
        for limit in &self.rate_limits {
            builder = builder.rate_limit(limit.selector.clone(), limit.rate);
        }
        for limit in &self.concurrency_limits {
            builder = builder.concurrency_limit(limit.selector.clone(), limit.max);
        }
        if self.fair_share {
            builder = builder.fair_share(true);
            for w in &self.key_weights {
                builder = builder.key_weight(w.key.as_str(), w.weight);
            }
            if let Some(q) = self.fair_share_quantum {
                builder = builder.fair_share_quantum(q);
            }
        }
        builder
    }
}

/// `--rate-limit`'s value.
#[derive(Debug, Clone)]
pub(crate) struct RateLimitArg {
    selector: Selector,
    rate: Rate,
}

/// `--concurrency-limit`'s value.
#[derive(Debug, Clone)]
pub(crate) struct ConcurrencyLimitArg {
    selector: Selector,
    max: usize,
}

/// `--key-weight`'s value.
#[derive(Debug, Clone)]
pub(crate) struct KeyWeightArg {
    key: String,
    weight: u32,
}

/// Splits `SELECTOR@BOUND` at the last `@` and reads the selector.
fn selector_and_bound(s: &str) -> Result<(Selector, &str), String> {
    let (selector, bound) = s
        .rsplit_once('@')
        .ok_or_else(|| format!("{s:?} has no '@' between the selector and the bound"))?;
    let selector = if selector == "each_key" {
        Selector::each_key()
    } else if let Some(key) = selector.strip_prefix("key=") {
        Selector::key(key)
    } else if let Some(kind) = selector.strip_prefix("kind=") {
        Selector::kind(kind)
    } else {
        return Err(format!(
            "unknown selector {selector:?}: use each_key, key=NAME or kind=NAME"
        ));
    };
    Ok((selector, bound))
}

impl FromStr for RateLimitArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (selector, bound) = selector_and_bound(s)?;
        let (rate, burst) = match bound.split_once(",burst=") {
            Some((rate, burst)) => {
                let burst: u32 = burst
                    .parse()
                    .map_err(|_| format!("burst {burst:?} is not a whole number"))?;
                (rate, Some(burst))
            }
            None => (bound, None),
        };
        let (count, period) = rate.split_once('/').ok_or_else(|| {
            format!("rate {rate:?} is not COUNT/PERIOD (e.g. 60/min, 5/s, 100/10s)")
        })?;
        let count: u32 = count
            .parse()
            .map_err(|_| format!("count {count:?} is not a whole number"))?;
        let per = period_of(period)?;
        let mut rate = Rate::new(count, per);
        if let Some(burst) = burst {
            rate = rate.burst(burst);
        }
        Ok(RateLimitArg { selector, rate })
    }
}

/// `min`, `10s`, `500ms`, ...
fn period_of(s: &str) -> Result<Duration, String> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = s.split_at(digits);
    let n: u64 = if n.is_empty() {
        1
    } else {
        n.parse()
            .map_err(|_| format!("period {s:?}: {n:?} is too large"))?
    };
    let unit = match unit {
        "ms" => Duration::from_millis(1),
        "s" => Duration::from_secs(1),
        "min" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        other => {
            return Err(format!(
                "period {s:?}: unknown unit {other:?} (use ms, s, min or h)"
            ));
        }
    };
    u32::try_from(n)
        .ok()
        .and_then(|n| unit.checked_mul(n))
        .ok_or_else(|| format!("period {s:?} is too long"))
}

impl FromStr for ConcurrencyLimitArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (selector, bound) = selector_and_bound(s)?;
        let max: usize = bound
            .parse()
            .map_err(|_| format!("{bound:?} is not a whole number of running jobs"))?;
        Ok(ConcurrencyLimitArg { selector, max })
    }
}

impl FromStr for KeyWeightArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (key, weight) = s
            .rsplit_once('=')
            .ok_or_else(|| format!("{s:?} is not KEY=WEIGHT"))?;
        let weight: u32 = weight
            .parse()
            .map_err(|_| format!("weight {weight:?} is not a whole number"))?;
        Ok(KeyWeightArg {
            key: key.to_owned(),
            weight,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn limits_parse_in_the_documented_forms() {
        let r: RateLimitArg = "each_key@60/min,burst=5".parse().unwrap();
        assert_eq!(r.selector, Selector::each_key());
        assert_eq!(r.rate, Rate::per_minute(60).burst(5));
        let r: RateLimitArg = "key=a@b@100/10s".parse().unwrap();
        assert_eq!(r.selector, Selector::key("a@b"));
        assert_eq!(r.rate, Rate::new(100, Duration::from_secs(10)));
        let r: RateLimitArg = "kind=job@3/500ms".parse().unwrap();
        assert_eq!(r.rate, Rate::new(3, Duration::from_millis(500)));
        let c: ConcurrencyLimitArg = "key=tenant-a@1".parse().unwrap();
        assert_eq!((c.selector, c.max), (Selector::key("tenant-a"), 1));
        let w: KeyWeightArg = "big=3".parse().unwrap();
        assert_eq!((w.key.as_str(), w.weight), ("big", 3));
    }

    #[test]
    fn a_malformed_limit_says_what_is_wrong() {
        for (input, says) in [
            ("each_key", "no '@'"),
            ("tenant@2/s", "unknown selector"),
            ("each_key@2", "COUNT/PERIOD"),
            ("each_key@x/s", "count"),
            ("each_key@2/week", "unknown unit"),
            ("each_key@2/s,burst=-1", "burst"),
            ("each_key@2/99999999999h", "too"),
        ] {
            let err = input.parse::<RateLimitArg>().unwrap_err();
            assert!(err.contains(says), "{input}: {err}");
        }
        let err = "each_key@lots".parse::<ConcurrencyLimitArg>().unwrap_err();
        assert!(err.contains("whole number"), "{err}");
        let err = "big".parse::<KeyWeightArg>().unwrap_err();
        assert!(err.contains("KEY=WEIGHT"), "{err}");
    }
}
