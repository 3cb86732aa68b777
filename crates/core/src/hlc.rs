//! Hybrid logical clock and the version every write carries.
//!
//! A version is `(physical ms, logical counter, writer id)`. It has two fixed-width encodings
//! whose byte order is version order: lowercase hex (`encode`, 34 characters) wherever a person
//! or a text protocol sees it (ETags, errors, queue ids, CRDT states), and big-endian binary
//! (`to_bytes`, 17 bytes) in the metadata entries on the nodes (entry format 3), whose Lua
//! compares them byte by byte (`lua/shared/entry.lua`).

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Width of an encoded version: 12 hex digits of ms, 6 of counter, 16 of writer id.
pub const VERSION_LEN: usize = 34;
/// Width of a version's binary form: 6 bytes of ms, 3 of counter, 8 of writer id, big-endian.
pub const VERSION_BYTES: usize = 17;
const MAX_COUNTER: u32 = 0xff_ffff;
const MAX_MS: u64 = 0xffff_ffff_ffff;

/// A totally ordered write version. Field order gives the derived `Ord`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub ms: u64,
    pub counter: u32,
    pub writer: u64,
}

impl Version {
    /// The version of a value that exists on a node without quorumd metadata (written directly).
    /// It loses against every versioned write.
    pub const ZERO: Version = Version {
        ms: 0,
        counter: 0,
        writer: 0,
    };

    /// The first version of millisecond `ms` from `writer` (counter 0): what fixtures and
    /// tests build when only the wall-clock order matters.
    pub const fn first_in_ms(ms: u64, writer: u64) -> Version {
        Version {
            ms,
            counter: 0,
            writer,
        }
    }

    pub fn encode(&self) -> String {
        format!("{:012x}{:06x}{:016x}", self.ms, self.counter, self.writer)
    }

    /// The binary form: big-endian fields, so byte order is version order.
    pub fn to_bytes(&self) -> [u8; VERSION_BYTES] {
        let mut out = [0u8; VERSION_BYTES];
        out[..6].copy_from_slice(&self.ms.to_be_bytes()[2..]);
        out[6..9].copy_from_slice(&self.counter.to_be_bytes()[1..]);
        out[9..].copy_from_slice(&self.writer.to_be_bytes());
        out
    }

    /// Reads the binary form; `None` unless `bytes` is exactly [`VERSION_BYTES`] long.
    pub fn from_bytes(bytes: &[u8]) -> Option<Version> {
        let b: &[u8; VERSION_BYTES] = bytes.try_into().ok()?;
        let be = |part: &[u8]| part.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
        Some(Version {
            ms: be(&b[..6]),
            counter: be(&b[6..9]) as u32,
            writer: be(&b[9..]),
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version {0:?}: expected {VERSION_LEN} lowercase hex digits")]
pub struct ParseVersionError(pub String);

impl FromStr for Version {
    type Err = ParseVersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseVersionError(s.chars().take(64).collect());
        let valid = s.len() == VERSION_LEN
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            return Err(bad());
        }
        let ms = u64::from_str_radix(&s[0..12], 16).map_err(|_| bad())?;
        let counter = u32::from_str_radix(&s[12..18], 16).map_err(|_| bad())?;
        let writer = u64::from_str_radix(&s[18..34], 16).map_err(|_| bad())?;
        Ok(Version {
            ms,
            counter,
            writer,
        })
    }
}

/// Milliseconds since the Unix epoch by the wall clock.
pub fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A hybrid logical clock: never goes backwards, stays close to the wall clock, and moves past
/// any version it has observed, so a write that read version `v` is issued with a version > `v`.
#[derive(Debug)]
pub struct Hlc {
    writer: u64,
    last: Mutex<(u64, u32)>,
    wall: fn() -> u64,
}

impl Hlc {
    pub fn new(writer: u64) -> Self {
        Self::with_wall_clock(writer, wall_clock_ms)
    }

    /// A clock reading physical time from `wall`; tests use this to simulate skew.
    pub fn with_wall_clock(writer: u64, wall: fn() -> u64) -> Self {
        Hlc {
            writer,
            last: Mutex::new((0, 0)),
            wall,
        }
    }

    pub fn writer(&self) -> u64 {
        self.writer
    }

    /// A new version, greater than every version this clock issued or observed.
    pub fn tick(&self) -> Version {
        let physical = (self.wall)().min(MAX_MS);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let next = if physical > last.0 {
            (physical, 0)
        } else if last.1 < MAX_COUNTER {
            (last.0, last.1 + 1)
        } else {
            // Counter exhausted within one millisecond: borrow the next millisecond.
            (last.0 + 1, 0)
        };
        *last = next;
        Version {
            ms: next.0,
            counter: next.1,
            writer: self.writer,
        }
    }

    /// Moves the clock past `seen`, so the next `tick` is greater than it.
    pub fn observe(&self, seen: Version) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if (seen.ms, seen.counter) > *last {
            *last = (seen.ms.min(MAX_MS), seen.counter);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_orders_like_versions() {
        let samples = [
            Version::ZERO,
            Version {
                ms: 1,
                counter: 0,
                writer: 0,
            },
            Version {
                ms: 1_700_000_000_000,
                counter: 5,
                writer: u64::MAX,
            },
            Version {
                ms: 1_700_000_000_000,
                counter: 6,
                writer: 1,
            },
            Version {
                ms: 1_700_000_000_001,
                counter: 0,
                writer: 0,
            },
            Version {
                ms: MAX_MS,
                counter: MAX_COUNTER,
                writer: u64::MAX,
            },
        ];
        for (i, a) in samples.iter().enumerate() {
            let encoded = a.encode();
            assert_eq!(encoded.len(), VERSION_LEN);
            assert_eq!(encoded.parse::<Version>().unwrap(), *a);
            assert_eq!(Version::from_bytes(&a.to_bytes()), Some(*a));
            for b in &samples[i + 1..] {
                assert!(a < b);
                assert!(a.encode() < b.encode(), "{a:?} vs {b:?}");
                assert!(a.to_bytes() < b.to_bytes(), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn parse_rejects_malformed() {
        for bad in [
            "",
            "xyz",
            &"0".repeat(33),
            &"0".repeat(35),
            &"A".repeat(34),
            &"g".repeat(34),
        ] {
            assert!(bad.parse::<Version>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tick_is_strictly_increasing_even_when_wall_clock_stands_still() {
        let clock = Hlc::with_wall_clock(7, || 1000);
        let mut prev = clock.tick();
        for _ in 0..10_000 {
            let next = clock.tick();
            assert!(next > prev);
            prev = next;
        }
        assert_eq!(prev.ms, 1000);
    }

    #[test]
    fn tick_survives_a_wall_clock_that_goes_backwards() {
        let clock = Hlc::with_wall_clock(1, || 5);
        clock.observe(Version {
            ms: 10,
            counter: 3,
            writer: 9,
        });
        let v = clock.tick();
        assert_eq!((v.ms, v.counter), (10, 4));
    }

    #[test]
    fn counter_overflow_moves_to_next_millisecond() {
        let clock = Hlc::with_wall_clock(1, || 5);
        clock.observe(Version {
            ms: 5,
            counter: MAX_COUNTER,
            writer: 0,
        });
        let v = clock.tick();
        assert_eq!((v.ms, v.counter), (6, 0));
    }

    #[test]
    fn observed_version_from_a_faster_writer_is_exceeded() {
        let clock = Hlc::with_wall_clock(1, || 100);
        let remote = Version {
            ms: 100,
            counter: 7,
            writer: u64::MAX,
        };
        clock.observe(remote);
        assert!(clock.tick() > remote);
    }
}
