//! The capture reader on hand-made files (both formats, both byte orders, every pcapng
//! packet block, damage of every kind) and the baseline file format. The replay through
//! the XDP program is tested in tests/tests/replay.rs.

use std::path::Path;

use super::*;

fn frame(len: usize, fill: u8) -> Vec<u8> {
    vec![fill; len]
}

/// A classic pcap: `magic` written in `big_endian` order, records of `frames`.
fn pcap(big_endian: bool, magic: u32, link_type: u32, frames: &[Vec<u8>]) -> Vec<u8> {
    let w32 = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let w16 = |v: u16| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut out = Vec::new();
    out.extend(w32(magic));
    out.extend(w16(2));
    out.extend(w16(4));
    out.extend(w32(0));
    out.extend(w32(0));
    out.extend(w32(65535));
    out.extend(w32(link_type));
    for (i, f) in frames.iter().enumerate() {
        out.extend(w32(1_700_000_000 + i as u32));
        out.extend(w32(0));
        out.extend(w32(f.len() as u32));
        out.extend(w32(f.len() as u32 + 10));
        if magic == 0xa1b2_cd34 {
            out.extend([0u8; 8]);
        }
        out.extend(f);
    }
    out
}

/// pcapng blocks in one byte order.
struct Ng {
    big_endian: bool,
    out: Vec<u8>,
}

impl Ng {
    fn new(big_endian: bool) -> Self {
        let mut ng = Ng {
            big_endian,
            out: Vec::new(),
        };
        ng.section();
        ng
    }

    fn w32(&self, v: u32) -> [u8; 4] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn w16(&self, v: u16) -> [u8; 2] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn block(&mut self, block_type: u32, body: &[u8]) -> &mut Self {
        let mut body = body.to_vec();
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let total = body.len() as u32 + 12;
        let (t, l) = (self.w32(block_type), self.w32(total));
        self.out.extend(t);
        self.out.extend(l);
        self.out.extend(body);
        self.out.extend(l);
        self
    }

    fn section(&mut self) -> &mut Self {
        let mut body = Vec::new();
        body.extend(self.w32(0x1a2b_3c4d));
        body.extend(self.w16(1));
        body.extend(self.w16(0));
        body.extend(u64::MAX.to_le_bytes());
        self.block(0x0a0d_0d0a, &body)
    }

    fn interface(&mut self, link_type: u16, snaplen: u32) -> &mut Self {
        let mut body = Vec::new();
        body.extend(self.w16(link_type));
        body.extend(self.w16(0));
        body.extend(self.w32(snaplen));
        // if_tsresol option, then opt_endofopt.
        body.extend(self.w16(9));
        body.extend(self.w16(1));
        body.extend([6, 0, 0, 0]);
        body.extend([0, 0, 0, 0]);
        self.block(1, &body)
    }

    fn epb(&mut self, interface: u32, data: &[u8], original: u32) -> &mut Self {
        let mut body = Vec::new();
        body.extend(self.w32(interface));
        body.extend(self.w32(0));
        body.extend(self.w32(0));
        body.extend(self.w32(data.len() as u32));
        body.extend(self.w32(original));
        body.extend(data);
        self.block(6, &body)
    }

    fn obsolete_pb(&mut self, interface: u16, data: &[u8]) -> &mut Self {
        let mut body = Vec::new();
        body.extend(self.w16(interface));
        body.extend(self.w16(0));
        body.extend(self.w32(0));
        body.extend(self.w32(0));
        body.extend(self.w32(data.len() as u32));
        body.extend(self.w32(data.len() as u32));
        body.extend(data);
        self.block(2, &body)
    }

    fn spb(&mut self, data: &[u8], original: u32) -> &mut Self {
        let mut body = Vec::new();
        body.extend(self.w32(original));
        body.extend(data);
        self.block(3, &body)
    }

    fn switch_order(&mut self, big_endian: bool) -> &mut Self {
        self.big_endian = big_endian;
        self.section()
    }
}

/// Frames by number, how the file ended, its format.
type ReadAll = (Vec<(u64, Vec<u8>)>, Option<Damage>, Format);

/// Every frame of `bytes`, and how the file ended.
fn read_all(bytes: &[u8]) -> Result<ReadAll, CaptureError> {
    let mut reader = CaptureReader::new(Path::new("test.cap"), bytes)?;
    let format = reader.format();
    let mut frames = Vec::new();
    loop {
        match reader.next_frame()? {
            Next::Frame(f) => frames.push((f.number, f.data.to_vec())),
            Next::End => return Ok((frames, None, format)),
            Next::Damaged(d) => {
                assert!(
                    matches!(reader.next_frame()?, Next::End),
                    "reading must stop after damage"
                );
                return Ok((frames, Some(d), format));
            }
        }
    }
}

