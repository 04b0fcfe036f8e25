//! Hybrid logical clocks and device site ids.
//!
//! A [`Hlc`] orders writes for last-writer-wins: physical milliseconds first, then a logical
//! counter for writes within the same millisecond (or while the wall clock is behind a stamp
//! already seen), then the [`SiteId`] of the device as the final tie-break. Every stamp is
//! unique per device and the order is total.
//!
//! The text form ([`Hlc::to_string`]) is fixed width, so comparing two stamps as byte strings
//! gives the same answer as comparing them as values. The local store and the cloud SQL compare
//! the text form (in PostgreSQL under `COLLATE "C"`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// The largest logical counter. A clock that would pass it carries into the next millisecond
/// instead, so the text form keeps its fixed width.
pub const MAX_COUNTER: u32 = 999_999;

/// The largest physical time the text form holds (15 decimal digits of milliseconds).
pub const MAX_PHYSICAL_MS: u64 = 999_999_999_999_999;

/// The id of one device (one local database). Chosen at random when the database is created.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SiteId(pub u64);

impl SiteId {
    /// A new random site id.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().as_u64_pair().0)
    }
}

impl fmt::Display for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SiteId({:016x})", self.0)
    }
}

impl FromStr for SiteId {
    type Err = HlcParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(HlcParseError {
                input: s.chars().take(64).collect(),
                reason: "a site id is 16 hexadecimal digits",
            });
        }
        u64::from_str_radix(s, 16)
            .map(SiteId)
            .map_err(|_| HlcParseError {
                input: s.chars().take(64).collect(),
                reason: "a site id is 16 hexadecimal digits",
            })
    }
}

/// A hybrid logical clock stamp.
///
/// ```
/// use luma_model::{Clock, SiteId};
/// let mut clock = Clock::new(SiteId(7));
/// let a = clock.tick(1_000);
/// let b = clock.tick(1_000); // same millisecond: the counter breaks the tie
/// assert!(b > a);
/// let text = b.to_string();
/// assert_eq!(text.parse::<luma_model::Hlc>().unwrap(), b);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch (possibly ahead of the wall clock).
    pub physical_ms: u64,
    /// Logical counter within `physical_ms`.
    pub counter: u32,
    /// The device that made the stamp.
    pub site: SiteId,
}

impl Hlc {
    /// The smallest stamp: older than every real write.
    pub const ZERO: Hlc = Hlc {
        physical_ms: 0,
        counter: 0,
        site: SiteId(0),
    };

    /// A stamp from its parts.
    pub fn new(physical_ms: u64, counter: u32, site: SiteId) -> Self {
        Self {
            physical_ms,
            counter,
            site,
        }
    }

    /// True if the text form of this stamp parses back (its parts are within
    /// [`MAX_PHYSICAL_MS`] and [`MAX_COUNTER`]).
    pub fn is_representable(&self) -> bool {
        self.physical_ms <= MAX_PHYSICAL_MS && self.counter <= MAX_COUNTER
    }

    /// `(physical_ms, counter)` moved to the nearest pair the text form holds: a counter past
    /// [`MAX_COUNTER`] carries into the next millisecond, and everything past the largest
    /// stamp saturates at it.
    fn clamped(&self) -> (u64, u32) {
        if self.physical_ms > MAX_PHYSICAL_MS
            || (self.physical_ms == MAX_PHYSICAL_MS && self.counter > MAX_COUNTER)
        {
            (MAX_PHYSICAL_MS, MAX_COUNTER)
        } else if self.counter > MAX_COUNTER {
            (self.physical_ms + 1, 0)
        } else {
            (self.physical_ms, self.counter)
        }
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:015}-{:06}-{}",
            self.physical_ms, self.counter, self.site
        )
    }
}

impl fmt::Debug for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hlc({self})")
    }
}

/// A string is not a stamp in [`Hlc`]'s text form.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid HLC {input:?}: {reason}")]
pub struct HlcParseError {
    /// The rejected text (at most 64 characters of it).
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl FromStr for Hlc {
    type Err = HlcParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| HlcParseError {
            input: s.chars().take(64).collect(),
            reason,
        };
        let mut parts = s.split('-');
        let (Some(p), Some(c), Some(site), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(err("expected PPPPPPPPPPPPPPP-CCCCCC-SSSSSSSSSSSSSSSS"));
        };
        if p.len() != 15 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("physical part must be 15 decimal digits"));
        }
        if c.len() != 6 || !c.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("counter part must be 6 decimal digits"));
        }
        let physical_ms = p
            .parse()
            .map_err(|_| err("physical part must be 15 decimal digits"))?;
        let counter = c
            .parse()
            .map_err(|_| err("counter part must be 6 decimal digits"))?;
        let site = site
            .parse()
            .map_err(|_| err("site part must be 16 hex digits"))?;
        Ok(Hlc {
            physical_ms,
            counter,
            site,
        })
    }
}

