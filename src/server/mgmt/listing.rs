//! The query options every list endpoint takes, as RabbitMQ's: `name` (with `use_regex`),
//! `sort` and `sort_reverse`, `columns`, and `page` / `page_size`, which wrap the list in a
//! page object.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use hyper::StatusCode;

use super::http::Reply;

/// Largest `page_size` RabbitMQ accepts.
const MAX_PAGE_SIZE: usize = 500;

pub fn list(query: &HashMap<String, String>, items: Vec<Value>) -> Reply {
    match shaped(query, items) {
        Ok(value) => Reply::json(&value),
        Err(reply) => reply,
    }
}

fn shaped(query: &HashMap<String, String>, mut items: Vec<Value>) -> Result<Value, Reply> {
    let total = items.len();
    // As in RabbitMQ, `name` filters only a paged listing.
    let paged = query.contains_key("page");
    if let Some(name) = query.get("name").filter(|n| paged && !n.is_empty()) {
        let regex = query.get("use_regex").is_some_and(|v| v == "true");
        let matches = name_filter(name, regex)?;
        items.retain(|item| matches(item["name"].as_str().unwrap_or_default()));
    }
    if let Some(field) = query.get("sort").filter(|s| !s.is_empty()) {
        items.sort_by(|a, b| compare(lookup(a, field), lookup(b, field)));
    }
    if query.get("sort_reverse").is_some_and(|v| v == "true") {
        items.reverse();
    }
    let filtered = items.len();
    let page = match query.get("page") {
        Some(page) => Some(page_of(query, page, &mut items)?),
        None => None,
    };
    if let Some(columns) = query.get("columns").filter(|c| !c.is_empty()) {
        items = items.iter().map(|i| pick(i, columns)).collect();
    }
    Ok(match page {
        None => Value::Array(items),
        Some((page, size, count)) => json!({
            "filtered_count": filtered, "item_count": items.len(), "items": items,
            "page": page, "page_count": count, "page_size": size, "total_count": total,
        }),
    })
}

/// Keeps the page asked for; (page, page size, page count).
fn page_of(
    query: &HashMap<String, String>,
    page: &str,
    items: &mut Vec<Value>,
) -> Result<(usize, usize, usize), Reply> {
    let invalid = || {
        let reason = "page and page_size must be integers between 1 and 500";
        Reply::error(
            StatusCode::BAD_REQUEST,
            "invalid_pagination_parameters",
            reason,
        )
    };
    let page: usize = page.parse().map_err(|_| invalid())?;
    let size: usize = match query.get("page_size") {
        Some(s) => s.parse().map_err(|_| invalid())?,
        None => 100,
    };
    if page == 0 || size == 0 || size > MAX_PAGE_SIZE {
        return Err(invalid());
    }
    let count = items.len().div_ceil(size).max(1);
    if page > count {
        let reason = "page number out of range";
        return Err(Reply::error(
            StatusCode::BAD_REQUEST,
            "page_out_of_range",
            reason,
        ));
    }
    let start = (page - 1) * size;
    let end = (start + size).min(items.len());
    *items = items.drain(start..end).collect();
    Ok((page, size, count))
}

/// Whether a name passes the `name` filter.
type NameFilter = Box<dyn Fn(&str) -> bool>;

fn name_filter(name: &str, regex: bool) -> Result<NameFilter, Reply> {
    if regex {
        let re = regex::Regex::new(name).map_err(|e| Reply::bad_request(&e.to_string()))?;
        return Ok(Box::new(move |s| re.is_match(s)));
    }
    let needle = name.to_lowercase();
    Ok(Box::new(move |s| s.to_lowercase().contains(&needle)))
}

/// A dotted path (`message_stats.publish`) in `item`.
fn lookup<'a>(item: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(item, |v, key| &v[key])
}

fn compare(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// Only the columns asked for (dotted paths keep their nesting).
fn pick(item: &Value, columns: &str) -> Value {
    let mut out = Value::Object(Map::new());
    for column in columns.split(',').filter(|c| !c.is_empty()) {
        let value = lookup(item, column);
        if value.is_null() && !has_path(item, column) {
            continue;
        }
        let mut at = &mut out;
        let keys: Vec<&str> = column.split('.').collect();
        for key in &keys[..keys.len() - 1] {
            at = &mut at[*key];
            if !at.is_object() {
                *at = Value::Object(Map::new());
            }
        }
        at[keys[keys.len() - 1]] = value.clone();
    }
    out
}

fn has_path(item: &Value, path: &str) -> bool {
    let mut v = item;
    for key in path.split('.') {
        match v.get(key) {
            Some(next) => v = next,
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn names() -> Vec<Value> {
        ["b", "a", "c"]
            .iter()
            .map(|n| json!({"name": n, "m": {"x": 1}}))
            .collect()
    }

    #[test]
    fn pages_sorts_filters_and_picks_columns() {
        let v = shaped(
            &q(&[("page", "2"), ("page_size", "2"), ("sort", "name")]),
            names(),
        )
        .unwrap_or_default();
        assert_eq!(v["items"], json!([{"name": "c", "m": {"x": 1}}]));
        assert_eq!(v["page_count"], 2);
        assert_eq!(v["total_count"], 3);
        let v = shaped(
            &q(&[("columns", "name,m.x"), ("name", "A"), ("page", "1")]),
            names(),
        )
        .unwrap_or_default();
        assert_eq!(v["items"], json!([{"name": "a", "m": {"x": 1}}]));
        let regex = [("name", "^[bc]$"), ("use_regex", "true"), ("page", "1")];
        let v = shaped(&q(&regex), names()).unwrap_or_default();
        assert_eq!(v["items"].as_array().map(Vec::len), Some(2));
        let unpaged = shaped(&q(&[("name", "a")]), names()).unwrap_or_default();
        assert_eq!(unpaged.as_array().map(Vec::len), Some(3));
        assert!(shaped(&q(&[("page", "9")]), names()).is_err());
    }
}
