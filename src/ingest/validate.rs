//! Pure field checks for ingested events.
//!
//! Everything here works on already-decoded values (`&str`, `u64`), so the rules can be
//! tested without JSON and reused by any transport. Errors are `&'static str` so that a
//! rejected event costs no allocation, and the messages are written to be returned to the
//! client verbatim in a 400 body.

/// Longest accepted `eventId`, in bytes of UTF-8.
pub const MAX_EVENT_ID_BYTES: usize = 128;
/// Longest accepted `stream`, in bytes.
pub const MAX_STREAM_BYTES: usize = 255;
/// Longest accepted `source`, in bytes of UTF-8.
pub const MAX_SOURCE_BYTES: usize = 255;
/// Longest accepted `payload.entity_id`, in bytes of decoded UTF-8.
pub const MAX_ENTITY_ID_BYTES: usize = 1024;
/// Longest accepted property key, in bytes of decoded UTF-8.
pub const MAX_PROPERTY_KEY_BYTES: usize = 1024;

/// Returned for every malformed stream name: one message that states the whole rule is
/// more useful to a client than a hint about the first offending byte.
pub const STREAM_RULE: &str =
    "stream must be 1-255 bytes of [a-z0-9_-] segments separated by single dots";

/// `true` when `s` is 1-255 bytes of `[a-z0-9_-]+` segments joined by single dots.
///
/// Stream names become routing keys and directory names downstream, so the alphabet is
/// deliberately small: no upper case (no case-folding ambiguity), no `/` or spaces, and no
/// empty segments.
pub fn valid_stream(s: &str) -> bool {
    let bytes = s.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_STREAM_BYTES {
        return false;
    }
    // Starting as if a dot had just been seen rejects a leading dot with the same check
    // that rejects `..`; ending on a dot is checked after the loop.
    let mut after_dot = true;
    for &b in bytes {
        match b {
            b'.' if after_dot => return false,
            b'.' => after_dot = true,
            b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' => after_dot = false,
            _ => return false,
        }
    }
    !after_dot
}

/// Checks a present, non-empty `eventId` (the decoder treats `""` as absent before calling
/// this, so an empty string is accepted here).
pub fn valid_event_id(s: &str) -> Result<(), &'static str> {
    if s.len() > MAX_EVENT_ID_BYTES {
        return Err("eventId must be at most 128 bytes");
    }
    Ok(())
}

/// Checks `source`: non-empty, at most 255 bytes.
pub fn valid_source(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("source must not be empty");
    }
    if s.len() > MAX_SOURCE_BYTES {
        return Err("source must be at most 255 bytes");
    }
    Ok(())
}

/// `true` for the C0 and C1 control characters (U+0000-U+001F, U+007F-U+009F).
///
/// Spelled out rather than `char::is_control` so the accepted set is visible here and
/// cannot drift with Unicode versions.
pub fn is_control_char(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

/// Checks `payload.entity_id`: non-empty, at most 1024 bytes, no control characters.
///
/// Entity ids end up in logs, URLs and terminal output; control characters there are
/// either a client bug or an injection attempt, so they are refused outright. Every other
/// printable character, including `/`, is allowed.
pub fn valid_entity_id(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("payload.entity_id must not be empty");
    }
    if s.len() > MAX_ENTITY_ID_BYTES {
        return Err("payload.entity_id must be at most 1024 bytes");
    }
    if s.chars().any(is_control_char) {
        return Err("payload.entity_id must not contain control characters");
    }
    Ok(())
}

/// Checks a decoded property key: at most 1024 bytes (the empty key is allowed, as in
/// JSON).
pub fn valid_property_key(s: &str) -> Result<(), &'static str> {
    if s.len() > MAX_PROPERTY_KEY_BYTES {
        return Err("property keys must be at most 1024 bytes");
    }
    Ok(())
}

