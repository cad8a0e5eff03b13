//! Label and field selectors, as sent in `labelSelector` / `fieldSelector`.

use serde_json::Value;

use super::store::ApiError;

/// One parsed `labelSelector` requirement.
#[derive(Debug, Clone)]
enum Label {
    /// `a=b`, `a==b`, `a in (x,y)` (`negate` false); `a!=b`, `a notin (x,y)` (`negate` true).
    Values {
        key: String,
        values: Vec<String>,
        negate: bool,
    },
    /// `a` (`negate` false) or `!a` (`negate` true).
    Exists { key: String, negate: bool },
}

/// The namespace and selectors a list, watch or collection delete is restricted to.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    /// `None`: all namespaces.
    pub namespace: Option<String>,
    labels: Vec<Label>,
    /// `(dotted path, value, negate)`.
    fields: Vec<(String, String, bool)>,
}

impl Selector {
    /// Everything in `namespace` (`None`: all namespaces).
    pub fn namespace(namespace: Option<String>) -> Selector {
        Selector {
            namespace,
            ..Selector::default()
        }
    }

    pub fn parse(
        namespace: Option<String>,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> Result<Selector, ApiError> {
        let labels = split_top_level(labels.unwrap_or_default())
            .into_iter()
            .map(parse_label)
            .collect::<Result<_, _>>()?;
        let fields = split_top_level(fields.unwrap_or_default())
            .into_iter()
            .map(|req| {
                let (key, value, negate) = if let Some((k, v)) = req.split_once("!=") {
                    (k, v, true)
                } else if let Some((k, v)) = req.split_once("==").or_else(|| req.split_once('=')) {
                    (k, v, false)
                } else {
                    return Err(ApiError::bad_request(format!("bad field selector {req:?}")));
                };
                Ok((key.trim().to_owned(), value.trim().to_owned(), negate))
            })
            .collect::<Result<_, _>>()?;
        Ok(Selector {
            namespace,
            labels,
            fields,
        })
    }

    pub fn matches(&self, object: &Value) -> bool {
        let metadata = &object["metadata"];
        if let Some(ns) = &self.namespace {
            if metadata["namespace"].as_str().unwrap_or_default() != ns {
                return false;
            }
        }
        let label = |key: &str| metadata["labels"][key].as_str().map(str::to_owned);
        let labels_ok = self.labels.iter().all(|req| match req {
            Label::Values {
                key,
                values,
                negate,
            } => match label(key) {
                Some(v) => values.contains(&v) != *negate,
                None => *negate,
            },
            Label::Exists { key, negate } => label(key).is_some() != *negate,
        });
        labels_ok
            && self.fields.iter().all(|(path, value, negate)| {
                let actual = path.split('.').fold(object, |node, key| &node[key]);
                let actual = match actual {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (actual == *value) != *negate
            })
    }
}

/// Splits at commas that are not inside parentheses; drops empty parts.
fn split_top_level(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn parse_label(req: &str) -> Result<Label, ApiError> {
    let bad = || ApiError::bad_request(format!("bad label selector requirement {req:?}"));
    let values = |key: &str, rest: &str, negate: bool| -> Result<Label, ApiError> {
        let inner = rest
            .trim()
            .strip_prefix('(')
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(bad)?;
        let values = inner
            .split(',')
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect();
        Ok(Label::Values {
            key: key.trim().to_owned(),
            values,
            negate,
        })
    };
    if let Some((key, value)) = req.split_once("!=") {
        return Ok(Label::Values {
            key: key.trim().into(),
            values: vec![value.trim().into()],
            negate: true,
        });
    }
    if let Some((key, value)) = req.split_once("==").or_else(|| req.split_once('=')) {
        return Ok(Label::Values {
            key: key.trim().into(),
            values: vec![value.trim().into()],
            negate: false,
        });
    }
    if let Some((key, rest)) = req.split_once(" notin ") {
        return values(key, rest, true);
    }
    if let Some((key, rest)) = req.split_once(" in ") {
        return values(key, rest, false);
    }
    match req.strip_prefix('!') {
        Some(key) => Ok(Label::Exists {
            key: key.trim().into(),
            negate: true,
        }),
        None if !req.contains(char::is_whitespace) => Ok(Label::Exists {
            key: req.into(),
            negate: false,
        }),
        None => Err(bad()),
    }
}
