//! Parsers of flag values (`10s`, `ingest=90,get=10`, `10s@1000`, `0,2-3`,
//! `zipf:1.2`, `http://host:port`), pure and tested here.

use crate::config::{Op, Stage, SubscribeTo, Target};
use crate::rng::KeyDist;
use std::time::Duration;

pub fn check_rate(r: f64) -> Result<(), String> {
    if !(r.is_finite() && (0.0..=1e9).contains(&r)) {
        return Err(format!("rate must be in 0..=1e9 events/s, got {r}"));
    }
    Ok(())
}

/// `10s`, `500ms`, `250us`, `2m`, `1h`, `1.5s`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bad = || format!("bad duration {s:?} (examples: 10s, 500ms, 2m, 1m30s, 1.5s)");
    let secs = if let Ok(v) = s.parse::<f64>() {
        // A bare number is seconds (humantime wants a unit).
        v
    } else {
        match humantime::parse_duration(s) {
            Ok(d) => d.as_secs_f64(),
            // humantime takes whole numbers only: a fraction with one unit
            // (`1.5s`, `0.5m`) is that fraction of one of the unit.
            Err(_) => {
                let split = s
                    .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                    .ok_or_else(bad)?;
                let (num, unit) = s.split_at(split);
                let v: f64 = num.parse().map_err(|_| bad())?;
                let unit =
                    humantime::parse_duration(&format!("1{}", unit.trim())).map_err(|_| bad())?;
                v * unit.as_secs_f64()
            }
        }
    };
    if !secs.is_finite() || !(0.0..=86_400.0 * 7.0).contains(&secs) {
        return Err(format!("duration {s:?} out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `uniform`, `zipf`, `zipf:1.2`.
pub fn parse_dist(s: &str) -> Result<KeyDist, String> {
    match s {
        "uniform" => Ok(KeyDist::Uniform),
        "zipf" => Ok(KeyDist::Zipf(1.0)),
        _ => {
            let exp = s
                .strip_prefix("zipf:")
                .and_then(|e| e.parse::<f64>().ok())
                .ok_or_else(|| format!("bad --dist {s:?} (uniform, zipf, zipf:1.2)"))?;
            if !(exp > 0.0 && exp <= 10.0) {
                return Err(format!("zipf exponent must be in (0, 10], got {exp}"));
            }
            Ok(KeyDist::Zipf(exp))
        }
    }
}

/// `ingest=90,get=10` → weights indexed by `Op::index`.
pub fn parse_mix(s: &str) -> Result<[u32; 4], String> {
    let mut w = [0u32; 4];
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (name, weight) = part
            .split_once('=')
            .ok_or_else(|| format!("bad --mix entry {part:?} (expected op=weight)"))?;
        let op = Op::ALL
            .into_iter()
            .find(|o| o.name() == name.trim())
            .ok_or_else(|| format!("unknown op {name:?} in --mix (ingest, batch, get, list)"))?;
        let weight: u32 = weight
            .trim()
            .parse()
            .map_err(|_| format!("bad weight in --mix entry {part:?}"))?;
        if weight > 1_000_000 {
            return Err(format!("weight too large in --mix entry {part:?}"));
        }
        w[op.index()] = weight;
    }
    if w.iter().all(|&x| x == 0) {
        return Err("--mix has no op with a weight above 0".into());
    }
    Ok(w)
}

/// `10s@1000,10s@5000`.
pub fn parse_stages(s: &str) -> Result<Vec<Stage>, String> {
    let mut stages = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (d, r) = part
            .split_once('@')
            .ok_or_else(|| format!("bad stage {part:?} (expected duration@rate, e.g. 10s@1000)"))?;
        let rate: f64 = r
            .trim()
            .parse()
            .map_err(|_| format!("bad rate in stage {part:?}"))?;
        check_rate(rate)?;
        stages.push(Stage {
            duration: parse_duration(d)?,
            rate,
        });
    }
    if stages.is_empty() || stages.len() > 1000 {
        return Err("--stages needs 1 to 1000 stages".into());
    }
    Ok(stages)
}

/// `1`, `0,2`, `2-3`.
pub fn parse_cpus(s: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let bad = || format!("bad --cpus entry {part:?} (examples: 1, 0,2, 2-3)");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (
                    a.trim().parse().map_err(|_| bad())?,
                    b.trim().parse().map_err(|_| bad())?,
                );
                if a > b || b > 4096 {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.trim().parse().map_err(|_| bad())?),
        }
    }
    if cpus.is_empty() {
        return Err("--cpus lists no CPU".into());
    }
    Ok(cpus)
}

