//! Cron schedules: five POSIX fields (as jiff-cron reads them) or an ISO 8601 repeating
//! interval, read from a spec and written back as in it.

use std::fmt;

use super::{Schedule, read};

impl fmt::Display for Schedule {
    /// As written in a spec: the cron expression, or `R[n]/<start>/<ISO 8601 duration>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cron(expr) => f.write_str(expr),
            Self::Every {
                start,
                every,
                repetitions,
            } => {
                f.write_str("R")?;
                if let Some(n) = repetitions {
                    write!(f, "{n}")?;
                }
                match jiff::SignedDuration::try_from(*every) {
                    Ok(d) => write!(f, "/{start}/{d}"),
                    Err(_) => write!(f, "/{start}/PT{}S", every.as_secs()),
                }
            }
        }
    }
}

/// A cron expression (five fields) or an ISO 8601 repeating interval.
pub(super) fn schedule(text: &str) -> Result<Schedule, String> {
    if let Some(rest) = text.strip_prefix('R') {
        return repeating_interval(text, rest);
    }
    let fields: Vec<&str> = text.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "{text:?} is not a cron expression (five fields: minute hour day-of-month month day-of-week) nor an ISO 8601 interval (R/<start>/<duration>)"
        ));
    }
    cron_schedule(&fields).map_err(|e| format!("{text:?} is not a valid cron expression: {e}"))?;
    Ok(Schedule::Cron(fields.join(" ")))
}

/// The five POSIX fields as a schedule (seconds 0, every year; days of the week by name, so
/// POSIX's 0-7 mean what they mean there).
pub(crate) fn cron_schedule(fields: &[&str]) -> Result<jiff_cron::Schedule, String> {
    let [minute, hour, day, month, weekday] = fields else {
        return Err("five fields are needed".into());
    };
    let weekday = posix_weekdays(weekday)?;
    format!("0 {minute} {hour} {day} {month} {weekday} *")
        .parse()
        .map_err(|e: jiff_cron::error::Error| e.to_string())
}

/// POSIX day-of-week numbers (0 and 7 are Sunday) as names.
pub(super) fn posix_weekdays(field: &str) -> Result<String, String> {
    const NAMES: [&str; 8] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let name = |n: &str| -> Result<String, String> {
        match n.parse::<usize>() {
            Ok(i) if i < NAMES.len() => Ok(NAMES[i].to_owned()),
            Ok(i) => Err(format!("day of week {i} is out of range (0 to 7)")),
            Err(_) => Ok(n.to_owned()),
        }
    };
    field
        .split(',')
        .map(|part| {
            let (range, step) = match part.split_once('/') {
                Some((range, step)) => (range, Some(step)),
                None => (part, None),
            };
            let range = match range.split_once('-') {
                Some((a, b)) => format!("{}-{}", name(a)?, name(b)?),
                None if range == "*" => range.to_owned(),
                None => name(range)?,
            };
            Ok(match step {
                Some(step) => format!("{range}/{step}"),
                None => range,
            })
        })
        .collect::<Result<Vec<_>, String>>()
        .map(|parts| parts.join(","))
}

/// `R[n]/<start>/<duration>`.
fn repeating_interval(text: &str, rest: &str) -> Result<Schedule, String> {
    let bad = |why: String| {
        format!("{text:?} is not an ISO 8601 repeating interval (R[n]/<start>/<duration>): {why}")
    };
    let mut parts = rest.splitn(3, '/');
    let (Some(count), Some(start), Some(every)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("three parts are needed".into()));
    };
    let repetitions = match count {
        "" => None,
        n => Some(
            n.parse::<u64>()
                .map_err(|_| bad(format!("{n:?} is not a count")))?,
        ),
    };
    let start: jiff::Timestamp = start
        .parse()
        .map_err(|e| bad(format!("start {start:?}: {e}")))?;
    let every = read::iso_duration(every).map_err(bad)?;
    if every.is_zero() {
        return Err(bad("the interval is zero".into()));
    }
    Ok(Schedule::Every {
        start,
        every,
        repetitions,
    })
}
