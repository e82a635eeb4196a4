//! [`Stamp`]: the one type of every moment on a job's record.
//!
//! A stamp is a count of milliseconds since the Unix epoch (UTC): what Redis's
//! `TIME` and the Lua scripts compare. It is written as RFC 3339 with
//! milliseconds (`2026-12-07T09:00:00.123Z`), what people and scripts read, and
//! read back from either form: RFC 3339 (any offset) or a decimal count of
//! milliseconds (what a Lua script that stamps a record with Redis's clock
//! writes, e.g. the wake's `admitted_at`). Both forms round-trip exactly.

use std::{fmt, str::FromStr};

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A moment, in milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp(i64);

impl Stamp {
    /// The moment `ms` milliseconds after the epoch.
    pub const fn from_ms(ms: i64) -> Self {
        Self(ms)
    }

    /// Now, by this host's clock (see [`crate::clock`]).
    pub fn now() -> Self {
        Self(crate::clock::now_ms())
    }

    /// Milliseconds since the epoch.
    pub const fn ms(self) -> i64 {
        self.0
    }

    /// As a `chrono` time (the epoch itself for a count chrono cannot hold).
    pub fn to_utc(self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_millis(self.0).unwrap_or_default()
    }
}

impl From<chrono::DateTime<chrono::Utc>> for Stamp {
    fn from(t: chrono::DateTime<chrono::Utc>) -> Self {
        Self(t.timestamp_millis())
    }
}

impl fmt::Display for Stamp {
    /// RFC 3339, UTC, with milliseconds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match rfc3339_millis(self.0) {
            Some(text) => f.write_str(std::str::from_utf8(&text).expect("ASCII digits")),
            None => f.write_str(
                &self
                    .to_utc()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            ),
        }
    }
}

/// `ms` as RFC 3339, UTC, with milliseconds (`2026-12-07T09:00:00.123Z`),
/// written digit by digit: what `chrono` writes for it, without its
/// formatting machinery or a string of its own (a batch enqueue writes two
/// stamps per job: issue 34). `None` outside the years 0 to 9999, which
/// `chrono` writes with a sign (or not at all).
fn rfc3339_millis(ms: i64) -> Option<[u8; 24]> {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, of_day / 3600);
    put(14, 2, of_day / 60 % 60);
    put(17, 2, of_day % 60);
    put(20, 3, milli);
    Some(out)
}

/// Why a text is not a [`Stamp`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a time (RFC 3339, or milliseconds since the epoch): {0:?}")]
pub struct NotAStamp(String);

impl FromStr for Stamp {
    type Err = NotAStamp;

    /// RFC 3339 (any offset), or a decimal count of milliseconds.
    fn from_str(s: &str) -> Result<Self, NotAStamp> {
        let s = s.trim();
        if let Ok(ms) = s.parse::<i64>() {
            return Ok(Self(ms));
        }
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| Self(t.timestamp_millis()))
            .map_err(|_| NotAStamp(s.chars().take(40).collect()))
    }
}

impl Serialize for Stamp {
    /// Its text ([`fmt::Display`]), from the stack when it can (issue 34).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match rfc3339_millis(self.0) {
            Some(text) => s.serialize_str(std::str::from_utf8(&text).expect("ASCII digits")),
            None => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Stamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Stamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a time: RFC 3339, or milliseconds since the epoch")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Stamp, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Stamp, E> {
                Ok(Stamp(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Stamp, E> {
                i64::try_from(v).map(Stamp).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// An optional stamp stored as a string: `None` is the empty string, in
/// Redis and in JSON alike (what scripts reading `--json` have always seen).
/// Unlike an optional name, a text that is not a time is an error (the record
/// is unreadable, naming the field), never quietly nothing.
pub mod or_empty {
    use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

    use super::Stamp;

    /// `None` as the empty string, else RFC 3339.
    pub fn serialize<S: Serializer>(v: &Option<Stamp>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => v.serialize(s),
            None => s.serialize_str(""),
        }
    }

    /// The empty string (or null) as `None`; a time in either form, else an error.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Stamp>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Text<'a> {
            Ms(i64),
            Str(std::borrow::Cow<'a, str>),
        }
        match Option::<Text>::deserialize(d)? {
            None => Ok(None),
            Some(Text::Ms(ms)) => Ok(Some(Stamp::from_ms(ms))),
            Some(Text::Str(s)) if s.trim().is_empty() => Ok(None),
            Some(Text::Str(s)) => s.parse().map(Some).map_err(de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_written_forms_read_back_to_the_same_moment() {
        let t = Stamp::from_ms(1_796_630_400_123);
        assert_eq!(t.to_string(), "2026-12-07T08:00:00.123Z");
        assert_eq!(t.to_string().parse::<Stamp>(), Ok(t));
        assert_eq!("1796630400123".parse::<Stamp>(), Ok(t));
        assert_eq!("2026-12-07T09:00:00.123+01:00".parse::<Stamp>(), Ok(t));
    }

    #[test]
    fn stamps_are_written_as_chrono_writes_them() {
        let chrono_text = |ms: i64| {
            Stamp::from_ms(ms)
                .to_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        // Year 0's first and year 9999's last millisecond, and beyond them
        // (written with a sign, or the epoch for what chrono cannot hold).
        let edges = [
            -62_167_219_200_000,
            253_402_300_799_999,
            -62_167_219_200_001,
            253_402_300_800_000,
            i64::MIN,
            i64::MAX,
            0,
            -1,
            951_782_400_000, // 2000-02-29
            4_107_542_399_999,
        ];
        // A walk over the years (leap days, month ends, negative counts).
        let mut ms = -62_167_219_200_000i64;
        let mut walk = Vec::new();
        while ms < 253_402_400_000_000 {
            walk.push(ms);
            ms += 7_919_999_997; // ~92 days less 3 ms: every month, hour, ms
        }
        for ms in edges.into_iter().chain(walk) {
            assert_eq!(Stamp::from_ms(ms).to_string(), chrono_text(ms), "{ms}");
            // Serialized, the same text.
            let json = serde_json::to_string(&Stamp::from_ms(ms)).unwrap();
            assert_eq!(json, format!("\"{}\"", chrono_text(ms)), "{ms}");
        }
    }

    #[test]
    fn a_text_that_is_not_a_time_is_refused() {
        assert!("yesterday".parse::<Stamp>().is_err());
        assert!("".parse::<Stamp>().is_err());
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Holder {
        #[serde(with = "or_empty", default)]
        at: Option<Stamp>,
    }

    #[test]
    fn none_is_the_empty_string_and_garbage_is_an_error() {
        let none = Holder { at: None };
        assert_eq!(serde_json::to_string(&none).unwrap(), r#"{"at":""}"#);
        assert_eq!(
            serde_json::from_str::<Holder>(r#"{"at":""}"#).unwrap(),
            none
        );
        assert_eq!(
            serde_json::from_str::<Holder>(r#"{"at":null}"#).unwrap(),
            none
        );
        let some = Holder {
            at: Some(Stamp::from_ms(42)),
        };
        assert_eq!(
            serde_json::to_string(&some).unwrap(),
            r#"{"at":"1970-01-01T00:00:00.042Z"}"#
        );
        assert_eq!(
            serde_json::from_str::<Holder>(r#"{"at":42}"#).unwrap(),
            some
        );
        assert_eq!(
            serde_json::from_str::<Holder>(r#"{"at":"42"}"#).unwrap(),
            some
        );
        assert!(serde_json::from_str::<Holder>(r#"{"at":"soon"}"#).is_err());
    }
}
