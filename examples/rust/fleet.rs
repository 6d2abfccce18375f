//! Fleet simulation for issue 10: 1,000,000 installations driven by the real
//! schedule code (`optin_telemetry::schedule`), no network, over 12 weeks.
//!
//! Half are always-on servers, half office desktops that are on 08:00–18:00
//! on weekdays (one time zone, UTC here). All consent on the same Monday
//! morning after an update, at a moment uniform over 08:00–10:00, and tick
//! every minute while on. Every attempt is delivered.
//!
//! Also simulates the naive rule "send at start-up (the consent), then every
//! 7 days at the first tick at or after the due time" for comparison.
//!
//! Output (CSV on stdout): hour, schedule_servers, schedule_desktops,
//! naive_servers, naive_desktops. Summary lines go to stderr.
//! Run: `cargo run --example fleet > docs/fleet-sim.csv` (scripts/fleet-sim
//! does it and draws the plot).

use optin_telemetry::schedule::{Outcome, Rng, Schedule, TickDecision, WEEK};
use optin_telemetry::report::ReportIdentity;

const INSTALLATIONS: usize = 1_000_000;
const WEEKS: i64 = 12;
const HOURS: usize = (WEEKS * 7 * 24) as usize;
/// Monday 2027-01-04 00:00 UTC.
const START: i64 = 1_799_020_800;
const MINUTE: i64 = 60;
const DAY: i64 = 86_400;

/// splitmix64, seeded: the run is repeatable.
struct Mix(u64);
impl Rng for Mix {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Server,
    Desktop,
}

/// The first minute tick at or after `t` at which the host is on.
fn next_on(kind: Kind, t: i64) -> i64 {
    let t = (t + MINUTE - 1).div_euclid(MINUTE) * MINUTE;
    if kind == Kind::Server {
        return t;
    }
    let mut day = (t - START).div_euclid(DAY);
    let mut at = t;
    loop {
        let weekday = day.rem_euclid(7); // 0 = Monday
        let open = START + day * DAY + 8 * 3600;
        let close = START + day * DAY + 18 * 3600;
        if weekday < 5 && at < close {
            return at.max(open);
        }
        day += 1;
        at = START + day * DAY;
    }
}

fn hour_of(t: i64) -> Option<usize> {
    let h = (t - START).div_euclid(3600);
    (0..HOURS as i64).contains(&h).then_some(h as usize)
}

/// The library's rule: ticks (at minute resolution, while on) only where the
/// schedule could act, which is every tick at or after its due time.
fn simulate_schedule(kind: Kind, consent: i64, rng: &mut Mix, counts: &mut [u32]) {
    let end = START + WEEKS * WEEK;
    let mut last_left = None;
    let mut s = Schedule::draw(consent, last_left, rng);
    let mut t = next_on(kind, consent);
    let mut n = 0u64;
    while t < end {
        let (decision, _) = s.tick(t, last_left, rng);
        if decision == TickDecision::Send {
            n += 1;
            if let Some(l) = s.start(format!("{n}"), t, &ReportIdentity { id: String::new(), draw_key: [0; 32] }) {
                last_left = Some(l);
            }
            s.in_flight = None;
            s.record(t, Outcome::Delivered, rng);
            if let Some(h) = hour_of(t) {
                counts[h] += 1;
            }
        }
        t = next_on(kind, s.due.max(t + MINUTE));
    }
}

/// Naive: at start-up (the consent), then at the first tick >= 7 days later.
fn simulate_naive(kind: Kind, consent: i64, counts: &mut [u32]) {
    let end = START + WEEKS * WEEK;
    let mut t = next_on(kind, consent);
    while t < end {
        if let Some(h) = hour_of(t) {
            counts[h] += 1;
        }
        t = next_on(kind, t + WEEK);
    }
}

fn peak_to_mean(counts: &[u32]) -> (u32, f64, f64) {
    let peak = *counts.iter().max().unwrap_or(&0);
    let mean = counts.iter().map(|&c| c as f64).sum::<f64>() / counts.len() as f64;
    (peak, mean, peak as f64 / mean)
}

fn main() {
    let mut rng = Mix(2027);
    let mut sched = [vec![0u32; HOURS], vec![0u32; HOURS]];
    let mut naive = [vec![0u32; HOURS], vec![0u32; HOURS]];
    for i in 0..INSTALLATIONS {
        let (kind, k) = if i % 2 == 0 { (Kind::Server, 0) } else { (Kind::Desktop, 1) };
        let consent = START + 8 * 3600 + rng.below(2 * 3600) as i64;
        simulate_schedule(kind, consent, &mut rng, &mut sched[k]);
        simulate_naive(kind, consent, &mut naive[k]);
    }
    println!("hour,schedule_servers,schedule_desktops,naive_servers,naive_desktops");
    for h in 0..HOURS {
        println!("{h},{},{},{},{}", sched[0][h], sched[1][h], naive[0][h], naive[1][h]);
    }
    let total = |a: &[Vec<u32>; 2]| -> Vec<u32> { (0..HOURS).map(|h| a[0][h] + a[1][h]).collect() };
    let (st, nt) = (total(&sched), total(&naive));
    let steady = 7 * 24..HOURS; // weeks 2-12, after the consent wave
    for (name, counts) in [("schedule servers", &sched[0]), ("schedule fleet", &st), ("naive servers", &naive[0]), ("naive fleet", &nt)] {
        let (p, m, r) = peak_to_mean(counts);
        let (ps, ms, rs) = peak_to_mean(&counts[steady.clone()]);
        let sum: u64 = counts.iter().map(|&c| c as u64).sum();
        eprintln!("{name:17} reports {sum:9}  all 12 weeks: peak {p:7}/h mean {m:8.1}/h peak-to-mean {r:6.1}  weeks 2-12: peak {ps:7}/h mean {ms:8.1}/h peak-to-mean {rs:6.1}");
    }
}
