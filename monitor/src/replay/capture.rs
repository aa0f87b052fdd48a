//! Reading pcap and pcapng capture files frame by frame, streaming, and surviving damage.
//!
//! Classic pcap (microsecond and nanosecond magic, both byte orders, and the "modified"
//! Kuznetzov variant with 24-byte record headers) and pcapng (every section in its own byte
//! order; enhanced, simple and obsolete packet blocks carry frames, every other block type
//! is skipped by its length). Only Ethernet (`LINKTYPE_ETHERNET`/`DLT_EN10MB` = 1) is
//! accepted: another link type is an error naming the file (and the pcapng interface).
//!
//! Damage after a valid file header (a record or block cut short, a length no capture
//! can have, a packet on an interface that was never described) ends the file with a
//! [`Damage`] that says where: the frames before it were read and stay valid, as tshark
//! and tcpdump would show them.

use std::{
    fmt,
    fs::File,
    io::{self, BufReader, Read},
    path::{Path, PathBuf},
};

/// `LINKTYPE_ETHERNET` (`DLT_EN10MB`).
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Largest record a classic pcap may hold (libpcap's and wiretap's limit for Ethernet).
pub const MAX_PCAP_RECORD: u32 = 262_144;
/// Largest pcapng block accepted; anything longer is taken as garbage.
pub const MAX_PCAPNG_BLOCK: u32 = 64 * 1024 * 1024;

const PCAP_MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const PCAP_MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// Alexey Kuznetzov's modified pcap: 24-byte record headers.
const PCAP_MAGIC_MODIFIED: u32 = 0xa1b2_cd34;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
const PCAPNG_IDB: u32 = 0x0000_0001;
/// Obsolete packet block (pcapng drafts before the EPB).
const PCAPNG_PB: u32 = 0x0000_0002;
const PCAPNG_SPB: u32 = 0x0000_0003;
const PCAPNG_EPB: u32 = 0x0000_0006;

/// Why a capture file cannot be replayed at all.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{}: cannot open", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: reading at byte {offset} failed", path.display())]
    Read {
        path: PathBuf,
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("{}: not a pcap or pcapng capture ({what})", path.display())]
    NotACapture { path: PathBuf, what: String },
    #[error(
        "{}: link type {link_type} ({}){} is not Ethernet (DLT_EN10MB = 1); only Ethernet captures can be replayed",
        path.display(),
        link_type_name(*link_type),
        interface.map(|i| format!(" of pcapng interface {i}")).unwrap_or_default()
    )]
    LinkType {
        path: PathBuf,
        link_type: u32,
        /// The pcapng interface (IDB index within its section); `None` for classic pcap.
        interface: Option<u32>,
    },
}

/// Where and why reading a file stopped early.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Damage {
    /// Byte offset of the record or block that could not be read.
    pub offset: u64,
    /// Frames read before it (the damaged record would have been frame `frames_before + 1`).
    pub frames_before: u64,
    pub problem: String,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "damaged at byte offset {} (where frame {} would start): {}",
            self.offset,
            self.frames_before + 1,
            self.problem
        )
    }
}

/// The container format of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Pcap {
        big_endian: bool,
        nanos: bool,
        modified: bool,
    },
    PcapNg,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Pcap { modified: true, .. } => "pcap (modified)",
            Format::Pcap { .. } => "pcap",
            Format::PcapNg => "pcapng",
        }
    }
}

/// One frame as captured.
#[derive(Debug)]
pub struct Frame<'a> {
    /// 1-based, in file order (tshark's `frame.number`).
    pub number: u64,
    /// Byte offset of its record or block.
    pub offset: u64,
    /// The captured bytes (possibly cut by a snapshot length).
    pub data: &'a [u8],
    /// Length on the wire.
    pub original_len: u32,
}

/// What [`CaptureReader::next_frame`] found.
#[derive(Debug)]
pub enum Next<'a> {
    Frame(Frame<'a>),
    /// The file ended cleanly.
    End,
    /// The file is damaged here; reading stops (later calls return [`Next::End`]).
    Damaged(Damage),
}

