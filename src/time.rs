//! Wall-clock time and its two text forms: RFC 3339 with milliseconds for
//! `lastUpdated`/`timestamp` (`2026-02-14T12:00:00.000Z`) and the IMF-fixdate of the
//! HTTP `Date` header. Both are written into caller buffers without allocating.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
#[inline]
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe as i64 + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since the epoch of a civil date (inverse of `civil_from_days`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400) as u64;
    let m = m as u64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as u64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe as i64 - 719_468
}

#[inline]
fn push2(out: &mut Vec<u8>, v: u32) {
    out.push(b'0' + (v / 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

/// Appends `YYYY-MM-DDTHH:MM:SS.mmmZ` (24 bytes for years 0..9999).
pub fn write_rfc3339_ms(out: &mut Vec<u8>, ms: u64) {
    let secs = ms / 1000;
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let sod = (secs % 86_400) as u32;
    let y = y.clamp(0, 9999) as u32;
    push2(out, y / 100);
    push2(out, y % 100);
    out.push(b'-');
    push2(out, mo);
    out.push(b'-');
    push2(out, d);
    out.push(b'T');
    push2(out, sod / 3600);
    out.push(b':');
    push2(out, sod / 60 % 60);
    out.push(b':');
    push2(out, sod % 60);
    out.push(b'.');
    let milli = (ms % 1000) as u32;
    out.push(b'0' + (milli / 100) as u8);
    push2(out, milli % 100);
    out.push(b'Z');
}

/// Parses RFC 3339 (`2026-02-14T12:00:00Z`, fractional seconds and `+hh:mm` offsets
/// allowed) into Unix milliseconds. Used for query parameters such as `since`.
pub fn parse_rfc3339_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(r)?;
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut milli = 0u64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                milli = milli * 10 + u64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..3 {
            milli *= 10;
        }
    }
    let offset_s: i64 = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = i64::from(num(i + 1..i + 3)?);
            let om = i64::from(num(i + 4..i + 6)?);
            let o = oh * 3600 + om * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(y), mo, d);
    let secs = days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(sec) - offset_s;
    if secs < 0 {
        return None;
    }
    Some(secs as u64 * 1000 + milli)
}

const WEEKDAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Writes the IMF-fixdate of `secs` (`Sun, 06 Nov 1994 08:49:37 GMT`, 29 bytes).
pub fn write_http_date(out: &mut [u8; 29], secs: u64) {
    let days = (secs / 86_400) as i64;
    let (y, mo, d) = civil_from_days(days);
    let sod = (secs % 86_400) as u32;
    let mut v = Vec::with_capacity(29);
    v.extend_from_slice(WEEKDAYS[(days.rem_euclid(7)) as usize]);
    v.extend_from_slice(b", ");
    push2(&mut v, d);
    v.push(b' ');
    v.extend_from_slice(MONTHS[(mo - 1) as usize]);
    v.push(b' ');
    let y = y.clamp(0, 9999) as u32;
    push2(&mut v, y / 100);
    push2(&mut v, y % 100);
    v.push(b' ');
    push2(&mut v, sod / 3600);
    v.push(b':');
    push2(&mut v, sod / 60 % 60);
    v.push(b':');
    push2(&mut v, sod % 60);
    v.extend_from_slice(b" GMT");
    out.copy_from_slice(&v);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(ms: u64) -> String {
        let mut v = Vec::new();
        write_rfc3339_ms(&mut v, ms);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(fmt(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(fmt(1_707_912_000_000), "2024-02-14T12:00:00.000Z");
        assert_eq!(fmt(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(fmt(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn rfc3339_round_trip() {
        let mut ms = 0u64;
        while ms < 5_000_000_000_000 {
            assert_eq!(parse_rfc3339_ms(&fmt(ms)), Some(ms), "{}", fmt(ms));
            ms += 7_919_993_317;
        }
    }

    #[test]
    fn rfc3339_parse_variants() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_rfc3339_ms("1970-01-01T01:00:01+01:00"), Some(1000));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01.123456Z"), Some(1123));
        for bad in [
            "",
            "yesterday",
            "1970-01-01",
            "1970-13-01T00:00:00Z",
            "1970-01-01T00:00:00",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn http_date_known_value() {
        let mut d = [0u8; 29];
        write_http_date(&mut d, 784_111_777);
        assert_eq!(&d, b"Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
