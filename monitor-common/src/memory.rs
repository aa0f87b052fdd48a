//! The kernel memory a map takes, from its definition ([`MapDef`]) and the number of
//! CPUs: what `bpftool map show` reports as `memlock` (the kernel's `map_mem_usage`).
//!
//! The formulas are the kernel's (Linux 6.18, x86-64: kernel/bpf/arraymap.c,
//! hashtab.c, lpm_trie.c, ringbuf.c), with the sizes of its internal structures as
//! constants below. `cargo xtask bench` checks the result for this machine against the
//! kernel's own report for every map of a loaded datapath.

use crate::maps::{MAP_MMAPABLE, MAP_NO_PREALLOC, MapDef, MapKind};

const PAGE: u64 = 4096;
/// `sizeof(struct bpf_array)`.
const BPF_ARRAY: u64 = 312;
/// `sizeof(struct bpf_htab)`.
const BPF_HTAB: u64 = 960;
/// `sizeof(struct bucket)`: a list head and its lock.
const HTAB_BUCKET: u64 = 16;
/// `sizeof(struct htab_elem)`, before the key and value.
const HTAB_ELEM: u64 = 48;
/// `sizeof(struct llist_node)`, which an element allocated on insert carries.
const LLIST_NODE: u64 = 8;
/// `sizeof(struct lpm_trie_node)`, before the key data and value.
const LPM_NODE: u64 = 24;
/// `sizeof(struct bpf_ringbuf_map)`.
const RINGBUF_MAP: u64 = 304;
/// A ring buffer's pages before its data (`RINGBUF_NR_META_PAGES`).
const RINGBUF_META_PAGES: u64 = 3;

const fn round8(n: u32) -> u64 {
    (n as u64).div_ceil(8) * 8
}

const fn page_align(n: u64) -> u64 {
    n.div_ceil(PAGE) * PAGE
}

/// Bytes of kernel memory `map` takes on a machine with `cpus` possible CPUs. `entries`
/// is how many entries it holds, which matters only for maps that allocate entries as
/// they are added (no-prealloc hashes, LPM tries); `None` means full.
pub const fn kernel_bytes(map: &MapDef, cpus: u32, entries: Option<u64>) -> u64 {
    let cpus = cpus as u64;
    let max = map.max_entries as u64;
    let held = match entries {
        Some(n) => n,
        None => max,
    };
    match map.kind {
        MapKind::Array => {
            let data = max * round8(map.value_size);
            if map.flags & MAP_MMAPABLE != 0 {
                page_align(BPF_ARRAY) + page_align(data)
            } else {
                BPF_ARRAY + data
            }
        }
        MapKind::PerCpuArray => BPF_ARRAY + max * 8 + max * round8(map.value_size) * cpus,
        MapKind::Hash | MapKind::LruHash => {
            let buckets = max.next_power_of_two();
            let elem = HTAB_ELEM + round8(map.key_size) + round8(map.value_size);
            let base = BPF_HTAB + HTAB_BUCKET * buckets;
            if map.flags & MAP_NO_PREALLOC != 0 {
                base + (elem + LLIST_NODE) * held
            } else if matches!(map.kind, MapKind::LruHash) {
                base + elem * max
            } else {
                // A preallocated hash keeps one spare element per CPU for in-place
                // updates, and a per-CPU pointer to it.
                base + elem * (max + cpus) + 8 * cpus
            }
        }
        MapKind::LpmTrie => (LPM_NODE + (map.key_size as u64 - 4) + map.value_size as u64) * held,
        MapKind::RingBuf => {
            let pages = max / PAGE;
            RINGBUF_MAP + (RINGBUF_META_PAGES + pages) * PAGE + (RINGBUF_META_PAGES + 2 * pages) * 8
        }
    }
}

/// Whether a map's memory depends on how many entries it holds.
pub const fn grows(map: &MapDef) -> bool {
    matches!(map.kind, MapKind::LpmTrie)
        || (matches!(map.kind, MapKind::Hash) && map.flags & MAP_NO_PREALLOC != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::{MapDef, defs};

    const fn shape(kind: MapKind, key: u32, value: u32, max: u32, flags: u32) -> MapDef {
        MapDef {
            name: "t",
            kind,
            key_size: key,
            value_size: value,
            max_entries: max,
            flags,
            pinned: false,
            what: "",
        }
    }

    /// Figures `bpftool map show` reported for maps made with `bpftool map create` on the
    /// development machine (2 possible CPUs, Linux 6.18).
    #[test]
    fn the_kernels_own_figures_for_maps_of_every_kind() {
        let cases: [(MapDef, Option<u64>, u64); 14] = [
            (shape(MapKind::Array, 4, 8, 1, 0), None, 320),
            (shape(MapKind::Array, 4, 8, 1000, 0), None, 8_312),
            (shape(MapKind::Array, 4, 104, 262_144, 0), None, 27_263_288),
            (
                shape(MapKind::Array, 4, 104, 262_144, MAP_MMAPABLE),
                None,
                27_267_072,
            ),
            (shape(MapKind::Array, 4, 104, 1, MAP_MMAPABLE), None, 8_192),
            (shape(MapKind::PerCpuArray, 4, 8, 1, 0), None, 336),
            (
                shape(MapKind::PerCpuArray, 4, 80, 16_384, 0),
                None,
                2_752_824,
            ),
            (shape(MapKind::Hash, 20, 16, 65_536, 0), None, 6_816_896),
            (shape(MapKind::Hash, 4, 8, 1, 0), None, 1_184),
            (shape(MapKind::LruHash, 16, 80, 65_536, 0), None, 10_486_720),
            (shape(MapKind::LruHash, 4, 8, 1000, 0), None, 81_344),
            (
                shape(MapKind::Hash, 36, 16, 1_048_576, MAP_NO_PREALLOC),
                Some(0),
                16_778_176,
            ),
            (
                shape(MapKind::Hash, 36, 16, 1024, MAP_NO_PREALLOC),
                Some(3),
                17_680,
            ),
            (shape(MapKind::RingBuf, 0, 0, 262_144, 0), None, 275_784),
        ];
        for (map, entries, reported) in cases {
            assert_eq!(kernel_bytes(&map, 2, entries), reported, "{map:?}");
        }
        // Two prefixes of 4 data bytes with 8-byte values.
        let trie = shape(MapKind::LpmTrie, 8, 8, 16, MAP_NO_PREALLOC);
        assert_eq!(kernel_bytes(&trie, 2, Some(2)), 72);
        assert_eq!(kernel_bytes(&trie, 2, Some(0)), 0);
    }

    /// The floor of issue 9: at the default capacities the maps fit in 512 MB on a
    /// 64-CPU router.
    #[test]
    fn the_datapath_fits_a_64_cpu_router() {
        let total: u64 = defs::ALL.iter().map(|m| kernel_bytes(m, 64, None)).sum();
        assert!(
            total <= 512 * 1024 * 1024,
            "{} MB on 64 CPUs",
            total / (1024 * 1024)
        );
    }
}
