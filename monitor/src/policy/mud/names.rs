//! The policy's MUD names and their addresses ([`Names`]): each answer kept for its TTL (at
//! least [`MIN_TTL`]), names whose TTL has run out asked again, and one rule per address
//! added to the policy. A name that does not exist has no addresses (its rules open
//! nothing) until it is asked again after the negative TTL; a server that does not answer
//! leaves the last known addresses in force and is asked again after
//! [`RETRY_AFTER_FAILURE`]. Asking goes through one long-lived [`Resolver`].

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    time::{Duration, Instant},
};

use crate::policy::{
    model::{MudImport, MudPeer, Place, Policy, RuleSpec},
    mud::resolver::{Lookup, Question, Resolver},
};

/// Answers are kept at least this long, whatever their TTL (the daemon looks once a second).
pub const MIN_TTL: Duration = Duration::from_secs(1);
/// Answers are kept at most this long.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// A name without addresses, when the answer gives no negative TTL, is asked again after this.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// A name whose servers did not answer is asked again after this; its last addresses stay.
/// (Asking blocks the caller for at most the resolver's `LOOKUP_TIMEOUT`.)
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
struct Known {
    addresses: BTreeSet<IpAddr>,
    expires: Instant,
}

/// The controller's answers to the policy's MUD names, each kept for its TTL, and the one
/// resolver that asks (started by the first question, kept until `Names` is dropped).
/// `Names` is `Send`: the daemon keeps it on its control thread.
#[derive(Debug, Default)]
pub struct Names {
    known: BTreeMap<Question, Known>,
    resolver: Option<Resolver>,
}

impl Names {
    /// The addresses known for `question`.
    pub fn addresses(&self, question: &Question) -> BTreeSet<IpAddr> {
        self.known
            .get(question)
            .map(|k| k.addresses.clone())
            .unwrap_or_default()
    }

    /// When the next answer runs out.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.known.values().map(|k| k.expires).min()
    }

    /// Resolves the policy's names that are new or whose TTL has run out (and forgets
    /// names the policy no longer uses), then adds the rules of the named peers to the
    /// policy: one rule per address.
    pub fn apply(&mut self, policy: &mut Policy) {
        let wanted: BTreeSet<Question> = policy.mud.iter().flat_map(MudImport::questions).collect();
        self.known.retain(|q, _| wanted.contains(q));
        let now = Instant::now();
        let due: Vec<Question> = wanted
            .into_iter()
            .filter(|q| self.known.get(q).is_none_or(|k| k.expires <= now))
            .collect();
        let answers = self.lookup(&due);
        self.record(answers);
        let named: Vec<_> = policy
            .mud
            .iter()
            .flat_map(|import| import.named_rules(self))
            .collect();
        policy.rules.extend(named);
    }

    /// Re-resolves the names whose TTL has run out; true when any address changed (the
    /// policy must then be applied again).
    pub fn refresh_expired(&mut self) -> bool {
        let now = Instant::now();
        let due: Vec<Question> = self
            .known
            .iter()
            .filter(|(_, k)| k.expires <= now)
            .map(|(q, _)| q.clone())
            .collect();
        if due.is_empty() {
            return false;
        }
        let answers = self.lookup(&due);
        self.record(answers)
    }

    /// Asks `questions` through the resolver, starting it if it is not running; a resolver
    /// that failed is dropped (and another started at the next question).
    fn lookup(&mut self, questions: &[Question]) -> Vec<(Question, Lookup)> {
        if questions.is_empty() {
            return Vec::new();
        }
        let resolver = match self.resolver.take() {
            Some(resolver) => Ok(resolver),
            None => Resolver::start(),
        };
        let answers = resolver.and_then(|resolver| Ok((resolver.lookup_all(questions)?, resolver)));
        match answers {
            Ok((answers, resolver)) => {
                self.resolver = Some(resolver);
                answers
            }
            Err(why) => questions
                .iter()
                .map(|q| (q.clone(), Lookup::Failed(why.clone())))
                .collect(),
        }
    }

    /// Takes answers in; true when an address set changed.
    pub fn record(&mut self, answers: Vec<(Question, Lookup)>) -> bool {
        let now = Instant::now();
        let mut changed = false;
        for (question, lookup) in answers {
            let previous = self.known.get(&question).map(|k| k.addresses.clone());
            let (addresses, keep) = match lookup {
                Lookup::Found(addresses, ttl) => {
                    let keep = Duration::from_secs(u64::from(ttl)).clamp(MIN_TTL, MAX_TTL);
                    let list = join(&addresses);
                    match &previous {
                        None => log::info!("MUD name {question}: {list} (TTL {ttl} s)"),
                        Some(old) if *old != addresses => {
                            log::info!(
                                "MUD name {question} changed: {} → {list} (TTL {ttl} s)",
                                join(old)
                            );
                        }
                        Some(_) => {
                            log::debug!("MUD name {question}: {list} unchanged (TTL {ttl} s)")
                        }
                    }
                    (addresses, keep)
                }
                Lookup::NoAddresses {
                    nxdomain,
                    negative_ttl,
                } => {
                    let keep = negative_ttl
                        .map_or(DEFAULT_NEGATIVE_TTL, |t| Duration::from_secs(u64::from(t)))
                        .clamp(MIN_TTL, Duration::from_secs(300));
                    if previous.as_ref().is_none_or(|old| !old.is_empty()) {
                        log::warn!(
                            "MUD name {question}: {}; its rules open nothing until it resolves (asked again in {} s)",
                            if nxdomain {
                                "no such name"
                            } else {
                                "no such records"
                            },
                            keep.as_secs()
                        );
                    }
                    (BTreeSet::new(), keep)
                }
                Lookup::Failed(why) => {
                    let kept = previous.clone().unwrap_or_default();
                    log::warn!(
                        "MUD name {question}: {why}; {} (asked again in {} s)",
                        if kept.is_empty() {
                            "its rules open nothing".to_string()
                        } else {
                            format!("keeping {}", join(&kept))
                        },
                        RETRY_AFTER_FAILURE.as_secs()
                    );
                    (kept, RETRY_AFTER_FAILURE)
                }
            };
            if previous.as_ref().is_some_and(|old| *old != addresses) {
                changed = true;
            }
            self.known.insert(
                question,
                Known {
                    addresses,
                    expires: now + keep,
                },
            );
        }
        changed
    }
}

