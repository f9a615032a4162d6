//! The user name a client certificate stands for, for the EXTERNAL mechanism, read as
//! RabbitMQ's `ssl_cert_login_from` says.

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate, X509Name};

/// Which part of the client certificate names the user (RabbitMQ's `ssl_cert_login_from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LoginFrom {
    /// The whole subject, RFC 4514 style, last RDN first: `CN=client,O=Example,C=US`.
    #[value(name = "distinguished_name", alias = "distinguished-name")]
    DistinguishedName,
    /// The subject's first common name (CN).
    #[value(name = "common_name", alias = "common-name")]
    CommonName,
    /// The first DNS name of the subject alternative names (`ssl_cert_login_san_type = dns`,
    /// index 0).
    #[value(
        name = "subject_alternative_name",
        alias = "subject-alternative-name",
        alias = "subject_alt_name"
    )]
    SubjectAlternativeName,
}

impl LoginFrom {
    /// As the flag spells it.
    pub fn name(self) -> &'static str {
        match self {
            LoginFrom::DistinguishedName => "distinguished_name",
            LoginFrom::CommonName => "common_name",
            LoginFrom::SubjectAlternativeName => "subject_alternative_name",
        }
    }
}

/// The user name in the DER certificate `der`; `None` when it is unreadable or has no such
/// name.
pub fn login_name(der: &[u8], from: LoginFrom) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    match from {
        LoginFrom::DistinguishedName => Some(distinguished_name(cert.subject())),
        LoginFrom::CommonName => cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string),
        LoginFrom::SubjectAlternativeName => {
            let san = cert.subject_alternative_name().ok()??;
            san.value.general_names.iter().find_map(|name| match name {
                GeneralName::DNSName(dns) => Some((*dns).to_string()),
                _ => None,
            })
        }
    }
}

/// `CN=client,O=Example,C=US`: as OpenSSL's `-nameopt RFC2253` prints it (RabbitMQ's form).
fn distinguished_name(name: &X509Name) -> String {
    let registry = x509_parser::objects::oid_registry();
    let mut rdns: Vec<String> = Vec::new();
    for rdn in name.iter() {
        let parts: Vec<String> = rdn
            .iter()
            .map(|attr| {
                let oid = attr.attr_type();
                let key = x509_parser::objects::oid2abbrev(oid, registry)
                    .map(str::to_string)
                    .unwrap_or_else(|_| oid.to_id_string());
                let value = attr.as_str().map(escape).unwrap_or_default();
                format!("{key}={value}")
            })
            .collect();
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    rdns.join(",")
}

/// RFC 4514 escaping of an attribute value.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.char_indices() {
        let last = i + c.len_utf8() == value.len();
        let edge = (i == 0 && (c == ' ' || c == '#')) || (last && c == ' ');
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn rfc4514_escapes_specials_and_edge_spaces() {
        assert_eq!(escape("Example, Inc."), "Example\\, Inc.");
        assert_eq!(escape(" padded "), "\\ padded\\ ");
        assert_eq!(escape("#1"), "\\#1");
        assert_eq!(escape("Zürich"), "Zürich");
        assert_eq!(escape("a+b=c"), "a\\+b=c");
    }
}