/// Checks a `timestamp` that was a non-negative JSON integer: it must be > 0.
///
/// Zero is refused because it is what a client sends when it forgot to set the clock
/// field; a missing timestamp should be omitted (or `null`) instead.
pub fn valid_timestamp_ms(ms: u64) -> Result<u64, &'static str> {
    if ms == 0 {
        return Err("timestamp must be a positive integer (milliseconds since the Unix epoch)");
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_accepts_documented_examples() {
        for s in [
            "sensors",
            "a.b.c",
            "data123",
            "zone-1.temp",
            "my_stream",
            "sensors.zone-1",
        ] {
            assert!(valid_stream(s), "{s:?} should be valid");
        }
    }

    #[test]
    fn stream_rejects_documented_examples() {
        for s in [
            "",
            "Sensors",
            "has space",
            "a/b",
            ".a",
            "a.",
            "a..b",
            ".",
            "..",
            "é",
            "a.B",
            "a\n",
        ] {
            assert!(!valid_stream(s), "{s:?} should be invalid");
        }
    }

    #[test]
    fn stream_length_limit_is_255_bytes() {
        assert!(valid_stream(&"a".repeat(255)));
        assert!(!valid_stream(&"a".repeat(256)));
        // Dots count towards the limit too.
        let dotted = "a.".repeat(127) + "a"; // 255 bytes
        assert_eq!(dotted.len(), 255);
        assert!(valid_stream(&dotted));
        assert!(!valid_stream(&(dotted + "a")));
    }

    #[test]
    fn event_id_length() {
        assert!(valid_event_id("").is_ok());
        assert!(valid_event_id(&"x".repeat(128)).is_ok());
        assert!(valid_event_id(&"x".repeat(129)).is_err());
        // Limit is in bytes, not characters: 43 three-byte chars = 129 bytes.
        assert!(valid_event_id(&"€".repeat(43)).is_err());
        assert!(valid_event_id(&"€".repeat(42)).is_ok());
    }

    #[test]
    fn source_rules() {
        assert!(valid_source("agent-7").is_ok());
        assert!(valid_source("Agent 7 / rack B").is_ok());
        assert_eq!(valid_source(""), Err("source must not be empty"));
        assert!(valid_source(&"s".repeat(255)).is_ok());
        assert_eq!(
            valid_source(&"s".repeat(256)),
            Err("source must be at most 255 bytes")
        );
    }

    #[test]
    fn entity_id_rules() {
        for ok in [
            "temp-01",
            "a/b/c",
            "émoji 🙂",
            "x",
            " spaced ",
            "\u{a0}nbsp",
        ] {
            assert!(valid_entity_id(ok).is_ok(), "{ok:?} should be valid");
        }
        assert_eq!(
            valid_entity_id(""),
            Err("payload.entity_id must not be empty")
        );
        assert!(valid_entity_id(&"e".repeat(1024)).is_ok());
        assert_eq!(
            valid_entity_id(&"e".repeat(1025)),
            Err("payload.entity_id must be at most 1024 bytes")
        );
        for bad in [
            "a\u{0}b",
            "tab\t",
            "nl\n",
            "del\u{7f}",
            "c1\u{80}",
            "c1\u{9f}end",
        ] {
            assert_eq!(
                valid_entity_id(bad),
                Err("payload.entity_id must not contain control characters"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn control_char_boundaries() {
        assert!(is_control_char('\u{0}'));
        assert!(is_control_char('\u{1f}'));
        assert!(!is_control_char(' '));
        assert!(!is_control_char('~'));
        assert!(is_control_char('\u{7f}'));
        assert!(is_control_char('\u{9f}'));
        assert!(!is_control_char('\u{a0}'));
    }

    #[test]
    fn property_key_length() {
        assert!(valid_property_key("").is_ok());
        assert!(valid_property_key(&"k".repeat(1024)).is_ok());
        assert!(valid_property_key(&"k".repeat(1025)).is_err());
    }

    #[test]
    fn timestamp_must_be_positive() {
        assert!(valid_timestamp_ms(0).is_err());
        assert_eq!(valid_timestamp_ms(1), Ok(1));
        assert_eq!(valid_timestamp_ms(1_707_900_000_000), Ok(1_707_900_000_000));
        assert_eq!(valid_timestamp_ms(u64::MAX), Ok(u64::MAX));
    }
}
