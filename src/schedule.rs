//! When reports are due: pure arithmetic over unix seconds, no clock, no I/O,
//! so every rule below is unit-tested with an explicit "now".
//!
//! Rules (the README states the same):
//! - **Two distinct reports never leave less than 7 days apart by the wall
//!   clock.** A report "leaves" at its first attempt, whatever its outcome;
//!   the caller persists that moment (`last_left`, kept outside the schedule
//!   so that no consent change, refusal or crash forgets it) before any byte
//!   is sent, and every first attempt checks `now >= last_left + WEEK` again.
//!   A clock set back is below that floor, so it never sends; a clock set far
//!   forward moves the floor with it, and after the clock is corrected nothing
//!   is sent until the corrected clock passes that floor (sending twice is the
//!   one thing this must never do).
//! - **Each report's moment is drawn afresh.** The first report after consent
//!   is due at a moment uniform over the next 7 days (but not before the
//!   floor: then the later-report rule applies); every later report is due
//!   7 days plus a fresh delay uniform over 0–6 hours after the previous one
//!   left. The time of week drifts, so it links nothing.
//! - Catch-up: a due time that passed while the host was off (the first tick
//!   comes more than `GRACE` late) is delayed by a random up-to-an-hour, once
//!   per report. Never before the floor.
//! - Failures retry with capped exponential backoff and full jitter, honouring
//!   Retry-After, at most `MAX_ATTEMPTS` per report, and never once the next
//!   report would be due (7 days after it left). Retries reuse the report id,
//!   which is kept in the schedule (`Pending`) and so survives the process.
//! - A send marks itself in flight with a lease. A lease that expires without
//!   a result (the sender died) counts as a failed attempt of the same report.
//! - A due time further ahead than any rule sets one (the clock went back)
//!   is drawn again when that cannot break the floor.

use crate::report::ReportIdentity;

pub const WEEK: i64 = 7 * 24 * 3600;
/// Later reports: 7 days plus a delay uniform over [0, LATER_JITTER].
pub(crate) const LATER_JITTER: i64 = 6 * 3600;
pub const GRACE: i64 = 15 * 60;
pub const CATCHUP_MAX_DELAY: i64 = 3600;
pub const MAX_ATTEMPTS: u32 = 5;
pub const BACKOFF_BASE: i64 = 60;
pub const BACKOFF_CAP: i64 = 6 * 3600;
/// Longer than the transport's overall timeout plus the record step.
pub const LEASE: i64 = 180;
/// No rule sets a due time further ahead than this from the moment it is
/// set (as long as the clock only moves forward).
pub(crate) const MAX_AHEAD: i64 = WEEK + LATER_JITTER + CATCHUP_MAX_DELAY;

/// Times this library accepts, in unix seconds: 1970-01-01 to 9999-12-31.
/// Anything outside is a broken clock or a bad argument; rejecting it keeps
/// every sum below far from overflow.
pub(crate) const MIN_TIME: i64 = 0;
pub(crate) const MAX_TIME: i64 = 253_402_300_799;

pub fn valid_time(t: i64) -> bool {
    (MIN_TIME..=MAX_TIME).contains(&t)
}

/// Source of uniform random numbers in `[0, n)`.
pub trait Rng {
    fn below(&mut self, n: u64) -> u64;
}

/// A send in progress (marked before the first byte, cleared when its
/// outcome is recorded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InFlight {
    pub token: String,
    pub since: i64,
    pub lease_until: i64,
}

/// The report that left and may still be retried: its identity (retries
/// carry the same id and draw the same rounded values, also from another
/// process after a crash) and when it left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub report: ReportIdentity,
    pub left: i64,
    /// The exact bytes of its first attempt, saved before they were sent:
    /// every retry sends them again (also from another process after a
    /// crash), so the collector never sees two bodies under one id. None
    /// until the sender built them.
    pub body: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Earliest moment the next attempt may start.
    pub due: i64,
    /// Failed attempts of the pending report.
    pub attempts: u32,
    /// Whether the catch-up delay was already drawn for the next attempt's report.
    pub catchup_drawn: bool,
    pub pending: Option<Pending>,
    pub in_flight: Option<InFlight>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum TickDecision {
    Wait,
    /// Start a send (the caller calls `start` and persists it first).
    Send,
}

/// What a tick found about an earlier send whose lease ran out.
#[derive(Debug, PartialEq, Eq)]
pub struct Interrupted {
    pub token: String,
    pub since: i64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// The server refused this report (4xx other than 408/429): not retried.
    Refused,
    /// Worth retrying; `retry_after` in seconds if the server asked for it.
    Failed { retry_after: Option<i64> },
}

