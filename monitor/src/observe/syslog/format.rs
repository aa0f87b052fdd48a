//! RFC 5424 messages, and their octet-counting framing for TCP (RFC 6587 3.4.1).
//!
//! `<PRI>1 TIMESTAMP HOSTNAME monitor PID EVENT [hospmon@32473 name="value" ...] TEXT`:
//! the facility is local0, where network appliances conventionally log their own events
//! (a collector routes them without touching the host's system logs); the severity is the
//! event's; HOSTNAME is the router's name; the structured data holds the event's fields
//! under the names `events.jsonl` gives them. 32473 is the private enterprise number
//! RFC 5612 sets aside for examples and documentation.

use super::message::Message;

/// local0.
pub const FACILITY: u8 = 16;
/// APP-NAME.
pub const APP_NAME: &str = "monitor";
/// The SD-ID of the event's fields.
pub const SD_ID: &str = "hospmon@32473";
/// The longest TEXT (MSG) sent; `events.jsonl` keeps all of it. With short field
/// values this keeps a message within the 2048 octets every receiver must take
/// (RFC 5424 6.1).
pub const MAX_TEXT: usize = 1024;
/// The longest field value sent (an operator's reason, say).
pub const MAX_VALUE: usize = 256;

/// Who sends: the header's HOSTNAME and PROCID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub hostname: String,
    pub procid: u32,
}

impl Origin {
    /// This machine's host name and this process.
    pub fn here() -> Origin {
        let mut buffer = [0u8; 256];
        // SAFETY: gethostname writes at most the length given into the buffer we own.
        let rc = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
        let hostname = if rc == 0 {
            let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
            String::from_utf8_lossy(&buffer[..end]).into_owned()
        } else {
            String::new()
        };
        Origin {
            hostname,
            procid: std::process::id(),
        }
    }
}

/// `message` as one RFC 5424 syslog message.
pub fn rfc5424(message: &Message, origin: &Origin) -> String {
    let pri = u16::from(FACILITY) * 8 + message.severity as u16;
    let time = if humantime::parse_rfc3339(&message.time).is_ok() {
        message.time.as_str()
    } else {
        "-"
    };
    let mut out = format!(
        "<{pri}>1 {time} {} {APP_NAME} {} {} ",
        header_field(&origin.hostname, 255),
        origin.procid,
        header_field(&message.event, 32)
    );
    let params: Vec<String> = message
        .params
        .iter()
        .filter_map(|(name, value)| {
            let name = sd_name(name)?;
            Some(format!(
                "{name}=\"{}\"",
                escape_value(truncated(value, MAX_VALUE))
            ))
        })
        .collect();
    if params.is_empty() {
        out.push('-');
    } else {
        out.push_str(&format!("[{SD_ID} {}]", params.join(" ")));
    }
    let text = truncated(message.text.trim(), MAX_TEXT);
    if !text.is_empty() {
        out.push(' ');
        // MSG in UTF-8 starts with a BOM (RFC 5424 6.4); plain ASCII is sent as it is.
        if !text.is_ascii() {
            out.push('\u{feff}');
        }
        out.push_str(text);
    }
    out
}

/// `message` framed for a TCP stream: its length in octets, a space, the message.
pub fn octet_counted(message: &str) -> Vec<u8> {
    let mut framed = format!("{} ", message.len()).into_bytes();
    framed.extend_from_slice(message.as_bytes());
    framed
}

/// A header field: printable US-ASCII without spaces, at most `max` characters; `-`
/// (nil) when nothing is left.
fn header_field(text: &str, max: usize) -> String {
    let field: String = text
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if field.is_empty() { "-".into() } else { field }
}

/// A PARAM-NAME: printable US-ASCII but `=`, space, `]` and `"`, at most 32; none when
/// nothing is left.
fn sd_name(name: &str) -> Option<String> {
    let name: String = name
        .chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '=' | ']' | '"'))
        .take(32)
        .collect();
    (!name.is_empty()).then_some(name)
}

/// A PARAM-VALUE: `"`, `\` and `]` escaped with a backslash.
fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncated(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use crate::observe::syslog::format::*;
    use crate::observe::syslog::message::Severity;

    fn origin() -> Origin {
        Origin {
            hostname: "edge-icu3".into(),
            procid: 4242,
        }
    }

    fn violation() -> Message {
        Message {
            time: "2026-05-20T10:00:00.123Z".into(),
            severity: Severity::Warning,
            event: "violation".into(),
            params: vec![
                ("device".into(), "badge-reader-icu3".into()),
                ("location".into(), "main-campus/B/3/icu-3 [entrance]".into()),
                ("port".into(), "123".into()),
            ],
            text: "drop badge-reader-icu3 -> ntp udp/123 (not_in_baseline)".into(),
        }
    }

    #[test]
    fn a_message_has_the_rfc5424_header_structured_data_and_text() {
        assert_eq!(
            rfc5424(&violation(), &origin()),
            "<132>1 2026-05-20T10:00:00.123Z edge-icu3 monitor 4242 violation \
             [hospmon@32473 device=\"badge-reader-icu3\" location=\"main-campus/B/3/icu-3 [entrance\\]\" port=\"123\"] \
             drop badge-reader-icu3 -> ntp udp/123 (not_in_baseline)"
        );
    }

    #[test]
    fn values_are_escaped_names_and_header_fields_kept_printable() {
        let message = Message {
            time: "yesterday".into(),
            severity: Severity::Error,
            event: "a very long event name that goes past thirty-two".into(),
            params: vec![
                ("reason".into(), r#"said "no" \ then ]"#.into()),
                ("bad name=\"]".into(), "x".into()),
                ("=\"]".into(), "dropped".into()),
            ],
            text: String::new(),
        };
        let text = rfc5424(
            &message,
            &Origin {
                hostname: "two words".into(),
                procid: 1,
            },
        );
        assert_eq!(
            text,
            "<131>1 - twowords monitor 1 averylongeventnamethatgoespastth \
             [hospmon@32473 reason=\"said \\\"no\\\" \\\\ then \\]\" badname=\"x\"]"
        );
        let nothing = Message {
            params: Vec::new(),
            ..message
        };
        assert!(
            rfc5424(&nothing, &origin()).ends_with(" -"),
            "nil structured data"
        );
    }

    #[test]
    fn utf8_text_gets_a_bom_and_long_text_is_cut_at_a_character() {
        let message = Message {
            text: format!("Zürich {}", "é".repeat(MAX_TEXT)),
            ..violation()
        };
        let text = rfc5424(&message, &origin());
        let msg = text
            .split_once("] ")
            .map(|(_, msg)| msg)
            .unwrap_or_else(|| panic!("{text}"));
        assert!(msg.starts_with("\u{feff}Zürich "), "{msg}");
        assert!(msg.len() <= MAX_TEXT + 3, "{}", msg.len());
    }

    #[test]
    fn octet_counting_prefixes_the_length_in_bytes() {
        assert_eq!(
            octet_counted("<13>1 - - - - - - é"),
            "20 <13>1 - - - - - - é".as_bytes()
        );
    }
}