impl MudImport {
    /// The DNS questions of the ACEs whose peers are names.
    pub fn questions(&self) -> impl Iterator<Item = Question> + '_ {
        self.mud.rules.iter().filter_map(|rule| match &rule.peer {
            MudPeer::Name { name, family } => Some(Question {
                name: name.clone(),
                family: *family,
                servers: self.dns_servers.clone(),
            }),
            MudPeer::Cidr(_) => None,
        })
    }

    /// The policy rules of the ACEs whose peers are names, one per address `names` knows.
    pub fn named_rules(&self, names: &Names) -> Vec<(Place, RuleSpec)> {
        let mut out = Vec::new();
        for rule in &self.mud.rules {
            let MudPeer::Name { name, family } = &rule.peer else {
                continue;
            };
            let question = Question {
                name: name.clone(),
                family: *family,
                servers: self.dns_servers.clone(),
            };
            for address in names.addresses(&question) {
                out.push(self.rule_spec(
                    rule,
                    address.to_string(),
                    &format!(" [{name} {} = {address}]", family.record()),
                ));
            }
        }
        out
    }
}

/// Addresses as people read them.
pub(super) fn join(addresses: &BTreeSet<IpAddr>) -> String {
    if addresses.is_empty() {
        return "no addresses".into();
    }
    addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::model::Family;

    #[test]
    fn answers_follow_their_ttl_and_failures_keep_the_last_addresses() {
        let question = Question {
            name: "test.example.com".into(),
            family: Family::V6,
            servers: vec![],
        };
        let a: IpAddr = "fd00:20::10".parse().unwrap_or_else(|e| panic!("{e}"));
        let b: IpAddr = "fd00:20::20".parse().unwrap_or_else(|e| panic!("{e}"));
        let mut names = Names::default();
        assert!(
            !names.record(vec![(question.clone(), Lookup::Found([a].into(), 0))]),
            "the first answer is no change"
        );
        let expiry = names.next_expiry().unwrap_or_else(|| panic!("no expiry"));
        assert!(
            expiry >= Instant::now() + MIN_TTL - Duration::from_millis(100),
            "TTL 0 is kept MIN_TTL"
        );
        assert!(!names.record(vec![(question.clone(), Lookup::Failed("timeout".into()))]));
        assert_eq!(
            names.addresses(&question),
            [a].into(),
            "a failure keeps the last addresses"
        );
        assert!(names.record(vec![(question.clone(), Lookup::Found([b].into(), 60))]));
        assert_eq!(names.addresses(&question), [b].into());
        assert!(names.record(vec![(
            question.clone(),
            Lookup::NoAddresses {
                nxdomain: true,
                negative_ttl: Some(5)
            }
        )]));
        assert!(names.addresses(&question).is_empty());
    }
}
