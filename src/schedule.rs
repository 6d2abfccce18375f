//! When reports are due: pure arithmetic over unix seconds, no clock, no I/O,
//! so every rule below is unit-tested with an explicit "now".
//!
//! Rules:
//! - On the first tick with valid consent the installation draws a random
//!   anchor, uniform over the next 7 days. Time is then cut into 7-day slots
//!   starting at the anchor; a report is due at the start of each slot.
//! - At most one report per slot: a slot is closed by a success, by a report
//!   the server refused (4xx), or by running out of attempts.
//! - A slot whose due time passed while the host was not running (the first
//!   tick comes more than `GRACE` late) is caught up inside that slot after a
//!   random delay of up to an hour, once per slot. Slots missed entirely are
//!   skipped: they never pile up into a burst.
//! - Clock jumps: forward behaves like missed slots (one catch-up at most).
//!   Backward so far that the due time is two weeks or more ahead (further
//!   than any rule sets it: a re-grant soon after a report can put it almost
//!   two weeks out) re-bases: the slot holding "now" counts as closed and the
//!   next report is due at the next slot start. A smaller step back waits for
//!   the due time already set. Either way a clock set back never causes a
//!   send before a slot boundary, nor the same slot twice.
//! - Failures retry with capped exponential backoff and full jitter, honouring
//!   Retry-After, at most `MAX_ATTEMPTS` per slot and never past the slot's end.
//! - A send marks itself in flight with a lease. A lease that expires without
//!   a result (the sender died) counts as a failed attempt.

pub const WEEK: i64 = 7 * 24 * 3600;
pub const GRACE: i64 = 15 * 60;
pub const CATCHUP_MAX_DELAY: i64 = 3600;
pub const MAX_ATTEMPTS: u32 = 5;
pub const BACKOFF_BASE: i64 = 60;
pub const BACKOFF_CAP: i64 = 6 * 3600;
/// Longer than the transport's overall timeout plus the record step.
pub const LEASE: i64 = 180;

/// Times this library accepts, in unix seconds: 1970-01-01 to 9999-12-31.
/// Anything outside is a broken clock or a bad argument; rejecting it keeps
/// every sum below far from overflow.
pub(crate) const MIN_TIME: i64 = 0;
pub(crate) const MAX_TIME: i64 = 253_402_300_799;

pub fn valid_time(t: i64) -> bool {
    (MIN_TIME..=MAX_TIME).contains(&t)
}

/// Slot indices reachable from valid times (with margin for `k + 1`).
pub fn valid_slot(k: i64) -> bool {
    k.abs() <= MAX_TIME / WEEK + 2
}

