//! Break-glass and mode records (`audit.jsonl`, `modes.jsonl`) become the daemon's events:
//! `monitor allow` and `monitor mode` run in processes of their own and write only those
//! files, so the daemon reads what was appended since (each tick, beside the inventory
//! the CLI changed: [`super::keeper`]) and sends each record once to `events.jsonl` and
//! the SIEM, with the devices' kind and location from the inventory in force. Commands
//! given while no daemon ran are forwarded at the next start
//! ([`crate::state::forward`]).

use crate::{
    observe::events::ControllerEvent,
    state::{StateDir, forward::Forwarded, inventory::Inventory},
};

/// Where forwarding got to, and what went wrong last (said once, not every tick).
#[derive(Debug)]
pub struct Forwarder {
    at: Forwarded,
    problem: Option<String>,
}

impl Forwarder {
    /// Where the last daemon got to; the first lines again (some twice rather than any
    /// lost) when that cannot be read.
    pub fn load(state: &StateDir) -> Forwarder {
        let at = Forwarded::load(state).unwrap_or_else(|e| {
            log::error!(
                "{:#}; break-glass and mode records are forwarded to the events from their \
                 first line again",
                anyhow::Error::from(e)
            );
            Forwarded::default()
        });
        Forwarder { at, problem: None }
    }

    /// The events of the records appended since the last call; remembers how far it read.
    pub fn take(&mut self, state: &StateDir, inventory: &Inventory) -> Vec<ControllerEvent> {
        let before = self.at;
        let mut events = Vec::new();
        let problem = match self.at.read_new(state) {
            Ok(new) => {
                for line in &new.unreadable {
                    log::error!("{line}; not forwarded to the events");
                }
                for record in &new.records {
                    events.extend(ControllerEvent::of_record(record, inventory));
                }
                (self.at != before)
                    .then(|| self.at.save(state).err())
                    .flatten()
                    .map(|e| format!("{:#}", anyhow::Error::from(e)))
            }
            Err(e) => Some(format!("{:#}", anyhow::Error::from(e))),
        };
        if let Some(problem) = &problem
            && self.problem.as_ref() != Some(problem)
        {
            log::error!("forwarding break-glass and mode records to the events: {problem}");
        }
        self.problem = problem;
        events
    }
}
