//! The headers exchange: match message headers against binding arguments.
//!
//! Follows RabbitMQ's `rabbit_exchange_type_headers`:
//!
//! - `x-match` picks the rule: `all` (the default, also used for a value of
//!   the wrong type), `any`, `all-with-x`, `any-with-x`;
//! - the `x-match` entry itself never takes part, and other keys starting with
//!   `x-` take part only under the `-with-x` rules;
//! - an argument whose value is `Void` matches any header with that key,
//!   whatever its value; any other argument matches a header with the same key
//!   and an equal value (Erlang `==`, see `args`);
//! - `all` with no arguments left matches every message, `any` none.
//!
//! Both sides are walked as key-sorted lists, so duplicate keys behave as in
//! RabbitMQ: the n-th argument with a key meets the n-th header with it.
//!
//! Routing is a scan over every binding, as in RabbitMQ: each one is a
//! separate predicate. The message headers are sorted once per message, not
//! once per binding.

use std::fmt;

use bytes::Bytes;
use smallvec::SmallVec;

use super::args;
use crate::protocol::table::{FieldTable, FieldValue};

/// The `x-match` rule of a headers binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XMatch {
    All,
    Any,
    AllWithX,
    AnyWithX,
}

impl XMatch {
    /// The rule named by `arguments`, read as RabbitMQ reads it at routing
    /// time: anything but a known long string means `all`.
    pub fn of(arguments: &FieldTable) -> XMatch {
        match arguments.get("x-match").and_then(x_match_text) {
            Some(b"any") => XMatch::Any,
            Some(b"all-with-x") => XMatch::AllWithX,
            Some(b"any-with-x") => XMatch::AnyWithX,
            _ => XMatch::All,
        }
    }

    fn requires_all(self) -> bool {
        matches!(self, XMatch::All | XMatch::AllWithX)
    }

    fn with_x(self) -> bool {
        matches!(self, XMatch::AllWithX | XMatch::AnyWithX)
    }
}

fn x_match_text(value: &FieldValue) -> Option<&[u8]> {
    match value {
        FieldValue::LongStr(text) | FieldValue::ShortStr(text) => Some(text),
        _ => None,
    }
}

/// Why queue.bind / exchange.bind refuses a headers binding (406
/// PRECONDITION_FAILED in RabbitMQ).
#[derive(Clone, Debug, PartialEq)]
pub enum BindingArgumentsError {
    XMatchValue(Bytes),
    XMatchType(&'static str),
}

impl fmt::Display for BindingArgumentsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindingArgumentsError::XMatchValue(value) => write!(
                f,
                "Invalid x-match field value {:?}; expected all, any, all-with-x, or any-with-x",
                String::from_utf8_lossy(value)
            ),
            BindingArgumentsError::XMatchType(type_name) => {
                write!(
                    f,
                    "Invalid x-match field type {type_name}; expected longstr"
                )
            }
        }
    }
}

impl std::error::Error for BindingArgumentsError {}

/// Checks a headers binding's arguments as RabbitMQ does before binding.
pub fn validate_arguments(arguments: &FieldTable) -> Result<(), BindingArgumentsError> {
    let Some(value) = arguments.get("x-match") else {
        return Ok(());
    };
    match x_match_text(value) {
        Some(b"all" | b"any" | b"all-with-x" | b"any-with-x") => Ok(()),
        Some(other) => Err(BindingArgumentsError::XMatchValue(Bytes::copy_from_slice(
            other,
        ))),
        None => Err(BindingArgumentsError::XMatchType(type_name(value))),
    }
}

pub(crate) fn type_name(value: &FieldValue) -> &'static str {
    use FieldValue as V;
    match value {
        V::Bool(_) => "bool",
        V::I8(_) => "byte",
        V::U8(_) => "unsignedbyte",
        V::I16(_) => "short",
        V::U16(_) => "unsignedshort",
        V::I32(_) => "signedint",
        V::U32(_) => "unsignedint",
        V::I64(_) | V::U64(_) => "long",
        V::F32(_) => "float",
        V::F64(_) => "double",
        V::Decimal { .. } => "decimal",
        V::ShortStr(_) | V::LongStr(_) => "longstr",
        V::Array(_) => "array",
        V::Timestamp(_) => "timestamp",
        V::Table(_) => "table",
        V::Void => "void",
        V::Bytes(_) => "binary",
    }
}

type Entry = (Bytes, FieldValue);

/// Message headers sorted by key (stably), built once per routed message.
pub(crate) type SortedHeaders<'a> = SmallVec<[&'a Entry; 16]>;

pub(crate) fn sort_headers(headers: Option<&FieldTable>) -> SortedHeaders<'_> {
    let mut sorted: SortedHeaders<'_> = headers
        .map(|table| table.0.iter().collect())
        .unwrap_or_default();
    // Stable, like lists:keysort; small inputs sort in place without allocating.
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted
}