impl Serialize for Hlc {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Hlc {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A hybrid logical clock: hands out strictly increasing stamps for one site and absorbs the
/// stamps it sees from other sites so that its next stamp is newer than all of them.
#[derive(Debug, Clone)]
pub struct Clock {
    last: Hlc,
}

impl Clock {
    /// A clock for `site` that has seen nothing yet.
    pub fn new(site: SiteId) -> Self {
        Self {
            last: Hlc::new(0, 0, site),
        }
    }

    /// A clock for `site` resuming after `last` (for example the newest stamp persisted before
    /// a restart), so stamps stay monotonic even if the wall clock went backwards.
    pub fn resume(site: SiteId, last: Hlc) -> Self {
        let (physical_ms, counter) = last.clamped();
        Self {
            last: Hlc::new(physical_ms, counter, site),
        }
    }

    /// This clock's site.
    pub fn site(&self) -> SiteId {
        self.last.site
    }

    /// The newest stamp handed out or seen (with this clock's site).
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// A new stamp at wall time `wall_ms`: strictly greater than every stamp this clock has
    /// handed out or merged, as long as that is possible in the text form.
    ///
    /// The clock saturates at the largest stamp the text form holds
    /// ([`MAX_PHYSICAL_MS`], [`MAX_COUNTER`]): a clock already there hands out that stamp
    /// again instead of one the parser would refuse. (A store never lets its clock get near
    /// it: it refuses to merge stamps beyond its clock-skew bound.)
    pub fn tick(&mut self, wall_ms: u64) -> Hlc {
        let wall_ms = wall_ms.min(MAX_PHYSICAL_MS);
        let next = if wall_ms > self.last.physical_ms {
            Hlc::new(wall_ms, 0, self.last.site)
        } else if self.last.counter >= MAX_COUNTER {
            if self.last.physical_ms >= MAX_PHYSICAL_MS {
                Hlc::new(MAX_PHYSICAL_MS, MAX_COUNTER, self.last.site)
            } else {
                Hlc::new(self.last.physical_ms + 1, 0, self.last.site)
            }
        } else {
            Hlc::new(self.last.physical_ms, self.last.counter + 1, self.last.site)
        };
        self.last = next;
        next
    }

    /// A new stamp from the system clock.
    pub fn now(&mut self) -> Hlc {
        self.tick(wall_clock_ms())
    }

    /// Absorbs a stamp seen from elsewhere: every later [`Clock::tick`] is greater than it.
    ///
    /// A stamp outside the text form's range (built with [`Hlc::new`] from parts larger than
    /// [`MAX_PHYSICAL_MS`] or [`MAX_COUNTER`]) is absorbed as the nearest stamp the text
    /// form holds, so the clock never hands out one the parser refuses. Bounding how far
    /// ahead of the wall clock a merged stamp may be is the caller's job (the store refuses
    /// stamps beyond its clock-skew bound before they reach the clock).
    pub fn merge(&mut self, seen: Hlc) {
        let seen = seen.clamped();
        if seen > (self.last.physical_ms, self.last.counter) {
            self.last = Hlc::new(seen.0, seen.1, self.last.site);
        }
    }
}

/// The default bound on how far ahead of the receiver's wall clock a remote stamp may be: 5
/// minutes. The server refuses a pushed change stamped further ahead (code `clock_skew`; the
/// cloud SQL's `luma.config.max_clock_skew_ms` and `MemoryRemote` default to the same), and a
/// device parks a pulled row stamped further ahead instead of absorbing its stamp (so a device
/// clock is never pushed past what the server accepts). One rule: [`Hlc::is_beyond_skew`].
pub const DEFAULT_MAX_CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(300);

impl Hlc {
    /// True if the stamp's physical time is more than `max_skew_ms` ahead of `now_ms`: a
    /// server refuses such a change, a device does not absorb such a stamp.
    ///
    /// ```
    /// use luma_model::{Hlc, SiteId};
    /// let stamp = Hlc::new(1_000 + 300_001, 0, SiteId(1));
    /// assert!(stamp.is_beyond_skew(1_000, 300_000));
    /// assert!(!stamp.is_beyond_skew(1_001, 300_000));
    /// ```
    pub fn is_beyond_skew(&self, now_ms: u64, max_skew_ms: u64) -> bool {
        self.physical_ms > now_ms.saturating_add(max_skew_ms)
    }
}

/// Milliseconds since the Unix epoch from the system clock (0 if the clock is before 1970).
pub fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_hlc() -> impl Strategy<Value = Hlc> {
        (0..=MAX_PHYSICAL_MS, 0..=MAX_COUNTER, any::<u64>())
            .prop_map(|(p, c, s)| Hlc::new(p, c, SiteId(s)))
    }

    #[derive(Debug, Clone)]
    enum Step {
        Tick(u64),
        Merge(Hlc),
    }

