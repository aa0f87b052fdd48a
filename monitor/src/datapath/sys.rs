//! Every raw bpf(2) call of the controller, for what aya 0.14 does not offer: counting a
//! table's keys without copying it (BPF_MAP_GET_NEXT_KEY), reading per-CPU arrays in
//! batches (BPF_MAP_LOOKUP_BATCH), and probing at start whether the kernel has what the
//! datapath uses ([`probe`]). The readers here own their descriptors, duplicated from a
//! [`MapSet`] (nothing is opened from the pins again), so they run on threads of their own
//! without borrowing the set.

use std::os::fd::{AsFd as _, AsRawFd as _};

use aya::maps::MapData;
use monitor_common::maps::{DeviceStats, FLOW_WAYS, FlowSet};

/// A hash map or LPM trie whose keys are counted (its fill level).
pub struct KeyCounter {
    pub name: &'static str,
    pub capacity: u32,
    data: MapData,
    /// A flow table: an array of sets the XDP program fills, counted by its taken slots.
    flow_table: bool,
}

impl KeyCounter {
    /// Counts the keys of `data` (named `name`, holding at most `capacity`); a flow table
    /// ([`FlowSet`]s of [`FLOW_WAYS`] slots) by its taken slots.
    pub fn new(name: &'static str, capacity: u32, data: MapData, flow_table: bool) -> KeyCounter {
        KeyCounter {
            name,
            capacity,
            data,
            flow_table,
        }
    }

    /// Number of keys ([`count_keys`], at most the capacity), or for a flow table its
    /// taken slots.
    pub fn count(&self) -> Result<u64, std::io::Error> {
        if self.flow_table {
            return taken_flow_slots(&self.data, self.capacity / FLOW_WAYS);
        }
        count_keys(&self.data, u64::from(self.capacity))
    }
}

/// Keys in a hash map or trie, walked with BPF_MAP_GET_NEXT_KEY (the kernel keeps no
/// count it tells), at most `limit`: a key evicted while it is walked restarts the walk
/// from the first key, so a table that churns could otherwise be walked forever.
pub fn count_keys(data: &MapData, limit: u64) -> Result<u64, std::io::Error> {
    #[repr(C)]
    struct GetNextKey {
        map_fd: u32,
        _pad: u32,
        key: u64,
        next_key: u64,
        flags: u64,
    }
    const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
    let key_size = data.info().map_err(std::io::Error::other)?.key_size() as usize;
    let fd = data.fd().as_fd().as_raw_fd() as u32;
    let mut key = vec![0u8; key_size];
    let mut next = vec![0u8; key_size];
    let mut count = 0u64;
    while count < limit {
        let attr = GetNextKey {
            map_fd: fd,
            _pad: 0,
            key: if count == 0 { 0 } else { key.as_ptr() as u64 },
            next_key: next.as_mut_ptr() as u64,
            flags: 0,
        };
        // SAFETY: the attr points at two buffers of the map's key size that we own and
        // that outlive the call; the kernel reads `key` and writes `next_key` only.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_GET_NEXT_KEY,
                &attr as *const GetNextKey,
                std::mem::size_of::<GetNextKey>(),
            )
        };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENOENT) {
                break;
            }
            return Err(err);
        }
        count += 1;
        std::mem::swap(&mut key, &mut next);
    }
    Ok(count)
}

/// How many slots of a flow table of `sets` sets hold a flow now (the fill level, like a
/// hash map's entries): one pass over a shared mapping, no system call per slot.
pub fn taken_flow_slots(data: &MapData, sets: u32) -> std::io::Result<u64> {
    let table = MappedTable::<FlowSet>::map(data, sets)?;
    let mut taken = 0;
    table.each(|set| taken += set.tags.iter().filter(|t| **t != 0).count() as u64)?;
    Ok(taken)
}

/// A BPF array created with `BPF_F_MMAPABLE`, read through read-only shared mappings of
/// one window at a time: mapped pages count in this process's RSS, and the flow tables
/// are tens of MB, so no more than a window is mapped at once.
pub struct MappedTable<'a, T> {
    data: &'a MapData,
    len: usize,
    _values: std::marker::PhantomData<T>,
}

/// Bytes mapped at once, at most (about).
const MAPPED_WINDOW: usize = 1 << 20;
const PAGE: usize = 4096;