fn frames_of(bytes: &[u8]) -> Vec<Vec<u8>> {
    let (frames, damage, _) = read_all(bytes).unwrap_or_else(|e| panic!("read failed: {e}"));
    assert_eq!(damage, None, "unexpected damage");
    frames.into_iter().map(|(_, f)| f).collect()
}

#[test]
fn classic_pcap_in_both_byte_orders_and_all_magics() {
    let frames = vec![frame(60, 1), frame(14, 2), frame(1514, 3), frame(0, 4)];
    for big_endian in [false, true] {
        for magic in [0xa1b2_c3d4, 0xa1b2_3c4d, 0xa1b2_cd34] {
            let bytes = pcap(big_endian, magic, 1, &frames);
            let (read, damage, format) = read_all(&bytes).expect("readable");
            assert_eq!(damage, None);
            assert_eq!(
                read.iter().map(|(_, f)| f.clone()).collect::<Vec<_>>(),
                frames,
                "big_endian {big_endian}, magic {magic:#x}"
            );
            assert_eq!(
                read.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
                [1, 2, 3, 4]
            );
            assert_eq!(
                format,
                Format::Pcap {
                    big_endian,
                    nanos: magic == 0xa1b2_3c4d,
                    modified: magic == 0xa1b2_cd34
                }
            );
        }
    }
}

#[test]
fn empty_pcap_has_no_frames() {
    assert!(frames_of(&pcap(false, 0xa1b2_c3d4, 1, &[])).is_empty());
}

#[test]
fn link_type_upper_bits_are_fcs_flags_not_the_link_type() {
    let bytes = pcap(
        false,
        0xa1b2_c3d4,
        1 | 0x1000_0000 | 0x0400_0000,
        &[frame(60, 1)],
    );
    assert_eq!(frames_of(&bytes).len(), 1);
}

#[test]
fn other_link_types_are_an_error_naming_the_file() {
    let bytes = pcap(false, 0xa1b2_c3d4, 113, &[frame(60, 1)]);
    let err = CaptureReader::new(Path::new("sll.pcap"), &bytes[..]).expect_err("SLL refused");
    assert!(matches!(
        err,
        CaptureError::LinkType {
            link_type: 113,
            interface: None,
            ..
        }
    ));
    let message = err.to_string();
    assert!(
        message.contains("sll.pcap") && message.contains("113"),
        "{message}"
    );

    let mut ng = Ng::new(false);
    ng.interface(1, 0)
        .epb(0, &frame(60, 1), 60)
        .interface(101, 0);
    let mut reader = CaptureReader::new(Path::new("mixed.pcapng"), &ng.out[..]).expect("header ok");
    assert!(matches!(reader.next_frame(), Ok(Next::Frame(_))));
    match reader.next_frame() {
        Err(CaptureError::LinkType {
            link_type: 101,
            interface: Some(1),
            ..
        }) => {}
        other => panic!("expected a link type error for interface 1, got {other:?}"),
    }
}

#[test]
fn not_a_capture_is_an_error() {
    for bytes in [
        &b""[..],
        b"abc",
        b"GET / HTTP/1.1\r\n\r\n",
        &[0x1f, 0x8b, 8, 0, 0, 0],
    ] {
        match CaptureReader::new(Path::new("x"), bytes) {
            Err(CaptureError::NotACapture { .. }) => {}
            other => panic!("{bytes:?}: expected NotACapture, got {other:?}"),
        }
    }
    // A pcap file header cut short is not a capture either.
    let bytes = pcap(false, 0xa1b2_c3d4, 1, &[]);
    assert!(matches!(
        CaptureReader::new(Path::new("x"), &bytes[..20]),
        Err(CaptureError::NotACapture { .. })
    ));
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let err = CaptureReader::open(Path::new("/nonexistent/capture.pcap")).expect_err("missing");
    assert!(
        err.to_string().contains("/nonexistent/capture.pcap"),
        "{err}"
    );
}

