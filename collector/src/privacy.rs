//! The only code that decides what the collector keeps of a report.
//!
//! Kept: the report's own content as the library's validator accepted it
//! (report id, schema, built-ins, field values) and the ISO week of receipt.
//! Never kept, because nothing here is ever given it: the peer address, any
//! header, the exact time of arrival, the order of arrival. The ingest
//! handler passes the body bytes and nothing else; the clock is read here and
//! rounded to the week at once.

use optin_telemetry::schema::{CountEncoding, Kind, Schema};
use optin_telemetry::validate::{series_index, series_value, AcceptedReport, ReportValue};
use std::fmt;

/// An ISO 8601 week (Monday to Sunday, UTC), e.g. `2026-W48`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Week {
    /// Days since 1970-01-01 of the week's Monday.
    monday: i64,
}

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Week {
    /// The week containing `unix` seconds (UTC).
    pub fn of_unix(unix: i64) -> Week {
        let days = unix.div_euclid(86_400);
        // 1970-01-01 was a Thursday: weekday 0 = Monday.
        let weekday = (days + 3).rem_euclid(7);
        Week { monday: days - weekday }
    }

    fn iso_year_and_number(self) -> (i64, i64) {
        // The ISO year is the year of the week's Thursday.
        let thursday = self.monday + 3;
        let (y, _, _) = civil(thursday);
        let jan1 = days_from_civil(y, 1, 1);
        (y, (thursday - jan1) / 7 + 1)
    }

    /// Parses `YYYY-Www`.
    pub fn parse(s: &str) -> Option<Week> {
        let (y, w) = s.split_once("-W")?;
        if y.len() != 4 || w.len() != 2 {
            return None;
        }
        let (y, w): (i64, i64) = (y.parse().ok()?, w.parse().ok()?);
        // Week 1 is the week with January 4th in it.
        let jan4 = days_from_civil(y, 1, 4);
        let week1 = Week::of_unix(jan4 * 86_400).monday;
        let week = Week { monday: week1 + (w - 1) * 7 };
        (w >= 1 && week.iso_year_and_number() == (y, w)).then_some(week)
    }

    pub fn minus(self, weeks: i64) -> Week {
        Week { monday: self.monday - 7 * weeks }
    }

    /// Unix seconds of the week's Monday 00:00 UTC.
    pub fn start_unix(self) -> i64 {
        self.monday * 86_400
    }
}

impl fmt::Display for Week {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, w) = self.iso_year_and_number();
        write!(f, "{y:04}-W{w:02}")
    }
}

/// One raw report as stored. Built only by [`keep`] (and by the quarantine
/// move, which goes through the same function).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportRow {
    pub report_id: [u8; 16],
    pub week: String,
    pub schema_id: i64,
    pub os_family: String,
    pub os_version: String,
    pub arch: String,
    pub product: String,
    pub product_version: String,
    pub library_version: String,
    /// The schema fields in declared order, comma-separated small integers
    /// (empty where unset): bool 0/1, bucket index, position in the 1-2-5
    /// series, choice index, bit mask of the chosen values. Compact (a few
    /// bytes per report) and decoded only with the schema.
    pub codes: String,
}

/// What is kept of an accepted report received in `week`.
pub fn keep(report: &AcceptedReport, schema_id: i64, week: Week) -> ReportRow {
    let mut report_id = [0u8; 16];
    for (i, byte) in report_id.iter_mut().enumerate() {
        // The validator guarantees 32 lowercase hex digits.
        *byte = u8::from_str_radix(&report.report_id[2 * i..2 * i + 2], 16).unwrap_or(0);
    }
    let b = &report.builtins;
    ReportRow {
        report_id,
        week: week.to_string(),
        schema_id,
        os_family: b.os_family.clone(),
        os_version: b.os_version.clone(),
        arch: b.arch.clone(),
        product: b.product.clone(),
        product_version: b.product_version.clone(),
        library_version: b.library_version.clone(),
        codes: encode_codes(&report.fields),
    }
}

pub fn encode_codes(fields: &[Option<ReportValue>]) -> String {
    let codes: Vec<String> = fields
        .iter()
        .map(|v| match v {
            None => String::new(),
            Some(ReportValue::Bool(b)) => u8::from(*b).to_string(),
            Some(ReportValue::Bucket(i)) | Some(ReportValue::Choice(i)) => i.to_string(),
            Some(ReportValue::Rounded(n)) => series_index(*n).unwrap_or(0).to_string(),
            Some(ReportValue::Choices(set)) => set.iter().fold(0u64, |m, &i| m | (1 << i)).to_string(),
        })
        .collect();
    codes.join(",")
}

/// Inverse of [`encode_codes`]; `None` if the codes do not fit the schema.
pub fn decode_codes(schema: &Schema, codes: &str) -> Option<Vec<Option<ReportValue>>> {
    let parts: Vec<&str> = if schema.fields.is_empty() { vec![] } else { codes.split(',').collect() };
    if parts.len() != schema.fields.len() {
        return None;
    }
    schema.fields.iter().zip(parts).map(|(field, code)| decode_code(&field.kind, code)).collect()
}

/// One field's code from the `codes` column: `Some(None)` when the field was
/// not set, `None` when the code is not one this kind writes.
pub fn decode_code(kind: &Kind, code: &str) -> Option<Option<ReportValue>> {
    if code.is_empty() {
        return Some(None);
    }
    let n: u64 = code.parse().ok()?;
    let v = match kind {
        Kind::Bool => ReportValue::Bool(n == 1),
        Kind::Count { encoding: CountEncoding::Buckets(_) } => ReportValue::Bucket(n as usize),
        Kind::Count { encoding: CountEncoding::Round125 } => ReportValue::Rounded(series_value(u32::try_from(n).ok()?)?),
        Kind::Choice { .. } => ReportValue::Choice(n as usize),
        Kind::Choices { .. } => ReportValue::Choices((0..64).filter(|i| n & (1 << i) != 0).collect()),
    };
    Some(Some(v))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_weeks() {
        let day = |y, m, d| days_from_civil(y, m, d) * 86_400;
        assert_eq!(Week::of_unix(day(2026, 11, 29) + 86_399).to_string(), "2026-W48");
        assert_eq!(Week::of_unix(day(2026, 11, 30)).to_string(), "2026-W49");
        assert_eq!(Week::of_unix(day(2021, 1, 3)).to_string(), "2020-W53");
        assert_eq!(Week::of_unix(day(2024, 12, 30)).to_string(), "2025-W01");
        assert_eq!(Week::of_unix(0).to_string(), "1970-W01");
        for s in ["2026-W48", "2020-W53", "2025-W01", "2015-W53"] {
            assert_eq!(Week::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(Week::parse("2025-W53"), None);
        assert_eq!(Week::parse("2026-W53").unwrap().to_string(), "2026-W53");
        assert_eq!(Week::parse("2026-W00"), None);
        assert_eq!(Week::parse("2026-48"), None);
        assert_eq!(Week::parse("2026-W48").unwrap().minus(48).to_string(), "2025-W52");
        assert_eq!(Week::parse("2026-W48").unwrap().start_unix(), day(2026, 11, 23));
    }
}
