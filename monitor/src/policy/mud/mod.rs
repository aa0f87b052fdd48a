//! Manufacturer Usage Descriptions (RFC 8520) as the starting policy of a device kind.
//!
//! A policy file names the MUD file a manufacturer publishes for a kind of device:
//!
//! ```yaml
//! mud:
//!   - kind: badge-reader                        # every device of this kind
//!     file: mud/rfc8520-lightbulb2000.json      # relative to the policy directory
//!     dns-servers: ["10.20.0.53"]               # optional; default: /etc/resolv.conf
//!     local-networks: [10.10.0.0/16]            # optional: what `local-networks` means here
//! ```
//!
//! Every ACE of the ACLs that the file's `from-device-policy` and `to-device-policy` name
//! becomes a rule for the devices of that kind: `accept` an allow rule, `drop` a deny rule.
//! The rules are flow rules like all others ([`crate::policy`]): an ACE's port on the peer's
//! side is the service port and the device is the client (`direction: out`), a port on the
//! device's side makes the peer the client (`direction: in`); `ietf-mud:direction-initiated`
//! says it outright for TCP. The from-device ACE of a flow and the to-device ACE of its
//! replies therefore become one rule.
//!
//! Parsing is strict: unknown members, wrong JSON types, references to ACLs that do not
//! exist, and matches the monitor cannot enforce exactly are refused with the JSON pointer
//! (RFC 6901) of the problem and, where the JSON parser knows it, line and column. Real MUD
//! files break the specification; the monitor reports what is wrong rather than guessing.
//! Not supported, and refused with a reason: Ethernet matches, `manufacturer`,
//! `same-manufacturer`, `model`, `controller` and `my-controller` (they need other devices'
//! MUD URLs or a controller registry the monitor does not have), IP header fields other than
//! addresses and protocol, TCP flags and sequence numbers, a client's (ephemeral) port, ICMP
//! codes, `reject`, declared MUD extensions, and IPv6 ACEs that would match every IPv6 peer
//! (IPv4 lives inside the monitor's IPv6 address space, so such a rule would also open IPv4).
//! `local-networks` works when the policy entry says which blocks it means.
//!
//! DNS names (`ietf-acldns:dst-dnsname` / `src-dnsname`) are resolved by the controller
//! ([`Names`], through one long-lived hickory resolver): A records for IPv4 ACEs, AAAA for
//! IPv6. Each answer is kept for its TTL (at least [`MIN_TTL`]); the daemon re-resolves
//! names whose TTL has run out and re-applies the policy when an address changed. A name
//! that does not exist has no addresses (its rules open nothing) until it is asked again
//! after the negative TTL; a server that does not answer leaves the last known addresses in
//! force and is asked again after [`RETRY_AFTER_FAILURE`].
//!
//! Inside, each file imports only from those listed before it:
//!
//! | file | owns |
//! |---|---|
//! | [`schema`] | the JSON of RFC 8520 and RFC 8519, read strictly |
//! | [`convert`] | a MUD file's text to its rules ([`parse`]), or problems with JSON pointers |
//! | [`import`] | a policy file's `mud:` entries: read, checked, fixed-peer rules added |
//! | [`resolver`] | the one DNS resolver thread ([`Resolver`]) |
//! | [`names`] | answers by TTL ([`Names`]) and the rules of named peers |
//! | [`describe`](mod@describe) | `monitor mud show` |
//!
//! The data a MUD file contributes to a policy (`MudImport`, `MudRule`, ...) is
//! `crate::policy::model::mud_import`, re-exported here.

pub mod convert;
pub mod describe;
pub mod import;
pub mod names;
pub mod resolver;
pub mod schema;

pub use convert::parse;
pub use describe::describe;
pub use import::{check_kinds, load_entries};
pub use names::{DEFAULT_NEGATIVE_TTL, MAX_TTL, MIN_TTL, Names, RETRY_AFTER_FAILURE};
pub use resolver::{LOOKUP_TIMEOUT, Lookup, Question, Resolver};

pub use crate::policy::model::{
    Diagnostic, Family, MudEntry, MudFile, MudImport, MudInfo, MudPeer, MudRule,
};