    proptest! {
        #[test]
        fn text_form_round_trips_and_orders_like_values(a in any_hlc(), b in any_hlc()) {
            let (ta, tb) = (a.to_string(), b.to_string());
            prop_assert_eq!(ta.parse::<Hlc>().unwrap(), a);
            prop_assert_eq!(ta.as_bytes().cmp(tb.as_bytes()), a.cmp(&b));
            prop_assert_eq!(ta.len(), 39);
        }

        #[test]
        fn clock_is_strictly_monotonic_and_dominates_merged_stamps(
            site in any::<u64>(),
            steps in prop::collection::vec(
                prop_oneof![
                    (0u64..2_000_000_000_000).prop_map(Step::Tick),
                    any_hlc().prop_map(|h| Step::Merge(Hlc { physical_ms: h.physical_ms % 2_000_000_000_000, ..h })),
                ],
                1..200,
            ),
        ) {
            let mut clock = Clock::new(SiteId(site));
            let mut last_issued: Option<Hlc> = None;
            let mut max_seen: Option<Hlc> = None;
            for step in steps {
                match step {
                    Step::Tick(wall) => {
                        let stamp = clock.tick(wall);
                        prop_assert_eq!(stamp.site, SiteId(site));
                        if let Some(prev) = last_issued { prop_assert!(stamp > prev); }
                        if let Some(seen) = max_seen {
                            prop_assert!((stamp.physical_ms, stamp.counter) > (seen.physical_ms, seen.counter));
                        }
                        prop_assert!(stamp.physical_ms >= wall);
                        last_issued = Some(stamp);
                    }
                    Step::Merge(seen) => {
                        clock.merge(seen);
                        max_seen = Some(max_seen.map_or(seen, |m| m.max(seen)));
                    }
                }
            }
        }
    }

    fn extreme_hlc() -> impl Strategy<Value = Hlc> {
        let physical = prop_oneof![
            Just(0u64),
            Just(MAX_PHYSICAL_MS),
            Just(MAX_PHYSICAL_MS - 1),
            Just(MAX_PHYSICAL_MS + 1),
            Just(u64::MAX),
            0..=MAX_PHYSICAL_MS,
            any::<u64>(),
        ];
        let counter = prop_oneof![
            Just(0u32),
            Just(MAX_COUNTER),
            Just(MAX_COUNTER + 1),
            Just(9_999_999u32),
            Just(u32::MAX),
            any::<u32>(),
        ];
        (physical, counter, any::<u64>()).prop_map(|(p, c, s)| Hlc::new(p, c, SiteId(s)))
    }

    proptest! {
        /// Whatever a clock is resumed from, merges and ticks, every stamp it hands out parses
        /// back, and ticks never go backwards.
        #[test]
        fn extreme_stamps_never_make_an_unparseable_tick(
            start in extreme_hlc(),
            steps in prop::collection::vec(
                prop_oneof![
                    prop_oneof![Just(0u64), Just(MAX_PHYSICAL_MS), Just(u64::MAX), any::<u64>()]
                        .prop_map(Step::Tick),
                    extreme_hlc().prop_map(Step::Merge),
                ],
                1..50,
            ),
        ) {
            let mut clock = Clock::resume(SiteId(3), start);
            let mut prev: Option<Hlc> = None;
            for step in steps {
                match step {
                    Step::Tick(wall) => {
                        let stamp = clock.tick(wall);
                        prop_assert!(stamp.is_representable());
                        prop_assert_eq!(stamp.to_string().parse::<Hlc>().unwrap(), stamp);
                        if let Some(p) = prev {
                            prop_assert!(stamp >= p);
                        }
                        prev = Some(stamp);
                    }
                    Step::Merge(seen) => clock.merge(seen),
                }
                prop_assert!(clock.last().is_representable());
            }
        }
    }

    #[test]
    fn a_clock_at_the_largest_stamp_saturates() {
        let mut clock = Clock::resume(SiteId(1), Hlc::new(MAX_PHYSICAL_MS, MAX_COUNTER, SiteId(1)));
        let next = clock.tick(0);
        assert_eq!(next, Hlc::new(MAX_PHYSICAL_MS, MAX_COUNTER, SiteId(1)));
        assert!(next.to_string().parse::<Hlc>().is_ok());
        let mut clock = Clock::new(SiteId(1));
        clock.merge(Hlc::new(MAX_PHYSICAL_MS, 9_999_999, SiteId(2)));
        assert_eq!(
            clock.tick(5),
            Hlc::new(MAX_PHYSICAL_MS, MAX_COUNTER, SiteId(1))
        );
        let mut clock = Clock::new(SiteId(1));
        clock.merge(Hlc::new(7, 5_000_000, SiteId(2)));
        assert_eq!(clock.tick(5), Hlc::new(8, 1, SiteId(1)));
    }

    #[test]
    fn counter_overflow_carries_into_the_next_millisecond() {
        let mut clock = Clock::resume(SiteId(1), Hlc::new(5, MAX_COUNTER, SiteId(1)));
        let next = clock.tick(5);
        assert_eq!(next, Hlc::new(6, 0, SiteId(1)));
    }

    #[test]
    fn bad_text_is_a_typed_error() {
        for bad in ["", "1-2-3", "000000000000001-000001-zz00000000000000", "x"] {
            assert!(bad.parse::<Hlc>().is_err(), "{bad}");
        }
    }
}
