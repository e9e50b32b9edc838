//! Standard 5-field cron schedules as CronJobs use them (minute hour day-of-month month
//! day-of-week; `*`, lists, ranges, steps, month and weekday names, `@hourly`-style macros),
//! evaluated in UTC. Day-of-month and day-of-week combine with OR when both are restricted, as in
//! Vixie cron and robfig/cron.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid schedule {schedule:?}: {reason}")]
pub struct CronError {
    pub schedule: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_star: bool,
    weekdays_star: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn field(
    text: &str,
    min: u32,
    max: u32,
    names: &[&str],
    names_start: u32,
) -> Result<(u64, bool), String> {
    let value = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(i as u32 + names_start);
        }
        s.parse::<u32>().map_err(|_| format!("bad value {s:?}"))
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().map_err(|_| format!("bad step {s:?}"))?),
            None => (part, 1),
        };
        if step == 0 {
            return Err("step of 0".into());
        }
        let (lo, hi) = if range == "*" || range == "?" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            (v, if part.contains('/') { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return Err(format!("{part:?} is outside {min}-{max}"));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, text == "*" || text == "?"))
}

impl Schedule {
    pub fn parse(schedule: &str) -> Result<Schedule, CronError> {
        let err = |reason: String| CronError {
            schedule: schedule.to_string(),
            reason,
        };
        let expanded = match schedule.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        // A `TZ=`/`CRON_TZ=` prefix is rejected by the real API; the sandbox ignores it.
        let fields: Vec<&str> = expanded
            .split_whitespace()
            .filter(|f| !f.starts_with("TZ=") && !f.starts_with("CRON_TZ="))
            .collect();
        if fields.len() != 5 {
            return Err(err(format!("expected 5 fields, found {}", fields.len())));
        }
        let (minutes, _) = field(fields[0], 0, 59, &[], 0).map_err(err)?;
        let (hours, _) = field(fields[1], 0, 23, &[], 0).map_err(err)?;
        let (days, days_star) = field(fields[2], 1, 31, &[], 0).map_err(err)?;
        let (months, _) = field(fields[3], 1, 12, &MONTHS, 1).map_err(err)?;
        // Sunday may be written 7.
        let (mut weekdays, weekdays_star) = field(fields[4], 0, 7, &WEEKDAYS, 0).map_err(err)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & !(1 << 7);
        }
        Ok(Schedule {
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_star,
            weekdays_star,
        })
    }

    /// Whether the schedule fires at this minute (UTC).
    pub fn matches(&self, t: jiff::Timestamp) -> bool {
        let dt = t.to_zoned(jiff::tz::TimeZone::UTC);
        let bit = |set: u64, v: i64| v >= 0 && set & (1 << v) != 0;
        let day_ok = bit(self.days, i64::from(dt.day()));
        let weekday_ok = bit(
            self.weekdays,
            i64::from(dt.weekday().to_sunday_zero_offset()),
        );
        let day = match (self.days_star, self.weekdays_star) {
            (true, true) => true,
            (false, true) => day_ok,
            (true, false) => weekday_ok,
            (false, false) => day_ok || weekday_ok,
        };
        bit(self.minutes, i64::from(dt.minute()))
            && bit(self.hours, i64::from(dt.hour()))
            && bit(self.months, i64::from(dt.month()))
            && day
    }

    /// The latest firing time in `(after, until]`, looking back at most a week of minutes.
    pub fn latest_between(
        &self,
        after: jiff::Timestamp,
        until: jiff::Timestamp,
    ) -> Option<jiff::Timestamp> {
        let mut t =
            jiff::Timestamp::from_second(until.as_second() - until.as_second() % 60).ok()?;
        for _ in 0..(7 * 24 * 60) {
            if t <= after {
                return None;
            }
            if self.matches(t) {
                return Some(t);
            }
            t = jiff::Timestamp::from_second(t.as_second() - 60).ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn fields_lists_ranges_steps_and_names() {
        let s = Schedule::parse("*/15 3 * * mon-fri").expect("parses");
        assert!(s.matches(ts("2025-03-03T03:45:00Z")), "a Monday");
        assert!(!s.matches(ts("2025-03-02T03:45:00Z")), "a Sunday");
        assert!(!s.matches(ts("2025-03-03T03:44:00Z")));
        let daily = Schedule::parse("@daily").expect("parses");
        assert!(daily.matches(ts("2025-01-01T00:00:00Z")));
        assert!(Schedule::parse("61 * * * *").is_err());
        assert!(Schedule::parse("* * *").is_err());
    }

    #[test]
    fn latest_between_finds_the_most_recent_missed_time() {
        let s = Schedule::parse("0 3 * * *").expect("parses");
        let got = s.latest_between(ts("2025-01-01T00:00:00Z"), ts("2025-01-03T12:00:30Z"));
        assert_eq!(got, Some(ts("2025-01-03T03:00:00Z")));
        assert_eq!(
            s.latest_between(ts("2025-01-03T03:00:00Z"), ts("2025-01-03T12:00:00Z")),
            None
        );
    }
}