/// Whether an argument is compared with the headers: `x-match` never is,
/// other `x-` keys only under the `-with-x` rules.
fn takes_part(rule: XMatch, key: &[u8]) -> bool {
    if key.starts_with(b"x-") {
        rule.with_x() && key != b"x-match"
    } else {
        true
    }
}

/// Whether `headers` (sorted) satisfy `arguments` (sorted) under `rule`.
pub(crate) fn headers_match(rule: XMatch, arguments: &[Entry], headers: &[&Entry]) -> bool {
    let mut all_matched = true;
    let mut any_matched = false;
    let mut arguments = arguments.iter().peekable();
    let mut headers = headers.iter().peekable();
    while let Some(&(key, expected)) = arguments.peek() {
        if rule.requires_all() && !all_matched {
            return false;
        }
        if !rule.requires_all() && any_matched {
            return true;
        }
        if !takes_part(rule, key) {
            arguments.next();
            continue;
        }
        let Some(&&(header_key, actual)) = headers.peek() else {
            all_matched = false;
            break;
        };
        match key.cmp(header_key) {
            std::cmp::Ordering::Greater => {
                headers.next();
            }
            std::cmp::Ordering::Less => {
                all_matched = false;
                arguments.next();
            }
            std::cmp::Ordering::Equal => {
                if matches!(expected, FieldValue::Void) || args::erlang_equal(expected, actual) {
                    any_matched = true;
                } else {
                    all_matched = false;
                }
                arguments.next();
                headers.next();
            }
        }
    }
    if rule.requires_all() {
        all_matched
    } else {
        any_matched
    }
}

#[derive(Debug)]
struct HeadersBinding<D> {
    dest: D,
    rule: XMatch,
    /// Sorted by key; identifies the binding on removal.
    arguments: FieldTable,
    /// The entries that take part in matching under `rule`, sorted by key,
    /// so routing does not re-skip `x-` keys for every message.
    pattern: Vec<Entry>,
}

/// Every headers binding, scanned in full for each message.
#[derive(Debug)]
pub(crate) struct HeadersIndex<D> {
    bindings: Vec<HeadersBinding<D>>,
    /// Whether some destination has more than one binding, so a message may
    /// reach it twice and the output needs deduplicating.
    dest_repeats: bool,
}

impl<D: Copy + Eq + Ord> HeadersIndex<D> {
    pub(crate) fn new() -> Self {
        HeadersIndex {
            bindings: Vec::new(),
            dest_repeats: false,
        }
    }

    /// `arguments` must be sorted by key.
    pub(crate) fn insert(&mut self, dest: D, arguments: FieldTable) {
        if self.bindings.iter().any(|binding| binding.dest == dest) {
            self.dest_repeats = true;
        }
        let rule = XMatch::of(&arguments);
        let pattern = arguments
            .0
            .iter()
            .filter(|(key, _)| takes_part(rule, key))
            .cloned()
            .collect();
        self.bindings.push(HeadersBinding {
            dest,
            rule,
            arguments,
            pattern,
        });
    }

    /// `arguments` must be sorted by key.
    pub(crate) fn remove(&mut self, dest: D, arguments: &FieldTable) -> bool {
        let found = self.bindings.iter().position(|binding| {
            binding.dest == dest && args::identical(&binding.arguments, arguments)
        });
        match found {
            Some(position) => {
                self.bindings.swap_remove(position);
                true
            }
            None => false,
        }
    }

    pub(crate) fn remove_destination(&mut self, dest: D) {
        self.bindings.retain(|binding| binding.dest != dest);
    }

