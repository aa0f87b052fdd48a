//! The packet path: parse, count, learn and enforce, for every frame at XDP.
//!
//! Read top to bottom: the one bounds-checked `ptr_at`, the program entry that maps
//! errors and verdicts to an XDP action in one place, then an IP packet's decision: from
//! the per-CPU decision cache when the same packet key was judged before (`cache`), else
//! judged in full (`judge`), which caches what it decided. What a decision charges to
//! whom is applied by the same code either way (`account`). The maps are declared in
//! `maps` from the one list in `monitor_common::maps::defs`; layouts, reasons, the
//! parser, the service-port rule and the verdict logic itself live in `monitor-common`.
//!
//! Verifier lessons, which shaped the code:
//! - The judge runs in stages (`judge::prepare`, `judge::judge_side` ×2, `judge::finish`),
//!   each a BPF function reading its inputs from a per-CPU slot (`WORK`): read from map
//!   memory, they are unknown to the verifier, which then checks each stage a handful of
//!   times instead of once per combination of the earlier stages' outcomes ("program too
//!   large").
//! - Nothing stored in a map slot is an `Option` or an enum with payload: LLVM may fill
//!   undefined bytes from any register, and the verifier rejects that. Pointers that may be
//!   absent are `Option<NonNull<T>>` (`Option<*mut T>` has no niche, and its undefined
//!   payload is what the verifier rejects).
//! - A subprogram returns a scalar its caller uses: LLVM drops unused return values, and a
//!   subprogram whose R0 is left holding a stack pointer is rejected ("cannot return stack
//!   pointer to the caller").
//! - Every call costs a return, and returns are expensive on CPUs with SRSO's "Safe RET":
//!   the cached path calls nothing but the clock and, for a violation that is reported,
//!   the event ring; map lookups of arrays are inlined by the verifier.
#![no_std]
#![no_main]
#![feature(asm_experimental_arch)]
#![expect(
    clippy::needless_borrows_for_generic_args,
    reason = "aya-ebpf's map methods take `impl Borrow<K>`: passing keys by value instead changed \
              code generation so that the verifier rejected a stage (R0 left holding a stack \
              pointer), so map keys are passed by reference"
)]

mod account;
mod cache;
mod judge;
mod maps;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns},
    macros::xdp,
    programs::XdpContext,
};
use monitor_common::{
    Action, CUT_VERDICTS, FrameClass, Mode, Reason, VERDICT_SLOTS,
    judge::Work,
    maps::{
        CONFIG_CAPTURE_MAY_BE_CUT, FrameCounts, IFACE_WARD, LAYOUT_VERSION, PATH_CACHED,
        PATH_JUDGED, active_generation, source_id,
    },
    parse::{self, FrameBytes, IpPacket, ParsedFrame, Snaplen},
    schedule::HOUR_UNKNOWN,
    verdict_index,
};

use crate::{
    account::{add_counter, count_frame},
    maps::{CONFIG, FRAME_COUNTS, IFACE_SLOTS, IFACE_VERDICTS, SCRATCH},
};

/// The one bounds check every packet read goes through.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

struct XdpFrame<'a>(&'a XdpContext);

impl FrameBytes for XdpFrame<'_> {
    #[inline(always)]
    fn frame_len(&self) -> usize {
        self.0.data_end() - self.0.data()
    }

    #[inline(always)]
    fn read<const N: usize>(&self, offset: usize) -> Option<&[u8; N]> {
        // SAFETY: ptr_at checked that the N bytes lie inside the packet, which outlives
        // the program run; [u8; N] has alignment 1.
        ptr_at::<[u8; N]>(self.0, offset).map(|p| unsafe { &*p })
    }
}

/// Internal faults (a missing map slot). Mapped to XDP_PASS: the enforcer fails open,
/// since a surprise drop of a life-critical device is the worse failure.
struct Fault;

#[xdp]
pub fn monitor_xdp(ctx: XdpContext) -> u32 {
    xdp_verdict(try_monitor(&ctx))
}

