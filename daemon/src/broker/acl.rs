//! Who may publish or subscribe where: a pure function of principal, action
//! and topic, with no I/O and no state.
//!
//! Everything not explicitly allowed is denied. It must never allow a device
//! outside its own topics, a subscription to `#`, or anything under `$`.

/// The longest topic or filter the broker accepts, in bytes. MQTT allows
/// 65,535; no device needs more than a few dozen.
pub const MAX_TOPIC_LEN: usize = 1024;
/// The most levels a topic or filter may have.
pub const MAX_LEVELS: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Publish,
    Subscribe,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
}

/// One allowed subtree, `<prefix>/#`, or one exact topic, and what may be
/// done there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Literal levels, no wildcards, e.g. `["stat", "plug1"]`.
    pub prefix: Vec<String>,
    pub publish: bool,
    pub subscribe: bool,
    /// Only the topic `prefix` itself, not the subtree below it.
    pub exact: bool,
}

impl Rule {
    /// The subtree `prefix/#` (and `prefix` itself).
    pub fn subtree(prefix: &str, publish: bool, subscribe: bool) -> Rule {
        Rule {
            exact: false,
            ..Rule::topic(prefix, publish, subscribe)
        }
    }

    /// One topic, nothing below it.
    pub fn topic(topic: &str, publish: bool, subscribe: bool) -> Rule {
        Rule {
            prefix: topic.split('/').map(str::to_owned).collect(),
            publish,
            subscribe,
            exact: true,
        }
    }

    /// The rule as an MQTT filter, for showing the owner.
    pub fn filter(&self) -> String {
        if self.exact {
            self.prefix.join("/")
        } else {
            format!("{}/#", self.prefix.join("/"))
        }
    }

    fn covers(&self, levels: &[&str]) -> bool {
        if self.exact {
            self.prefix.len() == levels.len() && within(&self.prefix, levels)
        } else {
            within(&self.prefix, levels)
        }
    }
}

/// Who is asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// A device or an integration, confined to its rules.
    Confined { rules: Vec<Rule> },
    /// hearth's own in-process client: every device topic, nothing under `$`.
    Hub,
}

/// The one decision function. Pure: the same inputs always decide the same.
pub fn decide(principal: &Principal, action: Action, topic: &str) -> Decision {
    let Some(levels) = parse(action, topic) else {
        return Decision::Deny;
    };
    // `$SYS`, `$share`, `$queue` and anything else under `$` is never for
    // devices, nor for the hub.
    if levels[0].starts_with('$') {
        return Decision::Deny;
    }
    match principal {
        Principal::Hub => Decision::Allow,
        Principal::Confined { rules } => {
            let allowed = rules.iter().any(|rule| {
                let permitted = match action {
                    Action::Publish => rule.publish,
                    Action::Subscribe => rule.subscribe,
                };
                permitted && rule.covers(&levels)
            });
            if allowed { Decision::Allow } else { Decision::Deny }
        }
    }
}

/// Whether `filter` is a well-formed subscription filter, outside `$`.
pub fn valid_filter(filter: &str) -> bool {
    decide(&Principal::Hub, Action::Subscribe, filter) == Decision::Allow
}

/// Splits and validates a topic (publish) or filter (subscribe).
fn parse(action: Action, topic: &str) -> Option<Vec<&str>> {
    if topic.is_empty() || topic.len() > MAX_TOPIC_LEN || topic.contains('\0') {
        return None;
    }
    let levels: Vec<&str> = topic.split('/').collect();
    if levels.len() > MAX_LEVELS {
        return None;
    }
    for (i, level) in levels.iter().enumerate() {
        let wild = level.contains('+') || level.contains('#');
        match action {
            Action::Publish if wild => return None,
            Action::Subscribe if wild => {
                let whole = *level == "+" || (*level == "#" && i == levels.len() - 1);
                if !whole {
                    return None;
                }
            }
            _ => {}
        }
    }
    Some(levels)
}

