//! Seeded byte mutations of a valid report, shared by the library's
//! validator fuzz (`src/validate.rs`) and the collector's fuzz over HTTP
//! (`collector/tests/ingest.rs`), so both attack with the same edits.
//! Included by `#[path]`, not a crate: the library's public API carries no
//! test support.

/// A xorshift64 generator: the same seed gives the same mutations on every
/// machine, so a failing case can be replayed.
pub struct Mutator {
    state: u64,
}

impl Mutator {
    pub fn new(seed: u64) -> Mutator {
        assert_ne!(seed, 0, "xorshift needs a non-zero seed");
        Mutator { state: seed }
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    /// `base` after 1 to `max_edits` edits, each a replaced, removed or
    /// inserted byte from `alphabet`, or a truncation.
    pub fn mutate(&mut self, base: &[u8], max_edits: u64, alphabet: &[u8]) -> Vec<u8> {
        let mut b = base.to_vec();
        for _ in 0..1 + self.next() % max_edits {
            if b.is_empty() {
                break;
            }
            let pos = (self.next() as usize) % b.len();
            match self.next() % 4 {
                0 => b[pos] = alphabet[(self.next() as usize) % alphabet.len()],
                1 => drop(b.remove(pos)),
                2 => b.insert(pos, alphabet[(self.next() as usize) % alphabet.len()]),
                _ => b.truncate(pos),
            }
        }
        b
    }
}
