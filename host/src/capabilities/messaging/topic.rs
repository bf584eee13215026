//! Brokers and topic patterns: `mqtt:sensors/+/temperature`, `nats:orders.>`. A pattern is
//! checked against its broker's rules at deploy, so a filter the broker would refuse is a
//! clear deploy error rather than a silent subscription failure later.
//!
//! MQTT (3.1.1 §4.7): levels split by `/`; `+` matches one whole level, `#` the rest and must
//! be last; wildcards never match a first level starting with `$`. NATS: tokens split by `.`,
//! none empty; `*` matches one token, `>` one or more and must be last.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A broker kind a node may be configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Broker {
    Mqtt,
    Nats,
}

impl Broker {
    pub const ALL: [Broker; 2] = [Broker::Mqtt, Broker::Nats];

    pub fn name(self) -> &'static str {
        match self {
            Broker::Mqtt => "mqtt",
            Broker::Nats => "nats",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }

    /// The topic a failed message of `app` is sent to, with the reason attached.
    pub fn dead_letter_topic(self, app: &str) -> String {
        match self {
            Broker::Mqtt => format!("dead-letter/{app}"),
            Broker::Nats => format!("dead-letter.{app}"),
        }
    }
}

impl fmt::Display for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `BROKER:PATTERN`, validated for that broker.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TopicPattern {
    pub broker: Broker,
    pub pattern: String,
}

/// Longest topic or pattern accepted (MQTT's limit is 65535 bytes; NATS has none).
const MAX_TOPIC_BYTES: usize = 1024;

impl TopicPattern {
    /// Parses `mqtt:FILTER` or `nats:SUBJECT`; the error says what is wrong and what a good
    /// one looks like.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let Some((broker, pattern)) = spec.split_once(':') else {
            return Err(format!(
                "{spec:?} names no broker: write mqtt:TOPIC-FILTER (e.g. mqtt:sensors/+/temperature) \
                 or nats:SUBJECT (e.g. nats:orders.>)"
            ));
        };
        let Some(broker) = Broker::from_name(broker) else {
            return Err(format!(
                "{spec:?}: unknown broker {broker:?}; this node speaks mqtt and nats"
            ));
        };
        check_pattern(broker, pattern).map_err(|why| format!("{spec:?}: {why}"))?;
        Ok(Self {
            broker,
            pattern: pattern.to_string(),
        })
    }

    /// Whether a message on `topic` (of this pattern's broker) matches.
    pub fn matches(&self, broker: Broker, topic: &str) -> bool {
        broker == self.broker
            && match broker {
                Broker::Mqtt => mqtt_matches(&self.pattern, topic),
                Broker::Nats => nats_matches(&self.pattern, topic),
            }
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.broker, self.pattern)
    }
}

fn check_common(text: &str, what: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if text.len() > MAX_TOPIC_BYTES {
        return Err(format!(
            "the {what} is {} bytes long; at most {MAX_TOPIC_BYTES} are accepted",
            text.len()
        ));
    }
    if text.chars().any(|c| c == '\0' || c.is_control()) {
        return Err(format!("the {what} contains a control character"));
    }
    Ok(())
}

fn check_pattern(broker: Broker, pattern: &str) -> Result<(), String> {
    match broker {
        Broker::Mqtt => {
            check_common(pattern, "MQTT topic filter")?;
            let levels: Vec<&str> = pattern.split('/').collect();
            for (i, level) in levels.iter().enumerate() {
                let last = i + 1 == levels.len();
                match *level {
                    "+" => {}
                    "#" if last => {}
                    "#" => return Err("`#` must be the last level of an MQTT filter".into()),
                    other if other.contains(['+', '#']) => {
                        return Err(format!(
                            "MQTT wildcards must fill a whole level (`{other}` mixes them with \
                             text); use `+` or `#` alone between slashes"
                        ));
                    }
                    _ => {}
                }
            }
            Ok(())
        }
        Broker::Nats => {
            check_common(pattern, "NATS subject")?;
            if pattern.contains(char::is_whitespace) {
                return Err("NATS subjects cannot contain spaces".into());
            }
            let tokens: Vec<&str> = pattern.split('.').collect();
            for (i, token) in tokens.iter().enumerate() {
                let last = i + 1 == tokens.len();
                match *token {
                    "" => return Err("NATS subjects cannot have empty tokens (`..` or a leading or trailing `.`)".into()),
                    "*" => {}
                    ">" if last => {}
                    ">" => return Err("`>` must be the last token of a NATS subject".into()),
                    other if other.contains(['*', '>']) => {
                        return Err(format!(
                            "NATS wildcards must fill a whole token (`{other}`); use `*` or `>` alone \
                             between dots"
                        ));
                    }
                    _ => {}
                }
            }
            Ok(())
        }
    }
}