    pub(crate) fn route<const N: usize>(
        &self,
        headers: Option<&FieldTable>,
        out: &mut SmallVec<[D; N]>,
    ) {
        if self.bindings.is_empty() {
            return;
        }
        let headers = sort_headers(headers);
        let start = out.len();
        for binding in &self.bindings {
            if headers_match(binding.rule, &binding.pattern, &headers) {
                out.push(binding.dest);
            }
        }
        if self.dest_repeats && out.len() - start > 1 {
            super::dedup_tail(out, start);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FieldValue as V;

    fn table(entries: &[(&str, FieldValue)]) -> FieldTable {
        FieldTable(
            entries
                .iter()
                .map(|(key, value)| (Bytes::copy_from_slice(key.as_bytes()), value.clone()))
                .collect(),
        )
    }

    fn text(value: &'static str) -> FieldValue {
        V::LongStr(Bytes::from_static(value.as_bytes()))
    }

    fn matches(arguments: &[(&str, FieldValue)], headers: &[(&str, FieldValue)]) -> bool {
        let arguments = args::sorted(&table(arguments));
        let headers = table(headers);
        let sorted = sort_headers(Some(&headers));
        headers_match(XMatch::of(&arguments), &arguments.0, &sorted)
    }

    #[test]
    fn all_is_the_default_and_needs_every_argument() {
        let binding = [("format", text("pdf")), ("type", text("report"))];
        assert!(matches(
            &binding,
            &[("type", text("report")), ("format", text("pdf"))]
        ));
        assert!(matches(
            &binding,
            &[
                ("type", text("report")),
                ("extra", V::I32(1)),
                ("format", text("pdf"))
            ]
        ));
        assert!(!matches(&binding, &[("format", text("pdf"))]));
        assert!(!matches(
            &binding,
            &[("format", text("pdf")), ("type", text("log"))]
        ));
        assert!(!matches(&binding, &[]));
    }

    #[test]
    fn any_needs_one_argument() {
        let binding = [
            ("x-match", text("any")),
            ("format", text("pdf")),
            ("type", text("report")),
        ];
        assert!(matches(&binding, &[("type", text("report"))]));
        assert!(matches(
            &binding,
            &[("format", text("pdf")), ("type", text("log"))]
        ));
        assert!(!matches(&binding, &[("format", text("zip"))]));
        assert!(!matches(&binding, &[]));
    }

    #[test]
    fn empty_arguments_match_everything_under_all_and_nothing_under_any() {
        assert!(matches(&[], &[]));
        assert!(matches(&[("x-match", text("all"))], &[("a", V::I32(1))]));
        assert!(!matches(&[("x-match", text("any"))], &[("a", V::I32(1))]));
    }

    #[test]
    fn x_prefixed_arguments_count_only_with_x_rules() {
        let plain = [("x-tenant", text("t1")), ("kind", text("k"))];
        assert!(
            matches(&plain, &[("kind", text("k"))]),
            "x- argument should be ignored under all"
        );
        let with_x = [
            ("x-match", text("all-with-x")),
            ("x-tenant", text("t1")),
            ("kind", text("k")),
        ];
        assert!(!matches(&with_x, &[("kind", text("k"))]));
        assert!(matches(
            &with_x,
            &[("kind", text("k")), ("x-tenant", text("t1"))]
        ));
        let any_with_x = [("x-match", text("any-with-x")), ("x-tenant", text("t1"))];
        assert!(matches(&any_with_x, &[("x-tenant", text("t1"))]));
        let any = [("x-match", text("any")), ("x-tenant", text("t1"))];
        assert!(
            !matches(&any, &[("x-tenant", text("t1"))]),
            "x- argument should be ignored under any"
        );
        // The x-match entry itself never matches a header of that name.
        assert!(!matches(
            &[("x-match", text("any-with-x"))],
            &[("x-match", text("any-with-x"))]
        ));
    }

    #[test]
    fn void_argument_matches_any_value_of_the_key() {
        let binding = [("trace", V::Void)];
        assert!(matches(&binding, &[("trace", V::I32(5))]));
        assert!(matches(&binding, &[("trace", V::Void)]));
        assert!(!matches(&binding, &[("other", V::Void)]));
        assert!(!matches(&[("trace", text("on"))], &[("trace", V::Void)]));
    }

    #[test]
    fn values_compare_across_integer_types_but_not_with_strings() {
        assert!(matches(&[("n", V::I32(3))], &[("n", V::I64(3))]));
        assert!(matches(&[("n", V::U8(3))], &[("n", V::F64(3.0))]));
        assert!(!matches(&[("n", V::I32(3))], &[("n", text("3"))]));
        assert!(!matches(&[("b", V::Bool(true))], &[("b", V::I32(1))]));
    }

    #[test]
    fn wrongly_typed_x_match_means_all_and_fails_validation() {
        let arguments = table(&[("x-match", V::I32(1)), ("a", V::I32(1))]);
        assert_eq!(XMatch::of(&arguments), XMatch::All);
        assert_eq!(
            validate_arguments(&arguments),
            Err(BindingArgumentsError::XMatchType("signedint"))
        );
        let unknown = table(&[("x-match", text("some"))]);
        let error = validate_arguments(&unknown).err();
        assert_eq!(
            error,
            Some(BindingArgumentsError::XMatchValue(Bytes::from_static(
                b"some"
            )))
        );
        assert!(validate_arguments(&table(&[("x-match", text("any-with-x"))])).is_ok());
        assert!(validate_arguments(&FieldTable::default()).is_ok());
    }

    #[test]
    fn duplicate_header_keys_pair_up_in_order() {
        // Sorted stably, the first `a` header meets the only `a` argument.
        assert!(matches(
            &[("a", V::I32(1))],
            &[("a", V::I32(1)), ("a", V::I32(2))]
        ));
        assert!(!matches(
            &[("a", V::I32(2))],
            &[("a", V::I32(1)), ("a", V::I32(2))]
        ));
    }
}
