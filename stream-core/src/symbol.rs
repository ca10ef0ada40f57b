//! Process-wide symbols: every id string the dataflow carries (device, site, district, dataset) is
//! interned once, at the feeder, into a [`Sym`] — a dense `u32` index plus the id's routing hash —
//! so records in flight are small and fixed-size, exchanges hash nothing, and the cores index their
//! state by number instead of hashing strings.
//!
//! # Across processes
//! Symbol numbers are local to a process (assigned in first-seen order). A [`Sym`]'s serde form is
//! therefore its **id string**: serializing writes the text, deserializing interns it in the
//! receiving process. Routing uses [`Sym::route`], the low 32 bits of
//! [`route_hash`] of the text, the same in every process. Nothing that
//! decides an output depends on symbol numbers: orders that reach outputs compare the id strings
//! ([`Names`]).
//!
//! # Memory
//! The table only grows: each distinct id costs its text plus ~10–16 bytes (one `u32` end offset and
//! an open-addressing slot array at most 3/4 full, and the 4-byte routing hash), plus the arena's
//! growth slack. Ids come from
//! validated readings and refusals (at most 64 bytes each, [`telemetry::ids`]), so growth is bounded
//! by the distinct ids ever seen; [`stats`] reports the count and bytes (the service's `/metrics`
//! can show them), and each core's per-device state grows with the same ids anyway.
//!
//! Reads and interning take one process-wide `RwLock`; hot paths batch their look-ups under one
//! guard ([`intern_many`]) or avoid the table entirely (per-core [`SlotMap`]s).

use crate::model::{Interner, route_hash};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// An interned id: a dense process-local index and the id's cluster-wide routing hash.
///
/// Equality and hashing compare the index (the hash is a function of it). Within a process, equal
/// ids have equal symbols. Serialized as the id string (see the module notes).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sym {
    id: u32,
    route: u32,
}

/// The table: names and each name's routing hash (computed once, at interning).
#[derive(Default)]
struct Table {
    names: Interner,
    routes: Vec<u32>,
}

impl Table {
    fn get(&self, s: &str) -> Option<Sym> {
        let id = self.names.get(&[s])?;
        Some(Sym {
            id,
            route: self.routes[id as usize],
        })
    }

    fn intern(&mut self, s: &str) -> Sym {
        if let Some(x) = self.get(s) {
            return x;
        }
        let id = self.names.intern(&[s]);
        let route = route_hash(s) as u32;
        self.routes.push(route);
        Sym { id, route }
    }
}

fn table() -> &'static RwLock<Table> {
    static TABLE: OnceLock<RwLock<Table>> = OnceLock::new();
    TABLE.get_or_init(|| RwLock::new(Table::default()))
}

fn read() -> RwLockReadGuard<'static, Table> {
    table().read().unwrap_or_else(|p| p.into_inner())
}

fn write() -> RwLockWriteGuard<'static, Table> {
    table().write().unwrap_or_else(|p| p.into_inner())
}

impl Sym {
    /// The symbol of `s`, interning it if new.
    pub fn intern(s: &str) -> Sym {
        if let Some(x) = Sym::lookup(s) {
            return x;
        }
        write().intern(s)
    }

    /// The symbol of `s` if it is interned.
    pub fn lookup(s: &str) -> Option<Sym> {
        read().get(s)
    }

    /// The dense process-local index (for per-core [`SlotMap`]s; never for ordering outputs).
    pub fn index(self) -> u32 {
        self.id
    }

    /// Routing hash of the id string: the low 32 bits of `route_hash(id)`, equal in every process.
    pub fn route(self) -> u64 {
        u64::from(self.route)
    }

    /// The id string (allocates; takes the table's read lock).
    pub fn name(self) -> String {
        read().names.resolve(self.id).to_string()
    }
}

impl std::fmt::Debug for Sym {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", read().names.resolve(self.id))
    }
}

impl Serialize for Sym {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(read().names.resolve(self.id))
    }
}

impl<'de> Deserialize<'de> for Sym {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Sym, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Sym::intern(&s))
    }
}

/// The routing hash [`Sym::route`] would give the symbol of `s` (without interning it).
pub fn route_of_str(s: &str) -> u64 {
    route_hash(s) & 0xffff_ffff
}

/// A multiplicative hasher for small integer keys (symbol indices, times) in per-core maps: a
/// few cycles per key instead of SipHash. Not for keys an outsider picks freely (no flood
/// resistance); symbol indices are dense numbers assigned here.
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher(u64);