/// Checks a topic a guest publishes to: a valid pattern without wildcards.
pub fn check_publish_topic(broker: Broker, topic: &str) -> Result<(), String> {
    check_pattern(broker, topic)?;
    let wildcard = match broker {
        Broker::Mqtt => topic.split('/').any(|l| l == "+" || l == "#"),
        Broker::Nats => topic.split('.').any(|t| t == "*" || t == ">"),
    };
    if wildcard {
        return Err(format!(
            "{topic:?} has a wildcard; a message is published to one concrete topic"
        ));
    }
    Ok(())
}

fn mqtt_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match level {
            "#" => return true,
            "+" => {
                if topic_levels.next().is_none() {
                    return false;
                }
            }
            exact => {
                if topic_levels.next() != Some(exact) {
                    return false;
                }
            }
        }
    }
    topic_levels.next().is_none()
}

fn nats_matches(pattern: &str, subject: &str) -> bool {
    let mut tokens = subject.split('.');
    for token in pattern.split('.') {
        match token {
            ">" => return tokens.next().is_some(),
            "*" => {
                if tokens.next().is_none() {
                    return false;
                }
            }
            exact => {
                if tokens.next() != Some(exact) {
                    return false;
                }
            }
        }
    }
    tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(spec: &str) -> TopicPattern {
        TopicPattern::parse(spec).unwrap()
    }

    #[test]
    fn mqtt_filters_match_as_the_spec_says() {
        let p = pattern("mqtt:sensors/+/temperature");
        assert!(p.matches(Broker::Mqtt, "sensors/s1/temperature"));
        assert!(!p.matches(Broker::Mqtt, "sensors/s1/humidity"));
        assert!(!p.matches(Broker::Mqtt, "sensors/s1/temperature/x"));
        assert!(!p.matches(Broker::Nats, "sensors/s1/temperature"));
        let all = pattern("mqtt:alerts/#");
        assert!(all.matches(Broker::Mqtt, "alerts"));
        assert!(all.matches(Broker::Mqtt, "alerts/a/b"));
        assert!(!pattern("mqtt:#").matches(Broker::Mqtt, "$SYS/uptime"));
        assert!(pattern("mqtt:#").matches(Broker::Mqtt, "a/b"));
    }

    #[test]
    fn nats_subjects_match_as_the_server_does() {
        let p = pattern("nats:orders.>");
        assert!(p.matches(Broker::Nats, "orders.eu.1"));
        assert!(!p.matches(Broker::Nats, "orders"));
        let one = pattern("nats:frames.*");
        assert!(one.matches(Broker::Nats, "frames.cam1"));
        assert!(!one.matches(Broker::Nats, "frames.cam1.raw"));
    }

    #[test]
    fn invalid_patterns_are_refused_with_the_reason() {
        for (spec, why) in [
            ("sensors/#", "names no broker"),
            ("kafka:x", "unknown broker"),
            ("mqtt:", "empty"),
            ("mqtt:sensors/#/x", "must be the last level"),
            ("mqtt:sensors/s+/x", "whole level"),
            ("nats:orders..x", "empty tokens"),
            ("nats:orders.>.x", "must be the last token"),
            ("nats:or ders", "spaces"),
            ("mqtt:a\0b", "control character"),
        ] {
            let err = TopicPattern::parse(spec).unwrap_err();
            assert!(err.contains(why), "{spec}: {err}");
        }
    }

    #[test]
    fn publish_topics_have_no_wildcards() {
        assert!(check_publish_topic(Broker::Mqtt, "alerts/s1").is_ok());
        assert!(check_publish_topic(Broker::Mqtt, "alerts/+").is_err());
        assert!(check_publish_topic(Broker::Nats, "labels.>").is_err());
    }
}
