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

    /// Documents matching at least one query term, best first (ties: lower id first).
    pub fn search(&self, query: &str) -> Vec<u64> {
        let docs = self.lengths.len() as f64;
        if docs == 0.0 {
            return Vec::new();
        }
        let average = self.total_length as f64 / docs;
        let mut terms: Vec<String> = tokenize(query).collect();
        terms.sort();
        terms.dedup();
        let mut scores: HashMap<u64, f64> = HashMap::new();
        for term in &terms {
            let Some(postings) = self.postings.get(term) else {
                continue;
            };
            let n = postings.len() as f64;
            let idf = ((docs - n + 0.5) / (n + 0.5) + 1.0).ln();
            for (doc, tf) in postings {
                let tf = f64::from(*tf);
                let length = f64::from(self.lengths[doc]);
                let score =
                    idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * length / average.max(1.0)));
                *scores.entry(*doc).or_default() += score;
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
        assert_eq!(index.search("french translation"), vec![1, 2]);
        assert_eq!(index.search("FORECAST"), vec![3]);
        assert!(index.search("nothing").is_empty());
        index.remove(1, "translator french english translation service");
        assert_eq!(index.search("french translation"), vec![2]);
    }
}
