//! Small things every layer uses: clocks, the site's week, protocol names, error text, who is asking, where
//! the log goes, and the service manager's notify protocol.

pub mod clock;
pub mod mode_name;

pub mod logging;
pub mod notify;
pub mod proto;
pub mod week;

/// An error with its causes, for logs and HTTP error bodies.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Who asked (for audit records): the sudo user if any, else the login user, else the uid.
pub fn operator() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| {
            // SAFETY: getuid has no preconditions.
            format!("uid {}", unsafe { libc::getuid() })
        })
}
