//! Durable broadcast subscriptions: which mailboxes a `$mq9.AI.BROADCAST.{topic}` publish
//! reaches. A token trie over the subscribed patterns, NATS-style: `*` matches one token, `>`
//! one or more at the end. Matching walks only the branches the subject can take, so its cost
//! follows the subject's length, not the number of subscriptions.

use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Default)]
pub struct TopicIndex {
    root: Node,
    len: usize,
}

#[derive(Debug, Default)]
struct Node {
    literal: HashMap<String, Node>,
    any: Option<Box<Node>>,
    /// Mailboxes whose pattern ends at this node.
    here: BTreeSet<Box<str>>,
    /// Mailboxes whose pattern ends with `>` at this node.
    rest: BTreeSet<Box<str>>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.literal.is_empty()
            && self.any.is_none()
            && self.here.is_empty()
            && self.rest.is_empty()
    }
}

impl TopicIndex {
    /// Number of (pattern, mailbox) subscriptions.
    pub fn count(&self) -> usize {
        self.len
    }

    /// Subscribes `address` to `pattern` (already validated). Returns false if it already was.
    pub fn insert(&mut self, pattern: &str, address: &str) -> bool {
        let mut node = &mut self.root;
        let tokens: Vec<&str> = pattern.split('.').collect();
        for (i, token) in tokens.iter().enumerate() {
            if *token == ">" && i + 1 == tokens.len() {
                let added = node.rest.insert(address.into());
                self.len += usize::from(added);
                return added;
            }
            node = match *token {
                "*" => node.any.get_or_insert_with(Default::default),
                literal => node.literal.entry(literal.to_owned()).or_default(),
            };
        }
        let added = node.here.insert(address.into());
        self.len += usize::from(added);
        added
    }

    /// Unsubscribes; returns false if there was nothing to remove.
    pub fn remove(&mut self, pattern: &str, address: &str) -> bool {
        let tokens: Vec<&str> = pattern.split('.').collect();
        let removed = remove(&mut self.root, &tokens, address);
        self.len -= usize::from(removed);
        removed
    }

    /// Every mailbox subscribed to a pattern that matches `subject`, each once.
    pub fn matching(&self, subject: &str) -> BTreeSet<Box<str>> {
        let tokens: Vec<&str> = subject.split('.').collect();
        let mut found = BTreeSet::new();
        collect(&self.root, &tokens, &mut found);
        found
    }
}

/// Whether the subscription `pattern` (`*` one token, `>` the rest) matches `subject`.
pub fn pattern_matches(pattern: &str, subject: &str) -> bool {
    let mut subject = subject.split('.');
    for token in pattern.split('.') {
        match (token, subject.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (literal, Some(actual)) if literal == actual => {}
            _ => return false,
        }
    }
    subject.next().is_none()
}

fn remove(node: &mut Node, tokens: &[&str], address: &str) -> bool {
    match tokens {
        [] => node.here.remove(address),
        [">"] => node.rest.remove(address),
        [token, rest @ ..] => {
            let removed = if *token == "*" {
                let removed = node
                    .any
                    .as_mut()
                    .is_some_and(|child| remove(child, rest, address));
                if node.any.as_ref().is_some_and(|child| child.is_empty()) {
                    node.any = None;
                }
                removed
            } else {
                let removed = node
                    .literal
                    .get_mut(*token)
                    .is_some_and(|child| remove(child, rest, address));
                if node.literal.get(*token).is_some_and(Node::is_empty) {
                    node.literal.remove(*token);
                }
                removed
            };
            removed
        }
    }
}

fn collect(node: &Node, tokens: &[&str], found: &mut BTreeSet<Box<str>>) {
    let Some((token, rest)) = tokens.split_first() else {
        found.extend(node.here.iter().cloned());
        return;
    };
    found.extend(node.rest.iter().cloned());
    if let Some(child) = node.literal.get(*token) {
        collect(child, rest, found);
    }
    if let Some(child) = &node.any {
        collect(child, rest, found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(set: BTreeSet<Box<str>>) -> Vec<String> {
        set.into_iter().map(String::from).collect()
    }

    #[test]
    fn wildcards_match_like_nats() {
        let mut index = TopicIndex::default();
        index.insert("task.available", "exact");
        index.insert("task.*", "star");
        index.insert("task.>", "rest");
        index.insert(">", "all");
        index.insert("system.>", "system");
        assert_eq!(
            names(index.matching("task.available")),
            ["all", "exact", "rest", "star"]
        );
        assert_eq!(names(index.matching("task.done.now")), ["all", "rest"]);
        assert_eq!(names(index.matching("task")), ["all"]);
        assert_eq!(names(index.matching("system.alert")), ["all", "system"]);
    }

    #[test]
    fn one_mailbox_twice_gets_one_copy_and_removal_prunes() {
        let mut index = TopicIndex::default();
        assert!(index.insert("a.*", "m"));
        assert!(index.insert("a.b", "m"));
        assert!(!index.insert("a.b", "m"));
        assert_eq!(names(index.matching("a.b")), ["m"]);
        assert!(index.remove("a.*", "m") && index.remove("a.b", "m"));
        assert!(!index.remove("a.b", "m"));
        assert!(index.root.is_empty() && index.count() == 0);
    }

    #[test]
    fn single_patterns_match_as_the_index_does() {
        for (pattern, subject, expected) in [
            ("task.available", "task.available", true),
            ("task.*", "task.available", true),
            ("task.*", "task.a.b", false),
            ("task.>", "task.a.b", true),
            ("task.>", "task", false),
            ("task", "task.a", false),
            ("*.x", "a.x", true),
        ] {
            assert_eq!(
                pattern_matches(pattern, subject),
                expected,
                "{pattern} ~ {subject}"
            );
            let mut index = TopicIndex::default();
            index.insert(pattern, "m");
            assert_eq!(
                !index.matching(subject).is_empty(),
                expected,
                "index: {pattern}"
            );
        }
    }
}
