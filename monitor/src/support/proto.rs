//! IP protocol names, one list for the policy files, MUD, the tables and the events.

/// Protocols known by name, as policy files write them and tables show them.
pub const NAMES: &[(u8, &str)] = &[
    (1, "icmp"),
    (6, "tcp"),
    (17, "udp"),
    (47, "gre"),
    (50, "esp"),
    (58, "icmpv6"),
    (132, "sctp"),
];

/// The name of IP protocol `protocol` (`ip-proto-N` for the unnamed).
pub fn name(protocol: u8) -> String {
    NAMES
        .iter()
        .find(|(number, _)| *number == protocol)
        .map_or_else(
            || format!("ip-proto-{protocol}"),
            |(_, name)| (*name).to_owned(),
        )
}

/// The number of a protocol as written: a name of [`NAMES`], `ip-proto-N` or `N` (1..=255).
/// `any` is not a protocol: callers that accept it handle it first.
pub fn number(text: &str) -> Option<u8> {
    let text = text.to_ascii_lowercase();
    NAMES
        .iter()
        .find(|(_, name)| *name == text)
        .map(|(number, _)| *number)
        .or_else(|| {
            text.strip_prefix("ip-proto-")
                .unwrap_or(&text)
                .parse::<u8>()
                .ok()
                .filter(|p| *p != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip() {
        for (number, name) in NAMES {
            assert_eq!(super::name(*number), *name);
            assert_eq!(super::number(name), Some(*number));
            assert_eq!(super::number(&name.to_uppercase()), Some(*number));
        }
        assert_eq!(name(89), "ip-proto-89");
        assert_eq!(number("ip-proto-89"), Some(89));
        assert_eq!(number("89"), Some(89));
        assert_eq!(number("0"), None);
        assert_eq!(number("any"), None);
        assert_eq!(number("ospf"), None);
    }
}