impl<'a, T: Copy> MappedTable<'a, T> {
    pub fn map(data: &'a MapData, entries: u32) -> std::io::Result<MappedTable<'a, T>> {
        // The kernel lays an mmapable array's values out one after another, each rounded
        // up to 8 bytes, from offset 0.
        assert!(
            std::mem::size_of::<T>().is_multiple_of(8),
            "values must be whole u64 words"
        );
        Ok(MappedTable {
            data,
            len: entries as usize,
            _values: std::marker::PhantomData,
        })
    }

    /// Each slot as it is now (the XDP program may change any while they are read; each
    /// is copied whole, for the caller to judge by its tag). Windows start on a page and
    /// hold whole values, so no value straddles two.
    pub fn each(&self, mut f: impl FnMut(T)) -> std::io::Result<()> {
        let size = std::mem::size_of::<T>();
        // Values per window: a multiple of the values that fill whole pages.
        let step = PAGE / gcd(size, PAGE);
        let per_window = step * (MAPPED_WINDOW / (step * size)).max(1);
        let mut first = 0;
        while first < self.len {
            let count = per_window.min(self.len - first);
            let bytes = (count * size).next_multiple_of(PAGE);
            let offset = (first * size) as libc::off_t;
            // SAFETY: a read-only shared mapping of the map's fd at a page-aligned offset
            // within the array; the result is checked and unmapped below.
            let at = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    bytes,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    self.data.fd().as_fd().as_raw_fd(),
                    offset,
                )
            };
            if at == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error());
            }
            let values = at.cast::<T>();
            for i in 0..count {
                // SAFETY: `i` is within the window, which holds `count` values of T; each
                // is read with a volatile copy, since the kernel side writes them
                // concurrently.
                f(unsafe { std::ptr::read_volatile(values.add(i)) });
            }
            // SAFETY: the mapping made above, unmapped once.
            unsafe { libc::munmap(at, bytes) };
            first += count;
        }
        Ok(())
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// An array of u64 words created with BPF_F_MMAPABLE that the XDP program reads (and for
/// SERVICE_FILTERS also sets bits of), mapped shared and writable: words are changed
/// atomically, since a read-modify-write through bpf(2) could lose a bit the program set
/// meanwhile.
pub struct SharedWords {
    at: *mut libc::c_void,
    bytes: usize,
    words: usize,
}

impl SharedWords {
    /// Maps the whole array of `words` u64s (the map's entries times the words of each).
    pub fn map(data: &MapData, words: usize) -> std::io::Result<SharedWords> {
        let bytes = (words * 8).next_multiple_of(PAGE);
        // SAFETY: a shared mapping of the whole array at offset 0, checked here and
        // unmapped by Drop.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                data.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if at == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(SharedWords { at, bytes, words })
    }

    /// Word `index` (None beyond the array).
    fn word(&self, index: usize) -> Option<&std::sync::atomic::AtomicU64> {
        if index >= self.words {
            return None;
        }
        // SAFETY: inside the mapping, 8-byte aligned (the mapping is page aligned and the
        // values whole u64s), only ever accessed atomically, here and by the XDP program;
        // it lives as long as `self`.
        Some(unsafe { std::sync::atomic::AtomicU64::from_ptr(self.at.cast::<u64>().add(index)) })
    }

