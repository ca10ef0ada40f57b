//! Gateway counters: every drop, rejection and delivery step is counted here and published in the
//! gateway status (`telemetry::message::Status::counters`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Shared counters (relaxed atomics; each is monotonic unless its doc says "current").
        #[derive(Debug, Default)]
        pub struct Counters {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        impl Counters {
            /// All counters by name, as published in the gateway status.
            pub fn snapshot(&self) -> BTreeMap<String, u64> {
                let mut m = BTreeMap::new();
                $(m.insert(stringify!($name).to_string(), self.$name.load(Ordering::Relaxed));)*
                m
            }
        }
    };
}

counters! {
    /// Frames decoded into readings (UDP, serial, LoRaWAN).
    frames_ok,
    /// Frames refused for a CRC mismatch.
    bad_crc,
    /// Frames refused as malformed (version, type, length, COBS, field value).
    bad_frame,
    /// Frames or uplinks from an address or DevEUI not in the registry.
    unknown_device,
    /// LoRaWAN uplinks that are not valid ChirpStack JSON or whose payload does not decode.
    bad_uplink,
    /// LoRaWAN uplinks of a frame type that carries no reading (Libelium daily/config/error frames).
    uplink_ignored,
    /// Readings handed to the spool.
    readings_in,
    /// Readings published (counting each publish of a reading, so retransmits after a restart too).
    published,
    /// Readings acknowledged by the broker and deleted from the spool.
    acked,
    /// Readings published with `replayed = true`.
    replayed,
    /// Multi-device batch messages published.
    batches,
    /// MQTT connection errors (each followed by a backoff and a reconnect attempt).
    reconnects,
    /// CONNACKs received.
    connects,
    /// CONNACKs without a stored session (subscriptions renewed).
    sessions_lost,
    /// Current: readings in the spool.
    spool_depth,
    /// Current: payload bytes in the spool.
    spool_bytes,
    /// Oldest readings dropped for the byte bound (persistent across restarts).
    spool_dropped_overflow,
    /// Readings dropped for the age bound (persistent).
    spool_dropped_age,
    /// Incoming readings refused under `drop_newest` (persistent).
    spool_dropped_newest,
    /// Spool rows that no longer decoded (persistent).
    spool_corrupt,
    /// Spool write failures (the readings of that write are lost and counted here).
    spool_errors,
    /// Current: UDP datagrams the kernel dropped because the intake socket's receive buffer was full
    /// (Linux `/proc/net/udp` `drops` column; stays 0 elsewhere).
    udp_kernel_drops,
}

impl Counters {
    /// Adds `n` to a counter.
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}