/// The earliest moment a new report may leave.
pub fn floor(last_left: Option<i64>) -> Option<i64> {
    last_left.map(|l| l.saturating_add(WEEK))
}

fn later_due(left: i64, rng: &mut impl Rng) -> i64 {
    left + WEEK + rng.below(LATER_JITTER as u64 + 1) as i64
}

/// Due time of a new report drawn at `now`: uniform over the next 7 days,
/// or, if that is before the floor, the later-report rule from `last_left`.
fn first_due(now: i64, last_left: Option<i64>, rng: &mut impl Rng) -> i64 {
    let due = now + rng.below(WEEK as u64) as i64;
    match last_left {
        Some(l) if due < l + WEEK => later_due(l, rng),
        _ => due,
    }
}

impl Schedule {
    /// A fresh schedule at consent (or whenever none is saved).
    pub fn draw(now: i64, last_left: Option<i64>, rng: &mut impl Rng) -> Schedule {
        Schedule { due: first_due(now, last_left, rng), attempts: 0, catchup_drawn: false, pending: None, in_flight: None }
    }

    /// The pending report is over (delivered, refused, given up): the next
    /// one is due 7 days plus a fresh random delay after it left.
    fn finish(&mut self, left: i64, rng: &mut impl Rng) {
        let left = self.pending.take().map_or(left, |p| p.left);
        self.attempts = 0;
        self.catchup_drawn = false;
        self.due = later_due(left, rng);
    }

    /// Decides what a tick at `now` does. Mutates the schedule (the caller
    /// persists it when it changed). Returns an interrupted send, if any.
    pub fn tick(&mut self, now: i64, last_left: Option<i64>, rng: &mut impl Rng) -> (TickDecision, Option<Interrupted>) {
        let mut interrupted = None;
        if let Some(f) = &self.in_flight {
            if now >= f.since && now < f.lease_until {
                return (TickDecision::Wait, None);
            }
            let f = self.in_flight.take().expect("checked above");
            interrupted = Some(Interrupted { token: f.token, since: f.since });
            self.record(f.since, Outcome::Failed { retry_after: None }, rng);
        }
        if self.due - now > MAX_AHEAD {
            // The clock went back further than any due time we set. A
            // pending report is given up (its retries would wait that long);
            // a new draw is made only where it cannot cross the floor.
            if let Some(p) = &self.pending {
                let left = p.left;
                self.finish(left, rng);
            }
            if last_left.is_none_or(|l| l <= now) {
                self.due = first_due(now, last_left, rng);
                self.catchup_drawn = false;
            }
            return (TickDecision::Wait, interrupted);
        }
        if now < self.due {
            return (TickDecision::Wait, interrupted);
        }
        if self.pending.is_none() {
            if let Some(f) = floor(last_left).filter(|&f| now < f) {
                // Only a new report is bound by the floor; retries are the
                // same report. Due times are never set below it, so this is
                // the guard of last resort.
                self.due = later_due(f - WEEK, rng);
                return (TickDecision::Wait, interrupted);
            }
        }
        if now - self.due > GRACE && !self.catchup_drawn {
            self.due = now + 1 + rng.below(CATCHUP_MAX_DELAY as u64) as i64;
            self.catchup_drawn = true;
            return (TickDecision::Wait, interrupted);
        }
        (TickDecision::Send, interrupted)
    }

    /// Marks a send in flight. For a new report `report` becomes its
    /// identity and `now` the moment it left, returned so that the caller
    /// saves it as `last_left` together with this schedule. A retry keeps the
    /// pending identity.
    pub fn start(&mut self, token: String, now: i64, report: &ReportIdentity) -> Option<i64> {
        let first = self.pending.is_none();
        if first {
            self.pending = Some(Pending { report: report.clone(), left: now, body: None });
        }
        self.in_flight = Some(InFlight { token, since: now, lease_until: now + LEASE });
        first.then_some(now)
    }

