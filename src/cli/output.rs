//! What the client commands print: text for people by default, or with `--json` the broker's
//! reply object as one JSON document on stdout, for scripts (`mq9 --json ... | jq`).

use std::io::Write;

use anyhow::{anyhow, Result};
use base64::Engine as _;
use serde_json::Value;

/// Prints either form; nothing is printed on failure, so stdout never holds half an answer.
pub struct Printer {
    json: bool,
}

impl Printer {
    pub fn new(json: bool) -> Printer {
        Printer { json }
    }

    /// Prints `document` as JSON with `--json`, else the text `human` builds. Only the form
    /// that is printed gets built.
    pub fn print(&self, document: &Value, human: impl FnOnce() -> String) -> Result<()> {
        let text = if self.json {
            format!("{document}\n")
        } else {
            human()
        };
        let mut stdout = std::io::stdout().lock();
        match stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
        {
            // The reader (`| head`) has seen enough: not an error of ours.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            written => written.map_err(|e| anyhow!("writing to stdout: {e}")),
        }
    }
}

/// Rows aligned in columns two spaces apart, one line each; the last column is not padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|row| row.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// Name/value lines (`ttl      3600s`), aligned.
pub fn fields(rows: &[(&str, String)]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|(name, value)| vec![name.to_string(), value.clone()])
        .collect();
    table(&rows)
}

/// The messages of a FETCH or QUERY reply, nats-CLI style: a line of metadata, the key, tags
/// and headers, a blank line, the payload.
///
/// Payloads arrive base64-encoded. One that is UTF-8 text (tabs and line breaks allowed, no
/// other control characters that could disturb a terminal) is printed as is; anything else is
/// printed as base64, marked so, which is binary-safe.
pub fn messages(reply: &Value) -> String {
    list_or_none(&reply["messages"], "messages", |items| {
        items.iter().map(message).collect::<Vec<_>>().join("\n")
    })
}

/// What `render` makes of a reply's array, or the line `no {what}` when it is empty (or
/// missing).
pub fn list_or_none(items: &Value, what: &str, render: impl FnOnce(&[Value]) -> String) -> String {
    match items.as_array() {
        Some(items) if !items.is_empty() => render(items),
        _ => format!("no {what}\n"),
    }
}

fn message(item: &Value) -> String {
    let priority = item["priority"].as_str().unwrap_or("?");
    let mut text = match item["delay_id"].as_u64() {
        // A delayed message: no msg_id yet, deleted by `d<delay_id>`.
        Some(delay_id) => format!(
            "[d{delay_id}] {priority}, visible {}\n",
            time(item["visible_at"].as_u64().unwrap_or(0)),
        ),
        None => format!(
            "[#{}] {priority}, delivery {}, {}\n",
            item["msg_id"],
            item["delivery_count"],
            time(item["create_time"].as_u64().unwrap_or(0)),
        ),
    };
    if let Some(key) = item["key"].as_str() {
        text.push_str(&format!("key: {key}\n"));
    }
    if let Some(tags) = item["tags"].as_array() {
        let tags: Vec<&str> = tags.iter().filter_map(Value::as_str).collect();
        text.push_str(&format!("tags: {}\n", tags.join(", ")));
    }
    for (name, value) in item["headers"].as_object().into_iter().flatten() {
        text.push_str(&format!("{name}: {}\n", value.as_str().unwrap_or("")));
    }
    let encoded = item["payload"].as_str().unwrap_or("");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap_or_default();
    match String::from_utf8(bytes) {
        Ok(payload)
            if !payload
                .chars()
                .any(|c| c.is_control() && !"\n\r\t".contains(c)) =>
        {
            text.push('\n');
            text.push_str(&payload);
        }
        Ok(payload) => text.push_str(&binary(payload.len(), encoded)),
        Err(e) => text.push_str(&binary(e.as_bytes().len(), encoded)),
    }
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

fn binary(len: usize, encoded: &str) -> String {
    format!("\n(binary, {len} bytes, base64) {encoded}\n")
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC` (the proleptic Gregorian calendar, computed with
/// Howard Hinnant's `civil_from_days`, to need no date crate).
pub fn time(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// A mailbox's `expires_at` for people: `0` (or absent) means never.
pub fn expiry(expires_at: &Value) -> String {
    match expires_at.as_u64() {
        Some(0) | None => "never".to_owned(),
        Some(at) => time(at),
    }
}

/// A mailbox's `ttl` and `expires_at` for people: `3600s, expires 2025-01-01 00:00:00 UTC`.
pub fn lifetime(mailbox: &Value) -> String {
    match mailbox["ttl"].as_u64() {
        Some(0) => "0 (never expires)".to_owned(),
        ttl => format!(
            "{}s, expires {}",
            ttl.unwrap_or_default(),
            expiry(&mailbox["expires_at"])
        ),
    }
}

/// A string field as text, `-` when null or absent (an agent-created mailbox has no owner).
pub fn text(value: &Value) -> String {
    value.as_str().unwrap_or("-").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn time_is_utc_calendar() {
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(time(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn text_payloads_print_as_text_and_binary_as_marked_base64() {
        let reply = json!({"messages": [
            {"msg_id": 0, "payload": "aGk=", "priority": "normal", "create_time": 0,
             "delivery_count": 1, "headers": {"X-A": "1"}, "key": "k", "tags": ["a", "b"]},
            {"msg_id": 1, "payload": "AP8=", "priority": "urgent", "create_time": 0,
             "delivery_count": 2, "headers": {}},
        ]});
        let text = messages(&reply);
        assert!(text.starts_with("[#0] normal, delivery 1, 1970-01-01 00:00:00 UTC\n"));
        assert!(text.contains("key: k\ntags: a, b\nX-A: 1\n\nhi\n"));
        assert!(text.contains("(binary, 2 bytes, base64) AP8=\n"));
        assert_eq!(messages(&json!({"messages": []})), "no messages\n");
    }

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["NAME".into(), "TYPE".into()],
            vec!["a.long.name".into(), "latest".into()],
        ];
        assert_eq!(table(&rows), "NAME         TYPE\na.long.name  latest\n");
    }
}
