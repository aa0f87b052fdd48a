//! Counters exported as Prometheus counters never fall between scrapes.
//!
//! A device's counters are read in two parts: what DEVICE_STATS and DEVICE_REASONS hold,
//! then what the decision cache's entries and the probe memos hold for it
//! (`HeldDeviceCharges`). An entry or memo replaced between the two reads has moved what
//! it held into the table after the table was read: that read falls short by it, and a
//! Prometheus counter that falls reads as a reset (its whole value counted again by
//! `rate`). So each counter keeps its last table
//! part and the value exported: while the table part does not fall, the export does not
//! either; a table part that falls was zeroed (a slot handed to a new device), and the
//! counter follows it down.

use monitor_common::maps::DeviceStats;

/// One counter's floor: its table part and the value exported at the last read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Floor {
    table: u64,
    exported: u64,
}

impl Floor {
    /// The value to export for a counter whose table part is `table` and whose held part
    /// is `held` now.
    pub fn next(&mut self, table: u64, held: u64) -> u64 {
        let total = table.saturating_add(held);
        let exported = if table < self.table {
            total
        } else {
            total.max(self.exported)
        };
        *self = Floor { table, exported };
        exported
    }
}

/// The floors of every device's traffic counters, by DEVICE_STATS slot.
#[derive(Debug, Default)]
pub struct DeviceFloors {
    by_slot: Vec<[Floor; 7]>,
}

impl DeviceFloors {
    /// The device's counters to export, from its table part and its held part: the
    /// counters floored, the times as read.
    pub fn export(&mut self, slot: u32, table: &DeviceStats, held: &DeviceStats) -> DeviceStats {
        let slot = slot as usize;
        if self.by_slot.len() <= slot {
            self.by_slot.resize(slot + 1, [Floor::default(); 7]);
        }
        let [
            sent,
            sent_bytes,
            received,
            received_bytes,
            dropped,
            would_drop,
            glass,
        ] = &mut self.by_slot[slot];
        let mut times = *table;
        times.merge(held);
        DeviceStats {
            packets_sent: sent.next(table.packets_sent, held.packets_sent),
            bytes_sent: sent_bytes.next(table.bytes_sent, held.bytes_sent),
            packets_received: received.next(table.packets_received, held.packets_received),
            bytes_received: received_bytes.next(table.bytes_received, held.bytes_received),
            dropped_packets: dropped.next(table.dropped_packets, held.dropped_packets),
            would_drop_packets: would_drop.next(table.would_drop_packets, held.would_drop_packets),
            break_glass_packets: glass.next(table.break_glass_packets, held.break_glass_packets),
            ..times
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_never_falls_unless_its_table_was_zeroed() {
        // (table part, held part, exported)
        let reads: [(u64, u64, u64, &str); 7] = [
            (5, 4, 9, "first read"),
            (5, 6, 11, "more held"),
            // 6 held moved into the table after the table was read, 1 held anew.
            (5, 1, 11, "an entry replaced between the two reads"),
            (11, 1, 12, "the next read sees them in the table"),
            (12, 0, 12, "charged: nothing held"),
            (0, 2, 2, "the slot zeroed for a new device"),
            (3, 0, 3, "the new device's count"),
        ];
        let mut floor = Floor::default();
        for (table, held, want, why) in reads {
            assert_eq!(floor.next(table, held), want, "{why}");
        }
    }

    #[test]
    fn a_devices_counters_are_floored_and_its_times_merged() {
        let stats = |sent: u64, last: u64| DeviceStats {
            packets_sent: sent,
            bytes_sent: sent * 60,
            first_seen_ns: 10,
            last_seen_ns: last,
            ..DeviceStats::default()
        };
        let mut floors = DeviceFloors::default();
        let first = floors.export(3, &stats(5, 100), &stats(4, 120));
        assert_eq!((first.packets_sent, first.bytes_sent), (9, 540));
        assert_eq!((first.first_seen_ns, first.last_seen_ns), (10, 120));
        // The four held moved into the table between the two reads.
        let raced = floors.export(3, &stats(5, 100), &DeviceStats::default());
        assert_eq!((raced.packets_sent, raced.bytes_sent), (9, 540));
        // Another slot is its own.
        let other = floors.export(0, &stats(1, 5), &DeviceStats::default());
        assert_eq!(other.packets_sent, 1);
    }
}