/// Byte order of the section being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    Little,
    Big,
}

impl Order {
    fn u32(self, b: &[u8], at: usize) -> u32 {
        let bytes = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        match self {
            Order::Little => u32::from_le_bytes(bytes),
            Order::Big => u32::from_be_bytes(bytes),
        }
    }

    fn u16(self, b: &[u8], at: usize) -> u16 {
        let bytes = [b[at], b[at + 1]];
        match self {
            Order::Little => u16::from_le_bytes(bytes),
            Order::Big => u16::from_be_bytes(bytes),
        }
    }
}

#[derive(Debug)]
struct Interface {
    snaplen: u32,
}

#[derive(Debug)]
enum State {
    Pcap {
        order: Order,
        record_header: usize,
    },
    PcapNg {
        order: Order,
        interfaces: Vec<Interface>,
    },
    Done,
}

/// Streams the frames of one capture file.
pub struct CaptureReader<R = BufReader<File>> {
    path: PathBuf,
    input: R,
    format: Format,
    state: State,
    /// Bytes consumed so far.
    offset: u64,
    frames: u64,
    /// pcapng blocks that carry no frame (interface statistics, name resolution, ...).
    other_blocks: u64,
    buf: Vec<u8>,
}

impl<R> fmt::Debug for CaptureReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureReader")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("offset", &self.offset)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

impl CaptureReader {
    /// Opens `path` and reads its file header (pcap) or first section header and the
    /// interfaces described before the first frame (pcapng). A file that is missing, not a
    /// capture, or not Ethernet is an error.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let file = File::open(path).map_err(|source| CaptureError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(CaptureError::NotACapture {
                path: path.to_path_buf(),
                what: "it is a directory".into(),
            });
        }
        CaptureReader::new(path, BufReader::with_capacity(256 * 1024, file))
    }
}

impl<R: Read> CaptureReader<R> {
    /// Reads the header of a capture coming from `input`; `path` names it in messages.
    pub fn new(path: &Path, input: R) -> Result<Self, CaptureError> {
        let mut reader = CaptureReader {
            path: path.to_path_buf(),
            input,
            format: Format::PcapNg,
            state: State::Done,
            offset: 0,
            frames: 0,
            other_blocks: 0,
            buf: Vec::with_capacity(4096),
        };
        reader.read_file_header()?;
        Ok(reader)
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// pcapng blocks skipped because they carry no frame.
    pub fn other_blocks(&self) -> u64 {
        self.other_blocks
    }

    fn not_a_capture(&self, what: impl Into<String>) -> CaptureError {
        CaptureError::NotACapture {
            path: self.path.clone(),
            what: what.into(),
        }
    }

    /// Reads up to `len` bytes into `buf[at..]`, returning how many arrived before the end
    /// of the file.
    fn fill(&mut self, at: usize, len: usize) -> Result<usize, CaptureError> {
        self.buf.resize(at + len, 0);
        let mut got = 0;
        while got < len {
            match self.input.read(&mut self.buf[at + got..at + len]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(CaptureError::Read {
                        path: self.path.clone(),
                        offset: self.offset + (at + got) as u64,
                        source,
                    });
                }
            }
        }
        self.buf.truncate(at + got);
        Ok(got)
    }