pub fn parse_subscribe(s: &str) -> Result<SubscribeTo, String> {
    match s {
        "*" | "all" => Ok(SubscribeTo::All),
        "prefix" => Ok(SubscribeTo::Prefix),
        p if p.ends_with('*') && !p.contains('"') && p.len() <= 1024 => {
            Ok(SubscribeTo::Pattern(p.to_string()))
        }
        _ => s
            .strip_prefix("ids:")
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|&n| n > 0 && n <= 100_000)
            .map(SubscribeTo::Ids)
            .ok_or_else(|| {
                format!("bad --subscribe {s:?} (*, prefix, ids:N, or a pattern like lt-00*)")
            }),
    }
}

/// `http://host[:port][/base]`.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("unsupported URL {url:?}: only http:// is supported (no TLS)"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(format!("URL {url:?} has no host"));
    }
    let (host, port) = if let Some(h) = authority.strip_prefix('[') {
        // [::1]:3000
        let (h, p) = h
            .split_once(']')
            .ok_or_else(|| format!("bad IPv6 host in {url:?}"))?;
        (h.to_string(), p.strip_prefix(':').unwrap_or("80"))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p),
            None => (authority.to_string(), "80"),
        }
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("bad port in URL {url:?}"))?;
    if path.contains(['?', '#', ' ']) {
        return Err(format!("URL {url:?}: no query or fragment, please"));
    }
    Ok(Target {
        host,
        port,
        authority: authority.to_string(),
        base_path: path.trim_end_matches('/').to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("0.5m").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250µs").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("2min").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration(" 1m30s ").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert!(parse_duration("8days").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1.2.3s").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn mixes_and_stages() {
        assert_eq!(parse_mix("ingest=90,get=10").unwrap(), [90, 0, 10, 0]);
        assert!(parse_mix("ingest=0").is_err());
        assert!(parse_mix("write=1").is_err());
        let st = parse_stages("10s@1000,500ms@5000").unwrap();
        assert_eq!(st.len(), 2);
        assert_eq!(st[1].duration, Duration::from_millis(500));
        assert_eq!(st[1].rate, 5000.0);
        assert!(parse_stages("10s").is_err());
    }

    #[test]
    fn urls() {
        let t = parse_url("http://localhost:3000").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("localhost", 3000));
        assert_eq!(t.authority, "localhost:3000");
        assert_eq!(t.base_path, "");
        let t = parse_url("http://127.0.0.1/flux/").unwrap();
        assert_eq!((t.port, t.base_path.as_str()), (80, "/flux"));
        let t = parse_url("http://[::1]:8080").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 8080));
        assert!(parse_url("https://x").is_err());
    }

    #[test]
    fn cpus_and_subscribe() {
        assert_eq!(parse_cpus("1").unwrap(), vec![1]);
        assert_eq!(parse_cpus("0,2-3").unwrap(), vec![0, 2, 3]);
        assert!(parse_cpus("3-1").is_err());
        assert_eq!(parse_subscribe("*").unwrap(), SubscribeTo::All);
        assert_eq!(parse_subscribe("ids:5").unwrap(), SubscribeTo::Ids(5));
        assert!(parse_subscribe("ids:0").is_err());
        assert_eq!(
            parse_subscribe("lt-00*").unwrap(),
            SubscribeTo::Pattern("lt-00*".into())
        );
        assert!(parse_subscribe("lt-00").is_err());
    }
}