/// Source of uniform random numbers in `[0, n)`.
pub trait Rng {
    fn below(&mut self, n: u64) -> u64;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InFlight {
    pub token: String,
    pub since: i64,
    pub lease_until: i64,
    pub slot: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub anchor: i64,
    /// Earliest moment the next attempt may start.
    pub due: i64,
    /// Highest slot index that is closed.
    pub done_slot: Option<i64>,
    /// Failed attempts in the current slot.
    pub attempts: u32,
    /// Slot whose catch-up delay was already drawn (drawn once per slot).
    pub catchup_slot: Option<i64>,
    pub in_flight: Option<InFlight>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum TickDecision {
    Wait,
    /// Start a send for this slot (the caller marks it in flight).
    Send { slot: i64 },
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

impl Schedule {
    /// A fresh schedule. If a report went out less than a week ago (consent was
    /// withdrawn and given again), the anchor moves on by whole weeks so that
    /// reports stay at least 7 days apart.
    pub fn draw(now: i64, last_sent: Option<i64>, rng: &mut impl Rng) -> Schedule {
        let mut anchor = now + rng.below(WEEK as u64) as i64;
        if let Some(sent) = last_sent.filter(|&s| s <= now) {
            while anchor < sent + WEEK {
                anchor += WEEK;
            }
        }
        Schedule { anchor, due: anchor, done_slot: None, attempts: 0, catchup_slot: None, in_flight: None }
    }

    pub fn slot_of(&self, t: i64) -> i64 {
        (t - self.anchor).div_euclid(WEEK)
    }

    pub fn slot_start(&self, k: i64) -> i64 {
        self.anchor + k * WEEK
    }

    fn close_slot(&mut self, k: i64) {
        self.done_slot = Some(self.done_slot.map_or(k, |d| d.max(k)));
        self.attempts = 0;
        self.catchup_slot = None;
        self.due = self.slot_start(k + 1).max(self.anchor);
    }

    /// Decides what a tick at `now` does. Mutates the schedule (the caller
    /// persists it when it changed). Returns an interrupted send, if any.
    pub fn tick(&mut self, now: i64, rng: &mut impl Rng) -> (TickDecision, Option<Interrupted>) {
        let mut interrupted = None;
        if let Some(f) = &self.in_flight {
            if now >= f.since && now < f.lease_until {
                return (TickDecision::Wait, None);
            }
            let f = self.in_flight.take().expect("checked above");
            interrupted = Some(Interrupted { token: f.token, since: f.since });
            self.record(f.since, f.slot, Outcome::Failed { retry_after: None }, rng);
        }
        if self.due - now >= 2 * WEEK {
            // The clock went back further than any due time we could have set.
            let k = self.slot_of(now);
            self.done_slot = Some(k);
            self.attempts = 0;
            self.catchup_slot = None;
            self.due = self.slot_start(k + 1);
            return (TickDecision::Wait, interrupted);
        }
        if now < self.due {
            return (TickDecision::Wait, interrupted);
        }
        let k = self.slot_of(now);
        if self.done_slot.is_some_and(|d| d >= k) {
            self.due = self.slot_start(self.done_slot.unwrap() + 1);
            return (TickDecision::Wait, interrupted);
        }
        if k > self.slot_of(self.due) {
            // A new slot while the due time sat in an older one: the older
            // slots were missed and are skipped, not sent in a burst.
            self.attempts = 0;
            self.due = self.slot_start(k);
        }
        if now - self.due > GRACE && self.catchup_slot != Some(k) {
            let slot_end = self.slot_start(k + 1);
            let delay = 1 + rng.below(CATCHUP_MAX_DELAY as u64) as i64;
            self.due = (now + delay).min(slot_end - 1);
            self.catchup_slot = Some(k);
            return (TickDecision::Wait, interrupted);
        }
        (TickDecision::Send { slot: k }, interrupted)
    }

    pub fn start(&mut self, token: String, now: i64, slot: i64) {
        self.in_flight = Some(InFlight { token, since: now, lease_until: now + LEASE, slot });
    }

    /// Records the outcome of an attempt that started at `since` for `slot`.
    pub fn record(&mut self, since: i64, slot: i64, outcome: Outcome, rng: &mut impl Rng) {
        match outcome {
            Outcome::Delivered | Outcome::Refused => self.close_slot(slot),
            Outcome::Failed { retry_after } => {
                self.attempts += 1;
                if self.attempts >= MAX_ATTEMPTS {
                    return self.close_slot(slot);
                }
                let ceiling = (BACKOFF_BASE << (self.attempts - 1).min(20)).min(BACKOFF_CAP);
                let jittered = 1 + rng.below(ceiling as u64) as i64;
                let delay = jittered.max(retry_after.unwrap_or(0).max(0));
                let due = since.saturating_add(delay);
                if due >= self.slot_start(slot + 1) {
                    self.close_slot(slot);
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

    /// Deterministic generator (splitmix64) for repeatable tests.
    struct Seq(u64);
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

    fn deliver_all(s: &mut Schedule, from: i64, to: i64, step: i64, rng: &mut Seq) -> Vec<i64> {
        let mut sent = vec![];
        let mut t = from;
        while t < to {
            if let (TickDecision::Send { slot }, _) = s.tick(t, rng) {
                s.start("x".into(), t, slot);
                s.in_flight = None;
                s.record(t, slot, Outcome::Delivered, rng);
                sent.push(t);
            }
            t += step;
        }
        sent
    }

    #[test]
    fn time_range() {
        assert!(valid_time(0) && valid_time(MAX_TIME) && valid_time(1_800_000_000));
        assert!(!valid_time(-1) && !valid_time(MAX_TIME + 1) && !valid_time(i64::MIN) && !valid_time(i64::MAX));
        // The largest sums the schedule forms stay representable.
        let mut rng = Seq(0);
        let mut s = Schedule::draw(MAX_TIME, Some(MAX_TIME), &mut rng);
        let (_, _) = s.tick(MAX_TIME, &mut rng);
        s.record(MAX_TIME, s.slot_of(MAX_TIME), Outcome::Failed { retry_after: Some(i64::MAX) }, &mut rng);
        assert!(valid_slot(s.slot_of(MAX_TIME)) && valid_slot(s.done_slot.unwrap()));
    }

    #[test]
    fn first_due_is_within_a_week() {
        let mut rng = Seq(1);
        for _ in 0..1000 {
            let s = Schedule::draw(T0, None, &mut rng);
            assert!((T0..T0 + WEEK).contains(&s.due));
        }
    }

    #[test]
    fn a_year_of_minute_ticks_sends_once_per_slot_at_the_phase() {
        let mut rng = Seq(2);
        let mut s = Schedule::draw(T0, None, &mut rng);
        let sent = deliver_all(&mut s, T0, T0 + 365 * 86400, 60, &mut rng);
        assert_eq!(sent.len() as i64, (T0 + 365 * 86400 - s.anchor + WEEK - 1) / WEEK);
        for (i, t) in sent.iter().enumerate() {
            assert!(*t >= s.slot_start(i as i64) && *t < s.slot_start(i as i64) + 60, "report {i} not at its phase");
        }
    }

    #[test]
    fn host_off_at_due_time_catches_up_once_with_small_delay() {
        let mut rng = Seq(3);
        let mut s = Schedule::draw(T0, None, &mut rng);
        let late = s.anchor + 3 * 3600; // switched on three hours after the due time
        assert_eq!(s.tick(late, &mut rng).0, TickDecision::Wait);
        assert!(s.due > late && s.due <= late + CATCHUP_MAX_DELAY);
        assert_eq!(s.tick(s.due, &mut rng).0, TickDecision::Send { slot: 0 });
        // Ticking late again in the same slot does not delay a second time.
        let due = s.due;
        assert_eq!(s.tick(due + 7200, &mut rng).0, TickDecision::Send { slot: 0 });
    }

    #[test]
    fn forward_jump_skips_missed_slots_without_burst() {
        let mut rng = Seq(4);
        let mut s = Schedule::draw(T0, None, &mut rng);
        let far = s.anchor + 10 * WEEK + 5 * 86400;
        let sent = deliver_all(&mut s, far, far + 3 * WEEK, 60, &mut rng);
        // The window touches slots 10 (caught up), 11, 12 and 13.
        assert_eq!(sent.len(), 4, "one catch-up in the current slot, then one per slot");
        assert!(sent[0] > far && sent[0] <= far + CATCHUP_MAX_DELAY, "catch-up after a random delay");
        assert!(sent[0] < s.slot_start(11), "catch-up stays in slot 10");
        assert!(sent.windows(2).all(|w| w[1] - w[0] >= 2 * 86400 - CATCHUP_MAX_DELAY));
    }

    #[test]
    fn backward_jump_never_sends_before_a_slot_boundary() {
        let mut rng = Seq(5);
        let mut s = Schedule::draw(T0, None, &mut rng);
        let sent = deliver_all(&mut s, T0, T0 + 5 * WEEK, 60, &mut rng);
        let last = *sent.last().unwrap();
        // Small step back: wait for the due time already set.
        let back = last - 3600;
        assert_eq!(s.tick(back, &mut rng).0, TickDecision::Wait);
        // A year back: re-base; nothing until the next slot start after "now".
        let year_back = last - 365 * 86400;
        assert_eq!(s.tick(year_back, &mut rng).0, TickDecision::Wait);
        assert_eq!(s.due, s.slot_start(s.slot_of(year_back) + 1));
        assert!(s.due > year_back && s.due <= year_back + WEEK);
        let sent = deliver_all(&mut s, year_back, year_back + 2 * WEEK, 60, &mut rng);
        assert_eq!(sent.len(), 2);
    }

    #[test]
    fn retries_back_off_honour_retry_after_and_stop() {
        let mut rng = Seq(6);
        let mut s = Schedule::draw(T0, None, &mut rng);
        let t = s.anchor;
        assert_eq!(s.tick(t, &mut rng).0, TickDecision::Send { slot: 0 });
        s.record(t, 0, Outcome::Failed { retry_after: Some(7200) }, &mut rng);
        assert_eq!((s.attempts, s.due), (1, t + 7200), "Retry-After beats a shorter backoff");
        let mut now = s.due;
        for attempt in 2..=MAX_ATTEMPTS {
            assert_eq!(s.tick(now, &mut rng).0, TickDecision::Send { slot: 0 });
            s.record(now, 0, Outcome::Failed { retry_after: None }, &mut rng);
            let ceiling = (BACKOFF_BASE << (attempt - 1)).min(BACKOFF_CAP);
            if attempt < MAX_ATTEMPTS {
                assert!(s.due > now && s.due <= now + ceiling, "attempt {attempt}");
                now = s.due;
            }
        }
        assert_eq!((s.done_slot, s.due), (Some(0), s.slot_start(1)), "gives up the slot after {MAX_ATTEMPTS}");
    }

    #[test]
    fn retry_after_past_the_slot_end_closes_the_slot() {
        let mut rng = Seq(7);
        let mut s = Schedule::draw(T0, None, &mut rng);
        s.record(s.anchor, 0, Outcome::Failed { retry_after: Some(WEEK) }, &mut rng);
        assert_eq!((s.done_slot, s.due), (Some(0), s.slot_start(1)));
    }

    #[test]
    fn refused_closes_the_slot() {
        let mut rng = Seq(8);
        let mut s = Schedule::draw(T0, None, &mut rng);
        s.record(s.anchor, 0, Outcome::Refused, &mut rng);
        assert_eq!((s.done_slot, s.attempts, s.due), (Some(0), 0, s.slot_start(1)));
    }

    #[test]
    fn expired_lease_counts_as_a_failed_attempt() {
        let mut rng = Seq(9);
        let mut s = Schedule::draw(T0, None, &mut rng);
        let t = s.anchor;
        s.start("dead".into(), t, 0);
        assert_eq!(s.tick(t + 10, &mut rng), (TickDecision::Wait, None), "lease still held");
        let (d, int) = s.tick(t + LEASE, &mut rng);
        assert_eq!(int, Some(Interrupted { token: "dead".into(), since: t }));
        assert_eq!(s.attempts, 1);
        assert!(s.in_flight.is_none());
        assert!(matches!(d, TickDecision::Wait | TickDecision::Send { slot: 0 }));
    }

    #[test]
    fn a_short_step_back_or_a_regrant_never_resends_within_a_week() {
        let mut rng = Seq(11);
        let mut s = Schedule::draw(T0, None, &mut rng);
        let a = s.anchor;
        let sent = deliver_all(&mut s, a, a + 60, 60, &mut rng);
        assert_eq!(sent, vec![a]);
        // Three days back: wait for the next slot, do not send slot 0 again.
        let back = deliver_all(&mut s, a - 3 * 86400, a + WEEK, 60, &mut rng);
        assert!(back.is_empty(), "{back:?}");
        // Consent withdrawn and given again a day after a report.
        for _ in 0..50 {
            let mut r = Schedule::draw(T0 + 86400, Some(T0), &mut rng);
            let sent = deliver_all(&mut r, T0 + 86400, T0 + 3 * WEEK, 600, &mut rng);
            assert!(sent[0] >= T0 + WEEK, "{} s after the last report", sent[0] - T0);
        }
    }

    #[test]
    fn regranting_soon_after_a_report_keeps_seven_days() {
        let mut rng = Seq(10);
        for _ in 0..200 {
            let s = Schedule::draw(T0, Some(T0 - 86400), &mut rng);
            assert!(s.due >= T0 - 86400 + WEEK && s.due < T0 - 86400 + 2 * WEEK);
        }
    }
}