    fn read_file_header(&mut self) -> Result<(), CaptureError> {
        let got = self.fill(0, 4)?;
        if got < 4 {
            return Err(self.not_a_capture(format!("only {got} bytes long")));
        }
        let magic_le = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        let magic_be = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        if magic_be == PCAPNG_SHB {
            self.format = Format::PcapNg;
            // The first section header is read like any other block; its damage is fatal.
            let first = self.read_section_header(0)?;
            if let Err(problem) = first {
                return Err(self.not_a_capture(format!("pcapng section header: {problem}")));
            }
            self.offset = self.buf.len() as u64;
            return Ok(());
        }
        let (order, magic) = match (magic_le, magic_be) {
            (m, _) if is_pcap_magic(m) => (Order::Little, m),
            (_, m) if is_pcap_magic(m) => (Order::Big, m),
            _ if self.buf.starts_with(&[0x1f, 0x8b]) => {
                return Err(self.not_a_capture("gzip-compressed: decompress it first"));
            }
            _ => {
                return Err(self.not_a_capture(format!(
                    "starts with {:02x} {:02x} {:02x} {:02x}",
                    self.buf[0], self.buf[1], self.buf[2], self.buf[3]
                )));
            }
        };
        let got = self.fill(4, 20)?;
        if got < 20 {
            return Err(self.not_a_capture(format!(
                "pcap file header cut short: {} of 24 bytes",
                4 + got
            )));
        }
        let link_type = order.u32(&self.buf, 20);
        // The upper bits carry the FCS length and reserved flags (pcap spec, LinkType).
        if link_type & 0xffff != LINKTYPE_ETHERNET {
            return Err(CaptureError::LinkType {
                path: self.path.clone(),
                link_type: link_type & 0xffff,
                interface: None,
            });
        }
        let modified = magic == PCAP_MAGIC_MODIFIED;
        self.format = Format::Pcap {
            big_endian: order == Order::Big,
            nanos: magic == PCAP_MAGIC_NANOS,
            modified,
        };
        self.state = State::Pcap {
            order,
            record_header: if modified { 24 } else { 16 },
        };
        self.offset = 24;
        Ok(())
    }