    /// ORs each (word, mask) in.
    pub fn or(&self, marks: &[(usize, u64)]) {
        for &(index, mask) in marks {
            if let Some(word) = self.word(index) {
                word.fetch_or(mask, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }

    /// Clears words `range`.
    pub fn clear(&self, range: std::ops::Range<usize>) {
        for index in range {
            if let Some(word) = self.word(index) {
                word.store(0, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }

    /// Replaces every word by `words` (the rest of the array is cleared).
    pub fn store(&self, words: &[u64]) {
        for index in 0..self.words {
            if let Some(word) = self.word(index) {
                word.store(
                    words.get(index).copied().unwrap_or(0),
                    std::sync::atomic::Ordering::SeqCst,
                );
            }
        }
    }
}

impl Drop for SharedWords {
    fn drop(&mut self) {
        // SAFETY: the mapping made by `map`, unmapped once.
        unsafe { libc::munmap(self.at, self.bytes) };
    }
}

/// Entries read per BPF_MAP_LOOKUP_BATCH call.
const BATCH: usize = 1024;

/// A per-CPU array of counters read in batches (BPF_MAP_LOOKUP_BATCH): one syscall per
/// `BATCH` entries instead of one per entry (10,000 syscalls were the largest part of a
/// scrape's own work at 10,000 devices). Used for DEVICE_STATS (by slot) and
/// DEVICE_REASONS (by slot and reason), summed, and for DECISIONS, CPU by CPU.
pub struct BatchArray<T> {
    data: MapData,
    cpus: usize,
    _values: std::marker::PhantomData<T>,
}

/// A value the kernel copies as whole u64 words, summed over CPUs by `add`.
pub trait Summed: Copy + Default {
    fn add(&mut self, other: &Self);
}

impl Summed for DeviceStats {
    fn add(&mut self, other: &Self) {
        self.merge(other);
    }
}

impl Summed for u64 {
    fn add(&mut self, other: &Self) {
        *self += *other;
    }
}

/// DEVICE_STATS, read in batches.
pub type StatsArray = BatchArray<DeviceStats>;

impl<T: Copy + Default> BatchArray<T> {
    /// The per-CPU array `data` (a descriptor of its own).
    pub fn new(data: MapData) -> std::io::Result<BatchArray<T>> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
        Ok(BatchArray {
            data,
            cpus,
            _values: std::marker::PhantomData,
        })
    }

    /// Calls `each` with the index and every possible CPU's value of entries `0..count`.
    pub fn each(
        &self,
        count: usize,
        mut each: impl FnMut(usize, &[T]),
    ) -> Result<(), std::io::Error> {
        #[repr(C)]
        struct Batch {
            in_batch: u64,
            out_batch: u64,
            keys: u64,
            values: u64,
            count: u32,
            map_fd: u32,
            elem_flags: u64,
            flags: u64,
        }
        const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
        // The kernel copies each entry's value for every possible CPU, each rounded up to
        // 8 bytes: both value types are made of u64s.
        assert!(
            std::mem::size_of::<T>().is_multiple_of(8),
            "values must be whole u64 words"
        );
        let fd = self.data.fd().as_fd().as_raw_fd() as u32;
        let mut keys = vec![0u32; BATCH];
        let mut values = vec![T::default(); BATCH * self.cpus];
        let mut read = 0usize;
        let mut token = 0u32;
        while read < count {
            let mut next = 0u32;
            let mut attr = Batch {
                in_batch: if read == 0 {
                    0
                } else {
                    &token as *const u32 as u64
                },
                out_batch: &mut next as *mut u32 as u64,
                keys: keys.as_mut_ptr() as u64,
                values: values.as_mut_ptr() as u64,
                count: (count - read).min(BATCH) as u32,
                map_fd: fd,
                elem_flags: 0,
                flags: 0,
            };
            // SAFETY: the buffers hold `count` keys and `count` values of every possible
            // CPU, and outlive the call; the kernel writes them, `next` and `count`.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_MAP_LOOKUP_BATCH,
                    &mut attr as *mut Batch,
                    std::mem::size_of::<Batch>(),
                )
            };
            // ENOENT: the end of the array, with the last entries in this batch.
            let end = rc != 0;
            if end {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::ENOENT) {
                    return Err(err);
                }
            }
            let got = (attr.count as usize).min(BATCH);
            for (key, per_cpu) in keys[..got].iter().zip(values.chunks(self.cpus)) {
                if (*key as usize) < count {
                    each(*key as usize, per_cpu);
                }
            }
            read += got;
            if end || got == 0 {
                break;
            }
            token = next;
        }
        Ok(())
    }
}

impl<T: Summed> BatchArray<T> {
    /// Entries `0..count`, summed over CPUs, by index.
    pub fn read(&self, count: usize) -> Result<Vec<T>, std::io::Error> {
        let mut out = vec![T::default(); count];
        self.each(count, |index, per_cpu| {
            for value in per_cpu {
                out[index].add(value);
            }
        })?;
        Ok(out)
    }
}

/// Feature probes: each asks the kernel for the real thing on a tiny object of its own,
/// closed again at once (nothing is pinned or attached).
pub mod probe {
    use std::os::fd::{FromRawFd as _, OwnedFd};

    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
    const BPF_MAP_TYPE_ARRAY: u32 = 2;
    const BPF_MAP_TYPE_RINGBUF: u32 = 27;
    const BPF_PROG_TYPE_XDP: u32 = 6;
    const BPF_FUNC_KTIME_GET_COARSE_NS: i32 = 160;

    /// `union bpf_attr`, as bytes: each probe writes the fields it uses.
    struct Attr([u8; 128]);

    impl Attr {
        fn new() -> Attr {
            Attr([0; 128])
        }
        fn u32(&mut self, offset: usize, value: u32) -> &mut Attr {
            self.0[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
            self
        }
        fn u64(&mut self, offset: usize, value: u64) -> &mut Attr {
            self.0[offset..offset + 8].copy_from_slice(&value.to_ne_bytes());
            self
        }
    }

    fn bpf(command: libc::c_long, attr: &mut Attr) -> std::io::Result<libc::c_long> {
        // SAFETY: the attr is a zeroed bpf_attr of 128 bytes that outlives the call; every
        // pointer written into it points at a buffer the caller keeps alive across it.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                command,
                attr.0.as_mut_ptr(),
                attr.0.len() as libc::c_uint,
            )
        };
        if rc < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    }

    fn fd(rc: libc::c_long) -> OwnedFd {
        // SAFETY: a successful BPF_MAP_CREATE or BPF_PROG_LOAD returns a new descriptor
        // that nothing else owns.
        unsafe { OwnedFd::from_raw_fd(rc as i32) }
    }

    fn create_map(
        map_type: u32,
        key_size: u32,
        value_size: u32,
        entries: u32,
    ) -> std::io::Result<OwnedFd> {
        let mut attr = Attr::new();
        attr.u32(0, map_type)
            .u32(4, key_size)
            .u32(8, value_size)
            .u32(12, entries);
        bpf(BPF_MAP_CREATE, &mut attr).map(fd)
    }

    /// Whether bpf(2) works at all for this process: an array map is created. EPERM here
    /// means missing privileges (CAP_BPF), not a missing feature.
    pub fn bpf_syscall() -> std::io::Result<()> {
        create_map(BPF_MAP_TYPE_ARRAY, 4, 8, 1).map(drop)
    }

    /// A ring buffer map (Linux 5.8): the datapath's violation events.
    pub fn ring_buffer() -> std::io::Result<()> {
        create_map(BPF_MAP_TYPE_RINGBUF, 0, 0, 4096).map(drop)
    }

    /// BPF_MAP_LOOKUP_BATCH on an array (Linux 5.6): the scrape's device counters. The end
    /// of the array (ENOENT) is a success.
    pub fn batch_lookup() -> std::io::Result<()> {
        const ENTRIES: usize = 2;
        let map = create_map(BPF_MAP_TYPE_ARRAY, 4, 8, ENTRIES as u32)?;
        let mut keys = [0u32; ENTRIES];
        let mut values = [0u64; ENTRIES];
        let mut out_batch = 0u32;
        let mut attr = Attr::new();
        attr.u64(8, &mut out_batch as *mut u32 as u64)
            .u64(16, keys.as_mut_ptr() as u64)
            .u64(24, values.as_mut_ptr() as u64)
            .u32(32, ENTRIES as u32)
            .u32(36, std::os::fd::AsRawFd::as_raw_fd(&map) as u32);
        match bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// An XDP program calling bpf_ktime_get_coarse_ns (Linux 5.11), the datapath's clock:
    /// the program type and the helper, past the verifier.
    pub fn xdp_program_with_coarse_clock() -> std::io::Result<()> {
        // BPF_JMP|BPF_CALL imm=helper; BPF_ALU64|BPF_MOV|BPF_K r0=XDP_PASS; BPF_EXIT.
        let insns: [u64; 3] = [
            0x85 | ((BPF_FUNC_KTIME_GET_COARSE_NS as u32 as u64) << 32),
            0xb7 | (2u64 << 32),
            0x95,
        ];
        let license = c"GPL";
        let mut attr = Attr::new();
        attr.u32(0, BPF_PROG_TYPE_XDP)
            .u32(4, insns.len() as u32)
            .u64(8, insns.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64);
        bpf(BPF_PROG_LOAD, &mut attr).map(drop)
    }
}