    /// Records the outcome of the attempt that started at `since`.
    pub fn record(&mut self, since: i64, outcome: Outcome, rng: &mut impl Rng) {
        match outcome {
            Outcome::Delivered | Outcome::Refused => self.finish(since, rng),
            Outcome::Failed { retry_after } => {
                self.attempts += 1;
                let left = self.pending.as_ref().map_or(since, |p| p.left);
                if self.attempts >= MAX_ATTEMPTS {
                    return self.finish(left, rng);
                }
                let ceiling = (BACKOFF_BASE << (self.attempts - 1).min(20)).min(BACKOFF_CAP);
                let jittered = 1 + rng.below(ceiling as u64) as i64;
                let delay = jittered.max(retry_after.unwrap_or(0).max(0));
                let due = since.saturating_add(delay);
                if due >= left + WEEK {
                    self.finish(left, rng);
                } else {
                    self.due = due;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An identity with a given id (the draw key plays no part here).
    fn rid(id: &str) -> ReportIdentity {
        ReportIdentity { id: id.into(), draw_key: [0; 32] }
    }

    /// Deterministic generator (splitmix64) for repeatable tests.
    pub(crate) struct Seq(pub u64);
    impl Rng for Seq {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
            (z ^ (z >> 31)) % n
        }
    }

    const T0: i64 = 1_700_000_000;

    /// One installation as the client drives it: the schedule plus the
    /// persisted moment the last report left.
    struct Inst {
        s: Schedule,
        last_left: Option<i64>,
        /// First attempts (report id, clock reading) in order.
        left: Vec<(String, i64)>,
        n: u32,
    }

    impl Inst {
        fn new(now: i64, rng: &mut Seq) -> Inst {
            Inst { s: Schedule::draw(now, None, rng), last_left: None, left: vec![], n: 0 }
        }
        /// Ticks once; a send gets `outcome`. Returns whether something was sent.
        fn tick(&mut self, now: i64, outcome: impl FnOnce() -> Outcome, rng: &mut Seq) -> bool {
            let (d, _) = self.s.tick(now, self.last_left, rng);
            if d != TickDecision::Send {
                return false;
            }
            self.n += 1;
            if let Some(l) = self.s.start(format!("t{}", self.n), now, &rid(&format!("r{}", self.n))) {
                self.last_left = Some(l);
                self.left.push((self.s.pending.as_ref().unwrap().report.id.clone(), now));
            }
            self.s.in_flight = None;
            self.s.record(now, outcome(), rng);
            true
        }
        fn run(&mut self, from: i64, to: i64, step: i64, rng: &mut Seq) -> Vec<i64> {
            let mut sent = vec![];
            let mut t = from;
            while t < to {
                if self.tick(t, || Outcome::Delivered, rng) {
                    sent.push(t);
                }
                t += step;
            }
            sent
        }
        fn regrant(&mut self, now: i64, rng: &mut Seq) {
            self.s = Schedule::draw(now, self.last_left, rng);
        }
        fn assert_floor(&self) {
            for w in self.left.windows(2) {
                assert!(w[1].1 - w[0].1 >= WEEK, "reports {:?} and {:?} left {} s apart", w[0], w[1], w[1].1 - w[0].1);
            }
        }
    }

    #[test]
    fn time_range() {
        assert!(valid_time(0) && valid_time(MAX_TIME) && valid_time(1_800_000_000));
        assert!(!valid_time(-1) && !valid_time(MAX_TIME + 1) && !valid_time(i64::MIN) && !valid_time(i64::MAX));
        // The largest sums the schedule forms stay representable.
        let mut rng = Seq(0);
        let mut s = Schedule::draw(MAX_TIME, Some(MAX_TIME), &mut rng);
        let _ = s.tick(MAX_TIME, Some(MAX_TIME), &mut rng);
        s.start("t".into(), MAX_TIME, &rid("r"));
        s.record(MAX_TIME, Outcome::Failed { retry_after: Some(i64::MAX) }, &mut rng);
        assert!(s.pending.is_none());
    }

    #[test]
    fn first_due_is_uniform_over_a_week() {
        let mut rng = Seq(1);
        let mut per_day = [0u32; 7];
        for _ in 0..7000 {
            let s = Schedule::draw(T0, None, &mut rng);
            assert!((T0..T0 + WEEK).contains(&s.due));
            per_day[((s.due - T0) / 86400) as usize] += 1;
        }
        assert!(per_day.iter().all(|&n| (800..1200).contains(&n)), "{per_day:?}");
    }

    #[test]
    fn a_year_of_minute_ticks_sends_weekly_with_a_drifting_time_of_week() {
        let mut rng = Seq(2);
        let mut i = Inst::new(T0, &mut rng);
        let sent = i.run(T0, T0 + 365 * 86400, 60, &mut rng);
        assert!((50..=52).contains(&sent.len()), "{} reports", sent.len());
        for w in sent.windows(2) {
            let gap = w[1] - w[0];
            assert!((WEEK..=WEEK + LATER_JITTER + 60).contains(&gap), "gap {gap}");
        }
        // The moment within the week is not one per installation.
        let phases: std::collections::BTreeSet<i64> = sent.iter().map(|t| (t - sent[0]).rem_euclid(WEEK) / 600).collect();
        assert!(phases.len() > 30, "only {} distinct 10-minute phases", phases.len());
        i.assert_floor();
    }

    #[test]
    fn clock_set_back_three_weeks_for_one_tick_never_resends() {
        // Issue: the slot was re-based and sent again ten minutes later.
        let mut rng = Seq(3);
        let mut i = Inst::new(T0, &mut rng);
        let due = i.s.due;
        assert_eq!(i.run(due, due + 60, 60, &mut rng), vec![due]);
        assert!(!i.tick(due + 300 - 3 * WEEK, || Outcome::Delivered, &mut rng));
        let again = i.run(due + 600, due + 3 * WEEK, 60, &mut rng);
        assert!(again[0] >= due + WEEK, "second report {} s after the first", again[0] - due);
        i.assert_floor();
    }

    #[test]
    fn a_refused_report_counts_as_left_across_a_regrant() {
        let mut rng = Seq(4);
        for _ in 0..50 {
            let mut i = Inst::new(T0, &mut rng);
            let due = i.s.due;
            assert!(i.tick(due, || Outcome::Refused, &mut rng));
            // consent no -> yes an hour later
            i.regrant(due + 3600, &mut rng);
            assert!(i.s.due >= due + WEEK);
            let next = i.run(due + 3600, due + 3 * WEEK, 300, &mut rng);
            assert!(next[0] >= due + WEEK);
            i.assert_floor();
        }
    }

    #[test]
    fn a_send_killed_before_its_outcome_counts_as_left_and_keeps_its_id() {
        let mut rng = Seq(5);
        let mut s = Schedule::draw(T0, None, &mut rng);
        let due = s.due;
        assert_eq!(s.tick(due, None, &mut rng).0, TickDecision::Send);
        assert_eq!(s.start("dead".into(), due, &rid("id1")), Some(due));
        let last_left = Some(due);
        assert_eq!(s.tick(due + 10, last_left, &mut rng), (TickDecision::Wait, None), "lease still held");
        let (d, int) = s.tick(due + LEASE, last_left, &mut rng);
        assert_eq!(int, Some(Interrupted { token: "dead".into(), since: due }));
        assert_eq!((s.attempts, s.in_flight.is_none()), (1, true));
        let mut now = due + LEASE;
        if d == TickDecision::Wait {
            now = s.due;
            assert_eq!(s.tick(now, last_left, &mut rng).0, TickDecision::Send);
        }
        assert_eq!(s.start("retry".into(), now, &rid("id2")), None, "a retry is not a new report");
        assert_eq!(s.pending.as_ref().unwrap().report.id, "id1");
    }

    #[test]
    fn catch_up_at_the_end_of_a_week_still_keeps_seven_days_to_the_next() {
        // Issue: a catch-up at a slot's end, then the next slot: 51 minutes apart.
        let mut rng = Seq(6);
        let mut i = Inst::new(T0, &mut rng);
        let late = i.s.due + WEEK - 600; // host comes back just before the old slot end
        let sent = i.run(late, late + 3 * WEEK, 60, &mut rng);
        assert!(sent[0] > late && sent[0] <= late + CATCHUP_MAX_DELAY, "catch-up after a random delay");
        assert!(sent[1] - sent[0] >= WEEK);
        i.assert_floor();
    }

    #[test]
    fn host_off_for_weeks_catches_up_once_without_burst() {
        let mut rng = Seq(7);
        let mut i = Inst::new(T0, &mut rng);
        let far = i.s.due + 10 * WEEK + 5 * 86400;
        let sent = i.run(far, far + 3 * WEEK, 60, &mut rng);
        assert_eq!(sent.len(), 3, "{sent:?}");
        assert!(sent[0] > far && sent[0] <= far + CATCHUP_MAX_DELAY);
        i.assert_floor();
    }

    #[test]
    fn clock_set_far_forward_then_corrected_waits_for_the_floor() {
        let mut rng = Seq(8);
        let mut i = Inst::new(T0, &mut rng);
        let ahead = T0 + 365 * 86400;
        let sent = i.run(ahead, ahead + 2 * 3600, 60, &mut rng);
        assert_eq!(sent.len(), 1, "a catch-up under the wrong clock");
        // Corrected: nothing until the corrected clock passes the floor.
        let back = i.run(T0 + 3600, T0 + 3 * WEEK, 600, &mut rng);
        assert!(back.is_empty(), "{back:?}");
        let after = i.run(sent[0] + WEEK, sent[0] + 2 * WEEK, 600, &mut rng);
        assert_eq!(after.len(), 1);
        i.assert_floor();
    }

    #[test]
    fn a_due_time_left_far_ahead_by_a_clock_set_back_is_drawn_again() {
        // Nothing ever left: a draw under a clock a year ahead would otherwise
        // wait a year once the clock is corrected.
        let mut rng = Seq(9);
        let mut i = Inst::new(T0 + 365 * 86400, &mut rng);
        assert!(!i.tick(T0, || Outcome::Delivered, &mut rng));
        assert!((T0..T0 + WEEK).contains(&i.s.due));
    }

    #[test]
    fn retries_back_off_honour_retry_after_and_stop() {
        let mut rng = Seq(10);
        let mut s = Schedule::draw(T0, None, &mut rng);
        let t = s.due;
        assert_eq!(s.tick(t, None, &mut rng).0, TickDecision::Send);
        s.start("a".into(), t, &rid("id"));
        s.in_flight = None;
        s.record(t, Outcome::Failed { retry_after: Some(7200) }, &mut rng);
        assert_eq!((s.attempts, s.due), (1, t + 7200), "Retry-After beats a shorter backoff");
        let mut now = s.due;
        for attempt in 2..=MAX_ATTEMPTS {
            assert_eq!(s.tick(now, Some(t), &mut rng).0, TickDecision::Send);
            assert_eq!(s.start("b".into(), now, &rid("other")), None);
            s.in_flight = None;
            s.record(now, Outcome::Failed { retry_after: None }, &mut rng);
            let ceiling = (BACKOFF_BASE << (attempt - 1)).min(BACKOFF_CAP);
            if attempt < MAX_ATTEMPTS {
                assert!(s.due > now && s.due <= now + ceiling, "attempt {attempt}");
                assert_eq!(s.pending.as_ref().unwrap().report.id, "id");
                now = s.due;
            }
        }
        assert!(s.pending.is_none(), "gives up after {MAX_ATTEMPTS}");
        assert!((t + WEEK..=t + WEEK + LATER_JITTER).contains(&s.due));
    }

    #[test]
    fn retry_after_past_the_next_report_gives_the_report_up() {
        let mut rng = Seq(11);
        let mut s = Schedule::draw(T0, None, &mut rng);
        let t = s.due;
        s.start("a".into(), t, &rid("id"));
        s.in_flight = None;
        s.record(t, Outcome::Failed { retry_after: Some(WEEK) }, &mut rng);
        assert!(s.pending.is_none() && s.attempts == 0 && s.due >= t + WEEK);
    }

    #[test]
    fn seeded_random_walk_never_sends_two_reports_within_seven_days() {
        // Clock jumps both ways, consent flapping, every kind of answer and
        // crashes mid-send, against the one invariant: first attempts of
        // distinct reports are >= 7 days apart by the clock's reading.
        let mut rng = Seq(12);
        for run in 0..200 {
            let mut i = Inst::new(T0, &mut rng);
            let mut now = T0;
            for _ in 0..2000 {
                now = match rng.below(100) {
                    0..=1 => now - rng.below(60 * 86400) as i64,
                    2..=3 => now + rng.below(60 * 86400) as i64,
                    _ => now + rng.below(6 * 3600) as i64,
                }
                .clamp(MIN_TIME, MAX_TIME);
                match rng.below(50) {
                    0 => i.regrant(now, &mut rng),
                    1 => {
                        // killed mid-send: the in-flight marker stays behind
                        if i.s.tick(now, i.last_left, &mut rng).0 == TickDecision::Send {
                            i.n += 1;
                            if let Some(l) = i.s.start(format!("k{}", i.n), now, &rid(&format!("r{}", i.n))) {
                                i.last_left = Some(l);
                                i.left.push((format!("r{}", i.n), now));
                            }
                        }
                    }
                    _ => {
                        let o = rng.below(4);
                        let ra = rng.below(3 * 86400) as i64;
                        i.tick(
                            now,
                            || match o {
                                0 => Outcome::Delivered,
                                1 => Outcome::Refused,
                                2 => Outcome::Failed { retry_after: None },
                                _ => Outcome::Failed { retry_after: Some(ra) },
                            },
                            &mut rng,
                        );
                    }
                }
            }
            assert!(!i.left.is_empty() || run > 0);
            i.assert_floor();
        }
    }
}