    /// The next frame, the end of the file, or where it is damaged.
    pub fn next_frame(&mut self) -> Result<Next<'_>, CaptureError> {
        let result = match self.state {
            State::Pcap {
                order,
                record_header,
            } => self.next_pcap(order, record_header)?,
            State::PcapNg { .. } => self.next_pcapng()?,
            State::Done => Step::End,
        };
        Ok(match result {
            Step::Frame {
                offset,
                start,
                len,
                original_len,
            } => {
                self.frames += 1;
                Next::Frame(Frame {
                    number: self.frames,
                    offset,
                    data: &self.buf[start..start + len],
                    original_len,
                })
            }
            Step::End => {
                self.state = State::Done;
                Next::End
            }
            Step::Damaged { offset, problem } => {
                self.state = State::Done;
                Next::Damaged(Damage {
                    offset,
                    frames_before: self.frames,
                    problem,
                })
            }
        })
    }

    fn next_pcap(&mut self, order: Order, header_len: usize) -> Result<Step, CaptureError> {
        let offset = self.offset;
        let got = self.fill(0, header_len)?;
        self.offset += got as u64;
        if got == 0 {
            return Ok(Step::End);
        }
        if got < header_len {
            return Ok(Step::damaged(
                offset,
                format!("record header cut short: {got} of {header_len} bytes"),
            ));
        }
        let captured = order.u32(&self.buf, 8);
        let original_len = order.u32(&self.buf, 12);
        if captured > MAX_PCAP_RECORD {
            return Ok(Step::damaged(
                offset,
                format!(
                    "record claims {captured} captured bytes, more than the {MAX_PCAP_RECORD} a pcap record can hold"
                ),
            ));
        }
        let len = captured as usize;
        let got = self.fill(header_len, len)?;
        self.offset += got as u64;
        if got < len {
            return Ok(Step::damaged(
                offset,
                format!("record data cut short: {got} of {len} bytes"),
            ));
        }
        Ok(Step::Frame {
            offset,
            start: header_len,
            len,
            original_len,
        })
    }

    /// Reads the rest of a section header block whose type field is in `buf[0..4]`, and
    /// starts its section: its byte order, no interfaces yet. The outer error is I/O; the
    /// inner one says how the block is damaged.
    fn read_section_header(&mut self, start: u64) -> Result<Result<(), String>, CaptureError> {
        // Type is in buf[0..4]; length and byte-order magic follow.
        let got = self.fill(4, 8)?;
        if got < 8 {
            return Ok(Err(format!(
                "section header cut short: {} of at least 28 bytes",
                4 + got
            )));
        }
        let order = match (
            u32::from_le_bytes([self.buf[8], self.buf[9], self.buf[10], self.buf[11]]),
            u32::from_be_bytes([self.buf[8], self.buf[9], self.buf[10], self.buf[11]]),
        ) {
            (PCAPNG_BYTE_ORDER_MAGIC, _) => Order::Little,
            (_, PCAPNG_BYTE_ORDER_MAGIC) => Order::Big,
            _ => return Ok(Err("section header without the byte-order magic".into())),
        };
        let total = order.u32(&self.buf, 4);
        if let Err(problem) = check_block_length(total, 28) {
            return Ok(Err(format!("section header: {problem}")));
        }
        let rest = total as usize - 12;
        let got = self.fill(12, rest)?;
        if got < rest {
            return Ok(Err(format!(
                "section header cut short: {} of {total} bytes",
                12 + got
            )));
        }
        let major = order.u16(&self.buf, 12);
        if major != 1 {
            return Ok(Err(format!(
                "section header of pcapng version {major}.{}, only 1.x is defined",
                order.u16(&self.buf, 14)
            )));
        }
        if order.u32(&self.buf, total as usize - 4) != total {
            return Ok(Err(format!(
                "section header at byte {start}: trailing length differs from leading length {total}"
            )));
        }
        self.state = State::PcapNg {
            order,
            interfaces: Vec::new(),
        };
        Ok(Ok(()))
    }

    fn next_pcapng(&mut self) -> Result<Step, CaptureError> {
        loop {
            let offset = self.offset;
            let got = self.fill(0, 4)?;
            if got == 0 {
                return Ok(Step::End);
            }
            if got < 4 {
                self.offset += got as u64;
                return Ok(Step::damaged(
                    offset,
                    format!("block header cut short: {got} of 8 bytes"),
                ));
            }
            let block_type_be =
                u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
            if block_type_be == PCAPNG_SHB {
                // A new section, possibly in the other byte order.
                let read = self.read_section_header(offset)?;
                self.offset += self.buf.len() as u64;
                match read {
                    Ok(()) => continue,
                    Err(problem) => return Ok(Step::damaged(offset, problem)),
                }
            }
            let State::PcapNg { order, .. } = self.state else {
                return Ok(Step::End);
            };
            let block_type = order.u32(&self.buf, 0);
            let got = self.fill(4, 4)?;
            if got < 4 {
                self.offset += (4 + got) as u64;
                return Ok(Step::damaged(
                    offset,
                    format!("block header cut short: {} of 8 bytes", 4 + got),
                ));
            }
            let total = order.u32(&self.buf, 4);
            if let Err(problem) = check_block_length(total, 12) {
                self.offset += 8;
                return Ok(Step::damaged(
                    offset,
                    format!("block of type {block_type:#x}: {problem}"),
                ));
            }
            let rest = total as usize - 8;
            let got = self.fill(8, rest)?;
            self.offset += (8 + got) as u64;
            if got < rest {
                return Ok(Step::damaged(
                    offset,
                    format!(
                        "block of type {block_type:#x} cut short: {} of {total} bytes",
                        8 + got
                    ),
                ));
            }
            if order.u32(&self.buf, total as usize - 4) != total {
                return Ok(Step::damaged(
                    offset,
                    format!(
                        "block of type {block_type:#x}: trailing length {} differs from leading length {total}",
                        order.u32(&self.buf, total as usize - 4)
                    ),
                ));
            }
            let body_end = total as usize - 4;
            match self.pcapng_block(order, block_type, offset, body_end)? {
                Some(step) => return Ok(step),
                None => continue,
            }
        }
    }

    /// Handles one complete pcapng block (header at `buf[0..8]`, body up to `body_end`):
    /// a frame, damage, or `None` for a block that carries no frame.
    fn pcapng_block(
        &mut self,
        order: Order,
        block_type: u32,
        offset: u64,
        body_end: usize,
    ) -> Result<Option<Step>, CaptureError> {
        let State::PcapNg { interfaces, .. } = &mut self.state else {
            return Ok(Some(Step::End));
        };
        let body = body_end - 8;
        let damaged = |problem: String| Ok(Some(Step::damaged(offset, problem)));
        match block_type {
            PCAPNG_IDB => {
                if body < 8 {
                    return damaged(format!(
                        "interface description block body of {body} bytes, at least 8 needed"
                    ));
                }
                let link_type = u32::from(order.u16(&self.buf, 8));
                let index = interfaces.len() as u32;
                if link_type != LINKTYPE_ETHERNET {
                    return Err(CaptureError::LinkType {
                        path: self.path.clone(),
                        link_type,
                        interface: Some(index),
                    });
                }
                interfaces.push(Interface {
                    snaplen: order.u32(&self.buf, 12),
                });
                Ok(None)
            }
            PCAPNG_EPB | PCAPNG_PB => {
                if body < 20 {
                    return damaged(format!(
                        "packet block body of {body} bytes, at least 20 needed"
                    ));
                }
                let interface = if block_type == PCAPNG_EPB {
                    order.u32(&self.buf, 8)
                } else {
                    u32::from(order.u16(&self.buf, 8))
                };
                if interface as usize >= interfaces.len() {
                    return damaged(format!(
                        "packet on interface {interface}, but the section describes {} interface(s)",
                        interfaces.len()
                    ));
                }
                let captured = order.u32(&self.buf, 20) as usize;
                let original_len = order.u32(&self.buf, 24);
                if captured > body - 20 {
                    return damaged(format!(
                        "packet claims {captured} captured bytes in a block body of {body} bytes"
                    ));
                }
                Ok(Some(Step::Frame {
                    offset,
                    start: 28,
                    len: captured,
                    original_len,
                }))
            }
            PCAPNG_SPB => {
                if body < 4 {
                    return damaged(format!(
                        "simple packet block body of {body} bytes, at least 4 needed"
                    ));
                }
                let Some(first) = interfaces.first() else {
                    return damaged(
                        "simple packet block, but the section describes no interface".into(),
                    );
                };
                let original_len = order.u32(&self.buf, 8);
                // The captured length is implied: the original length, cut by the snaplen
                // of interface 0 and by the block.
                let mut captured = (original_len as usize).min(body - 4);
                if first.snaplen != 0 {
                    captured = captured.min(first.snaplen as usize);
                }
                Ok(Some(Step::Frame {
                    offset,
                    start: 12,
                    len: captured,
                    original_len,
                }))
            }
            _ => {
                self.other_blocks += 1;
                Ok(None)
            }
        }
    }
}

