//! Ranked full-text search for DISCOVER: Okapi BM25 over the string values of agent cards.
//!
//! Small and exact for the registry's size (thousands to a few hundred thousand agents): an
//! inverted index from lowercase alphanumeric terms to (document, term frequency), scored with
//! the usual k1 = 1.2, b = 0.75. `semantic` queries use the same ranking until embeddings exist.

use std::collections::HashMap;

const K1: f64 = 1.2;
const B: f64 = 0.75;

#[derive(Debug, Default)]
pub struct SearchIndex {
    postings: HashMap<String, HashMap<u64, u32>>,
    lengths: HashMap<u64, u32>,
    total_length: u64,
}

/// Lowercase runs of letters and digits.
pub fn tokenize(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
}

impl SearchIndex {
    pub fn add(&mut self, doc: u64, text: &str) {
        let mut length = 0;
        for term in tokenize(text) {
            *self
                .postings
                .entry(term)
                .or_default()
                .entry(doc)
                .or_default() += 1;
            length += 1;
        }
        self.lengths.insert(doc, length);
        self.total_length += u64::from(length);
    }

    /// Removes a document; `text` must be what it was added with.
    pub fn remove(&mut self, doc: u64, text: &str) {
        for term in tokenize(text) {
            if let Some(docs) = self.postings.get_mut(&term) {
                docs.remove(&doc);
                if docs.is_empty() {
                    self.postings.remove(&term);
                }
            }
        }
        if let Some(length) = self.lengths.remove(&doc) {
            self.total_length -= u64::from(length);
        }
    }

    /// Documents matching at least one query term, best first (ties: lower id first), reading
    /// at most `budget` postings (`--max-scan`), so that one DISCOVER cannot stall the engine.
    ///
    /// Terms are read rarest first: they carry the most weight (highest idf) and the fewest
    /// postings. A term with more postings than the budget has left is too common to read
    /// whole; it then only adds its score to the documents already found (one lookup each),
    /// or, when it is the first term, ranks a sample of `budget` of its documents. Below the
    /// budget the ranking is exact.
    pub fn search(&self, query: &str, budget: usize) -> Vec<u64> {
        let docs = self.lengths.len() as f64;
        if docs == 0.0 {
            return Vec::new();
        }
        let average = self.total_length as f64 / docs;
        let mut terms: Vec<String> = tokenize(query).collect();
        terms.sort();
        terms.dedup();
        let mut postings: Vec<&HashMap<u64, u32>> = terms
            .iter()
            .take(budget)
            .filter_map(|term| self.postings.get(term))
            .collect();
        postings.sort_by_key(|p| p.len());
        let mut left = budget.saturating_sub(terms.len());
        let mut scores: HashMap<u64, f64> = HashMap::new();
        for postings in postings {
            let n = postings.len() as f64;
            let idf = ((docs - n + 0.5) / (n + 0.5) + 1.0).ln();
            let score = |doc: &u64, tf: u32| {
                let tf = f64::from(tf);
                let length = f64::from(self.lengths[doc]);
                idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * length / average.max(1.0)))
            };
            if postings.len() <= left || scores.is_empty() {
                for (doc, tf) in postings.iter().take(left) {
                    *scores.entry(*doc).or_default() += score(doc, *tf);
                }
                left = left.saturating_sub(postings.len());
            } else {
                for (doc, total) in scores.iter_mut() {
                    if let Some(tf) = postings.get(doc) {
                        *total += score(doc, *tf);
                    }
                }
                left = left.saturating_sub(scores.len());
            }
        }
        let mut ranked: Vec<(u64, f64)> = scores.into_iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.into_iter().map(|(doc, _)| doc).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_rarer_and_denser_matches_first() {
        let mut index = SearchIndex::default();
        index.add(1, "translator french english translation service");
        index.add(
            2,
            "image generator with a french accent in its docs and many other words here",
        );
        index.add(3, "weather forecast");
        assert_eq!(index.search("french translation", 100), vec![1, 2]);
        assert_eq!(index.search("FORECAST", 100), vec![3]);
        assert!(index.search("nothing", 100).is_empty());
        index.remove(1, "translator french english translation service");
        assert_eq!(index.search("french translation", 100), vec![2]);
    }

    #[test]
    fn a_term_too_common_for_the_budget_only_refines_what_rarer_terms_found() {
        let mut index = SearchIndex::default();
        for doc in 0..100 {
            index.add(doc, "agent");
        }
        index.add(100, "agent translator");
        index.add(101, "translator");
        // "translator" (2 postings) is read whole; "agent" (101) only scores docs 100 and 101.
        let mut found = index.search("agent translator", 10);
        found.sort_unstable();
        assert_eq!(found, vec![100, 101]);
        // Alone, a too-common term ranks a sample of the budget's size.
        assert_eq!(index.search("agent", 10).len(), 9);
        assert_eq!(index.search("agent", 1000).len(), 101);
    }
}