impl std::hash::Hasher for FastHasher {
    fn finish(&self) -> u64 {
        // The product's high bits are the well-mixed ones; hash tables index by the low bits.
        self.0.rotate_left(26)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

/// A `HashMap` with [`FastHasher`].
pub type FastMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<FastHasher>>;
/// A `HashSet` with [`FastHasher`].
pub type FastSet<K> = std::collections::HashSet<K, std::hash::BuildHasherDefault<FastHasher>>;

/// Read access to symbol names under one lock guard (for sorting by id string). Do not create a
/// [`Sym`] or call [`Sym::name`] while holding it on the same thread.
pub struct Names(RwLockReadGuard<'static, Table>);

impl Names {
    /// Takes the table's read lock.
    pub fn get() -> Names {
        Names(read())
    }

    /// The id string of `s`.
    pub fn name(&self, s: Sym) -> &str {
        self.0.names.resolve(s.id)
    }

    /// The id string of the symbol with index `i` ([`Sym::index`]). Panics on an index not handed
    /// out in this process.
    pub fn at(&self, i: u32) -> &str {
        self.0.names.resolve(i)
    }
}

/// Interns several ids under one read lock (plus one write lock when some are new): the feeder's
/// per-batch path. An id equal to the one before it reuses its symbol without a look-up (a batch's
/// readings usually share site and district). Appends the symbols to `out` in input order.
pub fn intern_many<'a>(ids: impl IntoIterator<Item = &'a str>, out: &mut Vec<Sym>) {
    const MISSING: Sym = Sym {
        id: u32::MAX,
        route: 0,
    };
    let start = out.len();
    let mut missing = Vec::new();
    {
        let t = read();
        let mut prev: Option<(&str, Sym)> = None;
        for s in ids {
            let x = match prev {
                Some((p, x)) if p == s => x,
                _ => t.get(s).unwrap_or(MISSING),
            };
            if x == MISSING {
                missing.push((out.len(), s));
            }
            out.push(x);
            prev = Some((s, x));
        }
    }
    if !missing.is_empty() {
        let mut t = write();
        for (i, s) in missing {
            out[i] = t.intern(s);
        }
    }
    debug_assert!(out[start..].iter().all(|x| *x != MISSING));
}

/// Number of interned ids and the table's heap bytes (text arena, offsets, slots).
pub fn stats() -> (usize, usize) {
    let t = read();
    (
        t.names.len(),
        t.names.heap_bytes() + t.routes.capacity() * 4,
    )
}

/// A per-core map from [`Sym`] to a dense local slot: a `Vec<u32>` indexed by symbol (4 bytes per
/// process-wide symbol up to the largest one seen), no hashing.
#[derive(Debug, Default, Clone)]
pub struct SlotMap {
    /// Slot + 1 per symbol index; 0 = none.
    slots: Vec<u32>,
}

impl SlotMap {
    /// The slot of `s`, if set.
    #[inline]
    pub fn get(&self, s: Sym) -> Option<u32> {
        match self.slots.get(s.id as usize) {
            Some(&v) if v != 0 => Some(v - 1),
            _ => None,
        }
    }

    /// Sets the slot of `s`.
    pub fn set(&mut self, s: Sym, slot: u32) {
        let i = s.id as usize;
        if i >= self.slots.len() {
            // Doubling: fewer freed old buffers left behind than slower growth (measured).
            let n = (i + 1).max(self.slots.len() * 2).max(64);
            self.slots.resize(n, 0);
        }
        self.slots[i] = slot + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_round_trip_and_route_like_the_string() {
        let a = Sym::intern("sym-test-a");
        let b = Sym::intern("sym-test-b");
        assert_ne!(a, b);
        assert_eq!(Sym::intern("sym-test-a"), a);
        assert_eq!(Sym::lookup("sym-test-b"), Some(b));
        assert_eq!(Sym::lookup("sym-test-never"), None);
        assert_eq!(a.name(), "sym-test-a");
        assert_eq!(a.route(), route_hash("sym-test-a") & 0xffff_ffff);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, "\"sym-test-a\"");
        let back: Sym = serde_json::from_str("\"sym-test-c\"").unwrap();
        assert_eq!(back.name(), "sym-test-c");
        // Batch interning: known, new and repeated ids give what one-by-one interning gives.
        let ids = [
            "sym-test-a",
            "sym-test-n1",
            "sym-test-n1",
            "sym-test-b",
            "sym-test-n2",
            "sym-test-a",
        ];
        let mut got = Vec::new();
        intern_many(ids, &mut got);
        let want: Vec<Sym> = ids.iter().map(|s| Sym::intern(s)).collect();
        assert_eq!(got, want);
        assert_eq!(got[1].name(), "sym-test-n1");
        let mut m = SlotMap::default();
        m.set(b, 7);
        assert_eq!(m.get(b), Some(7));
        assert_eq!(m.get(a), None);
    }
}