enum Step {
    Frame {
        offset: u64,
        start: usize,
        len: usize,
        original_len: u32,
    },
    End,
    Damaged {
        offset: u64,
        problem: String,
    },
}

impl Step {
    fn damaged(offset: u64, problem: String) -> Step {
        Step::Damaged { offset, problem }
    }
}

fn is_pcap_magic(magic: u32) -> bool {
    matches!(
        magic,
        PCAP_MAGIC_MICROS | PCAP_MAGIC_NANOS | PCAP_MAGIC_MODIFIED
    )
}

fn check_block_length(total: u32, min: u32) -> Result<(), String> {
    if total < min {
        Err(format!("length {total}, less than the minimum {min}"))
    } else if !total.is_multiple_of(4) {
        Err(format!("length {total} is not a multiple of 4"))
    } else if total > MAX_PCAPNG_BLOCK {
        Err(format!(
            "length {total}, more than the {MAX_PCAPNG_BLOCK} accepted"
        ))
    } else {
        Ok(())
    }
}

/// A name for the common link types, for error messages.
pub fn link_type_name(link_type: u32) -> &'static str {
    match link_type {
        0 => "NULL/loopback",
        1 => "Ethernet",
        6 => "IEEE 802.5",
        9 => "PPP",
        101 => "raw IP",
        104 => "Cisco HDLC",
        105 => "IEEE 802.11",
        108 => "OpenBSD loopback",
        113 => "Linux cooked (SLL)",
        127 => "IEEE 802.11 radiotap",
        228 => "raw IPv4",
        229 => "raw IPv6",
        276 => "Linux cooked v2 (SLL2)",
        _ => "not Ethernet",
    }
}