/// Whether every topic `levels` names (or matches, as a filter) lies in the
/// subtree `prefix/#`. The prefix levels must match literally: a wildcard in
/// them would reach other subtrees.
fn within(prefix: &[String], levels: &[&str]) -> bool {
    levels.len() >= prefix.len() && prefix.iter().zip(levels).all(|(p, l)| p == l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::{Publish as P, Subscribe as S};
    use Decision::{Allow, Deny};

    /// A device that owns one subtree, `hearth/<base>/#`, both ways.
    fn device(base: &str) -> Principal {
        Principal::Confined {
            rules: vec![Rule::subtree(&format!("hearth/{base}"), true, true)],
        }
    }

    #[track_caller]
    fn check(principal: &Principal, cases: &[(Action, &str, Decision)]) {
        for (action, topic, want) in cases {
            let got = decide(principal, *action, topic);
            assert_eq!(got, *want, "{action:?} {topic:?}");
        }
    }

    #[test]
    fn exact_rules_cover_one_topic_only() {
        let p = Principal::Confined {
            rules: vec![
                Rule::subtree("homeassistant", true, true),
                Rule::topic("hearth/a1/state", false, true),
                Rule::topic("hearth/a1/set", true, false),
            ],
        };
        check(
            &p,
            &[
                (S, "homeassistant/#", Allow),
                (P, "homeassistant/device/a1/config", Allow),
                (S, "hearth/a1/state", Allow),
                (P, "hearth/a1/set", Allow),
                // Not the other way round, and nothing below or beside.
                (P, "hearth/a1/state", Deny),
                (S, "hearth/a1/set", Deny),
                (S, "hearth/a1/state/#", Deny),
                (S, "hearth/a1/state/x", Deny),
                (P, "hearth/a1/set/x", Deny),
                (S, "hearth/a1/+", Deny),
                (S, "hearth/a1/#", Deny),
                (S, "hearth/+/state", Deny),
                (S, "hearth/a1", Deny),
                (S, "#", Deny),
                (S, "+/#", Deny),
                (S, "$SYS/#", Deny),
            ],
        );
        assert_eq!(
            Rule::topic("hearth/a1/state", false, true).filter(),
            "hearth/a1/state"
        );
        assert_eq!(
            Rule::subtree("homeassistant", true, true).filter(),
            "homeassistant/#"
        );
    }

    #[test]
    fn a_subtree_rule_covers_its_subtree_only() {
        let d = device("a1");
        check(
            &d,
            &[
                (P, "hearth/a1/state", Allow),
                (P, "hearth/a1", Allow),
                (P, "hearth/a1/x/y/z", Allow),
                (P, "hearth/a1//empty-level", Allow),
                (S, "hearth/a1/set", Allow),
                (S, "hearth/a1/#", Allow),
                (S, "hearth/a1/+/x", Allow),
                (S, "hearth/a1", Allow),
                // Other devices, and anything wider.
                (P, "hearth/a2/state", Deny),
                (P, "hearth/a10/state", Deny),
                (P, "hearth/a", Deny),
                (S, "hearth/+/set", Deny),
                (S, "hearth/#", Deny),
                (S, "#", Deny),
                (S, "+/a1/#", Deny),
                (S, "+", Deny),
                (P, "hearth", Deny),
                (P, "Hearth/a1/state", Deny),
                (P, "/hearth/a1/state", Deny),
                // Wildcards in a publish are not a topic.
                (P, "hearth/a1/+", Deny),
                (P, "hearth/a1/#", Deny),
                // Malformed filters.
                (S, "hearth/a1/#/x", Deny),
                (S, "hearth/a1/x#", Deny),
                (S, "hearth/a1/x+", Deny),
                // $SYS, shared and queued subscriptions.
                (S, "$SYS/#", Deny),
                (S, "$SYS/broker/clients", Deny),
                (P, "$SYS/broker/x", Deny),
                (S, "$share/g/hearth/a1/#", Deny),
                (S, "$queue/hearth/a1/#", Deny),
                // Empty and absurd topics.
                (P, "", Deny),
                (S, "", Deny),
                (P, "hearth/a1/\0", Deny),
            ],
        );
    }

    #[test]
    fn very_long_and_deep_topics_are_denied() {
        let d = device("a1");
        let long = format!("hearth/a1/{}", "x".repeat(MAX_TOPIC_LEN));
        assert_eq!(decide(&d, P, &long), Deny);
        let just_fits = format!("hearth/a1/{}", "x".repeat(MAX_TOPIC_LEN - 10));
        assert_eq!(decide(&d, P, &just_fits), Allow);
        let deep = format!("hearth/a1/{}", vec!["l"; MAX_LEVELS].join("/"));
        assert_eq!(decide(&d, P, &deep), Deny);
        let huge = "a/".repeat(40_000);
        assert_eq!(decide(&d, S, &huge), Deny);
    }

    #[test]
    fn hub_reaches_devices_but_not_dollar_topics() {
        check(
            &Principal::Hub,
            &[
                (S, "#", Allow),
                (P, "cmnd/plug1/POWER", Allow),
                (S, "$SYS/#", Deny),
                (P, "hearth/a1/+", Deny),
            ],
        );
    }

    #[test]
    fn a_device_with_no_rules_may_do_nothing() {
        let d = Principal::Confined { rules: vec![] };
        check(&d, &[(P, "hearth/x", Deny), (S, "hearth/x", Deny)]);
    }
}