#[test]
fn truncated_pcap_record_is_damage_with_offset_and_frame() {
    let bytes = pcap(
        false,
        0xa1b2_c3d4,
        1,
        &[frame(60, 1), frame(100, 2), frame(80, 3)],
    );
    let third = 24 + (16 + 60) + (16 + 100);
    // Cut inside the third record's data, then inside its header.
    for (cut, what) in [
        (third + 16 + 40, "record data cut short"),
        (third + 7, "record header cut short"),
    ] {
        let (frames, damage, _) = read_all(&bytes[..cut]).expect("header valid");
        assert_eq!(frames.len(), 2);
        let damage = damage.expect("damage reported");
        assert_eq!(damage.offset, third as u64);
        assert_eq!(damage.frames_before, 2);
        assert!(damage.problem.contains(what), "{}", damage.problem);
        assert!(damage.to_string().contains(&format!("byte offset {third}")));
    }
}

#[test]
fn absurd_record_length_is_damage_not_an_allocation() {
    let mut bytes = pcap(false, 0xa1b2_c3d4, 1, &[frame(60, 1), frame(60, 2)]);
    let second = 24 + 16 + 60;
    bytes[second + 8..second + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    let (frames, damage, _) = read_all(&bytes).expect("header valid");
    assert_eq!(frames.len(), 1);
    let damage = damage.expect("damage");
    assert_eq!(damage.offset, second as u64);
    assert!(damage.problem.contains("4294967295"), "{}", damage.problem);
}

#[test]
fn pcapng_packet_blocks_in_both_byte_orders() {
    for big_endian in [false, true] {
        let mut ng = Ng::new(big_endian);
        ng.interface(1, 0)
            .block(4, &[0, 0, 0, 0]) // name resolution
            .epb(0, &frame(61, 1), 61)
            .spb(&frame(70, 2), 70)
            .obsolete_pb(0, &frame(15, 3))
            .block(5, &[0; 12]) // interface statistics
            .block(0x0bad, &[0; 8]) // custom
            .block(0x8000_0001, &[0; 4]); // unknown local use
        let mut reader = CaptureReader::new(Path::new("t.pcapng"), &ng.out[..]).expect("header");
        let mut lens = Vec::new();
        while let Next::Frame(f) = reader.next_frame().expect("no error") {
            lens.push((f.number, f.data.len(), f.data[0]));
        }
        assert_eq!(
            lens,
            [(1, 61, 1), (2, 70, 2), (3, 15, 3)],
            "big_endian {big_endian}"
        );
        assert_eq!(reader.other_blocks(), 4);
    }
}

#[test]
fn pcapng_sections_may_change_byte_order_and_reset_interfaces() {
    let mut ng = Ng::new(false);
    ng.interface(1, 0).epb(0, &frame(60, 1), 60);
    ng.switch_order(true)
        .interface(1, 0)
        .epb(0, &frame(62, 2), 62);
    ng.switch_order(false);
    // Interface 0 belonged to the previous section.
    ng.epb(0, &frame(64, 3), 64);
    let (frames, damage, _) = read_all(&ng.out).expect("readable");
    assert_eq!(
        frames.iter().map(|(_, f)| f.len()).collect::<Vec<_>>(),
        [60, 62]
    );
    let damage = damage.expect("packet on an undescribed interface");
    assert!(damage.problem.contains("interface 0"), "{}", damage.problem);
    assert_eq!(damage.frames_before, 2);
}

#[test]
fn simple_packet_block_is_cut_by_the_snaplen() {
    let mut ng = Ng::new(false);
    ng.interface(1, 64).spb(&frame(100, 7), 100);
    assert_eq!(frames_of(&ng.out), [frame(64, 7)]);
}

#[test]
fn pcapng_damage_is_reported_where_it_starts() {
    let mut ng = Ng::new(false);
    ng.interface(1, 0).epb(0, &frame(60, 1), 60);
    let third_block = ng.out.len();
    ng.epb(0, &frame(60, 2), 60);
    let whole = ng.out.clone();

    // Cut inside the block.
    let (frames, damage, _) = read_all(&whole[..whole.len() - 10]).expect("header valid");
    assert_eq!(frames.len(), 1);
    let damage = damage.expect("damage");
    assert_eq!(damage.offset, third_block as u64);
    assert!(damage.problem.contains("cut short"), "{}", damage.problem);

    // Trailing length differs.
    let mut bad = whole.clone();
    let n = bad.len();
    bad[n - 4] ^= 0x40;
    let (frames, damage, _) = read_all(&bad).expect("header valid");
    assert_eq!(frames.len(), 1);
    assert!(damage.expect("damage").problem.contains("trailing length"));

    // Length not a multiple of 4, and absurd.
    for length in [61u32, 0xffff_fffc] {
        let mut bad = whole.clone();
        bad[third_block + 4..third_block + 8].copy_from_slice(&length.to_le_bytes());
        let (frames, damage, _) = read_all(&bad).expect("header valid");
        assert_eq!(frames.len(), 1);
        assert_eq!(damage.expect("damage").offset, third_block as u64);
    }

    // Captured length beyond the block.
    let mut bad = whole.clone();
    bad[third_block + 20..third_block + 24].copy_from_slice(&1000u32.to_le_bytes());
    let (_, damage, _) = read_all(&bad).expect("header valid");
    assert!(damage.expect("damage").problem.contains("1000"));

    // Garbage after the last block.
    let mut bad = whole.clone();
    bad.extend(b"garbage!");
    let (frames, damage, _) = read_all(&bad).expect("header valid");
    assert_eq!(frames.len(), 2);
    assert_eq!(damage.expect("damage").offset, whole.len() as u64);
}

#[test]
fn pcapng_with_a_broken_first_section_is_not_a_capture() {
    let ng = Ng::new(false);
    assert!(matches!(
        CaptureReader::new(Path::new("x"), &ng.out[..ng.out.len() - 3]),
        Err(CaptureError::NotACapture { .. })
    ));
    let mut bad = ng.out.clone();
    bad[8..12].copy_from_slice(&[1, 2, 3, 4]);
    assert!(matches!(
        CaptureReader::new(Path::new("x"), &bad[..]),
        Err(CaptureError::NotACapture { .. })
    ));
}

#[test]
fn skip_reasons_follow_the_test_run_limits() {
    assert_eq!(SkipReason::of_len(13), Some(SkipReason::TooShort));
    assert_eq!(SkipReason::of_len(14), None);
    assert_eq!(SkipReason::of_len(TEST_RUN_MAX_FRAME), None);
    assert_eq!(
        SkipReason::of_len(TEST_RUN_MAX_FRAME + 1),
        Some(SkipReason::TooLarge)
    );
}

#[test]
fn baseline_file_round_trip() {
    use monitor_common::maps::{BaselineEntry, ORIGIN_IMPORTED, ORIGIN_LEARNED};

    let dir = std::env::temp_dir().join(format!("monitor-replay-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("baseline.json");
    let v4 = |a: [u8; 4]| crate::datapath::addr_key(IpAddr::from(a));
    let entry = |origin| BaselineEntry {
        learned_ns: 12_345,
        origin,
        _pad1: 0,
        _pad2: 0,
        window: 0,
        schedule: [0; 3],
    };
    let entries = vec![
        (
            FlowKey {
                device: v4([10, 0, 0, 2]),
                peer: v4([10, 0, 0, 1]),
                service_port: 443,
                protocol: 6,
                direction: Direction::Inbound as u8,
            },
            entry(ORIGIN_LEARNED),
        ),
        (
            FlowKey {
                device: crate::datapath::addr_key("fe80::1".parse().expect("ip")),
                peer: crate::datapath::addr_key("ff02::1".parse().expect("ip")),
                service_port: 128,
                protocol: 58,
                direction: Direction::Outbound as u8,
            },
            entry(ORIGIN_IMPORTED),
        ),
        (
            FlowKey {
                device: v4([10, 0, 0, 1]),
                peer: v4([10, 0, 0, 3]),
                service_port: 123,
                protocol: 17,
                direction: Direction::Symmetric as u8,
            },
            entry(ORIGIN_LEARNED),
        ),
    ];
    write_baseline(&path, &entries).expect("written");
    let text = std::fs::read_to_string(&path).expect("read");
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(json["format"], "monitor-baseline");
    assert_eq!(json["version"], 2);
    assert_eq!(json["entries"].as_array().map(Vec::len), Some(3));
    assert!(text.contains(r#""device": "10.0.0.2""#), "{text}");
    assert!(text.contains(r#""direction": "in""#), "{text}");
    let mut back: Vec<(FlowKey, u8)> = read_baseline(&path)
        .expect("read back")
        .into_iter()
        .map(|(k, e)| (k, e.origin))
        .collect();
    let mut expected: Vec<(FlowKey, u8)> = entries.iter().map(|(k, e)| (*k, e.origin)).collect();
    back.sort();
    expected.sort();
    assert_eq!(back, expected);

    std::fs::write(
        &path,
        r#"{"format":"monitor-baseline","version":3,"entries":[]}"#,
    )
    .expect("write");
    let err = read_baseline(&path).expect_err("version 3 refused");
    assert!(matches!(err, ReplayError::Baseline(_)), "{err:?}");
    std::fs::write(&path, "{ not json").expect("write");
    assert!(read_baseline(&path).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