#[inline(always)]
fn xdp_verdict(result: Result<Action, Fault>) -> u32 {
    match result {
        Ok(Action::Drop) => xdp_action::XDP_DROP,
        Ok(Action::Pass) | Err(Fault) => xdp_action::XDP_PASS,
    }
}

/// Parses and counts frame classes, nothing more: the benchmark's reference point.
#[xdp]
pub fn parse_only_xdp(ctx: XdpContext) -> u32 {
    let frame = XdpFrame(&ctx);
    let len = frame.frame_len() as u64;
    let (Some(parsed), Ok(counts)) = (SCRATCH.get_ptr_mut(0), frame_counts()) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: this CPU's slot, used only within this program run.
    let parsed = unsafe { &mut *parsed };
    parse::parse_frame_into(&frame, Snaplen::Strict, parsed);
    count_frame(counts.classes.get_mut(class_index(parsed)), len);
    xdp_action::XDP_PASS
}

/// Drops every frame: the benchmark's floor, what running any XDP program costs.
#[xdp]
pub fn drop_xdp(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

/// Bounces every frame back out of the interface it came in on: the benchmark's traffic
/// generator (`cargo xtask bench`). Run in BPF_PROG_TEST_RUN's live-frames mode on one end
/// of a veth pair, it pushes the test frame into the peer at millions of packets per
/// second, far beyond what a socket sender reaches. Never attached to an interface.
#[xdp]
pub fn tx_xdp(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}

/// As `tx_xdp`, giving each frame a new destination (a random UDP destination port and
/// last byte of the IPv4 destination address): the benchmark's scan.
#[xdp]
pub fn tx_scan_xdp(ctx: XdpContext) -> u32 {
    // SAFETY: a helper without arguments.
    let random = unsafe { aya_ebpf::helpers::bpf_get_prandom_u32() };
    bench::rewrite(&ctx, bench::SCAN, random);
    xdp_action::XDP_TX
}

/// As `tx_xdp`, giving each frame a new source address (random, in 100.64.0.0/10): the
/// benchmark's spoofed-source flood.
#[xdp]
pub fn tx_flood_xdp(ctx: XdpContext) -> u32 {
    // SAFETY: a helper without arguments.
    let random = unsafe { aya_ebpf::helpers::bpf_get_prandom_u32() };
    bench::rewrite(&ctx, bench::FLOOD, random);
    xdp_action::XDP_TX
}

/// The monitor, on a frame that is a new flow each time it runs: before judging, the
/// frame's UDP destination port (and, each time it wraps, the last byte of its IPv4
/// destination address) is counted up in place. BPF_PROG_TEST_RUN runs one frame buffer
/// over and over, so each run is a new destination: the benchmark's scan and learning
/// cases. Never attached to an interface.
#[xdp]
pub fn scan_xdp(ctx: XdpContext) -> u32 {
    bench::count_up(&ctx);
    xdp_verdict(try_monitor(&ctx))
}

/// Rewrites of the benchmark's frames (Ethernet, IPv4 with a 20-byte header, UDP).
mod bench {
    use super::XdpContext;

    pub const SCAN: u8 = 0;
    pub const FLOOD: u8 = 1;
    const IPV4_SRC: usize = 14 + 12;
    const IPV4_DST_LAST: usize = 14 + 19;
    const UDP_DST_PORT: usize = 14 + 20 + 2;
    /// The bytes these rewrites read and write lie within the first 38.
    const NEEDED: usize = UDP_DST_PORT + 2;

    /// The frame's bytes, when it is as long as the rewrites need: its start and end read
    /// once each with volatile loads (LLVM would otherwise merge the two 32-bit fields into
    /// one 64-bit load and split it with shifts, which the verifier refuses on packet
    /// pointers), then bounds-checked as `ptr_at` does.
    #[inline(always)]
    fn frame(ctx: &XdpContext) -> Option<*mut u8> {
        // SAFETY: the context the kernel passed; two fields read.
        let (start, end) = unsafe {
            (
                core::ptr::read_volatile(&raw const (*ctx.ctx).data) as usize,
                core::ptr::read_volatile(&raw const (*ctx.ctx).data_end) as usize,
            )
        };
        if start + NEEDED > end {
            return None;
        }
        Some(start as *mut u8)
    }

    /// The frame, when it is what the benchmark sends (IPv4 without options, UDP).
    #[inline(always)]
    fn bench_frame(ctx: &XdpContext) -> Option<*mut u8> {
        let p = frame(ctx)?;
        // SAFETY: `frame` checked that the first NEEDED bytes lie in the packet.
        let is = unsafe {
            *p.add(12) == 0x08 && *p.add(13) == 0 && *p.add(14) == 0x45 && *p.add(23) == 17
        };
        is.then_some(p)
    }

    #[inline(always)]
    pub fn rewrite(ctx: &XdpContext, what: u8, random: u32) {
        let Some(p) = bench_frame(ctx) else { return };
        let bytes = random.to_be_bytes();
        // SAFETY: every offset written is below NEEDED, which `frame` checked.
        unsafe {
            if what == SCAN {
                *p.add(UDP_DST_PORT) = bytes[0];
                *p.add(UDP_DST_PORT + 1) = bytes[1];
                *p.add(IPV4_DST_LAST) = bytes[2];
            } else {
                *p.add(IPV4_SRC) = 100;
                *p.add(IPV4_SRC + 1) = 64 | (bytes[0] & 0x3f);
                *p.add(IPV4_SRC + 2) = bytes[1];
                *p.add(IPV4_SRC + 3) = bytes[2];
            }
        }
    }

    #[inline(always)]
    pub fn count_up(ctx: &XdpContext) {
        let Some(p) = bench_frame(ctx) else { return };
        // SAFETY: every offset read and written is below NEEDED, which `frame` checked.
        unsafe {
            let port = u16::from_be_bytes([*p.add(UDP_DST_PORT), *p.add(UDP_DST_PORT + 1)])
                .wrapping_add(1);
            let [high, low] = port.to_be_bytes();
            *p.add(UDP_DST_PORT) = high;
            *p.add(UDP_DST_PORT + 1) = low;
            if port == 0 {
                *p.add(IPV4_DST_LAST) = (*p.add(IPV4_DST_LAST)).wrapping_add(1);
            }
        }
    }
}

/// Per-packet facts every stage needs.
pub struct Packet {
    pub len: u64,
    pub now: u64,
    pub global: Mode,
    pub flags: u8,
    /// Which copy of the policy maps this packet reads (see `Config::generation`).
    pub generation: u8,
    /// `Config::cache_epoch + 1`: the tag of what decisions are cached under.
    pub epoch_tag: u32,
    /// `Config::learn_window`, recorded in what this packet teaches the baseline.
    pub learn_window: u32,
    /// The global mode and CONFIG flags, as decisions record them.
    pub config_bits: u16,
    /// `Config::hash_seed`.
    pub seed: u32,
    /// `Config::hour_of_week` (the schedules' clock, written by the controller).
    pub hour_of_week: u8,
    /// `Config::schedule_tolerance`.
    pub schedule_tolerance: u8,
    /// `maps::source_id` of the frame's source MAC on a ward leg, 0 elsewhere: what MAC
    /// bindings are checked against, and what decisions made on a ward leg are tied to.
    pub source_id: u64,
    /// The interface the frame came in on.
    pub ifindex: u32,
}

impl Packet {
    /// A frame a capture cut (replay): counted, but its verdict is no prediction.
    #[inline(always)]
    pub fn judged(&self) -> bool {
        self.flags & CONFIG_CAPTURE_MAY_BE_CUT == 0
    }
}

#[inline(always)]
fn try_monitor(ctx: &XdpContext) -> Result<Action, Fault> {
    let frame = XdpFrame(ctx);
    let config = CONFIG.get(0).ok_or(Fault)?;
    let layout_ok = config.layout_version == LAYOUT_VERSION;
    // A CONFIG written by another layout is ignored: learn mode drops nothing.
    let global = if layout_ok {
        Mode::try_from(config.mode).unwrap_or(Mode::Learn)
    } else {
        Mode::Learn
    };
    let flags = if layout_ok { config.flags } else { 0 };
    // The interface's role and verdict block, read once: whether source MACs are judged
    // here, and where its verdicts are counted.
    let ifindex = ctx.ingress_ifindex() as u32;
    let iface = match IFACE_SLOTS.get(ifindex) {
        Some(value) => *value,
        None => 0,
    };
    let work = judge::work()?;
    let mut packet = Packet {
        len: frame.frame_len() as u64,
        now: coarse_now(work),
        global,
        flags,
        generation: active_generation(config),
        epoch_tag: config.cache_epoch.wrapping_add(1),
        learn_window: config.learn_window,
        config_bits: global as u16 | u16::from(flags) << 8,
        seed: config.hash_seed,
        hour_of_week: if layout_ok {
            config.hour_of_week
        } else {
            HOUR_UNKNOWN
        },
        schedule_tolerance: config.schedule_tolerance,
        source_id: 0,
        ifindex,
    };
    let snaplen = if packet.judged() {
        Snaplen::Strict
    } else {
        Snaplen::CaptureMayBeCut
    };
    let parsed = SCRATCH.get_ptr_mut(0).ok_or(Fault)?;
    // SAFETY: this CPU's slot, used only within this program run.
    let parsed: &mut ParsedFrame = unsafe { &mut *parsed };
    parse::parse_frame_into(&frame, snaplen, parsed);
    let counts = frame_counts()?;
    count_frame(counts.classes.get_mut(class_index(parsed)), packet.len);
    if iface & IFACE_WARD != 0 {
        packet.source_id = source_id(&parsed.src_mac);
    }
    let (action, reason) = match (parsed.fault, parsed.has_ip) {
        // Without it an enforced IPv6 device loses its neighbours, as an IPv4 one would
        // without ARP (which, not being IP, always passes).
        (None, true) if is_neighbor_discovery(&parsed.ip) => {
            judge::count_unjudged(&packet)?;
            if packet.source_id != 0 && parsed.ip.icmp_type == parse::ICMPV6_NEIGHBOR_ADVERTISEMENT
            {
                note_neighbor(ctx, &packet, parsed);
            }
            (Action::Pass, Reason::NeighborDiscovery)
        }
        (None, true) => {
            let (action, reason, path) = decide_ip(&packet, parsed, work)?;
            if let Some(count) = counts.paths.get_mut(path as usize) {
                *count += 1;
            }
            (action, reason)
        }
        (None, false) => {
            if packet.source_id != 0 && parsed.class == FrameClass::Arp {
                note_neighbor(ctx, &packet, parsed);
            }
            (Action::Pass, Reason::NotIp)
        }
        (Some(fault), true) => (judge::judge_malformed(&packet)?, fault),
        (Some(fault), false) if packet.global == Mode::Enforce => (Action::Drop, fault),
        (Some(fault), false) => (Action::Pass, fault),
    };
    let index = verdict_index(action, reason);
    // A cut frame's verdict is not a prediction replay may show (CONFIG_CAPTURE_MAY_BE_CUT).
    let block = if packet.judged() { 0 } else { CUT_VERDICTS };
    count_frame(
        counts.verdicts.get_mut((block + index) as usize),
        packet.len,
    );
    let block = iface & !IFACE_WARD;
    if block != 0 {
        add_counter(
            &IFACE_VERDICTS,
            (block - 1) * VERDICT_SLOTS + index,
            packet.len,
        );
    }
    Ok(action)
}

/// `CLOCK_MONOTONIC` (coarse), read once per tick per CPU: the coarse clock moves only
/// with the tick, so reading it again within one (a call, which costs a return) would give
/// the same time. Jiffies, which the verifier inlines, say when the tick moved. The tick
/// that increments jiffies updates the coarse clock right after, so a time read in between
/// is at most one tick behind, as the coarse clock always may be.
#[inline(always)]
fn coarse_now(work: &mut Work) -> u64 {
    // SAFETY: helpers without arguments.
    let jiffies = unsafe { bpf_jiffies64() };
    if jiffies != work.clock_jiffies || work.clock_ns == 0 {
        // SAFETY: a helper without arguments.
        work.clock_ns = unsafe { bpf_ktime_get_coarse_ns() };
        work.clock_jiffies = jiffies;
    }
    work.clock_ns
}

/// An IP packet that parsed: decided by the per-CPU cache when the same packet key was
/// judged before under the same policy, mode, epoch and hour of the week (one lookup), a
/// scan's probe beyond its device's budget in one stage (`judge::probe`), else judged in
/// full.
#[inline(always)]
fn decide_ip(
    packet: &Packet,
    parsed: &ParsedFrame,
    work: &mut Work,
) -> Result<(Action, Reason, u32), Fault> {
    let ip = &parsed.ip;
    let kind = judge::set_kind(work, cache::kind(packet, ip));
    if cache::cacheable(packet, ip, kind) {
        let found = cache::decided(packet, ip, &cache::key_words(ip, kind));
        if found != cache::MISS {
            let (action, reason) = cache::verdict(found);
            return Ok((action, reason, PATH_CACHED));
        }
        // A scan's probe beyond its device's budget: one stage, when that decides it.
        let found = judge::probe(packet, ip, work, kind);
        if found != cache::MISS {
            if found & judge::PROBE_HELD == 0
                && judge::charge_probe(packet, ip, work) != found as u8
            {
                return Err(Fault);
            }
            let (action, reason) = cache::verdict(found);
            return Ok((action, reason, PATH_JUDGED));
        }
    }
    let (action, reason) = judge::judge_ip(packet, parsed, work)?;
    Ok((action, reason, PATH_JUDGED))
}

/// The frame's class as an index, read as a plain byte: LLVM knows an enum's range and
/// would drop the bounds check of an index made from it, which the verifier, seeing a
/// byte, needs.
#[inline(always)]
fn class_index(parsed: &ParsedFrame) -> usize {
    // SAFETY: a one-byte field of the parsed frame (`FrameClass` is `repr(u8)`).
    usize::from(unsafe { core::ptr::read_volatile(&raw const parsed.class as *const u8) })
}

/// This CPU's frame counters.
#[inline(always)]
fn frame_counts() -> Result<&'static mut FrameCounts, Fault> {
    let counts = FRAME_COUNTS.get_ptr_mut(0).ok_or(Fault)?;
    // SAFETY: this CPU's slot, written only by this CPU while the program runs.
    Ok(unsafe { &mut *counts })
}

/// Discovery from what a neighbour announces on a ward leg (an ARP request or reply's
/// sender, a neighbour advertisement's target; `parse::neighbor_claim_into` says which
/// frames count), recorded as its source address would be: a device that only answers ARP
/// or NDP still has its address known. Out of line: ARP and NDP are rare, and the IP
/// path's frame does not grow by the address.
#[inline(never)]
fn note_neighbor(ctx: &XdpContext, packet: &Packet, parsed: &ParsedFrame) -> u8 {
    let mut addr = [0u8; 16];
    if !parse::neighbor_claim_into(&XdpFrame(ctx), parsed, &mut addr) {
        return 0;
    }
    account::note_claim(packet, &addr)
}

/// ICMPv6 router solicitation/advertisement, neighbour solicitation/advertisement and
/// redirect (types 133 to 137).
#[inline(always)]
fn is_neighbor_discovery(ip: &IpPacket) -> bool {
    ip.protocol == parse::IPPROTO_ICMPV6
        && ip.transport == parse::TransportKind::Icmp
        && (133..=137).contains(&ip.icmp_type)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable path here; the code has none.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
